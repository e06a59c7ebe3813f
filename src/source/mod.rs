//! Sources of changes: PostgreSQL (forward), MySQL/MariaDB binlogs (reverse).

pub mod mysql;

pub mod postgres;

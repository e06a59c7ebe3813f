//! Sources of changes. Only PostgreSQL today.

pub mod postgres;

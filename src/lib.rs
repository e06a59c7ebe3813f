//! xdb: CDC-based cross-database replication and cutover, from PostgreSQL to
//! MySQL/MariaDB, SQLite or PostgreSQL.
//!
//! The pipeline: [`source::postgres`] reads a consistent snapshot and the
//! logical-replication stream; [`mapping`] turns PostgreSQL values into a
//! target's; [`sink`] writes them; [`plan`] is the YAML file that drives it.

pub mod check;
pub mod cleanup;
pub mod copy;
pub mod cutover;
pub mod error_policy;
pub mod mapping;
pub mod model;
pub mod pipeline;
pub mod plan;
pub mod schema;
pub mod secrets;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod state_dir;
pub mod status;
pub mod tail;
pub mod validate;

//! The MySQL/MariaDB source of changes: the binary log of a target after
//! the switch, read back for `xdb sync --reverse` (the way back).
//!
//! - `position.rs`: binlog positions (file:offset, with the GTID state) and
//!   their ordered form stored as the applied position;
//! - `gtid.rs`: GTID positions (MariaDB `domain-server-seq` per domain,
//!   MySQL GTID sets), to resume where file:offset means nothing any more;
//! - `binlog_stream.rs`: whole committed transactions from the binlog;
//! - `binlog_source.rs`: the binlog as the pipeline's change source;
//! - `value.rs`: binlog values back to the original PostgreSQL types;
//! - `error.rs`: typed errors with their retry decision by error number;
//! - `ddl_back.rs`: a schema change on the target told as table, columns
//!   and the statement for the original source;
//! - `check.rs`: the server settings and privileges the binlog read needs.

pub mod binlog_source;
pub mod binlog_stream;
pub mod ddl_back;
pub mod error;
pub mod gtid;
pub mod position;
pub mod value;

//! The stages of `xdb sync`, joined by bounded channels: a change source's
//! reader hands whole transactions to the batcher, the batcher to the sink,
//! and the checkpoint moves only after the target committed
//! ([`stream`], the one reader and applier). Each way through opens its
//! source and sink and runs it: [`sync`] (PostgreSQL slot), [`from_log`]
//! (a replicated log), [`reverse`] (a MySQL/MariaDB binlog back to the
//! original source); [`to_log`] writes the log itself.

pub(crate) mod backoff;
pub mod batcher;
pub mod from_log;
pub mod generated_fill;
pub mod log_ops;
pub mod log_schema;
pub mod metrics;
pub mod reverse;
pub mod reverse_pg;
pub mod reverse_position;
pub mod reverse_status;
pub(crate) mod stream;
pub mod sync;
pub mod to_log;

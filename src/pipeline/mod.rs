//! The stages of `xdb sync`, joined by bounded channels: the stream reader
//! hands whole transactions to the batcher, the batcher to the sink writer,
//! and the checkpoint moves only after the target committed.

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

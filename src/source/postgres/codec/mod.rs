//! The PostgreSQL source's codecs, sans-I/O: bytes in, values out (and the
//! encoders the tests and benches use), no connection, no runtime, each
//! with property tests. The replication client (`../replication/`) and
//! the readers (`../change_stream.rs`, the copy, validation) feed them.
//!
//! - `pgoutput.rs`: logical replication messages (protocol 1–4);
//! - `copy_binary.rs`: `COPY … (FORMAT binary)` frames into rows;
//! - `value_text.rs`, `value_binary.rs`: one value of a column type from its
//!   text (pgoutput) or binary (COPY) form into a [`Value`](crate::model::Value),
//!   the same value either way.

pub mod copy_binary;
pub mod pgoutput;
pub mod value_binary;
pub mod value_text;

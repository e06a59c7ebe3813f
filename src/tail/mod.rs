//! `xdb tail`: decoded changes from the replication stream as JSON lines.

pub mod json;

//! The PostgreSQL source: the walsender connection (own, on
//! `postgres-protocol`), the sans-I/O codecs ([`codec`]: pgoutput, COPY
//! binary, text and binary values into [`Value`](crate::model::Value)s),
//! the change stream, and the catalog reader.

pub mod assembler;
pub mod catalog;
pub mod change_stream;
pub mod codec;
pub mod generated_recompute;
pub mod identity;
pub mod live;
pub mod money;
pub mod publication;
pub mod replication;
pub mod select;
pub mod streamable;

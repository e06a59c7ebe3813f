//! The PostgreSQL source: the walsender connection (own, on
//! `postgres-protocol`), the pure pgoutput decoder, text-to-[`Value`](crate::model::Value)
//! decoding, and the catalog reader.

pub mod assembler;
pub mod catalog;
pub mod change_stream;
pub mod copy_binary;
pub mod generated_recompute;
pub mod identity;
pub mod live;
pub mod money;
pub mod pgoutput;
pub mod publication;
pub mod replication;
pub mod select;
pub mod streamable;
pub mod value_binary;
pub mod value_text;

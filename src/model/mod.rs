//! Source-neutral data model shared by every stage: positions ([`Lsn`]), table
//! shapes ([`TableSchema`], [`Column`], [`PgType`]), values ([`Value`]) and
//! the changes that flow from the source to a sink ([`Change`], [`Transaction`]).
//!
//! Nothing here does I/O; decoders produce these types and sinks consume them.

mod change;
mod lsn;
mod schema;
pub mod time;
mod types;
mod value;

pub use change::{Change, ChunkError, ChunkedTransaction, Transaction};
pub use lsn::{Lsn, LsnParseError};
#[cfg(test)]
pub(crate) use schema::two_bigint_columns;
pub use schema::{
    pg_ident, split_qualified, CarriedGenerated, Column, GeneratedColumn, ReplicaIdentity, TableName, TableSchema,
};
pub use types::PgType;
pub use value::{DateValue, NumericValue, Row, TimestampValue, Value};

//! Errors of the MySQL/MariaDB binlog source, with their retry decision
//! taken from the driver's error number or I/O kind (`error_policy.rs`),
//! never from message text.

use crate::error_policy::{self, Retry};

#[derive(Debug, thiserror::Error)]
pub enum BinlogError {
    #[error("{target}: {context}: {source}")]
    Driver {
        target: String,
        context: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("{target}: connecting: {reason}")]
    Connect { target: String, reason: String, retry: Retry },
    #[error("{target}: the binlog stream: {source}")]
    Decode {
        target: String,
        #[source]
        source: std::io::Error,
    },
    /// The server ended the binlog dump (it is shutting down).
    #[error("{target}: the server ended the binlog stream")]
    Ended { target: String },
    #[error("{0}")]
    Setup(String),
    /// A schema change on the target while its changes flow back: the
    /// original source does not follow it by itself.
    #[error(
        "a schema change was made on the target at {position}: `{statement}`: {detail} — run the equivalent \
         statement on the original PostgreSQL source, then restart `xdb sync --reverse`"
    )]
    SchemaChange { position: String, statement: String, detail: String },
    /// A value that cannot be written back exactly (invariant *lossy values*
    /// in reverse: reported, never guessed).
    #[error("table {table}, column {column}, key {key}: {reason} (at {position}); the change was not applied")]
    Value { table: String, column: String, key: String, reason: String, position: String },
}

impl BinlogError {
    pub fn driver(target: &str, context: &str, source: mysql_async::Error) -> BinlogError {
        BinlogError::Driver { target: target.into(), context: context.into(), source }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            BinlogError::Driver { source, .. } => error_policy::mysql(source).is_transient(),
            BinlogError::Connect { retry, .. } => retry.is_transient(),
            BinlogError::Decode { source, .. } => error_policy::io_kind(source.kind()).is_transient(),
            BinlogError::Ended { .. } => true,
            _ => false,
        }
    }
}

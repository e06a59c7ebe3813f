//! What the writer may ask of the source while it applies, beyond the
//! stream (invariant *schema drift*, *no omitted column*): a table as the
//! source's catalog has it now, whether a column is another one renamed in
//! place, and the current values of some columns of every row. A Relation
//! message carries none of it: no defaults, no NOT NULL, no attribute
//! numbers, no generated columns.
//!
//! The sink asks through this trait and never names a source: the pipeline
//! hands each writer the implementation of its source
//! ([`crate::source::postgres::live::PgLive`] for PostgreSQL).

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use crate::error_policy::Retry;
use crate::model::{Row, TableName, TableSchema};

/// The source, asked while applying (see the module doc).
pub trait LiveSource: Send + Sync {
    /// `table` as the source's catalog has it now; `None` when it is gone.
    fn table<'a>(&'a self, table: &'a TableName) -> BoxFuture<'a, Result<Option<TableSchema>, SourceReadError>>;

    /// Whether `column` of the table with this catalog identifier is a
    /// column renamed in place (the stream shows a rename as a column gone
    /// and one of the same type in its place), not one added after a drop.
    fn renamed_in_place<'a>(&'a self, table_id: u32, column: &'a str) -> BoxFuture<'a, Result<bool, SourceReadError>>;

    /// Every row of `columns` (a table's schema restricted to the columns
    /// to read), as the source has them now, in no particular order.
    fn rows<'a>(&'a self, columns: &'a TableSchema) -> BoxFuture<'a, Result<RowStream, SourceReadError>>;
}

/// Rows read by [`LiveSource::rows`].
pub type RowStream = BoxStream<'static, Result<Row, SourceReadError>>;

/// Reading the source failed; the message is the source's own (it names
/// the server, the table or the column), the driver's error its source,
/// and whether a retry may help was decided by code where it was read.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceReadError {
    message: String,
    retry: Retry,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SourceReadError {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static, retry: Retry) -> SourceReadError {
        SourceReadError { message: e.to_string(), retry, source: Some(Box::new(e)) }
    }

    /// As [`new`](Self::new), with the message written by the caller (a
    /// driver error whose own text lacks the server's detail).
    pub fn with_message(
        message: String,
        e: impl std::error::Error + Send + Sync + 'static,
        retry: Retry,
    ) -> SourceReadError {
        SourceReadError { message, retry, source: Some(Box::new(e)) }
    }

    /// A failure described by the reader itself (a row it cannot decode).
    pub fn reason(message: String) -> SourceReadError {
        SourceReadError { message, retry: Retry::Fatal, source: None }
    }

    pub fn is_retryable(&self) -> bool {
        self.retry.is_transient()
    }
}

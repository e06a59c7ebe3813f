//! [`LiveSource`] for a PostgreSQL source: its catalog and its rows, read
//! on a connection of their own, opened when the writer asks (a schema
//! change, a generated column added): rare enough that no connection is
//! held for it.

use futures_util::future::BoxFuture;
use futures_util::StreamExt;

use super::catalog::{load_table, renamed_in_place, CatalogError, TypeCache};
use super::codec::copy_binary::CopyBinaryReader;
use super::select::{mark_unknown, select_list};
use crate::error_policy::{pg_error_text, Retry};
use crate::model::{Row, TableName, TableSchema};
use crate::pg_conn::client::{self, ConnectError};
use crate::plan::{GeneratedFrom, SecretUrl};
use crate::source::live_source::{LiveSource, RowStream, SourceReadError};

/// The PostgreSQL source at `url`, asked while applying.
pub struct PgLive {
    url: SecretUrl,
    /// The plan's `mapping.generated` (which columns a table has).
    generated: GeneratedFrom,
}

impl PgLive {
    pub fn new(url: SecretUrl, generated: GeneratedFrom) -> PgLive {
        PgLive { url, generated }
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, SourceReadError> {
        client::connect(&self.url, "xdb sync").await.map_err(connect_error)
    }
}

impl LiveSource for PgLive {
    fn table<'a>(&'a self, table: &'a TableName) -> BoxFuture<'a, Result<Option<TableSchema>, SourceReadError>> {
        Box::pin(async move {
            let c = self.connect().await?;
            load_table(&c, &mut TypeCache::new(), table, self.generated).await.map_err(catalog_error)
        })
    }

    fn renamed_in_place<'a>(&'a self, table_id: u32, column: &'a str) -> BoxFuture<'a, Result<bool, SourceReadError>> {
        Box::pin(async move {
            let c = self.connect().await?;
            renamed_in_place(&c, table_id, column).await.map_err(catalog_error)
        })
    }

    fn rows<'a>(&'a self, columns: &'a TableSchema) -> BoxFuture<'a, Result<RowStream, SourceReadError>> {
        Box::pin(async move {
            let client = self.connect().await?;
            let (select, types, unknown) = select_list(columns);
            let sql = format!("COPY (SELECT {select} FROM {}) TO STDOUT (FORMAT binary)", columns.name.pg_quoted());
            let copy = client.copy_out(sql.as_str()).await.map_err(pg_error)?;
            let reading = Reading {
                _client: client,
                copy: Box::pin(copy),
                reader: CopyBinaryReader::new(types),
                unknown,
                ended: false,
            };
            Ok(futures_util::stream::unfold(Some(reading), next_row).boxed())
        })
    }
}

/// A `COPY … TO STDOUT (FORMAT binary)` being decoded; the client is kept
/// for as long as its stream is read.
struct Reading {
    _client: tokio_postgres::Client,
    copy: std::pin::Pin<Box<tokio_postgres::CopyOutStream>>,
    reader: CopyBinaryReader,
    unknown: Vec<(usize, String)>,
    ended: bool,
}

async fn next_row(state: Option<Reading>) -> Option<(Result<Row, SourceReadError>, Option<Reading>)> {
    let mut s = state?;
    let decode = |e: super::codec::copy_binary::CopyBinaryError| SourceReadError::reason(e.to_string());
    loop {
        match s.reader.next_row() {
            Ok(Some(mut row)) => {
                mark_unknown(&mut row, &s.unknown);
                return Some((Ok(row), Some(s)));
            }
            Ok(None) => {}
            Err(e) => return Some((Err(decode(e)), None)),
        }
        if s.ended {
            return s.reader.finish().err().map(|e| (Err(decode(e)), None));
        }
        match s.copy.next().await {
            Some(Ok(part)) => s.reader.feed(part),
            Some(Err(e)) => return Some((Err(pg_error(e)), None)),
            None => s.ended = true,
        }
    }
}

fn connect_error(e: ConnectError) -> SourceReadError {
    let retry = if e.retryable { Retry::Transient } else { Retry::Fatal };
    SourceReadError::new(e, retry)
}

fn catalog_error(e: CatalogError) -> SourceReadError {
    let retry = match &e {
        CatalogError::Query { source, .. } => crate::error_policy::postgres(source),
        CatalogError::MissingType { .. } => Retry::Fatal,
    };
    SourceReadError::new(e, retry)
}

fn pg_error(e: tokio_postgres::Error) -> SourceReadError {
    let retry = crate::error_policy::postgres(&e);
    SourceReadError::with_message(pg_error_text(&e), e, retry)
}

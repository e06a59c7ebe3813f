//! A copy worker's target side: each target's fastest bulk path (in the
//! target's own folder), one range per target transaction. The range's row
//! is written to `copy_ranges` in the same transaction as its data, so after
//! a crash a range is either wholly there and recorded, or absent: nothing
//! half-written survives (invariant *per-table sync LSN*).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::conn::{TargetConn, TargetError};
use super::mysql::MysqlConn;
use super::postgres::PgConn;
use super::sqlite::SqliteConn;
use crate::error_policy::pg_error_text;
use crate::error_policy::{self, Retry};
use crate::mapping::MappedTable;
use crate::model::Row;
use crate::plan::TargetUrl;

/// Loading a range failed; nothing of it was kept.
#[derive(Debug, thiserror::Error)]
#[error("writing {table} to the target: {reason}")]
pub struct LoadError {
    pub table: String,
    pub reason: String,
    pub retry: Retry,
}

/// Where a loaded range is recorded.
#[derive(Debug, Clone)]
pub struct RangeRecord {
    pub slot: String,
    pub table: String,
    pub range_no: i64,
}

/// Counters a loader advances as rows go out (read by the progress display).
#[derive(Debug, Default)]
pub struct LoadCounters {
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
}

impl LoadCounters {
    fn add(&self, rows: u64, bytes: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// One attempt's share of a table's counters: a failed attempt takes its
/// rows back out so a retried range is not counted twice.
#[derive(Debug)]
pub(crate) struct AttemptCounters {
    table: Arc<LoadCounters>,
    own: LoadCounters,
}

impl AttemptCounters {
    fn new(table: &Arc<LoadCounters>) -> Arc<AttemptCounters> {
        Arc::new(AttemptCounters { table: table.clone(), own: LoadCounters::default() })
    }

    pub(crate) fn add_rows(&self, rows: u64) {
        self.table.add(rows, 0);
        self.own.add(rows, 0);
    }

    pub(crate) fn add_bytes(&self, bytes: u64) {
        self.table.add(0, bytes);
        self.own.add(0, bytes);
    }

    fn roll_back(&self) {
        self.table.rows.fetch_sub(self.own.rows.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        self.table.bytes.fetch_sub(self.own.bytes.swap(0, Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Encoded bytes handed to the server at a time.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// One worker's target connection.
pub enum Loader {
    Mysql(MysqlConn),
    /// Taken while a blocking thread loads; `None` after that thread died.
    Sqlite(Option<SqliteConn>, String),
    Postgres(PgConn),
}

impl Loader {
    /// Connects to the target (same session settings as every xdb target
    /// connection: strict mode, UTC, utf8mb4 on MySQL).
    pub async fn connect(url: &TargetUrl) -> Result<Loader, TargetError> {
        Ok(match TargetConn::connect(url).await? {
            TargetConn::Mysql(c) => Loader::Mysql(c),
            TargetConn::Sqlite(c) => {
                let label = c.label();
                // A crash loses at most the open range, which is re-copied
                // anyway; fsync per commit would only slow the load.
                c.conn.execute_batch("PRAGMA synchronous = OFF").map_err(|e| TargetError::Sql {
                    target: label.clone(),
                    context: "PRAGMA synchronous = OFF".into(),
                    source: e.into(),
                })?;
                Loader::Sqlite(Some(c), label)
            }
            TargetConn::Postgres(c) => Loader::Postgres(c),
        })
    }

    /// Loads the rows arriving on `rows` into `table`, then, once `read_done`
    /// says the reader finished cleanly with the same row count, records the
    /// range and commits. Any failure rolls the whole range back.
    pub async fn load_range(
        &mut self,
        table: &Arc<MappedTable>,
        rows: mpsc::Receiver<Vec<Row>>,
        read_done: oneshot::Receiver<Result<u64, String>>,
        record: &RangeRecord,
        counters: &Arc<LoadCounters>,
    ) -> Result<u64, LoadError> {
        let fail = load_error(table);
        let counters = &AttemptCounters::new(counters);
        let result = match self {
            Loader::Mysql(c) => {
                let r = super::mysql::load::load_range(&mut c.conn, table, rows, read_done, record, counters).await;
                if r.is_err() {
                    let _ = c.execute("ROLLBACK").await;
                }
                r.map_err(|e| fail(e.labelled(&c.label)))
            }
            Loader::Postgres(c) => {
                let r = super::postgres::load::load_range(&c.client, table, rows, read_done, record, counters).await;
                if r.is_err() {
                    let _ = c.execute("ROLLBACK").await;
                }
                r.map_err(|e| fail(e.labelled(&c.label)))
            }
            Loader::Sqlite(slot, label) => {
                let Some(conn) = slot.take() else {
                    counters.roll_back();
                    return Err(fail(LoadFailure::transient(format!(
                        "{label}: connection lost after an earlier failure"
                    ))));
                };
                let t = table.clone();
                let c = counters.clone();
                let rec = record.clone();
                let joined = tokio::task::spawn_blocking(move || {
                    let r = super::sqlite::load::load_range(&conn.conn, &t, rows, read_done, &rec, &c);
                    (conn, r)
                })
                .await;
                match joined {
                    Ok((conn, r)) => {
                        *slot = Some(conn);
                        r.map_err(|e| fail(e.labelled(label)))
                    }
                    Err(e) => Err(fail(format!("{label}: loader thread failed: {e}").into())),
                }
            }
        };
        if result.is_err() {
            counters.roll_back();
        }
        result
    }

    /// Loads a range arriving as COPY binary bytes straight from the source
    /// (PostgreSQL target whose columns have the source's types), then
    /// records it and commits, as [`load_range`](Self::load_range) does.
    pub async fn load_range_raw(
        &mut self,
        table: &Arc<MappedTable>,
        chunks: mpsc::Receiver<Bytes>,
        read_done: oneshot::Receiver<Result<u64, String>>,
        record: &RangeRecord,
        counters: &Arc<LoadCounters>,
    ) -> Result<u64, LoadError> {
        let fail = load_error(table);
        let Loader::Postgres(c) = self else {
            return Err(fail(String::from("a byte-for-byte copy needs a PostgreSQL target").into()));
        };
        let counters = &AttemptCounters::new(counters);
        let r = super::postgres::load::load_range_raw(&c.client, table, chunks, read_done, record, counters).await;
        if r.is_err() {
            let _ = c.execute("ROLLBACK").await;
            counters.roll_back();
        }
        r.map_err(|e| fail(e.labelled(&c.label)))
    }
}

/// Waits for the reader: a range is committed only when it was read whole.
pub(crate) async fn check_reader(
    read_done: oneshot::Receiver<Result<u64, String>>,
    loaded: u64,
) -> Result<(), LoadFailure> {
    match read_done.await {
        Ok(Ok(read)) if read == loaded => Ok(()),
        Ok(Ok(read)) => Err(format!("read {read} rows from the source but wrote {loaded}").into()),
        Ok(Err(reason)) => Err(format!("reading the source failed: {reason}").into()),
        Err(_) => Err(String::from("the source reader stopped").into()),
    }
}

/// Why loading a range failed: the text for people, and whether the range
/// is worth another attempt, decided from the driver's error code
/// ([`crate::error_policy`]). Failures of xdb's own checks (row counts, a
/// value the mapping rejects) are never retried.
#[derive(Debug)]
pub struct LoadFailure {
    pub(crate) reason: String,
    pub(crate) retry: Retry,
}

impl LoadFailure {
    pub(crate) fn transient(reason: String) -> Self {
        LoadFailure { reason, retry: Retry::Transient }
    }

    fn labelled(self, label: &str) -> Self {
        LoadFailure { reason: format!("{label}: {}", self.reason), retry: self.retry }
    }
}

impl From<String> for LoadFailure {
    fn from(reason: String) -> Self {
        LoadFailure { reason, retry: Retry::Fatal }
    }
}

impl From<mysql_async::Error> for LoadFailure {
    fn from(e: mysql_async::Error) -> Self {
        LoadFailure { retry: error_policy::mysql(&e), reason: e.to_string() }
    }
}

impl From<tokio_postgres::Error> for LoadFailure {
    fn from(e: tokio_postgres::Error) -> Self {
        LoadFailure { retry: error_policy::postgres(&e), reason: pg_error_text(&e) }
    }
}

impl From<rusqlite::Error> for LoadFailure {
    fn from(e: rusqlite::Error) -> Self {
        LoadFailure { retry: error_policy::sqlite(&e), reason: e.to_string() }
    }
}

/// A range of `table` failed to load: the error as the copy reports it.
fn load_error(table: &MappedTable) -> impl Fn(LoadFailure) -> LoadError + '_ {
    |f: LoadFailure| LoadError { table: table.source.name.to_string(), reason: f.reason, retry: f.retry }
}

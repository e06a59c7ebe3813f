//! A copy worker's target side: each target's fastest bulk path, one range
//! per target transaction. The range's row is written to `copy_ranges` in
//! the same transaction as its data, so after a crash a range is either
//! wholly there and recorded, or absent: nothing half-written survives.
//!
//! - MySQL/MariaDB: `LOAD DATA LOCAL INFILE` fed from memory through
//!   mysql_async's infile handler (no temporary files). LOCAL loads turn
//!   data errors and duplicate keys into warnings, so the loaded row count
//!   and the warning count are checked before commit.
//! - SQLite: one prepared INSERT in a large transaction, on a blocking thread.
//! - PostgreSQL: `COPY … FROM STDIN`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mysql_async::prelude::Queryable;
use tokio::sync::{mpsc, oneshot};

use super::CopyError;
use crate::error_policy::{self, Retry};
use crate::mapping::MappedTable;
use crate::model::Row;
use crate::plan::TargetUrl;
use crate::sink::dialect::SqlDialect;
use crate::sink::state;
use crate::sink::target::TargetConn;
use crate::source::postgres::client::error_text;

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
struct AttemptCounters {
    table: Arc<LoadCounters>,
    own: LoadCounters,
}

impl AttemptCounters {
    fn new(table: &Arc<LoadCounters>) -> Arc<AttemptCounters> {
        Arc::new(AttemptCounters { table: table.clone(), own: LoadCounters::default() })
    }

    fn add_rows(&self, rows: u64) {
        self.table.add(rows, 0);
        self.own.add(rows, 0);
    }

    fn add_bytes(&self, bytes: u64) {
        self.table.add(0, bytes);
        self.own.add(0, bytes);
    }

    fn roll_back(&self) {
        self.table.rows.fetch_sub(self.own.rows.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        self.table.bytes.fetch_sub(self.own.bytes.swap(0, Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Encoded bytes handed to the server at a time.
const CHUNK_BYTES: usize = 1 << 20;

/// One worker's target connection.
pub enum Loader {
    Mysql(mysql_async::Conn, String),
    Sqlite(Option<rusqlite::Connection>, String),
    Postgres(tokio_postgres::Client, String),
}

impl Loader {
    /// Connects to the target (same session settings as every xdb target
    /// connection: strict mode, UTC, utf8mb4 on MySQL).
    pub async fn connect(url: &TargetUrl) -> Result<Loader, CopyError> {
        let conn = TargetConn::connect(url).await?;
        let label = conn.label();
        Ok(match conn {
            TargetConn::Mysql { conn, .. } => Loader::Mysql(conn, label),
            TargetConn::Sqlite { conn, .. } => {
                // A crash loses at most the open range, which is re-copied
                // anyway; fsync per commit would only slow the load.
                conn.execute_batch("PRAGMA synchronous = OFF").map_err(|e| CopyError::Write {
                    table: String::new(),
                    retry: error_policy::sqlite(&e),
                    reason: format!("{label}: {e}"),
                })?;
                Loader::Sqlite(Some(conn), label)
            }
            TargetConn::Postgres { client, .. } => Loader::Postgres(client, label),
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
    ) -> Result<u64, CopyError> {
        let fail = |f: LoadFailure| CopyError::Write {
            table: table.source.name.to_string(),
            reason: f.reason,
            retry: f.retry,
        };
        let counters = &AttemptCounters::new(counters);
        let result = match self {
            Loader::Mysql(conn, label) => {
                let r = load_mysql(conn, table, rows, read_done, record, counters).await;
                if r.is_err() {
                    let _ = conn.query_drop("ROLLBACK").await;
                }
                r.map_err(|e| fail(e.labelled(label)))
            }
            Loader::Postgres(client, label) => {
                let r = load_postgres(client, table, rows, read_done, record, counters).await;
                if r.is_err() {
                    let _ = client.batch_execute("ROLLBACK").await;
                }
                r.map_err(|e| fail(e.labelled(label)))
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
                let joined =
                    tokio::task::spawn_blocking(move || load_sqlite(conn, &t, rows, read_done, &rec, &c)).await;
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
}

async fn load_mysql(
    conn: &mut mysql_async::Conn,
    table: &Arc<MappedTable>,
    rows: mpsc::Receiver<Vec<Row>>,
    read_done: oneshot::Receiver<Result<u64, String>>,
    record: &RangeRecord,
    counters: &Arc<AttemptCounters>,
) -> Result<u64, LoadFailure> {
    let e = LoadFailure::from;
    conn.query_drop("START TRANSACTION").await.map_err(e)?;
    let sent = Arc::new(AtomicU64::new(0));
    let encode_error: Arc<std::sync::Mutex<super::value_errors::ValueErrors>> = Default::default();
    let state = (rows, table.clone(), sent.clone(), encode_error.clone(), counters.clone());
    let stream = futures_util::stream::unfold(state, |(mut rx, t, sent, err, counters)| async move {
        let mut buf = Vec::with_capacity(CHUNK_BYTES + 64 * 1024);
        while buf.len() < CHUNK_BYTES {
            let Some(batch) = rx.recv().await else { break };
            let n = batch.len() as u64;
            for row in &batch {
                let at = buf.len();
                if let Err(conv) = t.append_load_data_row(row, &mut buf) {
                    // Keep going so that every bad value of the range is
                    // named; the range fails after the load (row counts
                    // differ, the stored errors say why).
                    buf.truncate(at);
                    if let Ok(mut errors) = err.lock() {
                        errors.push(conv);
                    }
                }
            }
            sent.fetch_add(n, Ordering::Relaxed);
            counters.add_rows(n);
        }
        if buf.is_empty() {
            return None;
        }
        counters.add_bytes(buf.len() as u64);
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), (rx, t, sent, err, counters)))
    });
    conn.set_infile_handler(async move { Ok(stream.boxed()) });
    let load = conn.query_drop(table.load_data_sql("xdb-copy")).await;
    if let Some(msg) = encode_error.lock().ok().filter(|e| !e.is_empty()).map(|e| e.message()) {
        return Err(msg.into());
    }
    load.map_err(e)?;
    let loaded = conn.affected_rows();
    let warnings = conn.get_warnings();
    let sent = sent.load(Ordering::Relaxed);
    if warnings > 0 {
        let w: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS LIMIT 5").await.unwrap_or_default();
        let list: Vec<String> = w.into_iter().map(|(level, code, msg)| format!("{level} {code}: {msg}")).collect();
        return Err(format!(
            "LOAD DATA reported {warnings} warning(s), so some values would not land exactly; nothing was kept: {}",
            list.join("; ")
        )
        .into());
    }
    if loaded != sent {
        return Err(format!(
            "{sent} rows sent but {loaded} loaded (a duplicate key in the target table?); nothing was kept"
        )
        .into());
    }
    check_reader(read_done, sent).await?;
    conn.exec_drop(
        state::insert_range(SqlDialect::Mysql),
        (record.slot.as_str(), record.table.as_str(), record.range_no, sent as i64),
    )
    .await
    .map_err(e)?;
    conn.query_drop("COMMIT").await.map_err(e)?;
    Ok(sent)
}

/// Waits for the reader: a range is committed only when it was read whole.
async fn check_reader(read_done: oneshot::Receiver<Result<u64, String>>, loaded: u64) -> Result<(), LoadFailure> {
    match read_done.await {
        Ok(Ok(read)) if read == loaded => Ok(()),
        Ok(Ok(read)) => Err(format!("read {read} rows from the source but wrote {loaded}").into()),
        Ok(Err(reason)) => Err(format!("reading the source failed: {reason}").into()),
        Err(_) => Err(String::from("the source reader stopped").into()),
    }
}

impl Loader {
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
    ) -> Result<u64, CopyError> {
        let fail = |f: LoadFailure| CopyError::Write {
            table: table.source.name.to_string(),
            reason: f.reason,
            retry: f.retry,
        };
        let Loader::Postgres(client, label) = self else {
            return Err(fail(String::from("a byte-for-byte copy needs a PostgreSQL target").into()));
        };
        let counters = &AttemptCounters::new(counters);
        let r = load_postgres_raw(client, table, chunks, read_done, record, counters).await;
        if r.is_err() {
            let _ = client.batch_execute("ROLLBACK").await;
            counters.roll_back();
        }
        r.map_err(|e| fail(e.labelled(label)))
    }
}

async fn load_postgres_raw(
    client: &tokio_postgres::Client,
    table: &Arc<MappedTable>,
    mut chunks: mpsc::Receiver<Bytes>,
    read_done: oneshot::Receiver<Result<u64, String>>,
    record: &RangeRecord,
    counters: &Arc<AttemptCounters>,
) -> Result<u64, LoadFailure> {
    let e = LoadFailure::from;
    client.batch_execute("BEGIN").await.map_err(e)?;
    let sql = format!("{} (FORMAT binary)", table.pg_copy_sql());
    let sink = client.copy_in::<_, Bytes>(sql.as_str()).await.map_err(e)?;
    let mut sink = std::pin::pin!(sink);
    while let Some(chunk) = chunks.recv().await {
        counters.add_bytes(chunk.len() as u64);
        sink.send(chunk).await.map_err(e)?;
    }
    let loaded = sink.as_mut().finish().await.map_err(e)?;
    counters.add_rows(loaded);
    check_reader(read_done, loaded).await?;
    record_and_commit_pg(client, record, loaded).await
}

async fn load_postgres(
    client: &tokio_postgres::Client,
    table: &Arc<MappedTable>,
    mut rows: mpsc::Receiver<Vec<Row>>,
    read_done: oneshot::Receiver<Result<u64, String>>,
    record: &RangeRecord,
    counters: &Arc<AttemptCounters>,
) -> Result<u64, LoadFailure> {
    let e = LoadFailure::from;
    client.batch_execute("BEGIN").await.map_err(e)?;
    let sink = client.copy_in::<_, Bytes>(table.pg_copy_sql().as_str()).await.map_err(e)?;
    let mut sink = std::pin::pin!(sink);
    let mut sent = 0u64;
    let mut bad = super::value_errors::ValueErrors::default();
    let mut buf = Vec::with_capacity(CHUNK_BYTES + 64 * 1024);
    while let Some(batch) = rows.recv().await {
        for row in &batch {
            let at = buf.len();
            if let Err(c) = table.append_pg_copy_row(row, &mut buf) {
                buf.truncate(at);
                bad.push(c);
            }
        }
        sent += batch.len() as u64;
        counters.add_rows(batch.len() as u64);
        if buf.len() >= CHUNK_BYTES {
            counters.add_bytes(buf.len() as u64);
            sink.send(Bytes::from(std::mem::take(&mut buf))).await.map_err(e)?;
        }
    }
    if !bad.is_empty() {
        return Err(bad.message().into());
    }
    if !buf.is_empty() {
        counters.add_bytes(buf.len() as u64);
        sink.send(Bytes::from(buf)).await.map_err(e)?;
    }
    let loaded = sink.as_mut().finish().await.map_err(e)?;
    if loaded != sent {
        return Err(format!("{sent} rows sent but {loaded} loaded").into());
    }
    check_reader(read_done, sent).await?;
    record_and_commit_pg(client, record, sent).await
}

/// Records the loaded range in the state table and commits: the range and
/// its record land together or not at all.
async fn record_and_commit_pg(
    client: &tokio_postgres::Client,
    record: &RangeRecord,
    rows: u64,
) -> Result<u64, LoadFailure> {
    let e = LoadFailure::from;
    client
        .execute(
            state::insert_range(SqlDialect::Postgres).as_str(),
            &[&record.slot, &record.table, &(record.range_no as i32), &(rows as i64)],
        )
        .await
        .map_err(e)?;
    client.batch_execute("COMMIT").await.map_err(e)?;
    Ok(rows)
}

fn load_sqlite(
    conn: rusqlite::Connection,
    table: &MappedTable,
    mut rows: mpsc::Receiver<Vec<Row>>,
    read_done: oneshot::Receiver<Result<u64, String>>,
    record: &RangeRecord,
    counters: &AttemptCounters,
) -> (rusqlite::Connection, Result<u64, LoadFailure>) {
    let r = (|| -> Result<u64, LoadFailure> {
        let e = LoadFailure::from;
        let tx = rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate).map_err(e)?;
        let d = SqlDialect::Sqlite;
        let cols: Vec<String> = table.columns.iter().map(|c| d.ident(&c.name)).collect();
        let marks = vec!["?"; cols.len()].join(", ");
        let sql = format!("INSERT INTO {} ({}) VALUES ({marks})", d.table_ident(&table.source.name), cols.join(", "));
        let all: Vec<usize> = (0..table.columns.len()).collect();
        let mut sent = 0u64;
        let mut bad = super::value_errors::ValueErrors::default();
        {
            let mut st = tx.prepare(&sql).map_err(e)?;
            while let Some(batch) = rows.blocking_recv() {
                for row in &batch {
                    let params = match table.sqlite_params(row, &all) {
                        Ok(p) => p,
                        Err(c) => {
                            bad.push(c);
                            continue;
                        }
                    };
                    counters.add_bytes(super::progress::sqlite_row_bytes(&params));
                    st.execute(rusqlite::params_from_iter(params)).map_err(e)?;
                }
                sent += batch.len() as u64;
                counters.add_rows(batch.len() as u64);
            }
        }
        if !bad.is_empty() {
            return Err(bad.message().into());
        }
        match read_done.blocking_recv() {
            Ok(Ok(read)) if read == sent => {}
            Ok(Ok(read)) => return Err(format!("read {read} rows from the source but wrote {sent}").into()),
            Ok(Err(reason)) => return Err(format!("reading the source failed: {reason}").into()),
            Err(_) => return Err(LoadFailure::from(String::from("the source reader stopped"))),
        }
        tx.execute(&state::insert_range(d), rusqlite::params![record.slot, record.table, record.range_no, sent as i64])
            .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(sent)
    })();
    (conn, r)
}

/// Why loading a range failed: the text for people, and whether the range
/// is worth another attempt, decided from the driver's error code
/// ([`crate::error_policy`]). Failures of xdb's own checks (row counts, a
/// value the mapping rejects) are never retried.
#[derive(Debug)]
pub struct LoadFailure {
    reason: String,
    retry: Retry,
}

impl LoadFailure {
    fn transient(reason: String) -> Self {
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
        LoadFailure { retry: error_policy::postgres(&e), reason: error_text(&e) }
    }
}

impl From<rusqlite::Error> for LoadFailure {
    fn from(e: rusqlite::Error) -> Self {
        LoadFailure { retry: error_policy::sqlite(&e), reason: e.to_string() }
    }
}

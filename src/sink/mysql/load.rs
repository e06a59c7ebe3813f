//! Bulk load into MySQL/MariaDB: `LOAD DATA LOCAL INFILE` fed from memory
//! through mysql_async's infile handler (no temporary files). LOCAL loads
//! turn data errors and duplicate keys into warnings, so the loaded row
//! count and the warning count are checked before commit.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use mysql_async::prelude::Queryable;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::mapping::MappedTable;
use crate::model::Row;
use crate::plan::naming::SqlDialect;
use crate::sink::load::{check_reader, AttemptCounters, LoadFailure, RangeRecord, CHUNK_BYTES};
use crate::sink::state;
use crate::sink::value_errors::ValueErrors;

/// Loads one range in one transaction with its `copy_ranges` row.
pub(crate) async fn load_range(
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
    let encode_error: Arc<std::sync::Mutex<ValueErrors>> = Default::default();
    let state = (rows, table.clone(), sent.clone(), encode_error.clone(), counters.clone());
    let stream = futures_util::stream::unfold(state, |(mut rx, t, sent, err, counters)| async move {
        let mut buf = Vec::with_capacity(CHUNK_BYTES + 64 * 1024);
        while buf.len() < CHUNK_BYTES {
            let Some(batch) = rx.recv().await else { break };
            let n = batch.len() as u64;
            for row in &batch {
                let at = buf.len();
                if let Err(first) = t.append_load_data_row(row, &mut buf) {
                    // Keep going so that every bad value of the range is
                    // named; the range fails after the load (row counts
                    // differ, the stored errors say why).
                    buf.truncate(at);
                    if let Ok(mut errors) = err.lock() {
                        errors.push_row(first, t.row_errors(row));
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
    let charset = input_charset(conn, table).await.map_err(e)?;
    conn.set_infile_handler(async move { Ok(stream.boxed()) });
    let load = conn.query_drop(table.load_data_sql("xdb-copy", charset)).await;
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

/// The character set `LOAD DATA` reads xdb's text in. That text is valid
/// UTF-8 (it was Rust strings), so where every character column of the
/// table is utf8mb4 — or ASCII and filled by xdb with UUID text — `binary`
/// lets the server take the bytes as they are (it still checks that they
/// are well-formed for the column); measured on the 1M-row orders copy,
/// mariadbd's CPU went from 6.4–6.7 s to 5.8–5.9 s. Any other character set
/// (an application's latin1 column in a table that existed before xdb)
/// needs `utf8mb4`, so that the server converts each value and warns about
/// what the column cannot hold (the range then fails: see above), instead
/// of storing UTF-8 bytes as latin1 characters.
async fn input_charset(conn: &mut mysql_async::Conn, table: &MappedTable) -> Result<&'static str, mysql_async::Error> {
    let columns: Vec<(String, String)> = conn
        .exec(
            "SELECT column_name, character_set_name FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = ? AND character_set_name IS NOT NULL",
            (table.target_name.as_str(),),
        )
        .await?;
    let takes_utf8 = |(name, charset): &(String, String)| {
        charset.eq_ignore_ascii_case("utf8mb4")
            || (charset.eq_ignore_ascii_case("ascii")
                && table
                    .columns
                    .iter()
                    .any(|c| c.name.eq_ignore_ascii_case(name) && c.source_type == crate::model::PgType::Uuid))
    };
    Ok(if columns.iter().all(takes_utf8) { "binary" } else { "utf8mb4" })
}

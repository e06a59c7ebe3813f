//! Bulk load into SQLite: one prepared INSERT in a large transaction, run
//! on a blocking thread (the driver is synchronous).

use tokio::sync::{mpsc, oneshot};

use crate::mapping::MappedTable;
use crate::model::Row;
use crate::plan::naming::SqlDialect;
use crate::sink::load::{AttemptCounters, LoadFailure, RangeRecord};
use crate::sink::state;
use crate::sink::value_errors::ValueErrors;

/// Loads one range in one transaction with its `copy_ranges` row.
pub(crate) fn load_range(
    conn: &rusqlite::Connection,
    table: &MappedTable,
    mut rows: mpsc::Receiver<Vec<Row>>,
    read_done: oneshot::Receiver<Result<u64, String>>,
    record: &RangeRecord,
    counters: &AttemptCounters,
) -> Result<u64, LoadFailure> {
    let e = LoadFailure::from;
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate).map_err(e)?;
    let d = SqlDialect::Sqlite;
    let cols: Vec<String> = table.columns.iter().map(|c| d.ident(&c.name)).collect();
    let marks = vec!["?"; cols.len()].join(", ");
    let sql = format!("INSERT INTO {} ({}) VALUES ({marks})", table.target_ident, cols.join(", "));
    let all: Vec<usize> = (0..table.columns.len()).collect();
    let mut sent = 0u64;
    let mut bad = ValueErrors::default();
    {
        let mut st = tx.prepare(&sql).map_err(e)?;
        while let Some(batch) = rows.blocking_recv() {
            for row in &batch {
                let params = match table.sqlite_params(row, &all) {
                    Ok(p) => p,
                    Err(first) => {
                        bad.push_row(first, table.row_errors(row));
                        continue;
                    }
                };
                counters.add_bytes(row_bytes(&params));
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
}

/// The bytes a row's SQLite values hold (text and blob lengths, 8 per
/// number), so the copy summary shows the data written to a SQLite target
/// as it does for the targets that are fed a byte stream.
pub fn row_bytes(values: &[rusqlite::types::Value]) -> u64 {
    use rusqlite::types::Value;
    values
        .iter()
        .map(|v| match v {
            Value::Null => 0,
            Value::Integer(_) | Value::Real(_) => 8,
            Value::Text(t) => t.len() as u64,
            Value::Blob(b) => b.len() as u64,
        })
        .sum()
}

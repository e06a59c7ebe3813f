//! Bulk load into PostgreSQL: `COPY … FROM STDIN`, in text format from
//! mapped rows, or the source's COPY binary bytes passed through unchanged
//! when the target columns have the source's types.

use bytes::Bytes;
use futures_util::SinkExt;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::mapping::MappedTable;
use crate::model::Row;
use crate::plan::naming::SqlDialect;
use crate::sink::load::{check_reader, AttemptCounters, LoadFailure, RangeRecord, CHUNK_BYTES};
use crate::sink::state;
use crate::sink::value_errors::ValueErrors;

/// Loads one range of COPY binary bytes in one transaction with its record.
pub(crate) async fn load_range_raw(
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

/// Loads one range of mapped rows in one transaction with its record.
pub(crate) async fn load_range(
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
    let mut bad = ValueErrors::default();
    let mut buf = Vec::with_capacity(CHUNK_BYTES + 64 * 1024);
    while let Some(batch) = rows.recv().await {
        for row in &batch {
            let at = buf.len();
            if let Err(first) = table.append_pg_copy_row(row, &mut buf) {
                buf.truncate(at);
                bad.push_row(first, table.row_errors(row));
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

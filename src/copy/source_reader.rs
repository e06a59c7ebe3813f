//! A copy worker's source side: a plain connection inside a REPEATABLE READ
//! transaction that imported the slot's exported snapshot (invariant *snapshot handoff*), so
//! every worker sees exactly the data the stream starts after. Ranges are
//! read with `COPY (SELECT …) TO STDOUT (FORMAT binary)` and decoded by the
//! sans-I/O [`CopyBinaryReader`].

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::ranges::CopyRange;
use super::CopyError;
use crate::error_policy::pg_error_text;
use crate::model::{pg_ident, PgType, Row, TableName, TableSchema};
use crate::pg_conn::client;
use crate::plan::SecretUrl;
use crate::source::postgres::codec::copy_binary::{CopyBinaryError, CopyBinaryReader};
use crate::source::postgres::select::{mark_unknown, select_list};

/// Rows handed to the writer at a time.
pub const ROW_BATCH: usize = 2048;

/// COPY binary bytes handed to the writer at a time (byte-for-byte path).
const RAW_BATCH_BYTES: usize = 256 * 1024;

/// One worker's snapshot connection.
pub struct SnapshotReader {
    client: Client,
}

impl SnapshotReader {
    /// Connects and imports `snapshot` (the exporting connection must still
    /// be open).
    pub async fn open(url: &SecretUrl, snapshot: &str) -> Result<Self, CopyError> {
        let client = client::connect(url, "xdb copy").await?;
        let sql = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            snapshot.replace('\'', "''")
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| CopyError::Snapshot { snapshot: snapshot.to_string(), reason: pg_error_text(&e) })?;
        Ok(SnapshotReader { client })
    }

    /// Connects in a REPEATABLE READ transaction of its own (no exported
    /// snapshot): for scans that need a consistent read, not a handoff.
    pub async fn open_own(url: &SecretUrl) -> Result<Self, CopyError> {
        let client = client::connect(url, "xdb scan").await?;
        client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(CopyError::SourceSql)?;
        Ok(SnapshotReader { client })
    }

    /// Takes ACCESS SHARE locks on `tables` for the rest of this transaction
    /// (`only` ones without their inheritance children) and returns those
    /// whose storage was rewritten after the snapshot: the relfilenode the
    /// snapshot sees in `pg_class` is not the one the server uses now.
    /// Partitions and inheritance children are checked with their parent.
    pub async fn hold_tables(&self, tables: &[TableName], only: &[TableName]) -> Result<Vec<TableName>, CopyError> {
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = tables
            .iter()
            .map(|t| if only.contains(t) { format!("ONLY {}", t.pg_quoted()) } else { t.pg_quoted() })
            .collect();
        let lock = format!("LOCK TABLE {} IN ACCESS SHARE MODE", list.join(", "));
        self.client.batch_execute(&lock).await.map_err(CopyError::SourceSql)?;
        let check = "WITH RECURSIVE tree(oid) AS ( \
                       SELECT $1::text::regclass::oid \
                       UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid WHERE $2) \
                     SELECT count(*) FROM tree JOIN pg_class c ON c.oid = tree.oid \
                     WHERE c.relkind IN ('r', 'm') AND c.relfilenode <> pg_relation_filenode(c.oid)";
        let mut rewritten = Vec::new();
        for t in tables {
            let recurse = !only.contains(t);
            let n: i64 =
                self.client.query_one(check, &[&t.pg_quoted(), &recurse]).await.map_err(CopyError::SourceSql)?.get(0);
            if n > 0 {
                rewritten.push(t.clone());
            }
        }
        Ok(rewritten)
    }

    /// The connection (for estimates and key bounds read at the snapshot).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Streams one range of `table` as row batches into `out`. Returns the
    /// number of rows read. Stops early (Ok) when the receiver is gone.
    pub async fn read_range(
        &self,
        table: &TableSchema,
        from: &str,
        range: &CopyRange,
        out: &mpsc::Sender<Vec<Row>>,
    ) -> Result<u64, CopyError> {
        let (select, types, unknown) = select_list(table);
        let sql = copy_out_sql(&select, from, range);
        let err =
            |e: tokio_postgres::Error| CopyError::Read { table: table.name.to_string(), reason: pg_error_text(&e) };
        let stream = self.client.copy_out(sql.as_str()).await.map_err(err)?;
        let mut stream = std::pin::pin!(stream);
        let mut reader = CopyBinaryReader::new(types);
        let mut batch: Vec<Row> = Vec::with_capacity(ROW_BATCH);
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes = chunk.map_err(err)?;
            reader.feed(chunk);
            loop {
                let row = reader
                    .next_row()
                    .map_err(|e| CopyError::Read { table: table.name.to_string(), reason: e.to_string() })?;
                let Some(mut row) = row else { break };
                mark_unknown(&mut row, &unknown);
                batch.push(row);
                if batch.len() >= ROW_BATCH && out.send(std::mem::take(&mut batch)).await.is_err() {
                    return Ok(reader.rows_read());
                }
            }
        }
        reader.finish().map_err(|e| CopyError::Read { table: table.name.to_string(), reason: e.to_string() })?;
        if !batch.is_empty() {
            let _ = out.send(batch).await;
        }
        Ok(reader.rows_read())
    }
    /// Streams one range of `table` as the server's COPY binary bytes,
    /// untouched, into `out` (for a target that takes the same binary
    /// format). Frames are checked and rows counted, values not decoded.
    pub async fn read_range_raw(
        &self,
        table: &TableSchema,
        from: &str,
        range: &CopyRange,
        out: &mpsc::Sender<Bytes>,
    ) -> Result<u64, CopyError> {
        let cols: Vec<String> = table.columns.iter().map(|c| pg_ident(&c.name)).collect();
        let sql = copy_out_sql(&cols.join(", "), from, range);
        let err =
            |e: tokio_postgres::Error| CopyError::Read { table: table.name.to_string(), reason: pg_error_text(&e) };
        let frame_err = |e: CopyBinaryError| CopyError::Read { table: table.name.to_string(), reason: e.to_string() };
        let stream = self.client.copy_out(sql.as_str()).await.map_err(err)?;
        let mut stream = std::pin::pin!(stream);
        let mut frames = CopyBinaryReader::new(vec![PgType::Bytea; table.columns.len()]);
        // The server sends one CopyData message per row: gather them into
        // large buffers, or the writer pays a channel hop and a socket write
        // per row.
        let mut pending = BytesMut::with_capacity(RAW_BATCH_BYTES + 64 * 1024);
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes = chunk.map_err(err)?;
            pending.extend_from_slice(&chunk);
            if pending.len() >= RAW_BATCH_BYTES {
                let batch = pending.split().freeze();
                frames.feed(batch.clone());
                while frames.skip_row().map_err(frame_err)? {}
                if out.send(batch).await.is_err() {
                    return Ok(frames.rows_read());
                }
                pending.reserve(RAW_BATCH_BYTES + 64 * 1024);
            }
        }
        if !pending.is_empty() {
            let batch = pending.freeze();
            frames.feed(batch.clone());
            while frames.skip_row().map_err(frame_err)? {}
            if out.send(batch).await.is_err() {
                return Ok(frames.rows_read());
            }
        }
        frames.finish().map_err(frame_err)?;
        Ok(frames.rows_read())
    }
}

/// One range of a table as COPY binary.
fn copy_out_sql(select: &str, from: &str, range: &CopyRange) -> String {
    match range.predicate() {
        Some(p) => format!("COPY (SELECT {select} FROM {from} WHERE {p}) TO STDOUT (FORMAT binary)"),
        None => format!("COPY (SELECT {select} FROM {from}) TO STDOUT (FORMAT binary)"),
    }
}

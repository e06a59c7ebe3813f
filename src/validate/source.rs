//! The source side of a validation: connections inside one REPEATABLE READ
//! snapshot (exported by the first, imported by every worker), so all
//! chunks of all tables are compared against the same moment of the source.
//! Rows are read with `COPY (SELECT …) TO STDOUT (FORMAT binary)` and the
//! copy's decoder, then put in canonical form after the column's lossy
//! policy (the value the target is meant to hold).

use bytes::Bytes;
use futures_util::StreamExt;
use tokio_postgres::Client;

use super::chunks::{self, Chunk, KeyBound, SplitKey};
use super::diff::CanonRow;
use super::ValidateError;
use crate::mapping::{canonical, CanonicalValue, MappedTable, RowHasher};
use crate::model::{pg_ident, Lsn, Row, TableSchema, Value};
use crate::pg_conn::client;
use crate::plan::SecretUrl;
use crate::source::postgres::codec::copy_binary::CopyBinaryReader;
use crate::source::postgres::select::{mark_unknown, select_list};

/// One connection inside the validation's snapshot.
pub struct SourceSession {
    client: Client,
    only: Vec<crate::model::TableName>,
}

fn serr(what: impl Into<String>) -> impl Fn(tokio_postgres::Error) -> ValidateError {
    let what = what.into();
    move |source| ValidateError::SourceSql { context: what.clone(), source }
}

async fn connect(url: &SecretUrl) -> Result<Client, ValidateError> {
    let c = client::connect(url, "xdb validate").await?;
    // Literals in COPY queries rely on standard strings; values come back
    // in the forms the decoders expect.
    c.batch_execute("SET standard_conforming_strings = on; SET statement_timeout = 0")
        .await
        .map_err(serr("configuring the session"))?;
    Ok(c)
}

impl SourceSession {
    /// Opens a snapshot and exports it for the other workers; returns the
    /// snapshot name.
    pub async fn export(url: &SecretUrl) -> Result<(SourceSession, String), ValidateError> {
        let client = connect(url).await?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(serr("starting the snapshot"))?;
        let row = client.query_one("SELECT pg_export_snapshot()", &[]).await.map_err(serr("exporting the snapshot"))?;
        Ok((SourceSession { client, only: Vec::new() }, row.get(0)))
    }

    /// A connection that imports `snapshot` (its exporter must still be open).
    pub async fn import(url: &SecretUrl, snapshot: &str) -> Result<SourceSession, ValidateError> {
        let client = connect(url).await?;
        let sql = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            snapshot.replace('\'', "''")
        );
        client.batch_execute(&sql).await.map_err(serr(format!("importing snapshot {snapshot}")))?;
        Ok(SourceSession { client, only: Vec::new() })
    }

    /// The connection (for the server-side digests of `server_digest`).
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// Tables the plan lists as `ONLY s.t` (read without their children).
    pub fn with_only(mut self, only: &[crate::model::TableName]) -> SourceSession {
        self.only = only.to_vec();
        self
    }

    /// How queries name `table` (see [`crate::plan::Plan::read_from`]).
    fn from(&self, table: &TableSchema) -> String {
        if self.only.contains(&table.name) {
            format!("ONLY {}", table.name.pg_quoted())
        } else {
            table.name.pg_quoted()
        }
    }

    /// Rows of `table` at the snapshot.
    pub async fn count(&self, table: &TableSchema) -> Result<u64, ValidateError> {
        let sql = format!("SELECT count(*) FROM {}", self.from(table));
        let row = self.client.query_one(sql.as_str(), &[]).await.map_err(serr(format!("counting {}", table.name)))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    /// Splits `table` into chunks of about `chunk_rows` rows by its key, read
    /// at the snapshot (every `chunk_rows`-th key is a boundary).
    pub async fn plan_chunks(
        &self,
        table: &TableSchema,
        key: Option<&SplitKey>,
        chunk_rows: u64,
    ) -> Result<Vec<Chunk>, ValidateError> {
        let Some(key) = key else { return Ok(vec![Chunk::whole()]) };
        if let ([col], [chunks::KeyKind::Int]) = (key.columns.as_slice(), key.kinds.as_slice()) {
            // An integer key splits evenly between its bounds: three
            // aggregates instead of numbering every row. Gaps make some
            // ranges smaller; a large differing range is bisected later.
            let c = pg_ident(table.columns.get(*col).map(|c| c.name.as_str()).unwrap_or(""));
            let sql = format!("SELECT min({c})::int8, max({c})::int8, count(*) FROM {}", self.from(table));
            let r = self
                .client
                .query_one(sql.as_str(), &[])
                .await
                .map_err(serr(format!("planning chunks of {}", table.name)))?;
            let (min, max, rows): (Option<i64>, Option<i64>, i64) = (r.get(0), r.get(1), r.get(2));
            let (Some(min), Some(max)) = (min, max) else { return Ok(vec![Chunk::whole()]) };
            return Ok(chunks::chunks_from_bounds(chunks::int_bounds(min, max, rows.max(0) as u64, chunk_rows)));
        }
        let cols: Vec<String> = key
            .columns
            .iter()
            .map(|&i| pg_ident(table.columns.get(i).map(|c| c.name.as_str()).unwrap_or("")))
            .collect();
        let order: Vec<String> = key
            .columns
            .iter()
            .zip(&key.kinds)
            .map(|(&i, &k)| {
                let c = pg_ident(table.columns.get(i).map(|c| c.name.as_str()).unwrap_or(""));
                if k == chunks::KeyKind::Text {
                    format!("{c} COLLATE \"C\"")
                } else {
                    c
                }
            })
            .collect();
        let texts: Vec<String> = cols.iter().map(|c| format!("{c}::text")).collect();
        let sql = format!(
            "SELECT {texts} FROM (SELECT {cols}, row_number() OVER (ORDER BY {order}) AS xdb_rn FROM {t}) s \
             WHERE xdb_rn % {n} = 1 AND xdb_rn > 1 ORDER BY xdb_rn",
            texts = texts.join(", "),
            cols = cols.join(", "),
            order = order.join(", "),
            t = self.from(table),
            n = chunk_rows.max(1)
        );
        let rows =
            self.client.query(sql.as_str(), &[]).await.map_err(serr(format!("planning chunks of {}", table.name)))?;
        let mut bounds: Vec<KeyBound> = Vec::with_capacity(rows.len());
        for r in rows {
            let mut b = Vec::with_capacity(key.kinds.len());
            for (pos, kind) in key.kinds.iter().enumerate() {
                let text: Option<String> = r.get(pos);
                let v = text.as_deref().and_then(|t| kind.value_from_text(t)).ok_or_else(|| {
                    ValidateError::Source(format!("{}: key value {text:?} cannot bound a chunk", table.name))
                })?;
                b.push(v);
            }
            bounds.push(b);
        }
        // Split on part of the key, every n-th row may repeat a bound.
        bounds.dedup();
        Ok(chunks::chunks_from_bounds(bounds))
    }

    /// Streams the source rows of a chunk, decoded, into `f`; returns the
    /// number of rows.
    pub async fn for_each_row(
        &self,
        table: &TableSchema,
        key: Option<&SplitKey>,
        chunk: &Chunk,
        f: &mut (dyn FnMut(Row) + Send),
    ) -> Result<u64, ValidateError> {
        let (select, types, unknown) = select_list(table);
        let mut sql = format!("COPY (SELECT {select} FROM {}", self.from(table));
        if let Some(p) = chunks::source_predicate(table, key, chunk) {
            sql.push_str(" WHERE ");
            sql.push_str(&p);
        }
        sql.push_str(") TO STDOUT (FORMAT binary)");
        let what = format!("reading {} ({})", table.name, chunk.describe(table, key));
        let stream = self.client.copy_out(sql.as_str()).await.map_err(serr(what.clone()))?;
        let mut stream = std::pin::pin!(stream);
        let mut reader = CopyBinaryReader::new(types);
        while let Some(part) = stream.next().await {
            let part: Bytes = part.map_err(serr(what.clone()))?;
            reader.feed(part);
            while let Some(mut row) = reader.next_row().map_err(|e| ValidateError::Source(format!("{what}: {e}")))? {
                mark_unknown(&mut row, &unknown);
                f(row);
            }
        }
        reader.finish().map_err(|e| ValidateError::Source(format!("{what}: {e}")))?;
        Ok(reader.rows_read())
    }

    /// The source rows of a chunk, decoded.
    pub async fn read_rows(
        &self,
        table: &TableSchema,
        key: Option<&SplitKey>,
        chunk: &Chunk,
    ) -> Result<Vec<Row>, ValidateError> {
        let mut out = Vec::new();
        self.for_each_row(table, key, chunk, &mut |r| out.push(r)).await?;
        Ok(out)
    }

    /// The source rows of a chunk in canonical form.
    pub async fn read_chunk(
        &self,
        mapped: &MappedTable,
        key: Option<&SplitKey>,
        chunk: &Chunk,
    ) -> Result<Vec<CanonRow>, ValidateError> {
        let match_cols = mapped.source.match_columns();
        let mut out = Vec::new();
        self.for_each_row(&mapped.source, key, chunk, &mut |r| out.push(canonical_row(mapped, &match_cols, &r)))
            .await?;
        Ok(out)
    }

    /// The row count and checksum of a chunk, rows hashed as they stream
    /// in (nothing kept).
    pub async fn digest(
        &self,
        mapped: &MappedTable,
        key: Option<&SplitKey>,
        chunk: &Chunk,
    ) -> Result<(Digest, u64), ValidateError> {
        let mut hasher = RowHasher::new();
        let mut values = Vec::with_capacity(mapped.columns.len());
        let mut altered = 0u64;
        self.for_each_row(&mapped.source, key, chunk, &mut |r| {
            values.clear();
            values.extend((0..r.len()).map(|i| canonical_value(mapped, &r, i)));
            altered += policy_altered(mapped, &r, &values);
            hasher.add_row(&values);
        })
        .await?;
        Ok((Digest { rows: hasher.count(), checksum: hasher.checksum() }, altered))
    }
}

/// A chunk side's row count and order-independent checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub rows: u64,
    pub checksum: u128,
}

/// Column `i` of a source row in canonical form, as the lossy policy leaves
/// it (a value the policy rejects is compared as it is).
fn canonical_value(mapped: &MappedTable, row: &Row, i: usize) -> CanonicalValue {
    let canon = |v: &Value| match v {
        Value::Json(s) => CanonicalValue(Some(super::json::fast_canonical_json(s))),
        v => canonical(v),
    };
    match mapped.prepare(i, row) {
        Ok(v) => canon(&v),
        Err(_) => row.get(i).map(canon).unwrap_or(CanonicalValue(None)),
    }
}

/// How many values of a source row the lossy policy (`null` / `clamp`)
/// changes: the comparison holds them as the target is meant to, so they
/// count as equal, and the report says how many there were. Columns whose
/// policy is `error` cost nothing here.
fn policy_altered(mapped: &MappedTable, row: &Row, compared: &[CanonicalValue]) -> u64 {
    let mut n = 0;
    for (i, col) in mapped.columns.iter().enumerate() {
        if col.policy == crate::plan::LossyPolicy::Error {
            continue;
        }
        let raw = match row.get(i) {
            Some(Value::Json(s)) => CanonicalValue(Some(super::json::fast_canonical_json(s))),
            Some(v) => canonical(v),
            None => CanonicalValue(None),
        };
        if compared.get(i).is_some_and(|c| *c != raw) {
            n += 1;
        }
    }
    n
}

/// A source row in canonical form, each value as the mapping's lossy policy
/// leaves it (a value the policy rejects is compared as it is).
pub fn canonical_row(mapped: &MappedTable, match_cols: &[usize], row: &Row) -> CanonRow {
    let values: Vec<_> = (0..row.len()).map(|i| canonical_value(mapped, row, i)).collect();
    let key = match_cols.iter().map(|&i| values.get(i).cloned().unwrap_or(CanonicalValue(None))).collect();
    CanonRow { key, values }
}

/// Writes a logical message (xdb's heartbeat prefix, which the stream
/// filters) in a transaction of its own, after the snapshot was taken: once
/// the target has applied past its LSN, it holds every transaction the
/// snapshot sees. Falls back to `pg_current_wal_lsn()` when messages cannot
/// be written.
pub async fn marker_lsn(url: &SecretUrl) -> Result<Lsn, ValidateError> {
    let c = connect(url).await?;
    let prefix = crate::source::postgres::change_stream::HEARTBEAT_PREFIX;
    match crate::source::postgres::change_stream::write_marker(&c, prefix, "validate").await {
        Ok(lsn) => Ok(lsn),
        Err(e) => {
            tracing::debug!("cannot write a marker message ({e}); using pg_current_wal_lsn()");
            let row = c
                .query_one("SELECT pg_current_wal_lsn()::text", &[])
                .await
                .map_err(serr("reading the WAL position"))?;
            let text: String = row.get(0);
            text.parse().map_err(|e| ValidateError::Source(format!("reading the WAL position: {e}")))
        }
    }
}

/// Whether a replication connection streams from `slot` now (a running
/// `xdb sync`), and the slot exists at all.
pub async fn slot_active(url: &SecretUrl, slot: &str) -> Result<Option<bool>, ValidateError> {
    let c = connect(url).await?;
    let row = c
        .query_opt(
            "SELECT active FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()",
            &[&slot],
        )
        .await
        .map_err(serr("reading pg_replication_slots"))?;
    Ok(row.map(|r| r.get::<_, bool>(0)))
}

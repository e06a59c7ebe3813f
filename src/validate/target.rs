//! The target side of a validation: a chunk's rows read back in canonical
//! form (whatever the target kind), the applied position of a running sync,
//! and the range rewrite `--repair` does.

use mysql_async::prelude::Queryable;

use super::chunks::{self, Chunk, SplitKey, TargetPredicate};
use super::diff::CanonRow;
use super::source::Digest;
use super::ValidateError;
use crate::error_policy::DriverError;
use crate::mapping::{
    canonical_from_mysql, canonical_from_pg_text, canonical_from_sqlite, CanonicalValue, MappedColumn, MappedTable,
    RowHasher,
};
use crate::model::{Lsn, PgType, Row};
use crate::plan::naming::SqlDialect;
use crate::plan::TargetUrl;
use crate::sink::apply_plan::Op;
use crate::sink::mysql::MysqlConn;
use crate::sink::postgres::PgConn;
use crate::sink::sqlite::SqliteConn;
use crate::sink::TargetConn;

/// Runs blocking work in place, handing the thread's other tasks to another
/// worker thread when the runtime has several (the CLI's does).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// True for json/jsonb columns (canonicalized by the fast JSON path).
fn is_json(c: &MappedColumn) -> bool {
    matches!(c.source_type, PgType::Json | PgType::Jsonb)
}

fn json_text(s: &str) -> CanonicalValue {
    CanonicalValue(Some(super::json::fast_canonical_json(s)))
}

/// Rows per INSERT statement when a range is rewritten.
const INSERT_ROWS: usize = 500;

/// One target connection.
pub struct TargetSession {
    conn: TargetConn,
}

/// Parameters of a target predicate, converted for one target kind.
enum Params {
    Mysql(Vec<mysql_async::Value>),
    Sqlite(Vec<rusqlite::types::Value>),
    Postgres(Vec<Option<String>>),
}

fn terr(context: String) -> impl Fn(DriverError) -> ValidateError {
    move |source| ValidateError::TargetSql { context: context.clone(), source }
}

impl TargetSession {
    pub async fn connect(url: &TargetUrl) -> Result<TargetSession, ValidateError> {
        // Opening a SQLite file creates it: a mistyped path would leave an
        // empty database behind and report every row as missing.
        if let TargetUrl::Sqlite(path) = url {
            if !path.exists() {
                return Err(ValidateError::Target(format!(
                    "the SQLite file {} does not exist: check target.url (a relative path is relative to the plan \
                     file's directory), or run `xdb sync` first; nothing was created",
                    path.display()
                )));
            }
        }
        let mut conn = TargetConn::connect(url).await?;
        if let TargetConn::Postgres(PgConn { client, .. }) = &mut conn {
            // Text forms the canonical readers parse.
            client
                .batch_execute("SET bytea_output = 'hex'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3")
                .await
                .map_err(|e| ValidateError::TargetSql {
                    context: "setting the session's text formats".into(),
                    source: e.into(),
                })?;
        }
        Ok(TargetSession { conn })
    }

    /// The connection (for the target kind).
    pub fn conn(&mut self) -> &mut TargetConn {
        &mut self.conn
    }

    /// The connection of a PostgreSQL target (for `server_digest`).
    pub(super) fn pg_client(&self) -> Option<&tokio_postgres::Client> {
        match &self.conn {
            TargetConn::Postgres(PgConn { client, .. }) => Some(client),
            _ => None,
        }
    }

    /// The end LSN of the last source commit the target applied for `slot`,
    /// `None` when xdb has no state there.
    pub async fn applied(&mut self, slot: &str) -> Option<Lsn> {
        match self.conn.read_position(slot).await {
            Ok(p) => p.map(|p| p.applied_lsn),
            Err(_) => None,
        }
    }

    fn predicate(&self, mapped: &MappedTable, key: Option<&SplitKey>, chunk: &Chunk) -> Option<TargetPredicate> {
        let d = self.conn.dialect();
        let ph = |n: usize, col: usize| match d {
            SqlDialect::Postgres => mapped.pg_placeholder(n, col),
            _ => "?".to_string(),
        };
        chunks::target_predicate(d, &mapped.source, key, chunk, &ph)
    }

    fn params(
        &self,
        mapped: &MappedTable,
        key: Option<&SplitKey>,
        chunk: &Chunk,
        pred: Option<&TargetPredicate>,
    ) -> Result<Params, ValidateError> {
        let mut out = match self.conn.dialect() {
            SqlDialect::Mysql => Params::Mysql(Vec::new()),
            SqlDialect::Sqlite => Params::Sqlite(Vec::new()),
            SqlDialect::Postgres => Params::Postgres(Vec::new()),
        };
        let (Some(key), Some(pred)) = (key, pred) else { return Ok(out) };
        let width = mapped.source.columns.len();
        let conv = |e: crate::mapping::ConversionError| ValidateError::Target(format!("a chunk bound: {e}"));
        for &(upper, pos) in &pred.params {
            let bound = if upper { &chunk.hi } else { &chunk.lo };
            let Some(bound) = bound else { continue };
            let row = chunks::bound_row(width, key, bound);
            let col = [key.columns[pos]];
            match &mut out {
                Params::Mysql(v) => v.extend(mapped.mysql_params(&row, &col).map_err(conv)?),
                Params::Sqlite(v) => v.extend(mapped.sqlite_params(&row, &col).map_err(conv)?),
                Params::Postgres(v) => v.extend(mapped.pg_params(&row, &col).map_err(conv)?),
            }
        }
        Ok(out)
    }

    /// Rows of `mapped` on the target.
    pub async fn count(&mut self, mapped: &MappedTable) -> Result<u64, ValidateError> {
        let n = self.conn.table_rows(&mapped.target_table()).await?.ok_or_else(|| {
            ValidateError::Target(format!("table {} does not exist on the target", mapped.target_name))
        })?;
        Ok(n)
    }

    /// Streams the target rows of a chunk, each in canonical form, into `f`.
    async fn scan(
        &mut self,
        mapped: &MappedTable,
        key: Option<&SplitKey>,
        chunk: &Chunk,
        f: &mut (dyn FnMut(&mut Vec<CanonicalValue>) + Send),
    ) -> Result<(), ValidateError> {
        let d = self.conn.dialect();
        let pred = self.predicate(mapped, key, chunk);
        let params = self.params(mapped, key, chunk, pred.as_ref())?;
        let sql = scan_sql(d, mapped, pred.as_ref().map(|p| p.sql.as_str()));
        let context = format!("reading {} ({})", mapped.target_name, chunk.describe(&mapped.source, key));
        let e = terr(context);
        let mut values: Vec<CanonicalValue> = Vec::with_capacity(mapped.columns.len());
        match (&mut self.conn, params) {
            (TargetConn::Mysql(MysqlConn { conn, .. }), Params::Mysql(p)) => {
                let p = if p.is_empty() { mysql_async::Params::Empty } else { mysql_async::Params::Positional(p) };
                let mut result = conn.exec_iter(sql.as_str(), p).await.map_err(|x| e(x.into()))?;
                while let Some(r) = result.next().await.map_err(|x| e(x.into()))? {
                    values.clear();
                    for (i, c) in mapped.columns.iter().enumerate() {
                        let v = r.as_ref(i).unwrap_or(&mysql_async::Value::NULL);
                        values.push(match (v, is_json(c)) {
                            (mysql_async::Value::Bytes(b), true) => json_text(&String::from_utf8_lossy(b)),
                            _ => canonical_from_mysql(v, c),
                        });
                    }
                    f(&mut values);
                }
            }
            (TargetConn::Sqlite(SqliteConn { conn, .. }), Params::Sqlite(p)) => {
                // SQLite reads block: let the runtime move its other tasks
                // (source streams, other workers) to another thread meanwhile.
                let r: Result<(), rusqlite::Error> = blocking(|| {
                    let mut st = conn.prepare_cached(&sql)?;
                    let mut rows = st.query(rusqlite::params_from_iter(p))?;
                    while let Some(r) = rows.next()? {
                        values.clear();
                        for (i, c) in mapped.columns.iter().enumerate() {
                            let v: rusqlite::types::Value = r.get(i)?;
                            values.push(match (&v, is_json(c)) {
                                (rusqlite::types::Value::Text(t), true) => json_text(t),
                                _ => canonical_from_sqlite(&v, c),
                            });
                        }
                        f(&mut values);
                    }
                    Ok(())
                });
                r.map_err(|x| e(x.into()))?;
            }
            (TargetConn::Postgres(PgConn { client, .. }), Params::Postgres(p)) => {
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    p.iter().map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                let rows = client.query(sql.as_str(), &refs).await.map_err(|x| e(x.into()))?;
                for r in rows {
                    values.clear();
                    for (i, c) in mapped.columns.iter().enumerate() {
                        let v = r.get::<_, Option<&str>>(i);
                        values.push(match (v, is_json(c)) {
                            (Some(t), true) => json_text(t),
                            _ => canonical_from_pg_text(v, c),
                        });
                    }
                    f(&mut values);
                }
            }
            _ => return Err(ValidateError::Target("internal: parameters of another target kind".into())),
        }
        Ok(())
    }

    /// The target rows of a chunk in canonical form.
    pub async fn read_chunk(
        &mut self,
        mapped: &MappedTable,
        key: Option<&SplitKey>,
        chunk: &Chunk,
    ) -> Result<Vec<CanonRow>, ValidateError> {
        let match_cols = mapped.source.match_columns();
        let mut out = Vec::new();
        self.scan(mapped, key, chunk, &mut |values| {
            let values = std::mem::take(values);
            let key = match_cols.iter().map(|&i| values.get(i).cloned().unwrap_or(CanonicalValue(None))).collect();
            out.push(CanonRow { key, values });
        })
        .await?;
        Ok(out)
    }

    /// The row count and checksum of a chunk, rows hashed as they stream in.
    pub async fn digest(
        &mut self,
        mapped: &MappedTable,
        key: Option<&SplitKey>,
        chunk: &Chunk,
    ) -> Result<Digest, ValidateError> {
        let mut hasher = RowHasher::new();
        self.scan(mapped, key, chunk, &mut |values| hasher.add_row(values)).await?;
        Ok(Digest { rows: hasher.count(), checksum: hasher.checksum() })
    }

    /// Replaces a chunk's rows on the target with `rows` (read from the
    /// source), in one target transaction. Returns the rows deleted.
    pub async fn replace_chunk(
        &mut self,
        mapped: &MappedTable,
        key: Option<&SplitKey>,
        chunk: &Chunk,
        rows: &[Row],
    ) -> Result<u64, ValidateError> {
        let d = self.conn.dialect();
        let begin = d.begin();
        self.conn.execute_batch(&[begin.to_string()], "starting a repair transaction").await?;
        // Generated columns are compared, not written: the target computes them.
        let stripped = crate::mapping::generated::writable(mapped, rows);
        let (mapped, rows) = match &stripped {
            Some((m, r)) => (m, r.as_slice()),
            None => (mapped, rows),
        };
        let r = self.replace_inner(mapped, key, chunk, rows).await;
        match r {
            Ok(n) => {
                self.conn.execute_batch(&["COMMIT".to_string()], "committing a repair").await?;
                Ok(n)
            }
            Err(e) => {
                let _ = self.conn.execute_batch(&["ROLLBACK".to_string()], "rolling back a repair").await;
                Err(e)
            }
        }
    }

    async fn replace_inner(
        &mut self,
        mapped: &MappedTable,
        key: Option<&SplitKey>,
        chunk: &Chunk,
        rows: &[Row],
    ) -> Result<u64, ValidateError> {
        let d = self.conn.dialect();
        let pred = self.predicate(mapped, key, chunk);
        let params = self.params(mapped, key, chunk, pred.as_ref())?;
        let mut sql = format!("DELETE FROM {}", mapped.target_ident);
        if let Some(p) = &pred {
            sql.push_str(" WHERE ");
            sql.push_str(&p.sql);
        }
        let e = terr(format!("repairing {} ({})", mapped.target_name, chunk.describe(&mapped.source, key)));
        let deleted = match (&mut self.conn, params) {
            (TargetConn::Mysql(MysqlConn { conn, .. }), Params::Mysql(p)) => {
                let p = if p.is_empty() { mysql_async::Params::Empty } else { mysql_async::Params::Positional(p) };
                conn.exec_drop(sql.as_str(), p).await.map_err(|x| e(x.into()))?;
                conn.affected_rows()
            }
            (TargetConn::Sqlite(SqliteConn { conn, .. }), Params::Sqlite(p)) => {
                conn.execute(&sql, rusqlite::params_from_iter(p)).map_err(|x| e(x.into()))? as u64
            }
            (TargetConn::Postgres(PgConn { client, .. }), Params::Postgres(p)) => {
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    p.iter().map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                client.execute(sql.as_str(), &refs).await.map_err(|x| e(x.into()))?
            }
            _ => return Err(ValidateError::Target("internal: parameters of another target kind".into())),
        };
        let all: Vec<usize> = (0..mapped.source.columns.len()).collect();
        let conv = |x: crate::mapping::ConversionError| ValidateError::Target(x.to_string());
        // Parameters per statement stay well under every target's limit.
        let per = (30_000 / all.len().max(1)).clamp(1, INSERT_ROWS);
        for batch in rows.chunks(per) {
            let op = Op::Insert { table: &mapped.source, rows: batch.iter().collect() };
            match &mut self.conn {
                TargetConn::Mysql(MysqlConn { conn, .. }) => {
                    let mut p = Vec::new();
                    for r in batch {
                        p.extend(mapped.mysql_params(r, &all).map_err(conv)?);
                    }
                    conn.exec_drop(d.render(&op, &mapped.target_ident), p).await.map_err(|x| e(x.into()))?;
                }
                TargetConn::Sqlite(SqliteConn { conn, .. }) => {
                    let mut p = Vec::new();
                    for r in batch {
                        p.extend(mapped.sqlite_params(r, &all).map_err(conv)?);
                    }
                    conn.execute(&d.render(&op, &mapped.target_ident), rusqlite::params_from_iter(p))
                        .map_err(|x| e(x.into()))?;
                }
                TargetConn::Postgres(PgConn { client, .. }) => {
                    let mut p = Vec::new();
                    for r in batch {
                        p.extend(mapped.pg_params(r, &all).map_err(conv)?);
                    }
                    let sql = d.render_with(&op, &mapped.target_ident, &|n, col| mapped.pg_placeholder(n, col));
                    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                        p.iter().map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                    client.execute(sql.as_str(), &refs).await.map_err(|x| e(x.into()))?;
                }
            }
        }
        Ok(deleted)
    }
}

/// The `SELECT` of a chunk's target rows, each column as its text where
/// the target's own type would print differently.
fn scan_sql(d: SqlDialect, mapped: &MappedTable, predicate: Option<&str>) -> String {
    let cols: Vec<String> = mapped
        .columns
        .iter()
        .map(|c| match d {
            // inet's text cast adds the mask (`/32`), its output function
            // (what the source's value prints as) does not.
            SqlDialect::Postgres if c.source_type == PgType::Inet => format!("inet_out({})::text", d.ident(&c.name)),
            SqlDialect::Postgres => format!("{}::text", d.ident(&c.name)),
            _ => d.ident(&c.name),
        })
        .collect();
    let mut sql = format!("SELECT {} FROM {}", cols.join(", "), mapped.target_ident);
    if let Some(p) = predicate {
        sql.push_str(" WHERE ");
        sql.push_str(p);
    }
    sql
}

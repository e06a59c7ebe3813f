//! The sink writer: applies groups of whole source transactions to the
//! target, each group in one target transaction that also records the
//! applied position (invariants *commit order*, *exactly once*, *TOAST*, *keys*, *schema drift*).
//!
//! What it may skip: a transaction that ends at or below the recorded
//! applied position (already applied before a restart), and a change to a
//! table committed at or below that table's sync LSN (the copy holds it).
//! The position it reports as applied is the end LSN of the last committed
//! group, never more.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use super::apply_plan::{plan_ops, split_pow2, ApplyPlanError, Op, OpLimits};
use super::dialect::SqlDialect;
use super::state;
use super::target::{StateParam, TargetConn, TargetError};
use crate::error_policy::DriverError;
use crate::mapping::{self, ConversionError, MappedTable, MappingOverrides, MappingRules, TargetKind};
use crate::model::{Lsn, Row, TableName, TableSchema, Transaction};
use crate::plan::{Plan, TargetUrl};
use crate::source::postgres::assembler::SpilledTransaction;

/// Changes per statement group read back from a spilled transaction.
const SPILL_CHUNK: usize = 5_000;

/// Applying failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("{0}")]
    Conversion(#[from] ConversionError),
    #[error("{0}")]
    Plan(#[from] ApplyPlanError),
    #[error("{0}")]
    SchemaDrift(String),
    #[error("type mapping: {0}")]
    Mapping(String),
    #[error("reading a spilled transaction: {0}")]
    Spill(String),
}

impl SinkError {
    /// True when the same group may succeed after a reconnect.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Target(e) if e.is_retryable())
    }
}

/// Applies transactions to one target connection.
pub struct SinkWriter {
    conn: TargetConn,
    url: TargetUrl,
    kind: TargetKind,
    slot: String,
    rules: MappingRules,
    overrides: MappingOverrides,
    mapped: HashMap<TableName, Arc<MappedTable>>,
    /// Catalog primary keys by table (pgoutput marks every column as key
    /// under REPLICA IDENTITY FULL).
    primary_keys: HashMap<TableName, Vec<String>>,
    sync_lsn: HashMap<String, Lsn>,
    applied: Lsn,
    consistent_point: Lsn,
    limits: OpLimits,
    pg_statements: HashMap<String, tokio_postgres::Statement>,
    /// Target columns the source catalog no longer has: the stream may
    /// still carry them (changes from before the drop); a Relation without
    /// them means they were dropped.
    target_only: HashMap<TableName, Vec<String>>,
}

impl SinkWriter {
    /// A writer resuming after `applied`.
    pub fn new(
        conn: TargetConn,
        kind: TargetKind,
        plan: &Plan,
        mapped: Vec<Arc<MappedTable>>,
        sync_lsn: HashMap<String, Lsn>,
        applied: Lsn,
    ) -> Result<Self, SinkError> {
        let rules =
            MappingRules::load(&kind, plan.mapping.rules.as_deref()).map_err(|e| SinkError::Mapping(e.to_string()))?;
        let primary_keys = mapped
            .iter()
            .map(|m| {
                let pk = m.source.primary_key.iter().map(|&i| m.source.columns[i].name.clone()).collect();
                (m.source.name.clone(), pk)
            })
            .collect();
        let max_params = match kind {
            TargetKind::Sqlite => 30_000,
            _ => 60_000,
        };
        if let TargetConn::Sqlite { conn, .. } = &conn {
            conn.set_prepared_statement_cache_capacity(256);
        }
        Ok(SinkWriter {
            conn,
            url: plan.target.url.clone(),
            kind,
            slot: plan.source.slot.clone(),
            rules,
            overrides: MappingOverrides::from_plan(&plan.mapping),
            mapped: mapped.into_iter().map(|m| (m.source.name.clone(), m)).collect(),
            primary_keys,
            sync_lsn,
            applied,
            consistent_point: applied,
            limits: OpLimits { max_params },
            pg_statements: HashMap::new(),
            target_only: HashMap::new(),
        })
    }

    /// End LSN of the last group committed on the target.
    pub fn applied(&self) -> Lsn {
        self.applied
    }

    /// The catalog's primary key of `table`, as column positions of `schema`
    /// (the stream's view of it).
    pub fn with_catalog_key(&self, schema: &TableSchema) -> Option<TableSchema> {
        let names = self.primary_keys.get(&schema.name)?;
        let pk: Vec<usize> = names.iter().filter_map(|n| schema.columns.iter().position(|c| &c.name == n)).collect();
        if pk.len() != names.len() || pk == schema.primary_key {
            return None;
        }
        let mut s = schema.clone();
        s.primary_key = pk;
        Some(s)
    }

    /// Applies `txs`, reconnecting and retrying while the target is away.
    /// The stream is held back meanwhile (nothing is read past the bounded
    /// channel), so nothing is lost.
    pub async fn apply_with_retry(&mut self, txs: &[Transaction]) -> Result<(), SinkError> {
        let mut attempt = 0u32;
        loop {
            match self.apply(txs).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() => {
                    attempt += 1;
                    let wait = Duration::from_millis((250u64 << attempt.min(7)).min(30_000));
                    tracing::warn!("target unavailable: {e}; retrying the batch in {wait:?} (attempt {attempt})");
                    tokio::time::sleep(wait).await;
                    match TargetConn::connect(&self.url).await {
                        Ok(c) => {
                            if let TargetConn::Sqlite { conn, .. } = &c {
                                conn.set_prepared_statement_cache_capacity(256);
                            }
                            self.conn = c;
                            self.pg_statements.clear();
                            // The COMMIT whose reply was lost may have
                            // landed: re-read the stored position so that
                            // `apply` skips what the target already holds
                            // (a key-less table would otherwise get the
                            // rows twice).
                            match self.conn.read_position(&self.slot).await {
                                Ok(Some(p)) if p.applied_lsn > self.applied => {
                                    tracing::info!(applied = %p.applied_lsn, "the target committed the batch before the connection was lost");
                                    self.applied = p.applied_lsn;
                                }
                                Ok(_) => {}
                                Err(e) => tracing::warn!("{e}"),
                            }
                        }
                        Err(e) => tracing::warn!("{e}"),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies `txs` in one target transaction with the applied position.
    pub async fn apply(&mut self, txs: &[Transaction]) -> Result<(), SinkError> {
        let applied = self.applied;
        let todo: Vec<&Transaction> = txs.iter().filter(|t| t.end_lsn > applied).collect();
        let Some(last) = todo.last() else { return Ok(()) };
        let (end, time) = (last.end_lsn, last.commit_time_micros);
        let owned: Vec<Transaction>;
        let slice: &[Transaction] = if todo.len() == txs.len() {
            txs
        } else {
            owned = todo.into_iter().cloned().collect();
            &owned
        };
        self.begin().await?;
        let r = async {
            self.apply_ops(slice).await?;
            self.write_position(end, time).await?;
            self.commit().await
        }
        .await;
        if r.is_err() {
            self.rollback().await;
            return r;
        }
        self.applied = end;
        Ok(())
    }

    /// Applies a spilled (very large) transaction chunk by chunk inside one
    /// target transaction: never split, never whole in memory.
    pub async fn apply_spilled(&mut self, mut tx: SpilledTransaction) -> Result<(), SinkError> {
        if tx.end_lsn <= self.applied {
            return Ok(());
        }
        let (end, time) = (tx.end_lsn, tx.commit_time_micros);
        self.begin().await?;
        let r = async {
            loop {
                let changes = tx.next_changes(SPILL_CHUNK).map_err(|e| SinkError::Spill(e.to_string()))?;
                if changes.is_empty() {
                    break;
                }
                let chunk = Transaction {
                    xid: tx.xid,
                    commit_lsn: tx.commit_lsn,
                    end_lsn: tx.end_lsn,
                    commit_time_micros: tx.commit_time_micros,
                    changes,
                };
                self.apply_ops(std::slice::from_ref(&chunk)).await?;
            }
            self.write_position(end, time).await?;
            self.commit().await
        }
        .await;
        if r.is_err() {
            self.rollback().await;
            return r;
        }
        self.applied = end;
        Ok(())
    }

    /// A Relation message: adds new columns on the target; stops on dropped
    /// or re-typed columns (invariant 7).
    /// Declares columns that exist on the target but not in the source's
    /// current catalog (dropped on the source while xdb was not running).
    pub fn expect_dropped_columns(&mut self, table: TableName, columns: Vec<String>) {
        if !columns.is_empty() {
            self.target_only.insert(table, columns);
        }
    }

    pub async fn relation_changed(&mut self, schema: Arc<TableSchema>) -> Result<(), SinkError> {
        let Some(current) = self.mapped.get(&schema.name).cloned() else { return Ok(()) };
        let old = &current.source;
        let table = &schema.name;
        let mut problems = Vec::new();
        let target_only = self.target_only.get(table).cloned().unwrap_or_default();
        for c in target_only.iter().filter(|c| !schema.columns.iter().any(|n| &n.name == *c)) {
            problems.push(dropped_column(table, c, &self.kind));
        }
        for c in &old.columns {
            match schema.columns.iter().find(|n| n.name == c.name) {
                None => problems.push(dropped_column(table, &c.name, &self.kind)),
                Some(n) if n.type_oid != c.type_oid || n.typmod != c.typmod => problems.push(format!(
                    "column {} changed type from {} to {} on the source. xdb stopped before applying any later \
                     change. To continue, change the target column to the new type's mapping ({}), then run \
                     `xdb sync` again",
                    c.name,
                    c.pg_type.sql_name(),
                    n.pg_type.sql_name(),
                    self.rules.target_type(&n.pg_type).unwrap_or_else(|| "see mappings/".into())
                )),
                Some(_) => {}
            }
        }
        if !problems.is_empty() {
            return Err(SinkError::SchemaDrift(format!("schema change on {table}: {}", problems.join("; "))));
        }
        let mut keyed = self.with_catalog_key(&schema).unwrap_or_else(|| (*schema).clone());
        // Keep what the catalog knew of columns the stream does not describe.
        for c in keyed.columns.iter_mut() {
            if let Some(o) = old.columns.iter().find(|o| o.name == c.name) {
                c.nullable = o.nullable;
                c.default = o.default.clone();
                c.identity = o.identity;
            }
        }
        let new_mapped = mapping::map_table(&self.rules, &keyed, &self.overrides)
            .map_err(|e| SinkError::SchemaDrift(format!("schema change on {table}: {e}")))?;
        let added: Vec<usize> = (0..keyed.columns.len())
            .filter(|&i| !old.columns.iter().any(|o| o.name == keyed.columns[i].name))
            .filter(|&i| !target_only.contains(&keyed.columns[i].name))
            .collect();
        for i in added {
            let ddl = mapping::add_column_ddl(&new_mapped, i, &self.kind);
            tracing::info!(table = %table, column = %keyed.columns[i].name, "column added on the source: {ddl}");
            self.conn.execute_batch(&[ddl], &format!("adding column {} to {table}", keyed.columns[i].name)).await?;
        }
        self.mapped.insert(table.clone(), Arc::new(new_mapped));
        Ok(())
    }

    async fn begin(&mut self) -> Result<(), SinkError> {
        let sql = match self.conn.dialect() {
            SqlDialect::Mysql => "START TRANSACTION",
            SqlDialect::Sqlite => "BEGIN IMMEDIATE",
            SqlDialect::Postgres => "BEGIN",
        };
        self.conn.execute_batch(&[sql.to_string()], "starting a transaction").await?;
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), SinkError> {
        self.conn.execute_batch(&["COMMIT".to_string()], "committing").await?;
        Ok(())
    }

    async fn rollback(&mut self) {
        let _ = self.conn.execute_batch(&["ROLLBACK".to_string()], "rolling back").await;
    }

    async fn write_position(&mut self, end: Lsn, commit_time: i64) -> Result<(), SinkError> {
        let now = chrono::Utc::now().timestamp_micros();
        let sql = state::upsert_position(self.conn.dialect());
        let p = [
            StateParam::Text(self.slot.clone()),
            StateParam::I64(end.0 as i64),
            StateParam::I64(commit_time),
            StateParam::I64(self.consistent_point.0 as i64),
            StateParam::I64(now),
        ];
        self.conn.execute_params(&sql, &p, "recording the applied position").await?;
        Ok(())
    }

    async fn apply_ops(&mut self, txs: &[Transaction]) -> Result<(), SinkError> {
        let sync_lsn = &self.sync_lsn;
        let ops = split_pow2(plan_ops(txs, self.limits, |table, tx| {
            sync_lsn.get(&table.name.to_string()).is_some_and(|&s| s.snapshot_holds_commit(tx.commit_lsn))
        })?);
        for op in &ops {
            self.execute_op(op).await?;
        }
        Ok(())
    }

    async fn execute_op(&mut self, op: &Op<'_>) -> Result<(), SinkError> {
        let table = op.table();
        let Some(mapped) = self.mapped.get(&table.name).cloned() else {
            // Not a planned table (a publication shared with other tables).
            return Ok(());
        };
        let d = self.conn.dialect();
        let context = || format!("applying changes to {}", table.name);
        match &mut self.conn {
            TargetConn::Mysql { conn, label, .. } => {
                let sql = d.render(op);
                let params = op_params(op, |row, cols| mapped.mysql_params(row, cols))?;
                conn.exec_drop(sql.as_str(), params).await.map_err(|e| TargetError::Sql {
                    target: label.clone(),
                    context: context(),
                    source: e.into(),
                })?;
            }
            TargetConn::Sqlite { conn, path } => {
                let sql = d.render(op);
                let params = op_params(op, |row, cols| mapped.sqlite_params(row, cols))?;
                let r = conn
                    .prepare_cached(&sql)
                    .and_then(|mut st| st.execute(rusqlite::params_from_iter(params)))
                    .map_err(DriverError::from);
                r.map_err(|source| TargetError::Sql {
                    target: format!("sqlite://{}", path.display()),
                    context: context(),
                    source,
                })?;
            }
            TargetConn::Postgres { client, label } => {
                let sql = d.render_with(op, &|n, col| mapped.pg_placeholder(n, col));
                let params = op_params(op, |row, cols| mapped.pg_params(row, cols))?;
                let err = |e: tokio_postgres::Error| TargetError::Sql {
                    target: label.clone(),
                    context: context(),
                    source: e.into(),
                };
                let st = match self.pg_statements.get(&sql) {
                    Some(st) => st.clone(),
                    None => {
                        let st = client.prepare(&sql).await.map_err(err)?;
                        if self.pg_statements.len() > 512 {
                            self.pg_statements.clear();
                        }
                        self.pg_statements.insert(sql.clone(), st.clone());
                        st
                    }
                };
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                client.execute(&st, &refs).await.map_err(err)?;
            }
        }
        Ok(())
    }
}

/// The parameters of `op` in placeholder order, converted by `conv`
/// (columns `cols` of a row).
fn op_params<P>(
    op: &Op<'_>,
    conv: impl Fn(&Row, &[usize]) -> Result<Vec<P>, ConversionError>,
) -> Result<Vec<P>, ConversionError> {
    let table = op.table();
    let all: Vec<usize> = (0..table.columns.len()).collect();
    let pk = &table.primary_key;
    let mut out = Vec::new();
    match op {
        Op::Upsert { rows, .. } | Op::Insert { rows, .. } => {
            for r in rows {
                out.extend(conv(r, &all)?);
            }
        }
        Op::UpdateByKey { set_cols, new, key_row, .. } => {
            out.extend(conv(new, set_cols)?);
            out.extend(conv(key_row, pk)?);
        }
        Op::DeleteByKey { keys, .. } => {
            for k in keys {
                out.extend(conv(k, pk)?);
            }
        }
        Op::UpdateOneMatching { set_cols, new, old, .. } => {
            out.extend(conv(new, set_cols)?);
            out.extend(conv(old, &all)?);
        }
        Op::DeleteOneMatching { old, .. } => out.extend(conv(old, &all)?),
        Op::Truncate { .. } => {}
    }
    Ok(out)
}

/// The schema-drift message for a column dropped on the source.
fn dropped_column(table: &TableName, column: &str, kind: &TargetKind) -> String {
    let d = match kind {
        TargetKind::Sqlite => SqlDialect::Sqlite,
        TargetKind::Postgres => SqlDialect::Postgres,
        TargetKind::Mysql { .. } => SqlDialect::Mysql,
    };
    format!(
        "column {column} was dropped on the source. xdb stopped before applying any later change. To continue, drop \
         it on the target as well (`ALTER TABLE {} DROP COLUMN {}`), then run `xdb sync` again",
        d.table_ident(table),
        d.ident(column)
    )
}

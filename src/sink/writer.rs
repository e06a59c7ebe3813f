//! The sink writer: applies groups of whole source transactions to the
//! target, each group in one target transaction that also records the
//! applied position (invariants *commit order*, *exactly once*, *TOAST*, *keys*, *schema drift*).
//!
//! What it may skip: a transaction that ends at or below the recorded
//! applied position (already applied before a restart), and a change to a
//! table committed at or below that table's sync LSN (the copy holds it).
//! The position it reports as applied is the end LSN of the last committed
//! group, never more.
//!
//! What it never does: skip a change silently. Every UPDATE and DELETE
//! must match its row on the target (by key; by whole old row for a table
//! without one), or the group is rolled back and sync stops with
//! [`SinkError::NoRowMatched`], naming the table, the key and the commit
//! LSN. Affected-row counts tell: an UPDATE or keyless DELETE must change
//! one row, a multi-row `DELETE … IN (…)` as many as it has keys (MySQL
//! connections use found-rows semantics, so an UPDATE that sets the values
//! the row already has still counts it). UPDATEs of whole rows are applied
//! as upserts (fast, merged), which would insert a row the target had lost:
//! each upsert run is therefore preceded by a count of the rows it updates
//! ([`Op::ExpectRows`]; a run of a single UPDATE is a plain UPDATE by key),
//! so a lost row stops sync instead of coming back with only the columns of
//! its last change. An INSERT stays an upsert.
//! When a merged statement matches too few rows, the group is rolled back
//! and run again one row per statement, transaction by transaction, only to
//! name the exact key and commit LSN in the error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::apply_plan::{pad_pow2, plan_ops, split_pow2, ApplyPlanError, ChangeOrder, Op, OpLimits};
use super::conn::{StateParam, TargetConn, TargetError};
use super::postgres::merge::{self, MergeError};
use super::state;
use crate::mapping::{self, ConversionError, MappedTable, MappingOverrides, MappingRules, TargetKind};
use crate::model::{Lsn, Row, TableName, TableSchema, Transaction};
use crate::plan::{Plan, TargetUrl};
use crate::source::{LiveSource, SourceReadError};

/// Changes per statement group read back from a spilled transaction.
pub mod current_value;
mod generated_stream;
mod schema_change;
pub use schema_change::rename_candidate;

const SPILL_CHUNK: usize = 5_000;

/// A group's statements table by table, and the target tables they write.
type ByTableCandidate<'a> = (Vec<Op<'a>>, Vec<String>);

/// A group planned into more statements than this is also planned table by
/// table on a MySQL target ([`SinkWriter::by_table`]): below it, the extra
/// read of the target's catalog would cost about what it saves.
const BY_TABLE_FROM: usize = 16;

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
    /// Re-reading the source's catalog (a schema change, a generated
    /// column added) through the writer's [`LiveSource`].
    #[error("{0}")]
    SourceRead(#[from] SourceReadError),
    /// Giving the rows already on the target the source's values of a
    /// column added on the source failed. Where the target's DDL is not
    /// transactional (MySQL, MariaDB) the column stays added: a restart
    /// would find it there and not fill it again, so this is never retried
    /// and names the repair.
    #[error("{}", fill_text(.table, .column, .reason, *.column_stays))]
    Fill { table: TableName, column: String, reason: String, column_stays: bool },
    #[error("type mapping: {0}")]
    Mapping(String),
    #[error("reading a spilled transaction: {0}")]
    Spill(#[source] crate::model::ChunkError),
    /// The target refused one row change for good (a value too long, a
    /// constraint): the table, the row's key and its values, the source
    /// commit, and the driver error with its code.
    #[error(
        "{table}: the target refused the {op} of {row} (source commit LSN {commit_lsn}): {source}. xdb stopped \
         and applied nothing of this batch; {}, then run `xdb sync` again",
        refused_fix(source)
    )]
    RowRefused {
        table: TableName,
        op: &'static str,
        row: String,
        commit_lsn: Lsn,
        #[source]
        source: Box<TargetError>,
    },
    /// An UPDATE or DELETE from the stream found no row on the target:
    /// the target lost the row (or changed it) outside of xdb. Applying on
    /// would hide that, so nothing of the group is committed.
    #[error("{}", no_row_text(.table, .op, .keys, .commit_lsn))]
    NoRowMatched {
        table: TableName,
        /// `UPDATE` or `DELETE`.
        op: &'static str,
        /// The key (or whole old row) of each candidate, as `col=value`
        /// lists: one when the statement was for one row.
        keys: Vec<String>,
        /// The source commit of the change, once known.
        commit_lsn: Option<Lsn>,
    },
}

fn fill_text(table: &TableName, column: &str, reason: &str, column_stays: bool) -> String {
    let next = if column_stays {
        format!(
            "The column is on the target now, but its values may be missing: stop `xdb sync`, run `xdb validate \
             --plan P --tables {table} --repair`, then run `xdb sync` again"
        )
    } else {
        "Nothing of it was added on the target: fix the cause, then run `xdb sync` again".to_string()
    };
    format!(
        "{table}: column {column} was added on the source with a default whose values xdb copies from the source \
         rows; copying them to the rows already on the target failed: {reason}. xdb stopped before applying any \
         later change. {next}"
    )
}

/// What to do about a row the target refused: a column or table it lacks
/// is the target's shape, not the row's value.
fn refused_fix(e: &TargetError) -> &'static str {
    if e.is_missing_column_or_table() {
        "the target table lacks a column (or is missing) that the source has: `xdb check` lists how each existing \
         target table differs from the source; add what is missing on the target"
    } else {
        "fix the target (for example widen the column) or the source row"
    }
}

fn no_row_text(table: &TableName, op: &str, keys: &[String], commit_lsn: &Option<Lsn>) -> String {
    let which = match keys {
        [one] => format!("for {one}"),
        many => format!("for one of {}", many.join("; ")),
    };
    let at = commit_lsn.map(|l| format!(" (at commit LSN {l})")).unwrap_or_default();
    format!(
        "{table}: {op} matched no row on the target {which}{at}. The target lost or changed this row outside of \
         xdb; xdb stopped and applied nothing of this batch, and will stop here again until the row is back. To \
         continue, stop `xdb sync` and re-copy the table's rows from the source: `xdb validate --plan P --tables \
         {table} --repair` (or empty the target table and run `xdb snapshot` again), then run `xdb sync` again"
    )
}

impl SinkError {
    /// True when the same group may succeed after a reconnect.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Target(e) => e.is_retryable(),
            SinkError::SourceRead(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// The error with the source commit it happened in, when not yet known.
    fn at(self, lsn: Lsn) -> SinkError {
        match self {
            SinkError::NoRowMatched { table, op, keys, commit_lsn: None } => {
                SinkError::NoRowMatched { table, op, keys, commit_lsn: Some(lsn) }
            }
            other => other,
        }
    }
}

/// Applies transactions to one target connection.
pub struct SinkWriter {
    conn: TargetConn,
    url: TargetUrl,
    /// The source, asked when a Relation adds columns: its catalog knows
    /// their defaults and NOT NULL (the stream does not send them), and
    /// its rows the values of a non-constant default.
    source: Arc<dyn LiveSource>,
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
    /// Target columns the source catalog no longer has: the stream may
    /// still carry them (changes from before the drop); a Relation without
    /// them means they were dropped.
    target_only: HashMap<TableName, Vec<String>>,
    /// Columns covered by a secondary unique index on the target, by table:
    /// changes to one key are folded only when they agree on these.
    unique_columns: HashMap<TableName, Vec<String>>,
    /// A statement run right after the applied position, in the same
    /// transaction (the reverse stream records its GTID position this way:
    /// invariant *exactly once*).
    position_companion: Option<(String, Vec<StateParam>)>,
    /// Columns just added and filled from the source, to fill again within
    /// the next batch if it carries rows from before the ALTER (see
    /// `schema_change::refill_rows_from_before_the_alter`).
    refill: Vec<(TableName, Vec<String>)>,
    /// Columns just renamed on the target, in order, by table: the rest of
    /// the source transaction that renamed them may hold rows of the old
    /// shape (a migration writes, renames, writes again in one
    /// transaction), applied under the new names
    /// (`schema_change::under_new_names`).
    renamed: HashMap<TableName, Vec<(String, String)>>,
    /// The same for a table whose later shape the target already has when
    /// `sync` starts (xdb made the ALTERs, then stopped before the
    /// transaction that made them was applied): kept until the stream
    /// describes the table again.
    ahead_renamed: HashMap<TableName, Vec<(String, String)>>,
    /// A large transaction's parts are applied in an open target
    /// transaction (`apply_part`).
    parts_open: bool,
}

impl SinkWriter {
    /// Where the plan's tables are on this target.
    pub(crate) fn naming(&self) -> crate::plan::naming::Naming {
        self.overrides.naming(self.kind.dialect())
    }

    /// A writer resuming after `applied`; `source` answers what the
    /// stream does not say (see [`LiveSource`]).
    pub fn new(
        conn: TargetConn,
        kind: TargetKind,
        plan: &Plan,
        source: Arc<dyn LiveSource>,
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
        Ok(SinkWriter {
            conn,
            url: plan.target.url.clone(),
            source,
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
            target_only: HashMap::new(),
            unique_columns: HashMap::new(),
            position_companion: None,
            refill: Vec::new(),
            renamed: HashMap::new(),
            ahead_renamed: HashMap::new(),
            parts_open: false,
        })
    }

    /// Sets the statement written with the next applied positions (see
    /// `position_companion`); the caller sets it before each apply.
    pub fn set_position_companion(&mut self, sql: String, params: Vec<StateParam>) {
        self.position_companion = Some((sql, params));
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
                            self.conn = c;
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
        let slice: &[Transaction] = if !self.renamed.is_empty() || !self.ahead_renamed.is_empty() {
            owned = todo.into_iter().map(|t| self.under_new_names(t)).collect();
            &owned
        } else if todo.len() == txs.len() {
            txs
        } else {
            owned = todo.into_iter().cloned().collect();
            &owned
        };
        match self.apply_group(slice, end, time, false).await {
            // A data error of a merged statement names no row: again, one
            // row per statement, to name the one the target refuses.
            Err(SinkError::Target(e)) if !e.is_retryable() => {
                tracing::info!("{e}; applying the batch row by row to name the refused row");
                self.apply_group(slice, end, time, true).await?
            }
            Err(SinkError::NoRowMatched { .. }) => {
                // Rolled back. Again, one row per statement, only to name the
                // exact change: this fails the same way (or, if the target
                // changed meanwhile, applies correctly).
                self.apply_group(slice, end, time, true).await?
            }
            r => r?,
        }
        self.applied = end;
        // The transaction that added or renamed columns is on the target:
        // nothing of it is left to fill or to rename.
        self.refill.clear();
        self.renamed.clear();
        Ok(())
    }

    /// One target transaction: `txs`, then the applied position. Rolled
    /// back on error.
    async fn apply_group(
        &mut self,
        txs: &[Transaction],
        end: Lsn,
        time: i64,
        one_by_one: bool,
    ) -> Result<(), SinkError> {
        let planned = self.begin_group(txs, one_by_one).await?;
        let r = async {
            match planned {
                Some(ops) => self.execute_ops(&ops).await?,
                None => self.apply_ops(txs, one_by_one).await?,
            }
            self.refill_rows_from_before_the_alter(txs).await?;
            self.commit_at(end, time).await
        }
        .await;
        if r.is_err() {
            self.rollback().await;
        }
        r
    }

    /// Opens a group's transaction. On a MySQL target a group worth
    /// applying table by table ([`by_table`](Self::by_table)) has the
    /// catalog read sent with `START TRANSACTION`, one round trip for both
    /// (under load each round trip waits for the server to be scheduled);
    /// then returns the group's statements, table by table or in source
    /// order as the read allows. `None`: the caller plans them.
    async fn begin_group<'a>(
        &mut self,
        txs: &'a [Transaction],
        one_by_one: bool,
    ) -> Result<Option<Vec<Op<'a>>>, SinkError> {
        if one_by_one || !matches!(self.conn, TargetConn::Mysql(_)) {
            self.begin().await?;
            return Ok(None);
        }
        let source_order = split_pow2(self.plan(txs, self.limits, ChangeOrder::Source)?);
        let candidate = match source_order.len() > BY_TABLE_FROM {
            true => self.by_table_candidate(txs, source_order.len())?,
            false => None,
        };
        let Some((by_table, tables)) = candidate else {
            self.begin().await?;
            return Ok(Some(source_order));
        };
        let TargetConn::Mysql(c) = &mut self.conn else { unreachable!("checked above") };
        let names: Vec<&str> = tables.iter().map(String::as_str).collect();
        let unrelated = match c.begin_and_check_unrelated(&names).await {
            Ok(u) => u,
            Err(e) => {
                // The transaction may have begun before the read failed.
                self.rollback().await;
                let context = "starting a transaction and reading the target's foreign keys and triggers";
                return Err(self.conn.err(context, e).into());
            }
        };
        Ok(Some(if unrelated {
            tracing::debug!(
                statements = by_table.len(),
                instead_of = source_order.len(),
                "applying the group table by table"
            );
            by_table
        } else {
            source_order
        }))
    }

    /// Applies a spilled (very large) transaction chunk by chunk inside one
    /// target transaction: never split, never whole in memory.
    pub async fn apply_spilled(&mut self, tx: &mut dyn crate::model::ChunkedTransaction) -> Result<(), SinkError> {
        let header = tx.header();
        if header.end_lsn <= self.applied {
            return Ok(());
        }
        let (end, time) = (header.end_lsn, header.commit_time_micros);
        self.begin().await?;
        let r = async {
            while let Some(chunk) = tx.next_chunk(SPILL_CHUNK).map_err(SinkError::Spill)? {
                let chunk = if self.renamed.is_empty() && self.ahead_renamed.is_empty() {
                    chunk
                } else {
                    self.under_new_names(&chunk)
                };
                self.apply_ops(std::slice::from_ref(&chunk), false).await.map_err(|e| e.at(chunk.commit_lsn))?;
                self.refill_rows_from_before_the_alter(std::slice::from_ref(&chunk)).await?;
            }
            self.commit_at(end, time).await
        }
        .await;
        if r.is_err() {
            self.rollback().await;
            return r;
        }
        self.applied = end;
        self.refill.clear();
        self.renamed.clear();
        Ok(())
    }

    /// A source transaction too large to hold, applied in parts inside one
    /// target transaction (a log's or a binlog's bounded memory; the
    /// PostgreSQL stream spills instead): `apply_part` for each part in
    /// order, then `commit_parts` with the transaction's end, or
    /// `abort_parts`. The caller resumes from a stored position (a
    /// transaction boundary), so no part is ever applied twice.
    /// Opens the target transaction of the parts (`apply_part` opens it
    /// when it is not yet).
    pub async fn begin_parts(&mut self) -> Result<(), SinkError> {
        if !self.parts_open {
            self.begin().await?;
            self.parts_open = true;
        }
        Ok(())
    }

    /// One part (its `changes`; the rest of `part` names the transaction);
    /// the first opens the target transaction the others join.
    pub async fn apply_part(&mut self, part: &Transaction) -> Result<(), SinkError> {
        self.begin_parts().await?;
        let renamed;
        let part = if self.renamed.is_empty() && self.ahead_renamed.is_empty() {
            part
        } else {
            renamed = self.under_new_names(part);
            &renamed
        };
        self.apply_ops(std::slice::from_ref(part), false).await.map_err(|e| e.at(part.commit_lsn))
    }

    /// Records the position and commits the parts.
    pub async fn commit_parts(&mut self, end: Lsn, commit_time: i64) -> Result<(), SinkError> {
        self.begin_parts().await?;
        self.parts_open = false;
        self.commit_at(end, commit_time).await?;
        self.applied = end;
        self.renamed.clear();
        Ok(())
    }

    /// The source's own copy is complete at `at` (a log carries it as
    /// ordinary changes): the position moves there and every table is
    /// recorded as copied.
    pub async fn copy_done(&mut self, at: Lsn) -> Result<(), SinkError> {
        let mark = Transaction { xid: 0, commit_lsn: at, end_lsn: at, commit_time_micros: 0, changes: vec![] };
        self.apply_with_retry(&[mark]).await?;
        let mut tables: Vec<String> = self.mapped.keys().map(|t| t.to_string()).collect();
        tables.sort();
        for t in tables {
            self.conn.record_table(&self.slot, &t, Lsn::ZERO, true, 0).await?;
        }
        tracing::info!("the source's initial copy is applied");
        Ok(())
    }

    /// Rolls back the parts applied so far, if any.
    pub async fn abort_parts(&mut self) {
        if std::mem::take(&mut self.parts_open) {
            self.rollback().await;
        }
    }

    /// Declares columns that exist on the target but not in the source's
    /// current catalog (dropped on the source while xdb was not running).
    /// An empty list forgets the table's (a schema change made them the
    /// source's columns again).
    pub fn expect_dropped_columns(&mut self, table: TableName, columns: Vec<String>) {
        if columns.is_empty() {
            self.target_only.remove(&table);
        } else {
            self.target_only.insert(table, columns);
        }
    }

    /// Declares the columns of `table` that a secondary unique index covers
    /// on the target (see [`plan_ops`]).
    pub fn expect_unique_columns(&mut self, table: TableName, columns: Vec<String>) {
        if !columns.is_empty() {
            self.unique_columns.insert(table, columns);
        }
    }

    async fn begin(&mut self) -> Result<(), SinkError> {
        let sql = self.conn.dialect().begin();
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

    /// Records the applied position `end` in the open transaction and
    /// commits it (invariant *exactly once*): on a MySQL
    /// target as one multi-statement round trip
    /// ([`MysqlConn::execute_and_commit`]), where the server stops at a
    /// failed write before the `COMMIT`.
    async fn commit_at(&mut self, end: Lsn, commit_time: i64) -> Result<(), SinkError> {
        let sql = state::upsert_position(self.conn.dialect());
        let p = self.position_params(end, commit_time);
        if let (TargetConn::Mysql(c), None) = (&mut self.conn, &self.position_companion) {
            let r = c.execute_and_commit(&[(&sql, &p)]).await;
            r.map_err(|e| self.conn.err("recording the applied position and committing", e))?;
            return Ok(());
        }
        self.conn.execute_params(&sql, &p, "recording the applied position").await?;
        if let Some((sql, p)) = self.position_companion.clone() {
            self.conn.execute_params(&sql, &p, "recording the applied position").await?;
        }
        self.commit().await
    }

    fn position_params(&self, end: Lsn, commit_time: i64) -> [StateParam; 5] {
        [
            StateParam::Text(self.slot.clone()),
            StateParam::I64(end.0 as i64),
            StateParam::I64(commit_time),
            StateParam::I64(self.consistent_point.0 as i64),
            StateParam::I64(chrono::Utc::now().timestamp_micros()),
        ]
    }

    /// Applies `txs` as merged statements, or with `one_by_one` one row per
    /// statement, transaction by transaction (errors then carry the commit
    /// LSN).
    async fn apply_ops(&mut self, txs: &[Transaction], one_by_one: bool) -> Result<(), SinkError> {
        if one_by_one {
            for tx in txs {
                let ops = self.plan(std::slice::from_ref(tx), OpLimits { max_params: 0 }, ChangeOrder::Source)?;
                for op in &ops {
                    self.execute_op(op).await.map_err(|e| match e {
                        SinkError::Target(source) if !source.is_retryable() => SinkError::RowRefused {
                            table: op.table().name.clone(),
                            op: op_name(op),
                            row: describe_row(op),
                            commit_lsn: tx.commit_lsn,
                            source: Box::new(source),
                        },
                        other => other.at(tx.commit_lsn),
                    })?;
                }
            }
            return Ok(());
        }
        if self.apply_merged(txs).await? {
            return Ok(());
        }
        let mut ops = split_pow2(self.plan(txs, self.limits, ChangeOrder::Source)?);
        if matches!(self.conn, TargetConn::Postgres(_)) {
            return self.execute_ops_pipelined(&ops).await;
        }
        if matches!(self.conn, TargetConn::Mysql(_)) && ops.len() > BY_TABLE_FROM {
            if let Some(by_table) = self.by_table(txs, ops.len()).await? {
                tracing::debug!(
                    statements = by_table.len(),
                    instead_of = ops.len(),
                    "applying the group table by table"
                );
                ops = by_table;
            }
        }
        self.execute_ops(&ops).await
    }

    async fn execute_ops(&mut self, ops: &[Op<'_>]) -> Result<(), SinkError> {
        // A group of small statements (the latency regime); a backlog's
        // groups, few statements of many rows each, stay prepared: the
        // server parses a long literal statement more slowly than it binds
        // the values (caught up ~7 % slower inlined), and their round trips
        // are spread over many rows anyway.
        const INLINED_PARAMS: usize = 256;
        if matches!(self.conn, TargetConn::Mysql(_))
            && ops.len() > 1
            && ops.iter().all(|op| op.param_count() <= INLINED_PARAMS)
        {
            return self.execute_ops_inlined(ops).await;
        }
        for op in ops {
            self.execute_op(op).await?;
        }
        Ok(())
    }

    /// [`execute_op`](Self::execute_op) for a whole group of small
    /// statements at once on a MySQL target: each with its values written
    /// in as literals, many to a multi-statement query (one round trip
    /// where prepared statements cost one each), then each result checked
    /// in order, so the first failing operation is the one named. A
    /// statement holding a large value (written as a literal, it can take
    /// twice its size) runs prepared, in its place.
    async fn execute_ops_inlined(&mut self, ops: &[Op<'_>]) -> Result<(), SinkError> {
        const INLINED_BYTES: usize = super::mysql::MULTI_STATEMENT_BYTES / 16;
        let d = self.conn.dialect();
        let (mut pending, mut statements) = (Vec::new(), Vec::new());
        for op in ops {
            // Not a planned table (a publication shared with other tables): skipped.
            let Some(mapped) = self.mapped.get(&op.table().name).cloned() else { continue };
            let params = op_params(op, |row, cols| mapped.mysql_params(row, cols))?;
            // Bytes take up to twice their length as a literal: a large
            // value is not rendered only to be sent prepared after all.
            let value_bytes: usize =
                params.iter().map(|v| if let mysql_async::Value::Bytes(b) = v { b.len() } else { 0 }).sum();
            if 2 * value_bytes <= INLINED_BYTES {
                let sql = d.render_with(op, &mapped.target_ident, &|n, _| super::mysql::literal(&params[n - 1]));
                if sql.len() <= INLINED_BYTES {
                    statements.push((sql, matches!(op, Op::ExpectRows { .. })));
                    pending.push(op);
                    continue;
                }
            }
            self.run_inlined(&pending, &statements).await?;
            pending.clear();
            statements.clear();
            // Prepared, with the values already converted.
            let sql = d.render(op, &mapped.target_ident);
            let TargetConn::Mysql(c) = &mut self.conn else { unreachable!("checked by the caller") };
            let n = c.run_op(&sql, op, params).await;
            let n = n.map_err(|e| self.conn.err(&format!("applying changes to {}", op.table().name), e))?;
            check_matched(op, n)?;
        }
        self.run_inlined(&pending, &statements).await
    }

    async fn run_inlined(&mut self, ops: &[&Op<'_>], statements: &[(String, bool)]) -> Result<(), SinkError> {
        if ops.is_empty() {
            return Ok(());
        }
        let TargetConn::Mysql(c) = &mut self.conn else { unreachable!("checked by the caller") };
        let results = c.run_inlined(statements).await;
        for (op, r) in ops.iter().zip(results) {
            let n = r.map_err(|e| self.conn.err(&format!("applying changes to {}", op.table().name), e))?;
            check_matched(op, n)?;
        }
        Ok(())
    }

    /// [`execute_op`](Self::execute_op) for a whole group at once on a
    /// PostgreSQL target: the statements are pipelined, then each result is
    /// checked in order, so the first failing operation is the one named.
    async fn execute_ops_pipelined(&mut self, ops: &[Op<'_>]) -> Result<(), SinkError> {
        let d = self.conn.dialect();
        let mut planned = Vec::with_capacity(ops.len());
        let mut statements = Vec::with_capacity(ops.len());
        for op in ops {
            // Not a planned table (a publication shared with other tables): skipped.
            let Some(mapped) = self.mapped.get(&op.table().name) else { continue };
            let sql = d.render_with(op, &mapped.target_ident, &|n, col| mapped.pg_placeholder(n, col));
            statements.push((sql, op_params(op, |row, cols| mapped.pg_params(row, cols))?));
            planned.push(op.clone());
        }
        let TargetConn::Postgres(c) = &mut self.conn else { unreachable!("checked by the caller") };
        let results = c.run_ops_pipelined(&planned, statements).await;
        for (op, r) in planned.iter().zip(results) {
            let n = r.map_err(|e| self.conn.err(&format!("applying changes to {}", op.table().name), e))?;
            check_matched(op, n)?;
        }
        Ok(())
    }

    /// A PostgreSQL target: `txs` set-based when that is exact for them
    /// ([`merge`](super::postgres::merge)); `false` when not (nothing done).
    async fn apply_merged(&mut self, txs: &[Transaction]) -> Result<bool, SinkError> {
        let TargetConn::Postgres(c) = &mut self.conn else { return Ok(false) };
        let sync_lsn = &self.sync_lsn;
        let skip = |table: &TableSchema, tx: &Transaction| {
            sync_lsn.get(&table.name.to_string()).is_some_and(|&s| s.snapshot_holds_commit(tx.commit_lsn))
        };
        match merge::apply_group(c, txs, &self.mapped, &self.unique_columns, skip).await {
            Ok(done) => Ok(done),
            Err(MergeError::Conversion(e)) => Err(e.into()),
            // The row-by-row rerun (see `apply`) names the key.
            Err(MergeError::Mismatch { table, op, .. }) => {
                Err(SinkError::NoRowMatched { table, op, keys: Vec::new(), commit_lsn: None })
            }
            Err(MergeError::Sql { context, source }) => Err(self.conn.err(&context, source).into()),
        }
    }

    /// A MySQL target, where every statement is a round trip: the group's
    /// statements table by table ([`ChangeOrder::ByTable`]) when that
    /// takes at most half as many statements and the target relates none
    /// of the group's tables, read now, inside the group's transaction
    /// ([`MysqlConn::unrelated_now`]); `None` otherwise.
    async fn by_table<'a>(
        &mut self,
        txs: &'a [Transaction],
        source_order: usize,
    ) -> Result<Option<Vec<Op<'a>>>, SinkError> {
        let Some((ops, tables)) = self.by_table_candidate(txs, source_order)? else { return Ok(None) };
        let TargetConn::Mysql(c) = &mut self.conn else { return Ok(None) };
        let names: Vec<&str> = tables.iter().map(String::as_str).collect();
        let unrelated = c.unrelated_now(&names).await;
        let unrelated = unrelated.map_err(|e| self.conn.err("reading the target's foreign keys and triggers", e))?;
        Ok(unrelated.then_some(ops))
    }

    /// The group's statements table by table when they are at most half
    /// of the `source_order` count, with the target tables whose catalog
    /// must allow them ([`MysqlConn::unrelated_now`]).
    fn by_table_candidate<'a>(
        &self,
        txs: &'a [Transaction],
        source_order: usize,
    ) -> Result<Option<ByTableCandidate<'a>>, SinkError> {
        let ops = pad_pow2(self.plan(txs, self.limits, ChangeOrder::ByTable)?, self.limits);
        if ops.len() * 2 > source_order {
            return Ok(None);
        }
        let mut tables: Vec<String> = Vec::new();
        for op in &ops {
            // Not a planned table: its changes are skipped (run_op).
            let Some(m) = self.mapped.get(&op.table().name) else { continue };
            if !tables.contains(&m.target_name) {
                tables.push(m.target_name.clone());
            }
        }
        Ok(Some((ops, tables)))
    }

    fn plan<'a>(
        &self,
        txs: &'a [Transaction],
        limits: OpLimits,
        order: ChangeOrder,
    ) -> Result<Vec<Op<'a>>, ApplyPlanError> {
        let sync_lsn = &self.sync_lsn;
        let unique = &self.unique_columns;
        plan_ops(
            txs,
            limits,
            order,
            |table, tx| sync_lsn.get(&table.name.to_string()).is_some_and(|&s| s.snapshot_holds_commit(tx.commit_lsn)),
            |table| {
                let names = unique.get(&table.name).map(Vec::as_slice).unwrap_or_default();
                names.iter().filter_map(|n| table.column_index(n)).collect()
            },
        )
    }

    /// Runs one statement and checks that it matched what it must (module
    /// doc): an UPDATE or keyless DELETE one row, a DELETE by keys one row
    /// per key, an [`Op::ExpectRows`] every key.
    async fn execute_op(&mut self, op: &Op<'_>) -> Result<(), SinkError> {
        let n = self.run_op(op).await?;
        check_matched(op, n)
    }

    /// Runs one statement; returns the rows it changed (or, for
    /// [`Op::ExpectRows`], counted).
    async fn run_op(&mut self, op: &Op<'_>) -> Result<u64, SinkError> {
        let table = op.table();
        let Some(mapped) = self.mapped.get(&table.name).cloned() else {
            // Not a planned table (a publication shared with other tables):
            // as if it matched what it must.
            return Ok(u64::MAX);
        };
        let d = self.conn.dialect();
        // Rows changed (or, for ExpectRows, counted).
        let r = match &mut self.conn {
            TargetConn::Mysql(c) => {
                let params = op_params(op, |row, cols| mapped.mysql_params(row, cols))?;
                c.run_op(&d.render(op, &mapped.target_ident), op, params).await
            }
            TargetConn::Sqlite(c) => {
                let params = op_params(op, |row, cols| mapped.sqlite_params(row, cols))?;
                c.run_op(&d.render(op, &mapped.target_ident), op, params)
            }
            TargetConn::Postgres(c) => {
                let sql = d.render_with(op, &mapped.target_ident, &|n, col| mapped.pg_placeholder(n, col));
                let params = op_params(op, |row, cols| mapped.pg_params(row, cols))?;
                c.run_op(&sql, op, params).await
            }
        };
        let n = r.map_err(|e| self.conn.err(&format!("applying changes to {}", table.name), e))?;
        Ok(n)
    }
}

/// The error for a statement that matched fewer rows than its changes
/// need (see the module doc); `n` is its affected (or counted) rows.
fn op_name(op: &Op<'_>) -> &'static str {
    match op {
        Op::Upsert { .. } | Op::Insert { .. } => "INSERT",
        Op::UpdateByKey { .. } | Op::UpdateOneMatching { .. } => "UPDATE",
        Op::DeleteByKey { .. } | Op::DeleteOneMatching { .. } => "DELETE",
        Op::ExpectRows { op, .. } => op,
        Op::Truncate { .. } => "TRUNCATE",
    }
}

/// The row an op (of one row, as in row-by-row mode) writes: its key and
/// every value, as they can be pasted into a WHERE clause.
fn describe_row(op: &Op<'_>) -> String {
    let table = op.table();
    let show = |row: &Row, cols: &mut dyn Iterator<Item = usize>| -> String {
        cols.map(|i| format!("{}={}", table.columns[i].name, mapping::show_value(&row[i])))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all = || 0..table.columns.len();
    match op {
        Op::Upsert { rows, .. } | Op::Insert { rows, .. } => {
            rows.first().map(|r| format!("row ({})", show(r, &mut all()))).unwrap_or_default()
        }
        Op::UpdateByKey { new, .. } | Op::UpdateOneMatching { new, .. } => format!("row ({})", show(new, &mut all())),
        Op::DeleteByKey { keys, .. } | Op::ExpectRows { keys, .. } => keys
            .first()
            .map(|k| format!("key ({})", show(k, &mut table.primary_key.iter().copied())))
            .unwrap_or_default(),
        Op::DeleteOneMatching { old, .. } => format!("row ({})", show(old, &mut all())),
        Op::Truncate { .. } => "the table".into(),
    }
}

fn check_matched(op: &Op<'_>, n: u64) -> Result<(), SinkError> {
    let table = op.table();
    let key = |row: &Row| -> String {
        let cols = &table.primary_key;
        let shown: Vec<String> =
            cols.iter().map(|&i| format!("{}={}", table.columns[i].name, mapping::show_value(&row[i]))).collect();
        format!("key {}", shown.join(", "))
    };
    let whole_row = |row: &Row| -> String {
        let shown: Vec<String> = (0..table.columns.len())
            .map(|i| format!("{}={}", table.columns[i].name, mapping::show_value(&row[i])))
            .collect();
        format!("row ({})", shown.join(", "))
    };
    let (op_name, expected, keys): (&'static str, usize, Vec<String>) = match op {
        Op::UpdateByKey { key_row, .. } => ("UPDATE", 1, vec![key(key_row)]),
        Op::DeleteByKey { keys, .. } => ("DELETE", keys.len(), keys.iter().map(|k| key(k)).collect()),
        Op::ExpectRows { keys, op, .. } => {
            // A padded check repeats its last key (`pad_pow2`): the rows
            // to find are the keys without those repeats.
            let last = keys.last().copied();
            let repeats = keys.iter().rev().take_while(|k| last.is_some_and(|l| std::ptr::eq(**k, l))).count();
            let distinct = &keys[..keys.len() - repeats.saturating_sub(1)];
            (op, distinct.len(), distinct.iter().map(|k| key(k)).collect())
        }
        Op::UpdateOneMatching { old, .. } => ("UPDATE", 1, vec![whole_row(old)]),
        Op::DeleteOneMatching { old, .. } => ("DELETE", 1, vec![whole_row(old)]),
        Op::Upsert { .. } | Op::Insert { .. } | Op::Truncate { .. } => return Ok(()),
    };
    if n >= expected as u64 {
        return Ok(());
    }
    Err(SinkError::NoRowMatched { table: table.name.clone(), op: op_name, keys, commit_lsn: None })
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
        Op::DeleteByKey { keys, .. } | Op::ExpectRows { keys, .. } => {
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

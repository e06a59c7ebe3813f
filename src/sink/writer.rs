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

use bytes::Bytes;
use futures_util::StreamExt;

use super::apply_plan::{plan_ops, split_pow2, ApplyPlanError, Op, OpLimits};
use super::conn::{StateParam, TargetConn, TargetError};
use super::dialect::SqlDialect;
use super::postgres::merge::{self, MergeError};
use super::state;
use crate::copy::source_reader::{mark_unknown, select_list};
use crate::mapping::{self, ConversionError, MappedTable, MappingOverrides, MappingRules, TargetKind};
use crate::model::{Column, Lsn, Row, TableName, TableSchema, Transaction, Value};
use crate::plan::{Plan, SecretUrl, TargetUrl};
use crate::source::postgres::assembler::SpilledTransaction;
use crate::source::postgres::catalog::{load_table, renamed_in_place, CatalogError, TypeCache};
use crate::source::postgres::client::{self, error_text, ConnectError};
use crate::source::postgres::copy_binary::CopyBinaryReader;

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
    /// Connecting to the source to re-read its catalog or the values of an
    /// added column.
    #[error("{0}")]
    SourceConnect(#[from] ConnectError),
    #[error("{0}")]
    Catalog(#[from] CatalogError),
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
    Spill(String),
    /// The target refused one row change for good (a value too long, a
    /// constraint): the table, the row's key and its values, the source
    /// commit, and the driver error with its code.
    #[error(
        "{table}: the target refused the {op} of {row} (source commit LSN {commit_lsn}): {source}. xdb stopped \
         and applied nothing of this batch; fix the target (for example widen the column) or the source row, then \
         run `xdb sync` again"
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
            SinkError::SourceConnect(e) => e.retryable,
            SinkError::Catalog(CatalogError::Query { source, .. }) => {
                crate::error_policy::postgres(source).is_transient()
            }
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
    /// The source, connected to when a Relation adds columns: its catalog
    /// knows their defaults and NOT NULL (pgoutput does not send them), and
    /// its rows the values of a non-constant default.
    source_url: SecretUrl,
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
        Ok(SinkWriter {
            conn,
            url: plan.target.url.clone(),
            source_url: plan.source.url.clone(),
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
        let slice: &[Transaction] = if todo.len() == txs.len() {
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
        self.begin().await?;
        let r = async {
            self.apply_ops(txs, one_by_one).await?;
            self.write_position(end, time).await?;
            self.commit().await
        }
        .await;
        if r.is_err() {
            self.rollback().await;
        }
        r
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
                self.apply_ops(std::slice::from_ref(&chunk), false).await.map_err(|e| e.at(chunk.commit_lsn))?;
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

    /// A source transaction too large to hold, applied in parts inside one
    /// target transaction (the reverse stream's bounded memory; the
    /// forward stream spills instead): `begin_parts`, `apply_part` for
    /// each part in order, then `commit_parts` with the transaction's end,
    /// or `abort_parts`. The caller resumes from a stored position (a
    /// transaction boundary), so no part is ever applied twice.
    pub async fn begin_parts(&mut self) -> Result<(), SinkError> {
        self.begin().await
    }

    /// One part (its `changes`; the rest of `part` names the transaction).
    pub async fn apply_part(&mut self, part: &Transaction) -> Result<(), SinkError> {
        self.apply_ops(std::slice::from_ref(part), false).await.map_err(|e| e.at(part.commit_lsn))
    }

    /// Records the position and commits the parts.
    pub async fn commit_parts(&mut self, end: Lsn, commit_time: i64) -> Result<(), SinkError> {
        self.write_position(end, commit_time).await?;
        self.commit().await?;
        self.applied = end;
        Ok(())
    }

    pub async fn abort_parts(&mut self) {
        self.rollback().await;
    }

    /// Declares columns that exist on the target but not in the source's
    /// current catalog (dropped on the source while xdb was not running).
    pub fn expect_dropped_columns(&mut self, table: TableName, columns: Vec<String>) {
        if !columns.is_empty() {
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

    /// A Relation message (invariant *schema drift*): follows added
    /// columns (filling existing rows with the source's values), renames
    /// the catalog confirms, and type changes that keep every value; stops
    /// on dropped columns and other type changes with the statement to run.
    pub async fn relation_changed(&mut self, schema: Arc<TableSchema>) -> Result<(), SinkError> {
        let Some(current) = self.mapped.get(&schema.name).cloned() else { return Ok(()) };
        let old = &current.source;
        let table = &schema.name;
        let mut problems = Vec::new();
        // Columns whose type changed: followed or stopped on once mapped.
        let mut retyped: Vec<&str> = Vec::new();
        let target_only = self.target_only.get(table).cloned().unwrap_or_default();
        for c in target_only.iter().filter(|c| !schema.columns.iter().any(|n| &n.name == *c)) {
            problems.push(dropped_column(table, c, &self.kind));
        }
        // The source, connected to when the catalog must tell something.
        let mut source: Option<tokio_postgres::Client> = None;
        // (old name, new name) of renamed columns.
        let mut renames: Vec<(String, String)> = Vec::new();
        for (i, c) in old.columns.iter().enumerate() {
            match schema.columns.iter().find(|n| n.name == c.name) {
                None => {
                    // A rename looks like a drop in a Relation: a column gone,
                    // a new one in its place with its type. Only the catalog's
                    // attribute numbers tell it from a drop and an add (and
                    // taking a drop for a rename would keep stale values).
                    let candidate = schema.columns.get(i).filter(|n| {
                        old.column_index(&n.name).is_none()
                            && !target_only.contains(&n.name)
                            && n.type_oid == c.type_oid
                            && n.typmod == c.typmod
                    });
                    if let Some(n) = candidate {
                        if source.is_none() {
                            source = Some(client::connect(&self.source_url, "xdb sync").await?);
                        }
                        let client = source.as_ref().expect("connected above");
                        if renamed_in_place(client, schema.oid, &n.name).await? {
                            renames.push((c.name.clone(), n.name.clone()));
                            continue;
                        }
                    }
                    problems.push(dropped_column(table, &c.name, &self.kind))
                }
                Some(n) if n.type_oid != c.type_oid || n.typmod != c.typmod => retyped.push(&c.name),
                Some(_) => {}
            }
        }
        if !problems.is_empty() {
            return Err(SinkError::SchemaDrift(format!("schema change on {table}: {}", problems.join("; "))));
        }
        // The writer's other knowledge of the table is by column name.
        for (from, to) in &renames {
            let rename =
                |names: &mut Vec<String>| names.iter_mut().filter(|n| *n == from).for_each(|n| *n = to.clone());
            self.primary_keys.get_mut(table).map(rename);
            self.unique_columns.get_mut(table).map(rename);
        }
        let was = |name: &str| -> String {
            renames.iter().find(|(_, to)| to == name).map(|(from, _)| from.clone()).unwrap_or_else(|| name.to_string())
        };
        let mut keyed = self.with_catalog_key(&schema).unwrap_or_else(|| (*schema).clone());
        // Keep what the catalog knew of columns the stream does not describe.
        for c in keyed.columns.iter_mut() {
            if let Some(o) = old.columns.iter().find(|o| o.name == was(&c.name)) {
                c.nullable = o.nullable;
                c.default = o.default.clone();
                c.identity = o.identity;
            }
        }
        let added: Vec<usize> = (0..keyed.columns.len())
            .filter(|&i| !old.columns.iter().any(|o| o.name == was(&keyed.columns[i].name)))
            .filter(|&i| !target_only.contains(&keyed.columns[i].name))
            .collect();
        // A Relation carries no defaults and no NOT NULL: without the
        // catalog, a column added `NOT NULL DEFAULT 7` would arrive on the
        // target nullable and NULL in every existing row.
        if !added.is_empty() {
            let client = match source.take() {
                Some(c) => c,
                None => client::connect(&self.source_url, "xdb sync").await?,
            };
            if let Some(catalog) = load_table(&client, &mut TypeCache::new(), table).await? {
                for &i in &added {
                    if let Some(c) = catalog.columns.iter().find(|c| c.name == keyed.columns[i].name) {
                        let k = &mut keyed.columns[i];
                        k.nullable = c.nullable;
                        k.default = c.default.clone();
                        k.identity = c.identity;
                    }
                }
            }
            source = Some(client);
        }
        let new_mapped = Arc::new(
            mapping::map_table(&self.rules, &keyed, &self.overrides)
                .map_err(|e| SinkError::SchemaDrift(format!("schema change on {table}: {e}")))?,
        );
        let mut alters = Vec::new();
        for name in retyped {
            let Some(i) = keyed.column_index(name) else { continue };
            match self.follow_type_change(&current, &new_mapped, i) {
                Ok(Some(ddl)) => alters.push((name.to_string(), ddl)),
                Ok(None) => {}
                Err(stop) => problems.push(stop),
            }
        }
        if !problems.is_empty() {
            return Err(SinkError::SchemaDrift(format!("schema change on {table}: {}", problems.join("; "))));
        }
        if added.is_empty() && alters.is_empty() && renames.is_empty() {
            self.mapped.insert(table.clone(), new_mapped);
            return Ok(());
        }
        // Existing rows get a constant default from the target itself (the
        // column is added with it); any other default gave each source row a
        // value of its own (or, for `now()`, the ALTER's time), which only
        // the source knows: those columns are filled from it.
        let fill: Vec<usize> =
            added.iter().copied().filter(|&i| needs_fill(&keyed.columns[i], &new_mapped.columns[i])).collect();
        self.mapped.insert(table.clone(), new_mapped.clone());
        // MySQL commits DDL implicitly; elsewhere the columns and their
        // values land in one target transaction, so a failure (or a kill)
        // leaves neither and the restart does it all again.
        let transactional_ddl = !self.kind.is_mysql();
        if transactional_ddl {
            self.begin().await?;
        }
        let r = async {
            for (from, to) in &renames {
                let ddl = mapping::rename_column_ddl(&new_mapped, from, to, &self.kind);
                tracing::info!(table = %table, column = %to, "column renamed on the source: {ddl}");
                self.conn.execute_batch(&[ddl], &format!("renaming column {from} of {table} to {to}")).await?;
            }
            for (name, ddl) in &alters {
                tracing::info!(table = %table, column = %name, "column type changed on the source: {ddl}");
                self.conn
                    .execute_batch(std::slice::from_ref(ddl), &format!("changing the type of {name} in {table}"))
                    .await?;
            }
            for &i in &added {
                let name = &keyed.columns[i].name;
                let ddl = mapping::add_column_ddl(&new_mapped, i, &self.kind);
                tracing::info!(table = %table, column = %name, "column added on the source: {ddl}");
                self.conn.execute_batch(&[ddl], &format!("adding column {name} to {table}")).await?;
            }
            if !fill.is_empty() {
                if !transactional_ddl {
                    self.begin().await?;
                }
                let Some(source) = &source else { unreachable!("filled columns are added ones") };
                let filled = self.fill_added(&new_mapped, &fill, source).await;
                filled.map_err(|e| match e {
                    e @ SinkError::Fill { .. } => e,
                    e if transactional_ddl => e,
                    e => SinkError::Fill {
                        table: table.clone(),
                        column: fill.iter().map(|&i| keyed.columns[i].name.as_str()).collect::<Vec<_>>().join(", "),
                        reason: e.to_string(),
                        column_stays: true,
                    },
                })?;
            }
            if transactional_ddl || !fill.is_empty() {
                self.commit().await?;
            }
            Ok(())
        }
        .await;
        if r.is_err() {
            self.rollback().await;
            // The target does not have the columns (or not filled): the
            // mapping must not claim it does.
            self.mapped.insert(table.clone(), current);
        }
        r
    }

    /// How the target follows a type change of column `i` (of `new`; `old`
    /// has it under the same name): `Ok(None)` when the target column holds
    /// the new type's values as it is, `Ok(Some(ddl))` to change it, and
    /// `Err(text)` when xdb does not follow the change by itself, with the
    /// exact statement to run (invariant *schema drift*).
    ///
    /// Followed: changes that keep every source value as it is
    /// ([`mapping::type_keeps_values`]). Any other change rewrote the
    /// source's values in ways the target's own conversion need not match.
    fn follow_type_change(&self, old: &MappedTable, new: &MappedTable, i: usize) -> Result<Option<String>, String> {
        let n = &new.columns[i];
        let Some(o) = old.columns.iter().find(|o| o.name == n.name) else { return Ok(None) };
        let what = format!(
            "column {} changed type from {} to {} on the source",
            n.name,
            o.source_type.sql_name(),
            n.source_type.sql_name()
        );
        let same_on_target = o.target_type == n.target_type
            || (matches!(self.kind, TargetKind::Sqlite)
                && mapping::sqlite_affinity(&o.target_type) == mapping::sqlite_affinity(&n.target_type));
        let keeps = mapping::type_keeps_values(&o.source_type, &n.source_type);
        let stmt = mapping::alter_column_type_ddl(new, i, &self.kind);
        match (keeps, same_on_target, stmt) {
            (true, true, _) => Ok(None),
            (true, false, Some(ddl)) => Ok(Some(ddl)),
            (_, _, None) => Err(format!(
                "{what}, which the SQLite target cannot follow (its column is declared {}; the new type maps to {}). \
                 xdb stopped before applying any later change. To continue, recreate the table: stop `xdb sync`, \
                 drop it on the target (`DROP TABLE {}`), run `xdb snapshot --plan P` again, then `xdb sync`",
                o.target_type, n.target_type, new.target_ident
            )),
            (false, _, Some(ddl)) => Err(format!(
                "{what}; xdb follows by itself only changes that keep every value as it is (a wider integer, a \
                 longer varchar, varchar to text). xdb stopped before applying any later change. To continue, \
                 run on the target `` {ddl} `` (the statement between the double backquotes), then run `xdb sync` again; if PostgreSQL's conversion changed values, \
                 then also run `xdb validate --plan P --tables {} --repair`",
                old.source.name
            )),
        }
    }

    /// Gives the rows already on the target the source's values of the
    /// columns `cols` (positions in `mapped.source`), just added.
    ///
    /// The source is read as it is now, not as of the stream's position:
    /// every later change to a row is still to come on the stream, with the
    /// row's new image, and is applied after this. So only rows the target
    /// already has are updated, by key, and a count of zero is no error
    /// (not invariant *no silent no-op*: a row deleted on the source since
    /// is deleted by the stream, one inserted since is inserted by it), and
    /// each row ends with the source's value.
    async fn fill_added(
        &mut self,
        mapped: &Arc<MappedTable>,
        cols: &[usize],
        source: &tokio_postgres::Client,
    ) -> Result<(), SinkError> {
        let table = &mapped.source;
        let names = || cols.iter().map(|&i| table.columns[i].name.as_str()).collect::<Vec<_>>().join(", ");
        let column_stays = self.kind.is_mysql();
        let fail =
            |reason: String| SinkError::Fill { table: table.name.clone(), column: names(), reason, column_stays };
        if table.primary_key.is_empty() {
            return Err(fail("the table has no primary key to match the rows by".into()));
        }
        let keep: Vec<String> = table.primary_key.iter().chain(cols).map(|&i| table.columns[i].name.clone()).collect();
        let sub = table.restricted_to(&keep).ok_or_else(|| fail("the key is not among the columns read".into()))?;
        let at: Vec<usize> = sub.columns.iter().filter_map(|c| table.column_index(&c.name)).collect();
        let (select, types, unknown) = select_list(&sub);
        let sql = format!("COPY (SELECT {select} FROM {}) TO STDOUT (FORMAT binary)", table.name.pg_quoted());
        let stream = source.copy_out(sql.as_str()).await.map_err(|e| fail(error_text(&e)))?;
        let mut stream = std::pin::pin!(stream);
        let mut reader = CopyBinaryReader::new(types);
        let set_cols = cols.to_vec();
        while let Some(part) = stream.next().await {
            let part: Bytes = part.map_err(|e| fail(error_text(&e)))?;
            reader.feed(part);
            while let Some(mut r) = reader.next_row().map_err(|e| fail(e.to_string()))? {
                mark_unknown(&mut r, &unknown);
                let mut full: Row = vec![Value::Null; table.columns.len()];
                for (v, &i) in r.into_iter().zip(&at) {
                    full[i] = v;
                }
                let op = Op::UpdateByKey { table, set_cols: set_cols.clone(), new: &full, key_row: &full };
                self.run_op(&op).await?;
            }
        }
        reader.finish().map_err(|e| fail(e.to_string()))?;
        tracing::info!(table = %table.name, columns = %names(), rows = reader.rows_read(), "filled added columns from the source");
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

    /// Applies `txs` as merged statements, or with `one_by_one` one row per
    /// statement, transaction by transaction (errors then carry the commit
    /// LSN).
    async fn apply_ops(&mut self, txs: &[Transaction], one_by_one: bool) -> Result<(), SinkError> {
        if one_by_one {
            for tx in txs {
                let ops = self.plan(std::slice::from_ref(tx), OpLimits { max_params: 0 })?;
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
        let ops = split_pow2(self.plan(txs, self.limits)?);
        if matches!(self.conn, TargetConn::Postgres(_)) {
            return self.execute_ops_pipelined(&ops).await;
        }
        for op in &ops {
            self.execute_op(op).await?;
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
            let sql = d.render_with(op, &|n, col| mapped.pg_placeholder(n, col));
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

    fn plan<'a>(&self, txs: &'a [Transaction], limits: OpLimits) -> Result<Vec<Op<'a>>, ApplyPlanError> {
        let sync_lsn = &self.sync_lsn;
        let unique = &self.unique_columns;
        plan_ops(
            txs,
            limits,
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
                c.run_op(&d.render(op), op, params).await
            }
            TargetConn::Sqlite(c) => {
                let params = op_params(op, |row, cols| mapped.sqlite_params(row, cols))?;
                c.run_op(&d.render(op), op, params)
            }
            TargetConn::Postgres(c) => {
                let sql = d.render_with(op, &|n, col| mapped.pg_placeholder(n, col));
                let params = op_params(op, |row, cols| mapped.pg_params(row, cols))?;
                c.run_op(&sql, op, params).await
            }
        };
        let n = r.map_err(|e| self.conn.err(&format!("applying changes to {}", table.name), e))?;
        Ok(n)
    }
}

/// True when a column just added on the source must be filled from the
/// source's rows (see [`SinkWriter::relation_changed`]): an identity, a
/// non-constant default, or a constant one the target column does not get.
fn needs_fill(source: &Column, target: &mapping::MappedColumn) -> bool {
    match &source.default {
        _ if source.identity => true,
        None => false,
        Some(d) => !mapping::is_constant_default(d) || target.default.is_none(),
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
        Op::ExpectRows { keys, op, .. } => (op, keys.len(), keys.iter().map(|k| key(k)).collect()),
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

//! Turns a group of whole source transactions into the statements a sink
//! runs in one target transaction.
//!
//! Invariants kept here (docs/architecture.md: *commit order*, *TOAST*, *keys*):
//! - statements come out in source commit order; runs of the same kind on
//!   the same table are merged only when they are adjacent, so no change
//!   moves past another. A multi-row statement writes its rows in list
//!   order, one unique check per row, as the source did. The one exception
//!   is [`ChangeOrder::ByTable`], for a group whose tables nothing on the
//!   target relates (no foreign key, no trigger): each table's changes
//!   keep their order, and no statement can see the order between tables;
//! - two changes to the same key inside one upsert run are folded into one
//!   row only when no unique index can tell: the primary key never can (an
//!   upsert by key touches only its own row), and a secondary unique index
//!   cannot when both rows hold the same values in every column of such an
//!   index; the folded row then takes the place of the *first* one, where
//!   the source made those values its own. Otherwise a new statement starts
//!   there and the source's order is kept row by row (a swap of unique
//!   values inside one transaction applies as it did on the source);
//! - an UPDATE that marks columns unchanged-TOAST sets only the columns it
//!   carries, so the target keeps its value of the others;
//! - an UPDATE that changes the key rewrites the row found by its old key;
//! - a table without a primary key (REPLICA IDENTITY FULL) is matched on all
//!   its old values, one row at a time;
//! - nothing is skipped silently: an upsert run that updates rows is
//!   preceded by an [`Op::ExpectRows`] check that they are there (else the
//!   upsert would insert a row the target had lost; a run of one UPDATE
//!   becomes a plain [`Op::UpdateByKey`] instead), and the sink checks that
//!   every other UPDATE and DELETE matched its rows.
//!
//! Nothing here does I/O: a sink renders each [`Op`] with its dialect and
//! binds the values in [`Op::params`] order.

use std::sync::Arc;

use crate::model::{Change, Row, TableSchema, Transaction, Value};

/// One statement's worth of work.
#[derive(Debug, Clone, PartialEq)]
pub enum Op<'a> {
    /// Insert rows, or overwrite the rows with the same key (all columns).
    Upsert { table: &'a Arc<TableSchema>, rows: Vec<&'a Row> },
    /// Plain insert (tables without a key cannot upsert).
    Insert { table: &'a Arc<TableSchema>, rows: Vec<&'a Row> },
    /// Set `set_cols` of `new` on the row whose key columns equal `key_row`'s.
    UpdateByKey { table: &'a Arc<TableSchema>, set_cols: Vec<usize>, new: &'a Row, key_row: &'a Row },
    /// Delete the rows with these keys.
    DeleteByKey { table: &'a Arc<TableSchema>, keys: Vec<&'a Row> },
    /// Keyless table: update one row equal to `old` in every column.
    UpdateOneMatching { table: &'a Arc<TableSchema>, set_cols: Vec<usize>, new: &'a Row, old: &'a Row },
    /// Keyless table: delete one row equal to `old` in every column.
    DeleteOneMatching { table: &'a Arc<TableSchema>, old: &'a Row },
    /// Delete every row of the table.
    Truncate { table: &'a Arc<TableSchema> },
    /// Check, without changing anything, that a row with each of these keys
    /// is on the target (the rows an upsert run updates; `op` names the
    /// source change for the message when one is missing).
    ExpectRows { table: &'a Arc<TableSchema>, keys: Vec<&'a Row>, op: &'static str },
}

/// Like [`split_pow2`], but an upsert or a row check whose size is not a
/// power of two is padded up to the next one by repeating its last row or
/// key, as long as that fits `limits`: one statement instead of up to
/// log2(n) pieces, each a round trip on a target without pipelining
/// (MySQL/MariaDB), and statement texts still few. Exact for these two
/// only: an upsert of the same row again sets the values it just set (the
/// row is unchanged, the server logs nothing for it), and a row check
/// counts rows, not keys (`IN` lists ignore repeats; its expected count is
/// the distinct keys). Inserts and deletes are split as before. For groups
/// no trigger can see (the same upsert firing twice would be visible to
/// one): [`ChangeOrder::ByTable`]'s condition.
pub fn pad_pow2(ops: Vec<Op<'_>>, limits: OpLimits) -> Vec<Op<'_>> {
    let fits = |rows: usize, width: usize| rows.next_power_of_two() * width <= limits.max_params;
    let pad = |v: &mut Vec<&Row>| {
        let last = *v.last().expect("a statement has rows");
        v.resize(v.len().next_power_of_two(), last);
    };
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::Upsert { table, mut rows } if fits(rows.len(), table.columns.len()) => {
                pad(&mut rows);
                out.push(Op::Upsert { table, rows });
            }
            Op::ExpectRows { table, mut keys, op } if fits(keys.len(), table.primary_key.len()) => {
                pad(&mut keys);
                out.push(Op::ExpectRows { table, keys, op });
            }
            other => out.extend(split_pow2(vec![other])),
        }
    }
    out
}

/// Splits multi-row statements into pieces whose sizes are powers of two
/// (in order: 1000 rows become 512, 256, 128, 64, 32, 8). Statement text
/// depends on the row count, and targets cache prepared statements by text:
/// without this, every distinct batch size is another cached statement
/// (hundreds of MB of SQLite statement cache under a steady load).
pub fn split_pow2(ops: Vec<Op<'_>>) -> Vec<Op<'_>> {
    fn pieces<T>(mut v: Vec<T>) -> Vec<Vec<T>> {
        let mut out = Vec::new();
        while !v.is_empty() {
            let size = 1usize << (usize::BITS - 1 - v.len().leading_zeros());
            let rest = v.split_off(size);
            out.push(std::mem::replace(&mut v, rest));
        }
        out
    }
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::Upsert { table, rows } if !rows.len().is_power_of_two() => {
                out.extend(pieces(rows).into_iter().map(|rows| Op::Upsert { table, rows }))
            }
            Op::Insert { table, rows } if !rows.len().is_power_of_two() => {
                out.extend(pieces(rows).into_iter().map(|rows| Op::Insert { table, rows }))
            }
            Op::DeleteByKey { table, keys } if !keys.len().is_power_of_two() => {
                out.extend(pieces(keys).into_iter().map(|keys| Op::DeleteByKey { table, keys }))
            }
            Op::ExpectRows { table, keys, op } if !keys.len().is_power_of_two() => {
                out.extend(pieces(keys).into_iter().map(|keys| Op::ExpectRows { table, keys, op }))
            }
            other => out.push(other),
        }
    }
    out
}

/// A change could not be turned into a statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyPlanError {
    #[error(
        "{table}: an {op} arrived without the old row, and the table has no primary key: \
         set ALTER TABLE {table} REPLICA IDENTITY FULL on the source (or add a primary key)"
    )]
    NoIdentity { table: String, op: &'static str },
}

impl<'a> Op<'a> {
    /// The table the statement touches.
    pub fn table(&self) -> &'a Arc<TableSchema> {
        match self {
            Op::Upsert { table, .. }
            | Op::Insert { table, .. }
            | Op::UpdateByKey { table, .. }
            | Op::DeleteByKey { table, .. }
            | Op::UpdateOneMatching { table, .. }
            | Op::DeleteOneMatching { table, .. }
            | Op::ExpectRows { table, .. }
            | Op::Truncate { table } => table,
        }
    }

    /// The values to bind, in placeholder order, with their column index.
    pub fn params(&self) -> Vec<(usize, &'a Value)> {
        let mut out = Vec::new();
        match self {
            Op::Upsert { rows, .. } | Op::Insert { rows, .. } => {
                for r in rows {
                    out.extend(r.iter().enumerate());
                }
            }
            Op::UpdateByKey { table, set_cols, new, key_row } => {
                out.extend(set_cols.iter().map(|&i| (i, &new[i])));
                out.extend(table.primary_key.iter().map(|&i| (i, &key_row[i])));
            }
            Op::DeleteByKey { table, keys } | Op::ExpectRows { table, keys, .. } => {
                for k in keys {
                    out.extend(table.primary_key.iter().map(|&i| (i, &k[i])));
                }
            }
            Op::UpdateOneMatching { set_cols, new, old, .. } => {
                out.extend(set_cols.iter().map(|&i| (i, &new[i])));
                out.extend(old.iter().enumerate());
            }
            Op::DeleteOneMatching { old, .. } => out.extend(old.iter().enumerate()),
            Op::Truncate { .. } => {}
        }
        out
    }

    /// How many values [`params`](Self::params) binds, without collecting them.
    pub fn param_count(&self) -> usize {
        match self {
            Op::Upsert { table, rows } | Op::Insert { table, rows } => rows.len() * table.columns.len(),
            Op::UpdateByKey { table, set_cols, .. } => set_cols.len() + table.primary_key.len(),
            Op::DeleteByKey { table, keys } | Op::ExpectRows { table, keys, .. } => {
                keys.len() * table.primary_key.len()
            }
            Op::UpdateOneMatching { table, set_cols, .. } => set_cols.len() + table.columns.len(),
            Op::DeleteOneMatching { table, .. } => table.columns.len(),
            Op::Truncate { .. } => 0,
        }
    }

    /// Rows this statement stands for (for batch sizing and metrics).
    pub fn row_count(&self) -> usize {
        match self {
            Op::Upsert { rows, .. } | Op::Insert { rows, .. } => rows.len(),
            Op::DeleteByKey { keys, .. } => keys.len(),
            Op::ExpectRows { .. } => 0,
            _ => 1,
        }
    }
}

/// Limits on how many rows one merged statement may carry (placeholders
/// are limited: SQLite 32766, PostgreSQL 65535, MySQL 65535).
#[derive(Debug, Clone, Copy)]
pub struct OpLimits {
    pub max_params: usize,
}

impl Default for OpLimits {
    fn default() -> Self {
        OpLimits { max_params: 30_000 }
    }
}

fn key_changed(table: &TableSchema, old: &Row, new: &Row) -> bool {
    table.primary_key.iter().any(|&i| old[i] != new[i])
}

/// The key values of a row as a map key (values are not `Hash`).
fn key_text(table: &TableSchema, row: &Row) -> String {
    format!("{:?}", table.primary_key.iter().map(|&i| &row[i]).collect::<Vec<_>>())
}

/// The upsert run being built at the end of the op list: where each key
/// sits in it, and which keys it must find on the target (their first
/// change in the run is an UPDATE).
#[derive(Default)]
struct UpsertRun<'a> {
    /// Index of the run's op in the list; `None` when the last op is not an
    /// open upsert run.
    op: Option<usize>,
    rows_by_key: std::collections::HashMap<String, usize>,
    must_exist: Vec<&'a Row>,
}

/// Ends the open upsert run (if any), noting its check, and pushes `op`.
fn push<'a>(ops: &mut Vec<Op<'a>>, run: &mut UpsertRun<'a>, checks: &mut Vec<(usize, Vec<&'a Row>)>, op: Op<'a>) {
    push_end(run, checks);
    ops.push(op);
}

/// Ends the open upsert run (if any), noting its check.
fn push_end<'a>(run: &mut UpsertRun<'a>, checks: &mut Vec<(usize, Vec<&'a Row>)>) {
    if let Some(i) = run.op.take() {
        if !run.must_exist.is_empty() {
            checks.push((i, std::mem::take(&mut run.must_exist)));
        }
        run.rows_by_key.clear();
    }
}

/// The order in which [`plan_ops`] takes a group's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOrder {
    /// Commit order, change by change.
    Source,
    /// Table by table (in the order each table first appears), commit order
    /// within each table. Only for a group applied in one target
    /// transaction whose tables nothing on the target relates — no foreign
    /// key either way, no trigger — so that no statement can see another
    /// table's changes: every unique check still sees its own table as the
    /// source order leaves it, and the committed state is the same. It
    /// lets the changes of one table merge into a few statements when
    /// transactions touch several tables (an INSERT here, an UPDATE there,
    /// each transaction), instead of one statement per change: on a target
    /// without pipelining that is one round trip per change. A group with
    /// a TRUNCATE (which may name several tables) keeps source order.
    ByTable,
}

/// The statements for `txs`, in commit order (or, with
/// [`ChangeOrder::ByTable`], table by table). `skip` decides, per table and
/// transaction, whether a change is already on the target (per-table sync
/// LSN). `unique_cols` gives the columns of a table that some secondary
/// unique index on the target covers (empty when it has none): they decide
/// whether two changes to one key may be folded (module doc).
pub fn plan_ops<'a>(
    txs: &'a [Transaction],
    limits: OpLimits,
    order: ChangeOrder,
    skip: impl Fn(&TableSchema, &Transaction) -> bool,
    unique_cols: impl Fn(&TableSchema) -> Vec<usize>,
) -> Result<Vec<Op<'a>>, ApplyPlanError> {
    let mut p = Planned { limits, ..Planned::default() };
    for (tx, change) in ordered(txs, order) {
        match change {
            Change::Insert { table, new } if !skip(table, tx) => p.insert(table, new, &unique_cols),
            Change::Update { table, old, new, unchanged_toast } if !skip(table, tx) => {
                p.update(table, old.as_ref(), new, unchanged_toast, &unique_cols)?
            }
            Change::Delete { table, old } if !skip(table, tx) => p.delete(table, old),
            Change::Truncate { tables, .. } => {
                for table in tables.iter().filter(|t| !skip(t, tx)) {
                    push(&mut p.ops, &mut p.run, &mut p.checks, Op::Truncate { table });
                }
            }
            _ => {}
        }
    }
    push_end(&mut p.run, &mut p.checks);
    Ok(place_checks(p.ops, p.checks))
}

/// The group's changes, each with its transaction, in `order`.
fn ordered(txs: &[Transaction], order: ChangeOrder) -> Vec<(&Transaction, &Change)> {
    let changes = txs.iter().flat_map(|tx| tx.changes.iter().map(move |c| (tx, c)));
    let truncates = txs.iter().flat_map(|t| &t.changes).any(|c| matches!(c, Change::Truncate { .. }));
    if order == ChangeOrder::Source || truncates {
        return changes.collect();
    }
    // Each change ranked once by its table's first appearance, then a
    // stable sort: commit order within each table.
    let mut rank: std::collections::HashMap<&crate::model::TableName, usize> = Default::default();
    let mut ranked: Vec<(usize, (&Transaction, &Change))> = changes
        .map(|(tx, c)| {
            let next = rank.len();
            let r = match c {
                Change::Insert { table, .. } | Change::Update { table, .. } | Change::Delete { table, .. } => {
                    *rank.entry(&table.name).or_insert(next)
                }
                // Not here: a group with a TRUNCATE keeps source order.
                Change::Truncate { .. } => usize::MAX,
            };
            (r, (tx, c))
        })
        .collect();
    ranked.sort_by_key(|(r, _)| *r);
    ranked.into_iter().map(|(_, tc)| tc).collect()
}

/// The statements planned so far, the open upsert run and the checks it
/// needs.
#[derive(Default)]
struct Planned<'a> {
    ops: Vec<Op<'a>>,
    /// Checks to run before the upsert at an op index.
    checks: Vec<(usize, Vec<&'a Row>)>,
    run: UpsertRun<'a>,
    uniques: std::collections::HashMap<*const TableSchema, Vec<usize>>,
    limits: OpLimits,
}

impl<'a> Planned<'a> {
    fn insert(&mut self, table: &'a Arc<TableSchema>, new: &'a Row, unique_cols: &impl Fn(&TableSchema) -> Vec<usize>) {
        if table.primary_key.is_empty() {
            let width = table.columns.len().max(1);
            match self.ops.last_mut() {
                Some(Op::Insert { table: t, rows })
                    if Arc::ptr_eq(t, table) && (rows.len() + 1) * width <= self.limits.max_params =>
                {
                    rows.push(new)
                }
                _ => push(&mut self.ops, &mut self.run, &mut self.checks, Op::Insert { table, rows: vec![new] }),
            }
            return;
        }
        let uniq = self.uniques.entry(Arc::as_ptr(table)).or_insert_with(|| unique_cols(table));
        add_to_upsert_run(&mut self.ops, &mut self.run, &mut self.checks, self.limits, table, new, false, uniq);
    }

    fn update(
        &mut self,
        table: &'a Arc<TableSchema>,
        old: Option<&'a Row>,
        new: &'a Row,
        unchanged_toast: &[usize],
        unique_cols: &impl Fn(&TableSchema) -> Vec<usize>,
    ) -> Result<(), ApplyPlanError> {
        let set_cols = || (0..table.columns.len()).filter(|i| !unchanged_toast.contains(i)).collect();
        if table.primary_key.is_empty() {
            let Some(old) = old else {
                return Err(ApplyPlanError::NoIdentity { table: table.name.to_string(), op: "UPDATE" });
            };
            let op = Op::UpdateOneMatching { table, set_cols: set_cols(), new, old };
            push(&mut self.ops, &mut self.run, &mut self.checks, op);
            return Ok(());
        }
        let old_key = old.filter(|o| key_changed(table, o, new));
        if old_key.is_none() && unchanged_toast.is_empty() {
            // Whole row known and key unchanged: part of an upsert run.
            let uniq = self.uniques.entry(Arc::as_ptr(table)).or_insert_with(|| unique_cols(table));
            add_to_upsert_run(&mut self.ops, &mut self.run, &mut self.checks, self.limits, table, new, true, uniq);
        } else {
            let op = Op::UpdateByKey { table, set_cols: set_cols(), new, key_row: old_key.unwrap_or(new) };
            push(&mut self.ops, &mut self.run, &mut self.checks, op);
        }
        Ok(())
    }

    fn delete(&mut self, table: &'a Arc<TableSchema>, old: &'a Row) {
        if table.primary_key.is_empty() {
            push(&mut self.ops, &mut self.run, &mut self.checks, Op::DeleteOneMatching { table, old });
            return;
        }
        // Deletes cannot break a unique index: merging them keeps the final state.
        let width = table.primary_key.len();
        match self.ops.last_mut() {
            Some(Op::DeleteByKey { table: t, keys })
                if Arc::ptr_eq(t, table) && (keys.len() + 1) * width <= self.limits.max_params =>
            {
                keys.push(old)
            }
            _ => push(&mut self.ops, &mut self.run, &mut self.checks, Op::DeleteByKey { table, keys: vec![old] }),
        }
    }
}

/// Each check goes right before its upsert: it must see the target as the
/// statements before it left it.
fn place_checks<'a>(ops: Vec<Op<'a>>, checks: Vec<(usize, Vec<&'a Row>)>) -> Vec<Op<'a>> {
    if checks.is_empty() {
        return ops;
    }
    let mut out = Vec::with_capacity(ops.len() + checks.len());
    let mut checks = checks.into_iter().peekable();
    for (i, op) in ops.into_iter().enumerate() {
        if checks.peek().is_some_and(|(at, _)| *at == i) {
            let (_, keys) = checks.next().expect("peeked");
            match op {
                // A lone UPDATE: one plain UPDATE by key, whose affected rows
                // tell, instead of a check and an upsert (the common OLTP case).
                Op::Upsert { table, rows } if rows.len() == 1 => {
                    let non_key: Vec<usize> =
                        (0..table.columns.len()).filter(|i| !table.primary_key.contains(i)).collect();
                    let set_cols = if non_key.is_empty() { table.primary_key.clone() } else { non_key };
                    out.push(Op::UpdateByKey { table, set_cols, new: rows[0], key_row: rows[0] });
                }
                op => {
                    out.push(Op::ExpectRows { table: op.table(), keys, op: "UPDATE" });
                    out.push(op);
                }
            }
            continue;
        }
        out.push(op);
    }
    out
}

/// Adds `new` (an INSERT, or an UPDATE of the whole row that keeps its key)
/// to the upsert run at the end of `ops`, or starts a new run. A key
/// already in the run is folded into its earlier row when the two agree on
/// every column in `uniq` (no unique index can see the difference);
/// otherwise the run ends there and source order is kept.
#[allow(clippy::too_many_arguments)]
fn add_to_upsert_run<'a>(
    ops: &mut Vec<Op<'a>>,
    run: &mut UpsertRun<'a>,
    checks: &mut Vec<(usize, Vec<&'a Row>)>,
    limits: OpLimits,
    table: &'a Arc<TableSchema>,
    new: &'a Row,
    is_update: bool,
    uniq: &[usize],
) {
    let width = table.columns.len().max(1);
    let key = key_text(table, new);
    let open = run.op.is_some() && run.op == ops.len().checked_sub(1);
    if let (true, Some(Op::Upsert { table: t, rows })) = (open, ops.last_mut()) {
        if Arc::ptr_eq(t, table) {
            match run.rows_by_key.get(&key) {
                Some(&at) if uniq.iter().all(|&c| rows[at][c] == new[c]) => {
                    // Same key, same unique values: only the last row matters, and it
                    // takes effect where the first did. (PostgreSQL also refuses to
                    // touch a row twice in one INSERT … ON CONFLICT DO UPDATE.)
                    rows[at] = new;
                    return;
                }
                Some(_) => {}
                None if (rows.len() + 1) * width <= limits.max_params => {
                    run.rows_by_key.insert(key, rows.len());
                    rows.push(new);
                    if is_update {
                        run.must_exist.push(new);
                    }
                    return;
                }
                None => {}
            }
        }
    }
    push(ops, run, checks, Op::Upsert { table, rows: vec![new] });
    run.op = Some(ops.len() - 1);
    run.rows_by_key.insert(key, 0);
    if is_update {
        run.must_exist.push(new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, Lsn, PgType, ReplicaIdentity, TableName};

    fn table(name: &str, keyed: bool) -> Arc<TableSchema> {
        let col =
            |n: &str, key: bool| Column { type_oid: 20, nullable: !key, is_key: key, ..Column::new(n, PgType::Int8) };
        Arc::new(TableSchema {
            oid: 1,
            name: TableName::new("public", name),
            columns: vec![col("id", keyed), col("v", false)],
            replica_identity: if keyed { ReplicaIdentity::Default } else { ReplicaIdentity::Full },
            primary_key: if keyed { vec![0] } else { vec![] },
            generated: Vec::new(),
        })
    }

    fn row(a: i64, b: i64) -> Row {
        vec![Value::Int8(a), Value::Int8(b)]
    }

    #[test]
    fn splits_into_powers_of_two_in_order() {
        let t = table("t", true);
        let rows: Vec<Row> = (0..1000).map(|i| row(i, i)).collect();
        let ops = split_pow2(vec![Op::Upsert { table: &t, rows: rows.iter().collect() }]);
        let sizes: Vec<usize> =
            ops.iter().map(|o| if let Op::Upsert { rows, .. } = o { rows.len() } else { 0 }).collect();
        assert_eq!(sizes, vec![512, 256, 128, 64, 32, 8]);
        let order: Vec<&Row> =
            ops.iter().flat_map(|o| if let Op::Upsert { rows, .. } = o { rows.clone() } else { vec![] }).collect();
        assert!(order.iter().zip(rows.iter()).all(|(a, b)| *a == b) && order.len() == 1000, "order kept");
    }

    #[test]
    fn pads_upserts_and_checks_to_a_power_of_two_and_splits_the_rest() {
        let t = table("t", true);
        let rows: Vec<Row> = (0..11).map(|i| row(i, i)).collect();
        let all: Vec<&Row> = rows.iter().collect();
        let ops = vec![
            Op::ExpectRows { table: &t, keys: all.clone(), op: "UPDATE" },
            Op::Upsert { table: &t, rows: all.clone() },
            Op::DeleteByKey { table: &t, keys: all.clone() },
            Op::Insert { table: &t, rows: all[..3].to_vec() },
        ];
        let padded = pad_pow2(ops, OpLimits::default());
        let shape: Vec<(&str, usize)> = padded
            .iter()
            .map(|o| match o {
                Op::ExpectRows { keys, .. } => ("check", keys.len()),
                Op::Upsert { rows, .. } => ("upsert", rows.len()),
                Op::DeleteByKey { keys, .. } => ("delete", keys.len()),
                Op::Insert { rows, .. } => ("insert", rows.len()),
                _ => ("other", 0),
            })
            .collect();
        // A repeated delete would find nothing (its count is checked), a
        // repeated insert would be a second row: those two are split.
        assert_eq!(
            shape,
            [("check", 16), ("upsert", 16), ("delete", 8), ("delete", 2), ("delete", 1), ("insert", 2), ("insert", 1)]
        );
        // The padding is the last row again, by reference, after the rows in order.
        let Op::Upsert { rows: up, .. } = &padded[1] else { unreachable!() };
        assert!(up[..11].iter().zip(&all).all(|(a, b)| std::ptr::eq(*a, *b)));
        assert!(up[11..].iter().all(|r| std::ptr::eq(*r, all[10])));
        // Too wide to pad within the limits: split as before.
        let narrow = pad_pow2(vec![Op::Upsert { table: &t, rows: all.clone() }], OpLimits { max_params: 30 });
        assert_eq!(narrow.len(), 3, "{narrow:?}");
    }

    fn tx(changes: Vec<Change>) -> Transaction {
        Transaction { xid: 1, commit_lsn: Lsn(10), end_lsn: Lsn(11), commit_time_micros: 0, changes }
    }

    #[test]
    fn merges_adjacent_runs_only() {
        let t = table("t", true);
        let txs = vec![
            tx(vec![
                Change::Insert { table: t.clone(), new: row(1, 1) },
                Change::Insert { table: t.clone(), new: row(2, 2) },
                Change::Delete { table: t.clone(), old: row(1, 0) },
                Change::Insert { table: t.clone(), new: row(1, 5) },
            ]),
            tx(vec![Change::Update { table: t.clone(), old: None, new: row(1, 6), unchanged_toast: vec![] }]),
        ];
        let ops = plan_ops(&txs, OpLimits::default(), ChangeOrder::Source, |_, _| false, |_| vec![]).unwrap();
        assert_eq!(ops.len(), 3, "{ops:?}");
        assert!(matches!(&ops[0], Op::Upsert { rows, .. } if rows.len() == 2));
        assert!(matches!(&ops[1], Op::DeleteByKey { keys, .. } if keys.len() == 1));
        // The re-insert and the later update of key 1 fold into its final row.
        assert!(matches!(&ops[2], Op::Upsert { rows, .. } if rows.len() == 1 && rows[0][1] == Value::Int8(6)));
    }

    /// Each transaction an INSERT into `a` and an UPDATE of `b`: in commit
    /// order one statement per change; table by table, one run per table,
    /// each in its own commit order (the UPDATEs keep their check).
    #[test]
    fn by_table_order_merges_each_tables_changes_in_their_order() {
        let (a, b) = (table("a", true), table("b", true));
        let txs: Vec<Transaction> = (0..4)
            .map(|i| {
                tx(vec![
                    Change::Insert { table: a.clone(), new: row(i, i) },
                    Change::Update { table: b.clone(), old: None, new: row(i, 10 + i), unchanged_toast: vec![] },
                ])
            })
            .collect();
        let source = plan_ops(&txs, OpLimits::default(), ChangeOrder::Source, |_, _| false, |_| vec![]).unwrap();
        assert_eq!(source.len(), 8, "{source:?}");
        let by_table = plan_ops(&txs, OpLimits::default(), ChangeOrder::ByTable, |_, _| false, |_| vec![]).unwrap();
        assert_eq!(by_table.len(), 3, "{by_table:?}");
        let ids = |rows: &Vec<&Row>| rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>();
        let all: Vec<Value> = (0..4).map(Value::Int8).collect();
        assert!(matches!(&by_table[0], Op::Upsert { table, rows } if table.name.name == "a" && ids(rows) == all));
        assert!(
            matches!(&by_table[1], Op::ExpectRows { table, keys, .. } if table.name.name == "b" && ids(keys) == all)
        );
        assert!(matches!(&by_table[2], Op::Upsert { table, rows } if table.name.name == "b" && ids(rows) == all));
    }

    /// A TRUNCATE can name several tables: such a group keeps commit order.
    #[test]
    fn by_table_order_keeps_commit_order_around_a_truncate() {
        let (a, b) = (table("a", true), table("b", true));
        let txs = vec![tx(vec![
            Change::Insert { table: a.clone(), new: row(1, 1) },
            Change::Insert { table: b.clone(), new: row(1, 1) },
            Change::Truncate { tables: vec![a.clone(), b.clone()], cascade: false, restart_identity: false },
            Change::Insert { table: a.clone(), new: row(2, 2) },
        ])];
        let names = |ops: Vec<Op<'_>>| ops.iter().map(|o| o.table().name.name.clone()).collect::<Vec<_>>();
        let source = plan_ops(&txs, OpLimits::default(), ChangeOrder::Source, |_, _| false, |_| vec![]).unwrap();
        let by_table = plan_ops(&txs, OpLimits::default(), ChangeOrder::ByTable, |_, _| false, |_| vec![]).unwrap();
        assert_eq!(names(by_table), names(source));
    }

    #[test]
    fn toast_and_key_changes_update_by_old_key() {
        let t = table("t", true);
        let txs = vec![tx(vec![
            Change::Update { table: t.clone(), old: None, new: row(1, 0), unchanged_toast: vec![1] },
            Change::Update { table: t.clone(), old: Some(row(1, 0)), new: row(2, 9), unchanged_toast: vec![] },
        ])];
        let ops = plan_ops(&txs, OpLimits::default(), ChangeOrder::Source, |_, _| false, |_| vec![]).unwrap();
        match &ops[0] {
            Op::UpdateByKey { set_cols, .. } => assert_eq!(set_cols, &vec![0]),
            o => panic!("{o:?}"),
        }
        match &ops[1] {
            Op::UpdateByKey { key_row, new, .. } => {
                assert_eq!(key_row[0], Value::Int8(1));
                assert_eq!(new[0], Value::Int8(2));
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(
            ops[1].params().iter().map(|(_, v)| (*v).clone()).collect::<Vec<_>>(),
            vec![Value::Int8(2), Value::Int8(9), Value::Int8(1)]
        );
    }

    #[test]
    fn keyless_tables_match_whole_rows_and_need_the_old_row() {
        let t = table("k", false);
        let ok = vec![tx(vec![
            Change::Insert { table: t.clone(), new: row(1, 1) },
            Change::Delete { table: t.clone(), old: row(1, 1) },
        ])];
        let ops = plan_ops(&ok, OpLimits::default(), ChangeOrder::Source, |_, _| false, |_| vec![]).unwrap();
        assert!(matches!(ops[0], Op::Insert { .. }));
        assert!(matches!(ops[1], Op::DeleteOneMatching { .. }));
        let bad =
            vec![tx(vec![Change::Update { table: t.clone(), old: None, new: row(1, 2), unchanged_toast: vec![] }])];
        let e = plan_ops(&bad, OpLimits::default(), ChangeOrder::Source, |_, _| false, |_| vec![]).unwrap_err();
        assert!(e.to_string().contains("REPLICA IDENTITY FULL"), "{e}");
    }

    fn upd(t: &Arc<TableSchema>, id: i64, v: i64) -> Change {
        Change::Update { table: t.clone(), old: None, new: row(id, v), unchanged_toast: vec![] }
    }

    fn shape(ops: &[Op<'_>]) -> Vec<String> {
        ops.iter()
            .map(|o| {
                let show = |rows: &Vec<&Row>| {
                    rows.iter().map(|r| format!("{:?}", (&r[0], &r[1]))).collect::<Vec<_>>().join(" ")
                };
                match o {
                    Op::Upsert { rows, .. } => format!("upsert {}", show(rows)),
                    Op::ExpectRows { keys, .. } => format!("expect {}", show(keys)),
                    Op::DeleteByKey { keys, .. } => format!("delete {}", show(keys)),
                    Op::UpdateByKey { new, key_row, set_cols, .. } if new == key_row && set_cols == &vec![1] => {
                        format!("update {}", show(&vec![*new]))
                    }
                    other => format!("{other:?}"),
                }
            })
            .collect()
    }

    /// The issue-14 swap: column v is UNIQUE on the target. Folding row 1
    /// into its last state would write (2, 1) while row 1 still holds 1.
    #[test]
    fn a_unique_swap_keeps_source_order() {
        let t = table("t", true);
        let txs = vec![tx(vec![upd(&t, 1, 3), upd(&t, 2, 1), upd(&t, 1, 2)])];
        let ops = plan_ops(&txs, OpLimits::default(), ChangeOrder::Source, |_, _| false, |_| vec![1]).unwrap();
        let i = |v| Value::Int8(v);
        assert_eq!(
            shape(&ops),
            vec![
                format!("expect {:?} {:?}", (&i(1), &i(3)), (&i(2), &i(1))),
                format!("upsert {:?} {:?}", (&i(1), &i(3)), (&i(2), &i(1))),
                format!("update {:?}", (&i(1), &i(2))),
            ]
        );
        // Without a secondary unique index the key folds, in place of its first row.
        let ops = plan_ops(&txs, OpLimits::default(), ChangeOrder::Source, |_, _| false, |_| vec![]).unwrap();
        assert_eq!(
            shape(&ops),
            vec![
                format!("expect {:?} {:?}", (&i(1), &i(3)), (&i(2), &i(1))),
                format!("upsert {:?} {:?}", (&i(1), &i(2)), (&i(2), &i(1))),
            ]
        );
    }

    #[test]
    fn same_unique_values_fold_and_inserted_rows_need_no_check() {
        let t = table("t", true);
        let txs = vec![
            tx(vec![Change::Insert { table: t.clone(), new: row(7, 1) }, upd(&t, 8, 2)]),
            tx(vec![upd(&t, 7, 1), upd(&t, 8, 2), upd(&t, 8, 2)]),
        ];
        let ops = plan_ops(&txs, OpLimits::default(), ChangeOrder::Source, |_, _| false, |_| vec![1]).unwrap();
        let i = |v| Value::Int8(v);
        assert_eq!(
            shape(&ops),
            vec![format!("expect {:?}", (&i(8), &i(2))), format!("upsert {:?} {:?}", (&i(7), &i(1)), (&i(8), &i(2))),]
        );
        // One row per statement (the sink's way of naming a missing row).
        let ops = plan_ops(&txs, OpLimits { max_params: 0 }, ChangeOrder::Source, |_, _| false, |_| vec![]).unwrap();
        assert!(ops.iter().all(|o| o.row_count() <= 1), "{ops:?}");
        let merged = plan_ops(&txs, OpLimits::default(), ChangeOrder::Source, |_, _| false, |_| vec![]).unwrap();
        for op in ops.iter().chain(&merged) {
            assert_eq!(op.param_count(), op.params().len(), "{op:?}");
        }
    }

    #[test]
    fn skipped_tables_and_param_limits() {
        let t = table("t", true);
        let changes = (0..10).map(|i| Change::Insert { table: t.clone(), new: row(i, i) }).collect();
        let txs = vec![tx(changes)];
        let ops = plan_ops(&txs, OpLimits { max_params: 6 }, ChangeOrder::Source, |_, _| false, |_| vec![]).unwrap();
        assert_eq!(ops.iter().map(Op::row_count).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
        assert!(plan_ops(&txs, OpLimits::default(), ChangeOrder::Source, |_, _| true, |_| vec![]).unwrap().is_empty());
    }
}

//! Turns a group of whole source transactions into the statements a sink
//! runs in one target transaction.
//!
//! Invariants kept here (docs/architecture.md: *commit order*, *TOAST*, *keys*):
//! - statements come out in source commit order; runs of the same kind on
//!   the same table are merged only when they are adjacent, so no change
//!   moves past another;
//! - an UPDATE that marks columns unchanged-TOAST sets only the columns it
//!   carries, so the target keeps its value of the others;
//! - an UPDATE that changes the key rewrites the row found by its old key;
//! - a table without a primary key (REPLICA IDENTITY FULL) is matched on all
//!   its old values, one row at a time.
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
            Op::DeleteByKey { table, keys } => {
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

    /// Rows this statement stands for (for batch sizing and metrics).
    pub fn row_count(&self) -> usize {
        match self {
            Op::Upsert { rows, .. } | Op::Insert { rows, .. } => rows.len(),
            Op::DeleteByKey { keys, .. } => keys.len(),
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

/// The statements for `txs`, in commit order. `skip` decides, per table and
/// transaction, whether a change is already on the target (per-table sync LSN).
pub fn plan_ops<'a>(
    txs: &'a [Transaction],
    limits: OpLimits,
    skip: impl Fn(&TableSchema, &Transaction) -> bool,
) -> Result<Vec<Op<'a>>, ApplyPlanError> {
    let mut ops: Vec<Op<'a>> = Vec::new();
    for tx in txs {
        for change in &tx.changes {
            match change {
                Change::Insert { table, new } => {
                    if skip(table, tx) {
                        continue;
                    }
                    let keyless = table.primary_key.is_empty();
                    let width = table.columns.len().max(1);
                    match ops.last_mut() {
                        Some(Op::Upsert { table: t, rows })
                            if !keyless && Arc::ptr_eq(t, table) && (rows.len() + 1) * width <= limits.max_params =>
                        {
                            rows.push(new)
                        }
                        Some(Op::Insert { table: t, rows })
                            if keyless && Arc::ptr_eq(t, table) && (rows.len() + 1) * width <= limits.max_params =>
                        {
                            rows.push(new)
                        }
                        _ if keyless => ops.push(Op::Insert { table, rows: vec![new] }),
                        _ => ops.push(Op::Upsert { table, rows: vec![new] }),
                    }
                }
                Change::Update { table, old, new, unchanged_toast } => {
                    if skip(table, tx) {
                        continue;
                    }
                    if table.primary_key.is_empty() {
                        let Some(old) = old else {
                            return Err(ApplyPlanError::NoIdentity { table: table.name.to_string(), op: "UPDATE" });
                        };
                        let set_cols = (0..table.columns.len()).filter(|i| !unchanged_toast.contains(i)).collect();
                        ops.push(Op::UpdateOneMatching { table, set_cols, new, old });
                        continue;
                    }
                    let old_key = old.as_ref().filter(|o| key_changed(table, o, new));
                    if old_key.is_none() && unchanged_toast.is_empty() {
                        // Whole row known and key unchanged: merge into an upsert run.
                        let width = table.columns.len().max(1);
                        match ops.last_mut() {
                            Some(Op::Upsert { table: t, rows })
                                if Arc::ptr_eq(t, table) && (rows.len() + 1) * width <= limits.max_params =>
                            {
                                rows.push(new)
                            }
                            _ => ops.push(Op::Upsert { table, rows: vec![new] }),
                        }
                    } else {
                        let set_cols = (0..table.columns.len()).filter(|i| !unchanged_toast.contains(i)).collect();
                        ops.push(Op::UpdateByKey { table, set_cols, new, key_row: old_key.unwrap_or(new) });
                    }
                }
                Change::Delete { table, old } => {
                    if skip(table, tx) {
                        continue;
                    }
                    if table.primary_key.is_empty() {
                        ops.push(Op::DeleteOneMatching { table, old });
                        continue;
                    }
                    let width = table.primary_key.len();
                    match ops.last_mut() {
                        Some(Op::DeleteByKey { table: t, keys })
                            if Arc::ptr_eq(t, table) && (keys.len() + 1) * width <= limits.max_params =>
                        {
                            keys.push(old)
                        }
                        _ => ops.push(Op::DeleteByKey { table, keys: vec![old] }),
                    }
                }
                Change::Truncate { tables, .. } => {
                    for table in tables {
                        if !skip(table, tx) {
                            ops.push(Op::Truncate { table });
                        }
                    }
                }
            }
        }
    }
    for op in &mut ops {
        if let Op::Upsert { table, rows } = op {
            fold_same_key(table, rows);
        }
    }
    Ok(ops)
}

/// Within one upsert statement, keeps only the last row of each key: the
/// final state is the same, and PostgreSQL refuses to touch a row twice in
/// one `INSERT … ON CONFLICT DO UPDATE`.
fn fold_same_key(table: &TableSchema, rows: &mut Vec<&Row>) {
    if rows.len() < 2 {
        return;
    }
    let key = |r: &Row| format!("{:?}", table.primary_key.iter().map(|&i| &r[i]).collect::<Vec<_>>());
    let mut last: std::collections::HashMap<String, usize> = std::collections::HashMap::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        last.insert(key(r), i);
    }
    if last.len() == rows.len() {
        return;
    }
    let mut i = 0;
    rows.retain(|r| {
        let keep = last.get(&key(r)) == Some(&i);
        i += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, Lsn, PgType, ReplicaIdentity, TableName};

    fn table(name: &str, keyed: bool) -> Arc<TableSchema> {
        let col = |n: &str, key: bool| Column {
            name: n.into(),
            pg_type: PgType::Int8,
            type_oid: 20,
            typmod: -1,
            nullable: !key,
            is_key: key,
            default: None,
            identity: false,
        };
        Arc::new(TableSchema {
            oid: 1,
            name: TableName::new("public", name),
            columns: vec![col("id", keyed), col("v", false)],
            replica_identity: if keyed { ReplicaIdentity::Default } else { ReplicaIdentity::Full },
            primary_key: if keyed { vec![0] } else { vec![] },
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
        let ops = plan_ops(&txs, OpLimits::default(), |_, _| false).unwrap();
        assert_eq!(ops.len(), 3, "{ops:?}");
        assert!(matches!(&ops[0], Op::Upsert { rows, .. } if rows.len() == 2));
        assert!(matches!(&ops[1], Op::DeleteByKey { keys, .. } if keys.len() == 1));
        // The re-insert and the later update of key 1 fold into its final row.
        assert!(matches!(&ops[2], Op::Upsert { rows, .. } if rows.len() == 1 && rows[0][1] == Value::Int8(6)));
    }

    #[test]
    fn toast_and_key_changes_update_by_old_key() {
        let t = table("t", true);
        let txs = vec![tx(vec![
            Change::Update { table: t.clone(), old: None, new: row(1, 0), unchanged_toast: vec![1] },
            Change::Update { table: t.clone(), old: Some(row(1, 0)), new: row(2, 9), unchanged_toast: vec![] },
        ])];
        let ops = plan_ops(&txs, OpLimits::default(), |_, _| false).unwrap();
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
        let ops = plan_ops(&ok, OpLimits::default(), |_, _| false).unwrap();
        assert!(matches!(ops[0], Op::Insert { .. }));
        assert!(matches!(ops[1], Op::DeleteOneMatching { .. }));
        let bad =
            vec![tx(vec![Change::Update { table: t.clone(), old: None, new: row(1, 2), unchanged_toast: vec![] }])];
        let e = plan_ops(&bad, OpLimits::default(), |_, _| false).unwrap_err();
        assert!(e.to_string().contains("REPLICA IDENTITY FULL"), "{e}");
    }

    #[test]
    fn skipped_tables_and_param_limits() {
        let t = table("t", true);
        let changes = (0..10).map(|i| Change::Insert { table: t.clone(), new: row(i, i) }).collect();
        let txs = vec![tx(changes)];
        let ops = plan_ops(&txs, OpLimits { max_params: 6 }, |_, _| false).unwrap();
        assert_eq!(ops.iter().map(Op::row_count).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
        assert!(plan_ops(&txs, OpLimits::default(), |_, _| true).unwrap().is_empty());
    }
}

//! `sync` on PostgreSQL 12–17 with `mapping.generated: source`: puts the
//! stored generated columns back into each change before it is applied
//! (invariant *no omitted column*).
//!
//! The source computes the values (`source::postgres::generated_recompute`,
//! one statement per table and batch) from the change's own values. An
//! UPDATE does not carry a TOASTed value it left unchanged; when an
//! expression reads one, its value is, in order: the old row (REPLICA
//! IDENTITY FULL carries it), an earlier change of the same row in this
//! batch, or the target row as it is before the batch — which is the
//! source's row before this change, since everything earlier is applied
//! in commit order (invariant *commit order*). Old rows of a keyless
//! REPLICA IDENTITY FULL table get their generated values too (they match
//! the target row by every column).

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Change, ChunkedTransaction, Lsn, ReplicaIdentity, Row, TableName, TableSchema, Transaction, Value};
use crate::plan::Plan;
use crate::sink::writer::current_value::CurrentValueError;
use crate::sink::writer::{SinkError, SinkWriter};
use crate::sink::ChangeSink;
use crate::source::postgres::generated_recompute::{Augmented, Recompute, RecomputeError, Slot};
use crate::source::ShapeChange;

/// Filling in generated values failed.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error("{0}")]
    Recompute(#[from] RecomputeError),
    #[error("{0}")]
    Sink(#[from] SinkError),
    #[error("{0}")]
    CurrentValue(#[from] Box<CurrentValueError>),
}

impl FillError {
    pub fn is_retryable(&self) -> bool {
        match self {
            FillError::Recompute(e) => e.is_retryable(),
            FillError::Sink(e) => e.is_retryable(),
            FillError::CurrentValue(_) => false,
        }
    }
}

/// Recomputes the generated columns of a `sync`'s changes.
pub struct GeneratedFill {
    recompute: Recompute,
}

/// One row to compute: (transaction, change, old row?) and its inputs.
struct Request {
    tx: usize,
    change: usize,
    old: bool,
    inputs: Vec<Option<String>>,
}

impl GeneratedFill {
    /// `None` unless the plan's generated columns are recomputed (a source
    /// before 18 with `mapping.generated: source`, some planned table
    /// having stored generated columns).
    pub async fn open(plan: &Plan) -> Result<Option<GeneratedFill>, FillError> {
        if plan.mapping.generated != crate::plan::GeneratedFrom::Source {
            return Ok(None);
        }
        match Recompute::open(&plan.source.url, &plan.tables).await? {
            Some(r) if !r.is_empty() => {
                tracing::info!("generated columns are recomputed on the source for each change (PostgreSQL before 18)");
                Ok(Some(GeneratedFill { recompute: r }))
            }
            _ => Ok(None),
        }
    }

    /// A Relation message's schema with the generated columns in their
    /// place (re-read from the catalog: one may have been added).
    pub async fn relation(&mut self, schema: Arc<TableSchema>) -> Result<Arc<TableSchema>, FillError> {
        self.recompute.load(&schema.name).await?;
        Ok(match self.recompute.augment(&schema)? {
            Some(a) => a.schema.clone(),
            None => schema,
        })
    }

    /// Puts the generated values into every change of `txs` (in place):
    /// the rows to compute, one statement per table, then each change
    /// widened with its values.
    pub async fn fill(&mut self, txs: &mut [Transaction], writer: &mut SinkWriter) -> Result<(), FillError> {
        let Gathered { placed, requests } = self.gather(txs, writer).await?;
        let mut values: HashMap<(usize, usize, bool), Vec<Value>> = HashMap::new();
        for (table, reqs) in &requests {
            let rows: Vec<Vec<Option<String>>> = reqs.iter().map(|r| r.inputs.clone()).collect();
            let computed = self.recompute.compute(table, &rows).await?;
            for (r, v) in reqs.iter().zip(computed) {
                values.insert((r.tx, r.change, r.old), v);
            }
        }
        for (ti, ci, a) in placed {
            let new_vals = values.remove(&(ti, ci, false));
            let old_vals = values.remove(&(ti, ci, true));
            place(&mut txs[ti].changes[ci], &a, new_vals, old_vals);
        }
        Ok(())
    }

    /// The rows whose generated values must be computed, per table, with
    /// their inputs (an unchanged TOASTed input from the old row, an
    /// earlier change of the same row, or the target), and the shape each
    /// change is placed in.
    async fn gather(&mut self, txs: &[Transaction], writer: &mut SinkWriter) -> Result<Gathered, FillError> {
        let mut g = Gathering::default();
        for (ti, tx) in txs.iter().enumerate() {
            for (ci, change) in tx.changes.iter().enumerate() {
                let table = match change {
                    Change::Insert { table, .. } | Change::Update { table, .. } | Change::Delete { table, .. } => {
                        table.clone()
                    }
                    Change::Truncate { .. } => continue,
                };
                if !self.recompute.covers(&table.name) {
                    continue;
                }
                // Per change, its own shape: a transaction that altered the
                // table has changes of both.
                let a = match g.shapes.get(&table.name) {
                    Some(a) if Arc::ptr_eq(&a.stream, &table) => a.clone(),
                    _ => match self.recompute.augment(&table)? {
                        Some(a) => a,
                        None => continue,
                    },
                };
                g.request(writer, &a, &table, change, (ti, ci), tx.commit_lsn).await?;
                g.placed.push((ti, ci, a.clone()));
                g.shapes.insert(table.name.clone(), a);
            }
        }
        Ok(Gathered { placed: g.placed, requests: g.requests })
    }
}

/// [`GeneratedFill::gather`]'s state across a batch.
#[derive(Default)]
struct Gathering {
    /// Per table, its latest augmentation.
    shapes: HashMap<TableName, Arc<Augmented>>,
    placed: Vec<(usize, usize, Arc<Augmented>)>,
    /// Per table, the rows to compute.
    requests: HashMap<TableName, Vec<Request>>,
    /// The last known inputs of each row in this batch, as the position
    /// of its request (by table and key): only for tables whose inputs
    /// can be left out of an UPDATE.
    seen: HashMap<(TableName, Vec<String>), usize>,
}

impl Gathering {
    /// The rows `change` (the `at.1`th of transaction `at.0`, committed at
    /// `commit`) needs computed: the new row, and the old one when the
    /// table's identity is FULL. An input an UPDATE left out (unchanged
    /// TOAST) comes from the old row, this batch, or the target.
    async fn request(
        &mut self,
        writer: &mut SinkWriter,
        a: &Augmented,
        table: &TableSchema,
        change: &Change,
        (ti, ci): (usize, usize),
        commit: Lsn,
    ) -> Result<(), FillError> {
        let full = table.replica_identity == ReplicaIdentity::Full;
        let track = a.toastable();
        let key_of =
            |row: &Row| -> Vec<String> { table.match_columns().iter().map(|&k| format!("{:?}", row.get(k))).collect() };
        let texts = |row: &Row| -> Vec<Option<String>> {
            a.inputs.iter().map(|&i| row.get(i).and_then(crate::mapping::pg_source_text)).collect()
        };
        let name = &table.name;
        let reqs = self.requests.entry(name.clone()).or_default();
        match change {
            Change::Insert { new, .. } => {
                if track {
                    self.seen.insert((name.clone(), key_of(new)), reqs.len());
                }
                reqs.push(Request { tx: ti, change: ci, old: false, inputs: texts(new) });
            }
            Change::Update { old, new, unchanged_toast, .. } => {
                let mut inputs = texts(new);
                let before = if track { old.as_ref().map(&key_of).unwrap_or_else(|| key_of(new)) } else { vec![] };
                for (p, &si) in a.inputs.iter().enumerate() {
                    if !unchanged_toast.contains(&si) {
                        continue;
                    }
                    let known = self.seen.get(&(name.clone(), before.clone())).map(|&r| &reqs[r].inputs);
                    inputs[p] = match (full, old.as_ref(), known) {
                        (true, Some(o), _) => o.get(si).and_then(crate::mapping::pg_source_text),
                        (_, _, Some(known)) => known[p].clone(),
                        _ => read_back(writer, a, old.as_ref().unwrap_or(new), si, commit.to_string()).await?,
                    };
                }
                if full {
                    if let Some(o) = old {
                        reqs.push(Request { tx: ti, change: ci, old: true, inputs: texts(o) });
                    }
                }
                if track {
                    self.seen.remove(&(name.clone(), before));
                    self.seen.insert((name.clone(), key_of(new)), reqs.len());
                }
                reqs.push(Request { tx: ti, change: ci, old: false, inputs });
            }
            Change::Delete { old, .. } => {
                if track {
                    self.seen.remove(&(name.clone(), key_of(old)));
                }
                if full {
                    reqs.push(Request { tx: ti, change: ci, old: true, inputs: texts(old) });
                }
            }
            Change::Truncate { .. } => {}
        }
        Ok(())
    }
}

/// What [`GeneratedFill::gather`] found in a batch.
struct Gathered {
    /// (transaction, change, its shape) for every change to widen.
    placed: Vec<(usize, usize, Arc<Augmented>)>,
    requests: HashMap<TableName, Vec<Request>>,
}

/// Rewrites one change to the augmented schema: rows widened with the
/// generated values (NULL where none: a key-only old row), unchanged-TOAST
/// positions moved to theirs.
fn place(change: &mut Change, a: &Augmented, new_vals: Option<Vec<Value>>, old_vals: Option<Vec<Value>>) {
    let widen = |row: &Row, vals: Option<&Vec<Value>>| -> Row {
        a.slots
            .iter()
            .map(|s| match *s {
                Slot::Stream(i) => row.get(i).cloned().unwrap_or(Value::Null),
                Slot::Generated(g) => vals.and_then(|v| v.get(g).cloned()).unwrap_or(Value::Null),
            })
            .collect()
    };
    let at = |si: usize| a.slots.iter().position(|s| *s == Slot::Stream(si)).unwrap_or(si);
    match change {
        Change::Insert { table, new } => {
            *new = widen(new, new_vals.as_ref());
            *table = a.schema.clone();
        }
        Change::Update { table, old, new, unchanged_toast } => {
            *new = widen(new, new_vals.as_ref());
            if let Some(o) = old {
                *o = widen(o, old_vals.as_ref());
            }
            *unchanged_toast = unchanged_toast.iter().map(|&i| at(i)).collect();
            *table = a.schema.clone();
        }
        Change::Delete { table, old } => {
            *old = widen(old, old_vals.as_ref());
            *table = a.schema.clone();
        }
        Change::Truncate { .. } => {}
    }
}

/// The target's current value of stream column `si` in the row `key_row`
/// identifies (see the module comment).
async fn read_back(
    writer: &mut SinkWriter,
    a: &Augmented,
    key_row: &Row,
    si: usize,
    at: String,
) -> Result<Option<String>, FillError> {
    let table = &a.stream;
    let col = &table.columns[si];
    let key: Vec<(&str, &Value)> =
        table.match_columns().iter().map(|&k| (table.columns[k].name.as_str(), &key_row[k])).collect();
    let err = |why: String| {
        FillError::CurrentValue(Box::new(CurrentValueError {
            table: table.name.clone(),
            column: col.name.clone(),
            ty: col.pg_type.sql_name(),
            generated: a
                .schema
                .columns
                .iter()
                .filter(|c| table.column_index(&c.name).is_none())
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
            at,
            why,
        }))
    };
    match writer.current_text(&table.name, &key, &col.name, &col.pg_type).await? {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(err("the target has no row with that key".into())),
        Err(why) => Err(err(why)),
    }
}

impl GeneratedFill {
    /// A spilled (very large) transaction, chunk by chunk in one target
    /// transaction like `SinkWriter::apply_spilled`, each chunk filled
    /// first (its unchanged TOASTed inputs read inside that transaction,
    /// after the chunks before it).
    pub async fn apply_spilled(
        &mut self,
        writer: &mut SinkWriter,
        tx: &mut dyn ChunkedTransaction,
    ) -> Result<(), FillError> {
        let header = tx.header();
        if header.end_lsn <= writer.applied() {
            return Ok(());
        }
        writer.begin_parts().await?;
        let r: Result<(), FillError> = async {
            while let Some(mut chunk) = tx.next_chunk(SPILL_CHUNK).map_err(SinkError::Spill)? {
                self.fill(std::slice::from_mut(&mut chunk), writer).await?;
                writer.apply_part(&chunk).await?;
            }
            writer.commit_parts(header.end_lsn, header.commit_time_micros).await?;
            Ok(())
        }
        .await;
        if r.is_err() {
            writer.abort_parts().await;
        }
        r
    }
}

/// The writer with generated values put into each change before it is
/// applied: the sink `sync` applies to (with no fill, the writer as it is).
pub struct FilledSink {
    writer: SinkWriter,
    fill: Option<GeneratedFill>,
}

impl FilledSink {
    pub fn new(writer: SinkWriter, fill: Option<GeneratedFill>) -> FilledSink {
        FilledSink { writer, fill }
    }
}

impl ChangeSink for FilledSink {
    type Error = FillError;

    async fn apply(&mut self, txs: &mut [Transaction]) -> Result<(), FillError> {
        if let Some(f) = &mut self.fill {
            f.fill(txs, &mut self.writer).await?;
        }
        Ok(self.writer.apply_with_retry(txs).await?)
    }

    async fn apply_large(&mut self, tx: &mut dyn ChunkedTransaction) -> Result<(), FillError> {
        match &mut self.fill {
            Some(f) => f.apply_spilled(&mut self.writer, tx).await,
            None => Ok(self.writer.apply_spilled(tx).await?),
        }
    }

    async fn relation_changed(&mut self, schema: Arc<TableSchema>) -> Result<(), FillError> {
        let schema = match &mut self.fill {
            Some(f) => f.relation(schema).await?,
            None => schema,
        };
        Ok(ChangeSink::relation_changed(&mut self.writer, schema).await?)
    }

    async fn apply_part(&mut self, mut part: Transaction) -> Result<(), FillError> {
        if let Some(f) = &mut self.fill {
            f.fill(std::slice::from_mut(&mut part), &mut self.writer).await?;
        }
        Ok(self.writer.apply_part(&part).await?)
    }

    async fn commit_parts(&mut self, mut last: Transaction) -> Result<(), FillError> {
        if let Some(f) = &mut self.fill {
            f.fill(std::slice::from_mut(&mut last), &mut self.writer).await?;
        }
        Ok(ChangeSink::commit_parts(&mut self.writer, last).await?)
    }

    async fn abort_parts(&mut self) {
        self.writer.abort_parts().await
    }

    async fn shape_changed(&mut self, change: ShapeChange) -> Result<(), FillError> {
        let table = match &mut self.fill {
            Some(f) => f.relation(change.table).await?,
            None => change.table,
        };
        Ok(self.writer.shape_changed(ShapeChange { table, ..change }).await?)
    }

    async fn copy_done(&mut self, at: Lsn) -> Result<(), FillError> {
        Ok(self.writer.copy_done(at).await?)
    }

    fn applied(&self) -> Lsn {
        self.writer.applied()
    }
}

/// Changes per chunk of a spilled transaction.
const SPILL_CHUNK: usize = 5_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, PgType};

    fn schema(cols: &[&str]) -> Arc<TableSchema> {
        Arc::new(TableSchema {
            oid: 1,
            name: TableName::new("public", "t"),
            columns: cols.iter().map(|c| Column::new(*c, PgType::Text)).collect(),
            replica_identity: ReplicaIdentity::Default,
            primary_key: vec![0],
            generated: Vec::new(),
        })
    }

    #[test]
    fn place_widens_rows_and_moves_unchanged_toast_positions() {
        // Stream (id, a, b); generated g after a: (id, a, g, b).
        let stream = schema(&["id", "a", "b"]);
        let a = Augmented {
            stream: stream.clone(),
            schema: schema(&["id", "a", "g", "b"]),
            slots: vec![Slot::Stream(0), Slot::Stream(1), Slot::Generated(0), Slot::Stream(2)],
            inputs: vec![1, 2],
        };
        let t = |s: &str| Value::Text(s.into());
        let mut change = Change::Update {
            table: stream.clone(),
            old: Some(vec![t("1"), Value::Null, Value::Null]),
            new: vec![t("2"), t("x"), Value::Null],
            unchanged_toast: vec![2],
        };
        place(&mut change, &a, Some(vec![t("G")]), None);
        let Change::Update { table, old, new, unchanged_toast } = change else { panic!() };
        assert!(Arc::ptr_eq(&table, &a.schema));
        assert_eq!(new, vec![t("2"), t("x"), t("G"), Value::Null]);
        assert_eq!(old, Some(vec![t("1"), Value::Null, Value::Null, Value::Null]));
        assert_eq!(unchanged_toast, vec![3]);
    }
}

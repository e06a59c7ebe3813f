//! Schema changes seen in the stream (invariant *schema drift*): a
//! Relation message compared with what the writer knows of the table,
//! followed on the target where that keeps every value — added columns
//! (filled from the source where the target cannot compute them), renames
//! the source's catalog confirms, type changes that keep every value — and
//! stopped on otherwise, with the statement to run.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;

use super::{SinkError, SinkWriter};
use crate::mapping::{self, MappedTable, TargetKind};
use crate::model::{Change, Column, Row, TableName, TableSchema, Transaction, Value};
use crate::plan::naming::Naming;
use crate::sink::apply_plan::Op;
use crate::source::ShapeChange;

/// What a Relation message changed, as far as the stream and the catalog tell.
#[derive(Default)]
struct Drift {
    /// Why xdb stops (a dropped column, a type change it does not follow).
    problems: Vec<String>,
    /// (old name, new name) of renamed columns.
    renames: Vec<(String, String)>,
    /// Columns whose type changed: followed or stopped on once mapped.
    retyped: Vec<String>,
    /// The target is ahead of this Relation: it already has columns the
    /// source's catalog has now and this (older) shape lacks — xdb made
    /// the ALTERs and stopped before the transaction that made them was
    /// applied. (relation name, target name) of the columns renamed since.
    ahead: Option<Vec<(String, String)>>,
}

/// The statements a schema change needs on the target.
struct TargetChange<'a> {
    renames: &'a [(String, String)],
    alters: &'a [(String, String)],
    added: &'a [usize],
}

impl SinkWriter {
    /// A Relation message (invariant *schema drift*): follows added
    /// columns (filling existing rows with the source's values), renames
    /// the catalog confirms, and type changes that keep every value; stops
    /// on dropped columns and other type changes with the statement to run.
    pub async fn relation_changed(&mut self, schema: Arc<TableSchema>) -> Result<(), SinkError> {
        self.relation_changed_with(schema, None).await
    }

    /// A shape change read from a source that records them (a replicated
    /// log): followed with the renames its catalog confirmed, after the
    /// refusal of an added column whose definition was lost.
    pub async fn shape_changed(&mut self, change: ShapeChange) -> Result<(), SinkError> {
        self.refuse_unknown_added(&change.table, &change.catalog_unknown).await?;
        self.relation_changed_with(change.table, Some(&change.renamed)).await
    }

    /// An added column whose NOT NULL and default the source's catalog
    /// could not tell (renamed or dropped there before it was read):
    /// adding it nullable without default would leave NULL where the
    /// source has its default (no silent data change), so the user adds it
    /// on the target as it was added on the source; then it is the
    /// target's already.
    async fn refuse_unknown_added(&mut self, table: &TableSchema, unknown: &[String]) -> Result<(), SinkError> {
        if unknown.is_empty() {
            return Ok(());
        }
        let on_target = self.conn.column_names(&self.naming().table(&table.name)).await?.unwrap_or_default();
        let Some(first) = unknown.iter().find(|c| !on_target.contains(c)) else { return Ok(()) };
        let ty = table.columns.iter().find(|c| &c.name == first).map(|c| c.pg_type.sql_name()).unwrap_or_default();
        Err(SinkError::SchemaDrift(format!(
            "schema change on {}: column {first} was added on the source and renamed or dropped there before the \
             producer read the change, so its NOT NULL and default are no longer in the source's catalog (rows that \
             existed at the ALTER hold its default there). xdb stopped before applying any later change. To \
             continue, add it on the target as it was added on the source (for example `ALTER TABLE … ADD COLUMN \
             {first} {ty} NOT NULL DEFAULT …`, with the source's definition), then run `xdb sync` again",
            table.name
        )))
    }

    /// [`SinkWriter::relation_changed`] with the renames already decided
    /// (`Some`): a schema-change event from a replicated log says which
    /// columns the source's catalog confirmed as renamed when it was
    /// written, which the catalog may no longer tell when it is applied.
    pub async fn relation_changed_with(
        &mut self,
        schema: Arc<TableSchema>,
        renamed: Option<&[(String, String)]>,
    ) -> Result<(), SinkError> {
        let Some(current) = self.mapped.get(&schema.name).cloned() else { return Ok(()) };
        let table = &schema.name;
        // A new shape of the table: the target is no longer ahead of the
        // stream once the transaction this Relation belongs to is applied,
        // and until then its earlier rows still carry the old names.
        if let Some(renames) = self.ahead_renamed.remove(table) {
            self.renamed.entry(table.clone()).or_default().extend(renames);
        }
        let mut drift = self.compare_columns(&schema, &current.source, renamed).await?;
        if !drift.problems.is_empty() {
            return Err(SinkError::SchemaDrift(format!("schema change on {table}: {}", drift.problems.join("; "))));
        }
        if let Some(renames) = drift.ahead.take() {
            // Rows of this older shape are applied under the target's names;
            // the target and the mapping stay as they are.
            tracing::info!(
                table = %table,
                stream = ?schema.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
                renamed = ?renames,
                "the target already has this table's later shape: rows written before its ALTER follow"
            );
            self.ahead_renamed.insert(table.clone(), renames);
            return Ok(());
        }
        self.rename_known_columns(table, &drift.renames);
        let (keyed, added) = self.with_catalog_columns(&schema, &current.source, &mut drift).await?;
        let new_mapped = Arc::new(
            mapping::map_table(&self.rules, &keyed, &self.overrides)
                .map_err(|e| SinkError::SchemaDrift(format!("schema change on {table}: {e}")))?,
        );
        let mut alters = Vec::new();
        for name in &drift.retyped {
            let Some(i) = keyed.column_index(name) else { continue };
            match self.follow_type_change(&current, &new_mapped, i) {
                Ok(Some(ddl)) => alters.push((name.to_string(), ddl)),
                Ok(None) => {}
                Err(stop) => drift.problems.push(stop),
            }
        }
        if !drift.problems.is_empty() {
            return Err(SinkError::SchemaDrift(format!("schema change on {table}: {}", drift.problems.join("; "))));
        }
        // A column the target had and the source did not (dropped there, or
        // added on the target by the operator) that the stream now carries
        // is an ordinary column again: a later rename of it is followed.
        if let Some(only) = self.target_only.get_mut(table) {
            only.retain(|c| keyed.column_index(c).is_none());
        }
        if added.is_empty() && alters.is_empty() && drift.renames.is_empty() {
            self.mapped.insert(table.clone(), new_mapped);
            return Ok(());
        }
        // Statements on the target are planned from the new mapping (the
        // fill writes the added columns).
        self.mapped.insert(table.clone(), new_mapped.clone());
        let change = TargetChange { renames: &drift.renames, alters: &alters, added: &added };
        let r = self.change_target(&new_mapped, &keyed, change).await;
        if r.is_err() {
            // The target does not have the columns (or not filled): the
            // mapping must not claim it does.
            self.mapped.insert(table.clone(), current);
        } else if !drift.renames.is_empty() {
            self.renamed.entry(table.clone()).or_default().extend(drift.renames.iter().cloned());
        }
        r
    }

    /// `tx` with each change of a table renamed on the target carrying its
    /// table under the new column names when it still has the old ones: the
    /// rows the renaming source transaction wrote before its ALTER (pgoutput
    /// describes them with the shape they were written in). Same values,
    /// same positions: only the names the statements use change.
    pub(super) fn under_new_names(&self, tx: &Transaction) -> Transaction {
        let mut seen: HashMap<*const TableSchema, Arc<TableSchema>> = HashMap::new();
        let mut rename = |t: &Arc<TableSchema>| -> Arc<TableSchema> {
            let (ahead, now) = (self.ahead_renamed.get(&t.name), self.renamed.get(&t.name));
            if ahead.is_none() && now.is_none() {
                return t.clone();
            }
            seen.entry(Arc::as_ptr(t))
                .or_insert_with(|| {
                    let mut s = (**t).clone();
                    for (from, to) in ahead.into_iter().flatten().chain(now.into_iter().flatten()) {
                        if s.column_index(to).is_none() {
                            if let Some(i) = s.column_index(from) {
                                s.columns[i].name = to.clone();
                            }
                        }
                    }
                    if s == **t {
                        t.clone()
                    } else {
                        Arc::new(s)
                    }
                })
                .clone()
        };
        let changes = tx
            .changes
            .iter()
            .map(|c| match c {
                Change::Insert { table, new } => Change::Insert { table: rename(table), new: new.clone() },
                Change::Update { table, old, new, unchanged_toast } => Change::Update {
                    table: rename(table),
                    old: old.clone(),
                    new: new.clone(),
                    unchanged_toast: unchanged_toast.clone(),
                },
                Change::Delete { table, old } => Change::Delete { table: rename(table), old: old.clone() },
                Change::Truncate { tables, cascade, restart_identity } => Change::Truncate {
                    tables: tables.iter().map(&mut rename).collect(),
                    cascade: *cascade,
                    restart_identity: *restart_identity,
                },
            })
            .collect();
        Transaction {
            xid: tx.xid,
            commit_lsn: tx.commit_lsn,
            end_lsn: tx.end_lsn,
            commit_time_micros: tx.commit_time_micros,
            changes,
        }
    }

    /// What a Relation says changed, column by column: dropped columns
    /// (problems), renames the catalog confirms, changed types.
    async fn compare_columns(
        &self,
        schema: &TableSchema,
        old: &TableSchema,
        renamed: Option<&[(String, String)]>,
    ) -> Result<Drift, SinkError> {
        let table = &schema.name;
        let mut drift = Drift::default();
        // Columns of the old shape this Relation lacks, not renamed: with a
        // rename candidate of this Relation's when there is one.
        let mut missing: Vec<(usize, Option<String>)> = Vec::new();
        let target_only = self.target_only.get(table).cloned().unwrap_or_default();
        for c in target_only.iter().filter(|c| !schema.columns.iter().any(|n| &n.name == *c)) {
            drift.problems.push(dropped_column(&self.naming(), table, c));
        }
        for (i, c) in old.columns.iter().enumerate() {
            match schema.columns.iter().find(|n| n.name == c.name) {
                None => {
                    // A rename looks like a drop in a Relation: a column gone,
                    // a new one in its place with its type. Only the catalog's
                    // attribute numbers tell it from a drop and an add (and
                    // taking a drop for a rename would keep stale values).
                    let candidate = rename_candidate(old, schema, i, &target_only);
                    if let (Some(n), Some(decided)) = (candidate, renamed) {
                        if decided.iter().any(|(from, to)| *from == c.name && *to == n.name) {
                            drift.renames.push((c.name.clone(), n.name.clone()));
                            continue;
                        }
                    } else if let Some(n) = candidate {
                        if self.source.renamed_in_place(schema.oid, &n.name).await? {
                            drift.renames.push((c.name.clone(), n.name.clone()));
                            continue;
                        }
                    }
                    missing.push((i, candidate.map(|n| n.name.clone())));
                }
                Some(n) if n.type_oid != c.type_oid || n.typmod != c.typmod => drift.retyped.push(c.name.clone()),
                Some(_) => {}
            }
        }
        if missing.is_empty() {
            return Ok(drift);
        }
        // Dropped on the source — or the target is ahead: the source's
        // catalog has those columns now (the ALTER that made them is later
        // in the stream), and every column of this Relation the old shape
        // lacks is one of them under its name before a rename.
        let now = self.source.table(table).await?;
        let has_now = |name: &str| now.as_ref().is_some_and(|t| t.column_index(name).is_some());
        let unexplained = schema.columns.iter().filter(|n| {
            old.column_index(&n.name).is_none() && !missing.iter().any(|(_, cand)| cand.as_deref() == Some(&n.name))
        });
        let mut ahead = drift.renames.is_empty()
            && drift.problems.is_empty()
            && missing
                .iter()
                .all(|(i, cand)| has_now(&old.columns[*i].name) && cand.as_deref().is_none_or(|n| !has_now(n)))
            && unexplained.count() == 0;
        // Not a column dropped and added again under its name since (it
        // would hold other values than the target's): that one has a
        // dropped attribute just below it.
        for (i, _) in &missing {
            ahead = ahead && self.source.renamed_in_place(schema.oid, &old.columns[*i].name).await?;
        }
        if ahead {
            drift.ahead = Some(
                missing.iter().filter_map(|(i, cand)| Some((cand.clone()?, old.columns[*i].name.clone()))).collect(),
            );
            return Ok(drift);
        }
        for (i, _) in missing {
            drift.problems.push(dropped_column(&self.naming(), table, &old.columns[i].name));
        }
        Ok(drift)
    }

    /// The writer's other knowledge of the table is by column name.
    fn rename_known_columns(&mut self, table: &TableName, renames: &[(String, String)]) {
        for (from, to) in renames {
            let rename =
                |names: &mut Vec<String>| names.iter_mut().filter(|n| *n == from).for_each(|n| *n = to.clone());
            self.primary_keys.get_mut(table).map(rename);
            self.unique_columns.get_mut(table).map(rename);
        }
    }

    /// The new schema with what the stream does not describe taken from
    /// the old one (nullability, defaults, identity) and, for added
    /// columns, from the source's catalog; and the added columns' indexes.
    async fn with_catalog_columns(
        &self,
        schema: &TableSchema,
        old: &TableSchema,
        drift: &mut Drift,
    ) -> Result<(TableSchema, Vec<usize>), SinkError> {
        let renames = &drift.renames;
        let was = |name: &str| -> String {
            renames.iter().find(|(_, to)| to == name).map(|(from, _)| from.clone()).unwrap_or_else(|| name.to_string())
        };
        let target_only = self.target_only.get(&schema.name).cloned().unwrap_or_default();
        let mut keyed = self.with_catalog_key(schema).unwrap_or_else(|| schema.clone());
        for c in keyed.columns.iter_mut() {
            if let Some(o) = old.columns.iter().find(|o| o.name == was(&c.name)) {
                c.nullable = o.nullable;
                c.default = o.default.clone();
                c.identity = o.identity;
                c.carried = o.carried.clone();
                c.feeds_generated = o.feeds_generated;
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
            let catalog = self.source.table(&schema.name).await?;
            for &i in &added {
                let k = &mut keyed.columns[i];
                // The catalog is the source as it is now, the stream may be
                // far behind: a column renamed or dropped since its ADD is
                // not there under this name (or is another column), and its
                // NOT NULL and DEFAULT are unknown. Adding it without them
                // would leave every existing row NULL where the source has
                // the default: stop instead (no silent data change).
                let known = catalog.as_ref().and_then(|t| {
                    t.columns.iter().find(|c| c.name == k.name && c.type_oid == k.type_oid && c.typmod == k.typmod)
                });
                let Some(c) = known else {
                    return Err(SinkError::SchemaDrift(unknown_added_column(
                        &schema.name,
                        &k.name,
                        &k.pg_type.sql_name(),
                        &self.naming().table_ident(&schema.name),
                    )));
                };
                k.nullable = c.nullable;
                k.default = c.default.clone();
                k.identity = c.identity;
                k.carried = c.carried.clone();
                k.feeds_generated = c.feeds_generated;
            }
        }
        Ok((keyed, added))
    }

    /// Renames, type changes and added columns on the target, the added
    /// ones filled from the source where the target cannot compute their
    /// values. MySQL commits DDL implicitly; elsewhere the columns and their
    /// values land in one target transaction, so a failure (or a kill)
    /// leaves neither and the restart does it all again.
    async fn change_target(
        &mut self,
        new_mapped: &Arc<MappedTable>,
        keyed: &TableSchema,
        change: TargetChange<'_>,
    ) -> Result<(), SinkError> {
        let table = &keyed.name;
        // Existing rows get a constant default from the target itself (the
        // column is added with it); any other default gave each source row a
        // value of its own (or, for `now()`, the ALTER's time), which only
        // the source knows: those columns are filled from it.
        let fill: Vec<usize> =
            change.added.iter().copied().filter(|&i| needs_fill(&keyed.columns[i], &new_mapped.columns[i])).collect();
        let transactional_ddl = !self.kind.is_mysql();
        if transactional_ddl {
            self.begin().await?;
        }
        let r = async {
            for (from, to) in change.renames {
                let ddl = mapping::rename_column_ddl(new_mapped, from, to, &self.kind);
                tracing::info!(table = %table, column = %to, "column renamed on the source: {ddl}");
                self.conn.execute_batch(&[ddl], &format!("renaming column {from} of {table} to {to}")).await?;
            }
            for (name, ddl) in change.alters {
                tracing::info!(table = %table, column = %name, "column type changed on the source: {ddl}");
                self.conn
                    .execute_batch(std::slice::from_ref(ddl), &format!("changing the type of {name} in {table}"))
                    .await?;
            }
            for &i in change.added {
                let name = &keyed.columns[i].name;
                let ddl = mapping::add_column_ddl(new_mapped, i, &self.kind);
                tracing::info!(table = %table, column = %name, "column added on the source: {ddl}");
                self.conn.execute_batch(&[ddl], &format!("adding column {name} to {table}")).await?;
            }
            if !fill.is_empty() {
                if !transactional_ddl {
                    self.begin().await?;
                }
                let filled = self.fill_added(new_mapped, &fill).await;
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
            if !fill.is_empty() {
                let names = fill.iter().map(|&i| keyed.columns[i].name.clone()).collect();
                self.refill.push((table.clone(), names));
            }
            Ok(())
        }
        .await;
        if r.is_err() {
            self.rollback().await;
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
    async fn fill_added(&mut self, mapped: &Arc<MappedTable>, cols: &[usize]) -> Result<(), SinkError> {
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
        let source = self.source.clone();
        let mut rows = source.rows(&sub).await.map_err(|e| fail(e.to_string()))?;
        let set_cols = cols.to_vec();
        let mut read = 0u64;
        while let Some(r) = rows.next().await {
            let r = r.map_err(|e| fail(e.to_string()))?;
            read += 1;
            let mut full: Row = vec![Value::Null; table.columns.len()];
            for (v, &i) in r.into_iter().zip(&at) {
                full[i] = v;
            }
            let op = Op::UpdateByKey { table, set_cols: set_cols.clone(), new: &full, key_row: &full };
            self.run_op(&op).await?;
        }
        tracing::info!(table = %table.name, columns = %names(), rows = read, "filled added columns from the source");
        Ok(())
    }

    /// A Relation that added a column arrives before the transaction that
    /// added it is applied (it is decoded as it comes), so the fill above
    /// cannot reach rows that transaction inserted before its ALTER: their
    /// images lack the column and they would keep the target's default.
    /// Called inside the target transaction that applies `txs` (the next
    /// batch after the Relation), before its position: fills the columns
    /// again from the source when `txs` carry such rows, so the rows and
    /// their values commit together (invariant *schema drift*).
    pub(super) async fn refill_rows_from_before_the_alter(&mut self, txs: &[Transaction]) -> Result<(), SinkError> {
        for (table, columns) in self.refill.clone() {
            let old_images = txs.iter().flat_map(|t| &t.changes).any(|c| {
                let schema = match c {
                    Change::Insert { table, .. } | Change::Update { table, .. } | Change::Delete { table, .. } => table,
                    Change::Truncate { .. } => return false,
                };
                schema.name == table && columns.iter().any(|n| schema.column_index(n).is_none())
            });
            if !old_images {
                continue;
            }
            let Some(mapped) = self.mapped.get(&table).cloned() else { continue };
            let cols: Vec<usize> = columns.iter().filter_map(|n| mapped.source.column_index(n)).collect();
            if !cols.is_empty() {
                tracing::info!(table = %table, "rows inserted before the ALTER in its transaction: filling the added columns again");
                self.fill_added(&mapped, &cols).await?;
            }
        }
        // Kept until a batch commits (see `SinkWriter::apply`): a large
        // transaction's later chunks may carry more such rows.
        Ok(())
    }
}

/// The column of `new` that may be column `i` of `old` renamed (a
/// Relation shows a rename as a column gone and one of the same type in
/// its place); only the catalog's attribute numbers
/// ([`renamed_in_place`](crate::source::LiveSource::renamed_in_place)) tell it from a drop and an add.
pub fn rename_candidate<'a>(
    old: &TableSchema,
    new: &'a TableSchema,
    i: usize,
    target_only: &[String],
) -> Option<&'a Column> {
    let c = old.columns.get(i)?;
    if new.column_index(&c.name).is_some() {
        return None;
    }
    new.columns.get(i).filter(|n| {
        old.column_index(&n.name).is_none()
            && !target_only.contains(&n.name)
            && n.type_oid == c.type_oid
            && n.typmod == c.typmod
    })
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

/// The schema-drift message for a column dropped on the source.
fn dropped_column(d: &Naming, table: &TableName, column: &str) -> String {
    format!(
        "column {column} was dropped on the source. xdb stopped before applying any later change. To continue, drop \
         it on the target as well (`ALTER TABLE {} DROP COLUMN {}`), then run `xdb sync` again",
        d.table_ident(table),
        d.ident(column)
    )
}

/// Why `sync` stops on a column the stream adds that the source's catalog
/// no longer knows, and how to go on.
fn unknown_added_column(table: &TableName, column: &str, pg_type: &str, target_table: &str) -> String {
    format!(
        "schema change on {table}: column {column} ({pg_type}) was added on the source, but the source's catalog no \
         longer has a column {column} of that type (it was renamed or dropped after the ADD, which the stream is \
         only now reaching), so its NOT NULL and DEFAULT are unknown: adding it without them would leave every \
         existing row NULL where the source has its default. Add the column on the target as the source defined \
         it, with the values the existing rows had (for example ALTER TABLE {target_table} ADD COLUMN {column} \
         <type> NOT NULL DEFAULT <value>;), then run `xdb sync` again"
    )
}

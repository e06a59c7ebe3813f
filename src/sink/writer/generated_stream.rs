//! Generated columns added on the source while `sync` runs (invariant *no
//! omitted column*).
//!
//! pgoutput never sends a generated column, and the Relation message after
//! `ALTER TABLE … ADD COLUMN … GENERATED ALWAYS AS (…) STORED` lists the
//! same columns as the one before it: only the catalog shows the new
//! column. So on every Relation (and when `sync` starts) the catalog's
//! generated columns are compared with the target table's columns, and a
//! missing one is added as a generated column of the target — the target
//! computes it for the rows it has and every row to come, so adding it
//! "early" (the catalog may be ahead of the stream) gives the same values.
//! An expression the target cannot compute the same way stops `sync` with
//! the table, the column and what to run: never a silent difference.

use super::{SinkError, SinkWriter, TargetConn};
use crate::mapping::{self, generated, TargetKind};
use crate::model::{TableName, TableSchema};

impl SinkWriter {
    /// Adds to the target the generated columns `table` has on the source
    /// and not on the target. `catalog` is the table as the source's
    /// catalog has it now (read from the source when `None`).
    pub async fn follow_generated(
        &mut self,
        table: &TableName,
        catalog: Option<&TableSchema>,
    ) -> Result<(), SinkError> {
        let Some(current) = self.mapped.get(table).cloned() else { return Ok(()) };
        let read;
        let catalog = match catalog {
            Some(c) => c,
            None => match self.source.table(table).await? {
                Some(c) => {
                    read = c;
                    &read
                }
                None => return Ok(()),
            },
        };
        // Most tables have none: the target is not asked then.
        if catalog.generated.is_empty() {
            return Ok(());
        }
        let Some(on_target) = self.target_columns(table).await? else { return Ok(()) };
        let has = |name: &str| on_target.iter().any(|n| n == name);
        let missing: Vec<_> = catalog.generated.iter().filter(|g| !has(&g.name)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        // The catalog is ahead of the stream: a column the expression may
        // use is not on the target yet. Its Relation comes first; the
        // generated column follows then.
        if catalog.columns.iter().any(|c| !has(&c.name)) {
            tracing::debug!(table = %table, "generated column deferred until the columns it may use are on the target");
            return Ok(());
        }
        let mut stops = Vec::new();
        let mut ddls = Vec::new();
        for g in missing {
            match generated::translate(&self.kind, catalog, g) {
                Ok(_) => {
                    // The type and expression exactly as a new table would get them.
                    let one = TableSchema { generated: vec![g.clone()], ..current.source.as_ref().clone() };
                    let m = mapping::map_table(&self.rules, &one, &self.overrides)
                        .map_err(|e| SinkError::SchemaDrift(format!("schema change on {table}: {e}")))?;
                    let Some(mg) = m.generated.into_iter().next() else { continue };
                    ddls.push((g.name.clone(), add_generated_ddl(&self.kind, &current.target_ident, &mg)));
                }
                Err(why) => stops.push(format!(
                    "generated column {col} (GENERATED ALWAYS AS ({expr}) STORED) was added on the source, and \
                     {kind} cannot compute it as a generated column: {why}. The stream does not carry generated \
                     columns, so xdb stopped before applying anything after it. To continue, drop it on the \
                     source (`ALTER TABLE {table} DROP COLUMN {col}`, or re-add it with an integer/text expression \
                     xdb translates, see the README, \"Generated columns\") and run `xdb sync` again; or move the \
                     table to a PostgreSQL target",
                    col = g.name,
                    expr = g.expression,
                    kind = self.kind,
                )),
            }
        }
        if !stops.is_empty() {
            return Err(SinkError::SchemaDrift(format!("schema change on {table}: {}", stops.join("; "))));
        }
        for (name, ddl) in ddls {
            tracing::info!(table = %table, column = %name, "generated column added on the source: {ddl}");
            self.conn.execute_batch(&[ddl], &format!("adding generated column {name} to {table}")).await?;
        }
        Ok(())
    }
}

impl SinkWriter {
    /// The target table's columns, waiting for the target like a batch
    /// does (`apply_with_retry`): a Relation met while the target is away
    /// must not end `sync`.
    async fn target_columns(&mut self, table: &TableName) -> Result<Option<Vec<String>>, SinkError> {
        let mut attempt = 0u32;
        loop {
            match self.conn.column_names(&self.naming().table(table)).await {
                Ok(names) => return Ok(names),
                Err(e) if e.is_retryable() => {
                    attempt += 1;
                    let wait = std::time::Duration::from_millis((250u64 << attempt.min(7)).min(30_000));
                    tracing::warn!("target unavailable: {e}; retrying in {wait:?} (attempt {attempt})");
                    tokio::time::sleep(wait).await;
                    match TargetConn::connect(&self.url).await {
                        Ok(c) => self.conn = c,
                        Err(e) => tracing::warn!("{e}"),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// `ALTER TABLE … ADD COLUMN` for a generated column. SQLite cannot add a
/// STORED column to an existing table; a VIRTUAL one computes the same
/// value when read.
fn add_generated_ddl(kind: &TargetKind, table_ident: &str, g: &generated::MappedGenerated) -> String {
    let storage = if matches!(kind, TargetKind::Sqlite) { "VIRTUAL" } else { "STORED" };
    format!(
        "ALTER TABLE {table_ident} ADD COLUMN {} {} GENERATED ALWAYS AS ({}) {storage}",
        kind.dialect().ident(&g.name),
        g.target_type,
        g.expression
    )
}

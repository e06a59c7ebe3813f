//! `mapping.generated: source` on PostgreSQL 12–17: stored generated
//! columns kept current by recomputing them on the source.
//!
//! Before 18 pgoutput never sends a generated column. The copy reads the
//! stored values like any column (the catalog reader makes them plain
//! columns, `model::CarriedGenerated`); for the stream, each change's generated
//! values are computed by the source server itself from the change's own
//! values: one prepared statement per table,
//! `SELECT (<expr>)::text, … FROM unnest($1::text[], …) WITH ORDINALITY`,
//! run once per table and batch with the columns the expressions read
//! (from `pg_depend`), each cast to its source type and collation. A
//! generation expression is immutable, so the value computed equals the
//! one the source stored, and it belongs to that very change: nothing is
//! read from the table, nothing from a later transaction (invariant
//! *no omitted column*).
//!
//! This module is the source side: the per-table statements, the stream
//! schema with the generated columns put back in their place
//! ([`Recompute::augment`]), and the computation. `pipeline::generated_fill`
//! feeds it the changes (and finds unchanged TOASTed inputs).

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::{Client, Statement};

use super::catalog::{CatalogError, TypeCache};
use crate::model::{CarriedGenerated, Column, PgType, TableName, TableSchema, Value};
use crate::pg_conn::client::{self, ConnectError};
use crate::plan::SecretUrl;

/// Rows per statement run: bounds the parameter arrays of one round trip.
const ROWS_PER_RUN: usize = 5_000;

/// Recomputing generated columns failed.
#[derive(Debug, thiserror::Error)]
pub enum RecomputeError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    #[error("recomputing the generated columns of {table} on the source: {}", crate::error_policy::pg_error_text(.source))]
    Query {
        table: TableName,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "the stream's {table} has no column {column}, which generated column {generated} reads: the source \
         changed the table while xdb was reading it; run `xdb sync` again"
    )]
    MissingInput { table: TableName, column: String, generated: String },
    #[error("generated column {column}: the source computed {text:?}, which does not read as {ty}: {reason}")]
    Decode { column: String, text: String, ty: String, reason: String },
}

impl RecomputeError {
    /// A lost source connection is retried by `sync` (it reconnects);
    /// everything else stops it.
    pub fn is_retryable(&self) -> bool {
        match self {
            RecomputeError::Connect(e) => e.retryable,
            RecomputeError::Catalog(CatalogError::Query { source, .. }) | RecomputeError::Query { source, .. } => {
                crate::error_policy::postgres(source).is_transient()
            }
            _ => false,
        }
    }
}

/// One stored generated column.
#[derive(Debug, Clone)]
pub struct Generated {
    pub name: String,
    pub pg_type: PgType,
    type_oid: u32,
    typmod: i32,
    nullable: bool,
    /// The non-generated column it follows in the table (`None`: first).
    anchor: Option<String>,
    expression: String,
}

/// A table's generated columns and the statement that computes them.
struct TablePlan {
    generated: Vec<Generated>,
    /// The columns the expressions read, in parameter order.
    inputs: Vec<String>,
    statement: Statement,
}

/// Where an augmented column's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// That position of the stream's row.
    Stream(usize),
    /// That generated column (of [`Recompute::generated`]).
    Generated(usize),
}

/// A stream schema with the generated columns in their place.
#[derive(Debug, Clone)]
pub struct Augmented {
    pub stream: Arc<TableSchema>,
    pub schema: Arc<TableSchema>,
    pub slots: Vec<Slot>,
    /// Stream positions of the statement's inputs, in parameter order.
    pub inputs: Vec<usize>,
}

impl Augmented {
    /// Whether an UPDATE can leave one of the inputs out (an unchanged
    /// TOASTed value: only variable-length types are TOASTed).
    pub fn toastable(&self) -> bool {
        self.inputs.iter().any(|&i| self.stream.columns[i].pg_type.is_varlena())
    }
}

/// The recomputation for every planned table with stored generated columns.
pub struct Recompute {
    client: Client,
    tables: HashMap<TableName, TablePlan>,
    augmented: HashMap<TableName, Arc<Augmented>>,
}

/// The first major version that publishes generated columns.
pub const FIRST_PUBLISHING_VERSION: i32 = 180000;

/// Whether the source does not publish generated columns (before 18), so
/// that the plan's `mapping.generated: source` means recomputing them.
pub async fn recomputes(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let v: i32 = client.query_one("SELECT current_setting('server_version_num')::int", &[]).await?.get(0);
    Ok(v < FIRST_PUBLISHING_VERSION)
}

impl Recompute {
    /// Connects (its own session, printing values as the stream does) and
    /// prepares the statements of `tables`; `None` when nothing is
    /// recomputed (18+). Only for `mapping.generated: source`.
    pub async fn open(url: &SecretUrl, tables: &[TableName]) -> Result<Option<Recompute>, RecomputeError> {
        let client = client::connect(url, "xdb sync generated").await?;
        let q = |source| RecomputeError::Catalog(CatalogError::Query { what: "the server version".into(), source });
        if !recomputes(&client).await.map_err(q)? {
            return Ok(None);
        }
        // The values the statement returns are decoded like pgoutput's text.
        client
            .batch_execute(
                "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET IntervalStyle = 'postgres'; \
                 SET extra_float_digits = 3; SET lc_monetary = 'C'",
            )
            .await
            .map_err(|source| {
                RecomputeError::Catalog(CatalogError::Query { what: "session settings".into(), source })
            })?;
        let mut r = Recompute { client, tables: HashMap::new(), augmented: HashMap::new() };
        for t in tables {
            r.load(t).await?;
        }
        Ok(Some(r))
    }

    /// Whether any planned table has stored generated columns.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Whether `table` has generated columns to compute.
    pub fn covers(&self, table: &TableName) -> bool {
        self.tables.contains_key(table)
    }

    /// The generated columns of `table`.
    pub fn generated(&self, table: &TableName) -> &[Generated] {
        self.tables.get(table).map(|p| p.generated.as_slice()).unwrap_or(&[])
    }

    /// (Re)reads `table`'s generated columns from the catalog and prepares
    /// its statement (on each Relation of the table: one may have been
    /// added). A column added "early" (the catalog is ahead of the
    /// stream) gets the same values the source's rewrite gave the rows.
    pub async fn load(&mut self, table: &TableName) -> Result<(), RecomputeError> {
        self.augmented.remove(table);
        let q = |source| RecomputeError::Catalog(CatalogError::Query { what: format!("table {table}"), source });
        let rows = self
            .client
            .query(
                "SELECT a.attnum, a.attname::text, a.atttypid, a.atttypmod, a.attnotnull, a.attgenerated::text, \
                        format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attcollation <> 0 \
                          THEN ' COLLATE ' || quote_ident(cn.nspname) || '.' || quote_ident(co.collname) ELSE '' END, \
                        pg_get_expr(d.adbin, d.adrelid), c.oid \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid \
                 LEFT JOIN pg_collation co ON co.oid = a.attcollation \
                 LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace \
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&table.schema, &table.name],
            )
            .await
            .map_err(q)?;
        let mut types = TypeCache::new();
        let mut generated = Vec::new();
        let mut exprs = Vec::new();
        let mut cast: HashMap<String, String> = HashMap::new();
        let mut gen_attnums = Vec::new();
        let mut anchor: Option<String> = None;
        let mut oid = 0u32;
        for r in &rows {
            let name: String = r.get(1);
            oid = r.get(8);
            if r.get::<_, String>(5) != "s" {
                cast.insert(name.clone(), r.get(6));
                anchor = Some(name);
                continue;
            }
            let (type_oid, typmod): (u32, i32) = (r.get(2), r.get(3));
            generated.push(Generated {
                name,
                pg_type: types.resolve(&self.client, type_oid, typmod).await?,
                type_oid,
                typmod,
                nullable: !r.get::<_, bool>(4),
                anchor: anchor.clone(),
                expression: r.get::<_, Option<String>>(7).unwrap_or_default(),
            });
            exprs.push(r.get::<_, Option<String>>(7).unwrap_or_else(|| "NULL".into()));
            gen_attnums.push(r.get::<_, i16>(0));
        }
        if generated.is_empty() {
            self.tables.remove(table);
            return Ok(());
        }
        let inputs = input_columns(&self.client, oid, &gen_attnums).await.map_err(q)?;
        let sql = statement_sql(&exprs, &inputs, &cast);
        tracing::debug!(table = %table, "generated columns recomputed on the source with: {sql}");
        let statement =
            self.client.prepare(&sql).await.map_err(|source| RecomputeError::Query { table: table.clone(), source })?;
        self.tables.insert(table.clone(), TablePlan { generated, inputs, statement });
        Ok(())
    }

    /// `stream` (a Relation's schema) with the generated columns in their
    /// place, and where each value comes from; `None` for a table without
    /// generated columns. Cached until the stream's schema changes.
    pub fn augment(&mut self, stream: &Arc<TableSchema>) -> Result<Option<Arc<Augmented>>, RecomputeError> {
        let Some(plan) = self.tables.get(&stream.name) else { return Ok(None) };
        if let Some(a) = self.augmented.get(&stream.name) {
            if Arc::ptr_eq(&a.stream, stream) || *a.stream == **stream {
                return Ok(Some(a.clone()));
            }
        }
        let mut slots: Vec<Slot> = Vec::new();
        let first = plan.generated.iter().enumerate().filter(|(_, g)| g.anchor.is_none());
        slots.extend(first.map(|(i, _)| Slot::Generated(i)));
        for (si, c) in stream.columns.iter().enumerate() {
            slots.push(Slot::Stream(si));
            let after = plan.generated.iter().enumerate().filter(|(_, g)| g.anchor.as_deref() == Some(&c.name));
            slots.extend(after.map(|(i, _)| Slot::Generated(i)));
        }
        // Anchored to a column the stream no longer has: at the end.
        for (i, g) in plan.generated.iter().enumerate() {
            if !slots.contains(&Slot::Generated(i)) && stream.column_index(&g.name).is_none() {
                slots.push(Slot::Generated(i));
            }
        }
        let columns = slots
            .iter()
            .map(|s| match *s {
                Slot::Stream(i) => {
                    let c = &stream.columns[i];
                    Column { feeds_generated: plan.inputs.contains(&c.name), ..c.clone() }
                }
                Slot::Generated(i) => {
                    let g = &plan.generated[i];
                    Column {
                        name: g.name.clone(),
                        pg_type: g.pg_type.clone(),
                        type_oid: g.type_oid,
                        typmod: g.typmod,
                        nullable: g.nullable,
                        is_key: false,
                        default: None,
                        identity: false,
                        carried: Some(CarriedGenerated { expression: g.expression.clone(), recomputed: true }),
                        feeds_generated: false,
                    }
                }
            })
            .collect();
        let at = |si: usize| slots.iter().position(|s| *s == Slot::Stream(si)).unwrap_or(si);
        let schema = TableSchema {
            columns,
            primary_key: stream.primary_key.iter().map(|&k| at(k)).collect(),
            ..(**stream).clone()
        };
        let inputs = plan
            .inputs
            .iter()
            .map(|n| {
                stream.column_index(n).ok_or_else(|| RecomputeError::MissingInput {
                    table: stream.name.clone(),
                    column: n.clone(),
                    generated: plan.generated.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", "),
                })
            })
            .collect::<Result<Vec<usize>, _>>()?;
        let a = Arc::new(Augmented { stream: stream.clone(), schema: Arc::new(schema), slots, inputs });
        self.augmented.insert(stream.name.clone(), a.clone());
        Ok(Some(a))
    }

    /// The generated values of `table` for each row of inputs (texts in
    /// the order of [`Augmented::inputs`], `None` for NULL), in order.
    pub async fn compute(
        &self,
        table: &TableName,
        rows: &[Vec<Option<String>>],
    ) -> Result<Vec<Vec<Value>>, RecomputeError> {
        let Some(plan) = self.tables.get(table) else { return Ok(vec![Vec::new(); rows.len()]) };
        let started = std::time::Instant::now();
        let mut out = Vec::with_capacity(rows.len());
        for part in rows.chunks(ROWS_PER_RUN) {
            let mut arrays: Vec<Vec<Option<&str>>> = vec![vec![Some(""); part.len()]];
            for i in 0..plan.inputs.len() {
                arrays.push(part.iter().map(|r| r.get(i).and_then(|v| v.as_deref())).collect());
            }
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                arrays.iter().map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
            let result = self
                .client
                .query(&plan.statement, &params)
                .await
                .map_err(|source| RecomputeError::Query { table: table.clone(), source })?;
            for r in &result {
                let mut values = Vec::with_capacity(plan.generated.len());
                for (i, g) in plan.generated.iter().enumerate() {
                    values.push(match r.get::<_, Option<&str>>(i) {
                        None => Value::Null,
                        Some(s) => super::codec::value_text::decode_text(&g.pg_type, s).map_err(|e| {
                            RecomputeError::Decode {
                                column: format!("{table}.{}", g.name),
                                text: s.to_string(),
                                ty: g.pg_type.sql_name(),
                                reason: e.to_string(),
                            }
                        })?,
                    });
                }
                out.push(values);
            }
        }
        tracing::debug!(table = %table, rows = rows.len(), elapsed_us = started.elapsed().as_micros() as u64, "generated columns recomputed");
        Ok(out)
    }
}

/// The (non-generated) columns the stored generated columns `attnums` of
/// table `oid` read: a generated column's default (its expression; 14+)
/// or the column itself (12, 13) depends on each column it uses. One
/// missed would fail the statement's PREPARE, never give a wrong value.
pub async fn input_columns(client: &Client, oid: u32, attnums: &[i16]) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT DISTINCT a.attnum, a.attname::text FROM pg_depend d \
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = $1 AND d.refobjsubid > 0 \
               AND a.attgenerated = '' \
               AND ((d.classid = 'pg_attrdef'::regclass \
                     AND d.objid IN (SELECT oid FROM pg_attrdef WHERE adrelid = $1 AND adnum = ANY($2))) \
                 OR (d.classid = 'pg_class'::regclass AND d.objid = $1 AND d.objsubid = ANY($2))) \
             ORDER BY a.attnum",
            &[&oid, &attnums],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(1)).collect())
}

/// `SELECT (<expr>)::text, … FROM (SELECT <input>::<type> AS <input>, …
/// FROM unnest($1::text[], $2::text[], …) WITH ORDINALITY AS u(…)) r ORDER
/// BY the ordinal`: one row per input row, in order. `$1` only counts the
/// rows (an expression may read no column). Inputs travel as text and are
/// cast to their column's type and collation, as the table holds them.
fn statement_sql(exprs: &[String], inputs: &[String], cast: &HashMap<String, String>) -> String {
    let q = crate::model::pg_ident;
    let outs: Vec<String> = exprs.iter().map(|e| format!("({e})::text")).collect();
    let mut names = vec![q("xdb#row")];
    let mut arrays = vec!["$1::text[]".to_string()];
    let mut typed = Vec::new();
    for (i, n) in inputs.iter().enumerate() {
        names.push(q(n));
        arrays.push(format!("${}::text[]", i + 2));
        let ty = cast.get(n).map(String::as_str).unwrap_or("text");
        // `COLLATE` applies to the cast value: `(x::t) COLLATE c`.
        let (base, coll) = match ty.split_once(" COLLATE ") {
            Some((b, c)) => (b, format!(" COLLATE {c}")),
            None => (ty, String::new()),
        };
        typed.push(format!("(u.{}::{base}){coll} AS {}", q(n), q(n)));
    }
    names.push(q("xdb#n"));
    typed.push(format!("u.{}", q("xdb#n")));
    format!(
        "SELECT {} FROM (SELECT {} FROM unnest({}) WITH ORDINALITY AS u({})) AS r ORDER BY r.{}",
        outs.join(", "),
        typed.join(", "),
        arrays.join(", "),
        names.join(", "),
        q("xdb#n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_casts_inputs_to_their_types_and_keeps_row_order() {
        let cast = HashMap::from([
            ("length".to_string(), "integer".to_string()),
            ("note".to_string(), "text COLLATE pg_catalog.\"C\"".to_string()),
        ]);
        let sql = statement_sql(
            &["round(((length)::numeric / 60.0), 2)".into(), "md5(note)".into()],
            &["length".into(), "note".into()],
            &cast,
        );
        assert_eq!(
            sql,
            "SELECT (round(((length)::numeric / 60.0), 2))::text, (md5(note))::text FROM (SELECT \
             (u.\"length\"::integer) AS \"length\", (u.\"note\"::text) COLLATE pg_catalog.\"C\" AS \"note\", \
             u.\"xdb#n\" FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(\"xdb#row\", \
             \"length\", \"note\", \"xdb#n\")) AS r ORDER BY r.\"xdb#n\""
        );
    }
}

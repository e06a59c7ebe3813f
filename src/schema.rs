//! `xdb schema`: the target DDL the plan maps to, printed for review or
//! applied, and an optional scan of the source data for values the mapping
//! would reject or alter under each column's lossy policy.
//!
//! The script lists, per table, every column with its source and target
//! type and a `lossy:` line wherever the target cannot hold every source
//! value (or holds it differently: timestamptz as UTC, domains without their
//! constraints); then the CREATE TABLE, and as comments the indexes the copy
//! builds after loading and those it cannot rebuild (expression, partial).
//!
//! Exit codes (see `main.rs`): 0 done, nothing found; 1 `--scan` found
//! values the mapping would reject or alter, or the command failed
//! (message on stderr); 2 the plan is invalid.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::copy::ranges::CopyRange;
use crate::copy::source_reader::SnapshotReader;
use crate::copy::CopyError;
use crate::mapping::{self, MappedColumn, MappedTable, TargetClass, TargetKind};
use crate::model::{PgType, Row, TableSchema, Value};
use crate::pg_conn::client;
use crate::plan::{LossyPolicy, Plan, TargetUrl};
use crate::sink::TargetConn;
use crate::source::postgres::catalog::{load_indexes, load_planned};

/// Examples kept per column by `--scan`.
const SCAN_EXAMPLES: usize = 5;

/// What `xdb schema` produced.
#[derive(Debug, Default)]
pub struct SchemaOutcome {
    /// The DDL script (with comments) for people.
    pub script: String,
    /// Tables created by `--apply`.
    pub created: Vec<String>,
    /// Tables that already existed on the target (left as they are).
    pub existing: Vec<String>,
    /// `--scan` findings, one entry per column with problems: a summary
    /// line, then one indented line per example (key, value, reason, outcome).
    pub scan: Vec<String>,
}

/// Builds (and with `apply`, creates) the target tables; with `scan`, reads
/// every source row through the conversion the copy will use.
pub async fn run(plan: &Plan, apply: bool, scan: bool) -> Result<SchemaOutcome, CopyError> {
    let source = client::connect(&plan.source.url, "xdb schema").await?;
    let mut schemas = Vec::new();
    let mut domains = Vec::new();
    for s in
        load_planned(&source, &plan.tables, plan.mapping.generated, |t| CopyError::MissingTable(t.to_string())).await?
    {
        domains.push(domain_columns(&source, s.oid).await?);
        schemas.push(Arc::new(s));
    }
    // Printing the DDL for SQLite needs no connection, and opening one would
    // create the database file.
    let mut target = match (&plan.target.url, apply) {
        (TargetUrl::Sqlite(_), false) => None,
        _ => Some(TargetConn::connect(&plan.target.url).await?),
    };
    let kind = match target.as_mut() {
        Some(t) => t.target_kind().await?,
        None => TargetKind::Sqlite,
    };
    let mapped = crate::mapping::map_tables(plan, &kind, &schemas)?;

    let mut out = SchemaOutcome::default();
    let _ = writeln!(out.script, "-- xdb schema for plan {} → {} ({kind})", plan.name, plan.target.url.redacted());
    for (m, domains) in mapped.iter().zip(&domains) {
        let _ = writeln!(out.script, "\n-- {} → {}", m.source.name, m.target_name);
        for w in &m.warnings {
            let _ = writeln!(out.script, "-- note: {w}");
        }
        write_columns(&mut out.script, m, domains, &kind);
        write_table(&mut out.script, &source, m, &kind).await?;
        if let Some(target) = target.as_mut() {
            apply_table(target, m, &kind, apply, &mut out).await?;
        }
    }
    if scan {
        // A scan reads every source row and can take as long as a copy:
        // a signal ends it (it writes nothing, so dropping it is safe).
        let all = async {
            for (m, s) in mapped.iter().zip(&schemas) {
                out.scan.extend(scan_table(plan, m, s).await?);
            }
            Ok::<_, CopyError>(())
        };
        tokio::select! {
            r = all => r?,
            () = crate::shutdown::requested() => return Err(CopyError::ScanInterrupted),
        }
    }
    Ok(out)
}

/// Each column's source and target type, with what the target loses.
fn write_columns(out: &mut String, m: &MappedTable, domains: &HashMap<String, String>, kind: &TargetKind) {
    for (c, mc) in m.source.columns.iter().zip(&m.columns) {
        let source_type = match domains.get(&c.name) {
            Some(d) => format!("{d} (domain)"),
            None => c.pg_type.sql_name(),
        };
        let _ = writeln!(out, "--   {:<24} {:<30} → {}", c.name, source_type, mc.target_type);
        let mut notes = column_notes(kind, mc);
        // MySQL's AUTO_INCREMENT and SQLite's rowid move past inserted ids by
        // themselves; a PostgreSQL identity sequence does not.
        if *kind == TargetKind::Postgres && mc.identity {
            let (t, col) = (&m.target_ident, kind.dialect().ident(&c.name));
            notes.push(format!(
                "identity: copied ids do not advance the target's sequence; before writers insert, run \
                 SELECT setval(pg_get_serial_sequence('{t}', '{}'), max({col})) FROM {t}",
                c.name
            ));
        }
        if let Some(d) = domains.get(&c.name) {
            notes.push(format!(
                "domain {d} is its base type {} here; its CHECK constraints are not created on the target",
                c.pg_type.sql_name()
            ));
        }
        for n in notes {
            let _ = writeln!(out, "--       lossy: {n}");
        }
    }
}

/// Generated columns, the CREATE TABLE, the indexes the copy builds, and
/// what is not created (constraints, unenforceable uniqueness).
async fn write_table(
    out: &mut String,
    source: &tokio_postgres::Client,
    m: &MappedTable,
    kind: &TargetKind,
) -> Result<(), CopyError> {
    for g in &m.generated {
        let _ = writeln!(
            out,
            "--   {:<24} {:<30} → {} GENERATED ALWAYS AS ({}) STORED",
            g.name,
            g.source_type.sql_name(),
            g.target_type,
            g.expression
        );
        let _ = writeln!(out, "--       generated: {}", g.describe(&m.source.name.to_string(), kind));
    }
    for stmt in mapping::create_table_ddl(m, kind) {
        let _ = writeln!(out, "{stmt};");
    }
    let indexes = load_indexes(source, m.source.oid).await?;
    let (index_ddl, skipped) = crate::copy::index_ddl(m, &indexes, kind);
    if !index_ddl.is_empty() {
        let _ = writeln!(out, "-- built by the copy after the data is loaded:");
        for stmt in index_ddl {
            let _ = writeln!(out, "-- {stmt};");
        }
    }
    for s in skipped {
        let _ = writeln!(out, "-- not rebuilt: {s}");
    }
    for l in mapping::unenforced_unique(m, &crate::copy::index_defs(&indexes), kind) {
        let _ = writeln!(out, "-- lossy: {l}");
    }
    for (what, name, def) in constraints(source, m.source.oid).await? {
        let _ = writeln!(out, "-- not created: {what} {name}: {def}");
    }
    Ok(())
}

/// With a target connection: says how an existing table differs, and with
/// `--apply` creates the missing one.
async fn apply_table(
    target: &mut TargetConn,
    m: &MappedTable,
    kind: &TargetKind,
    apply: bool,
    out: &mut SchemaOutcome,
) -> Result<(), CopyError> {
    let name = m.source.name.to_string();
    let existing = target.column_names(&m.target_table()).await?;
    if let Some(diff) = existing.as_deref().and_then(|cols| column_difference(m, cols)) {
        let _ = writeln!(out.script, "-- note: the existing target table {} differs: {diff}", m.target_name);
    }
    match (apply, existing) {
        (false, _) => {}
        (true, Some(_)) => out.existing.push(name),
        (true, None) => {
            let ddl = mapping::create_table_ddl(m, kind);
            target.execute_batch(&ddl, &format!("creating the target table for {name}")).await?;
            out.created.push(name);
        }
    }
    Ok(())
}

/// The columns of a table whose declared type is a domain: name → the
/// domain as PostgreSQL prints it (the catalog reader resolves domains to
/// their base type, which is what gets mapped).
async fn domain_columns(source: &tokio_postgres::Client, oid: u32) -> Result<HashMap<String, String>, CopyError> {
    let rows = source
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, NULL) FROM pg_attribute a \
             JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND t.typtype = 'd'",
            &[&oid],
        )
        .await
        .map_err(|e| CopyError::Source(format!("reading the domains of table OID {oid}: {e}")))?;
    Ok(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))).collect())
}

/// How an existing target table's columns differ from the mapped ones (by
/// name; types are not compared), or `None` when they match.
fn column_difference(m: &MappedTable, existing: &[String]) -> Option<String> {
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let missing: Vec<&str> =
        m.columns.iter().map(|c| c.name.as_str()).filter(|c| !existing.iter().any(|e| same(e, c))).collect();
    let extra: Vec<&str> =
        existing.iter().map(String::as_str).filter(|e| !m.columns.iter().any(|c| same(&c.name, e))).collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("it lacks the column(s) {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        parts.push(format!("it has column(s) the source does not: {}", extra.join(", ")));
    }
    (!parts.is_empty())
        .then(|| format!("{}; xdb leaves it as it is: alter or drop it before copying", parts.join("; ")))
}

/// The table's foreign keys and CHECK constraints, which xdb does not create
/// on the target (tables load in parallel, and replication applies rows in
/// source commit order, not in key order): kind, name, definition.
async fn constraints(source: &tokio_postgres::Client, oid: u32) -> Result<Vec<(String, String, String)>, CopyError> {
    let rows = source
        .query(
            "SELECT CASE contype WHEN 'f' THEN 'foreign key' ELSE 'check constraint' END, conname::text, \
                    pg_get_constraintdef(oid) \
             FROM pg_constraint WHERE conrelid = $1 AND contype IN ('f', 'c') ORDER BY contype DESC, conname",
            &[&oid],
        )
        .await
        .map_err(|e| CopyError::Source(format!("reading the constraints of table OID {oid}: {e}")))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// What happens to a value the target cannot hold, under `policy`.
fn policy_outcome(policy: LossyPolicy) -> &'static str {
    match policy {
        LossyPolicy::Error => "the copy stops with an error (policy error)",
        LossyPolicy::Null => "written as NULL (policy null)",
        LossyPolicy::Clamp => "written as the nearest value the target holds (policy clamp)",
    }
}

/// The values a column's target cannot hold exactly (or holds in another
/// form), for the script's `lossy:` lines. Pure: decided by the target kind,
/// the source type and the chosen target type alone.
pub fn column_notes(kind: &TargetKind, c: &MappedColumn) -> Vec<String> {
    let then = policy_outcome(c.policy);
    let mut notes = Vec::new();
    let ty = &c.target_type;
    match kind {
        TargetKind::Mysql { .. } => match (&c.source_type, c.class) {
            (PgType::TimestampTz(_), TargetClass::DateTime) => {
                notes.push(format!(
                    "stored as UTC (DATETIME has no time zone: read it as UTC); years before 1000 or after 9999 and ±infinity: {then}"
                ));
            }
            (PgType::Timestamp(_) | PgType::Date, TargetClass::DateTime | TargetClass::Date) => {
                notes.push(format!("years before 1000 or after 9999 and ±infinity: {then}"));
            }
            (PgType::TimeTz(_), TargetClass::Time) => {
                notes.push("normalised to UTC (the offset is not kept)".to_string());
            }
            (PgType::Numeric { precision, scale }, TargetClass::Decimal { precision: p, scale: s }) => {
                let exact = precision.is_some_and(|sp| sp == p && scale.unwrap_or(0) == s);
                if exact {
                    notes.push(format!("NaN: {then}"));
                } else {
                    notes.push(format!(
                        "holds {} integer and {s} fraction digits; NaN, ±Infinity and values with more digits: {then}",
                        p.saturating_sub(s)
                    ));
                }
            }
            (PgType::Float4 | PgType::Float8, TargetClass::Float) => {
                notes.push(format!("NaN and ±Infinity: {then}"));
            }
            (PgType::Varchar(Some(n)) | PgType::VarBit(Some(n)), TargetClass::Text)
                if ty.to_ascii_uppercase().contains("TEXT") =>
            {
                notes.push(format!(
                    "length limit {n} is not enforced (MySQL VARCHAR holds at most 16383 utf8mb4 characters)"
                ));
            }
            (PgType::Array(_), _) if c.class == TargetClass::Json || ty.eq_ignore_ascii_case("JSON") => {
                notes.push(
                    "stored as a JSON array (element types and lower bounds other than 1 are not kept)".to_string(),
                );
            }
            (PgType::Json | PgType::Jsonb, TargetClass::Json)
                if matches!(kind, TargetKind::Mysql { flavour: crate::mapping::MysqlFlavour::Mysql, .. }) =>
            {
                notes.push(format!("JSON numbers with more digits than a double keeps: {then}"));
            }
            _ => {}
        },
        TargetKind::Sqlite => match (&c.source_type, c.class) {
            (PgType::TimestampTz(_), TargetClass::Text) => {
                notes.push("stored as ISO-8601 text in UTC with a trailing Z".to_string());
            }
            (PgType::Float4 | PgType::Float8, TargetClass::Float) => {
                notes.push(format!("NaN (SQLite stores it as NULL): {then}"));
            }
            (PgType::Varchar(Some(n)) | PgType::Char(Some(n)), _) => {
                notes.push(format!("length limit {n} is not enforced (SQLite ignores declared lengths)"));
            }
            _ => {}
        },
        TargetKind::Postgres => {}
    }
    notes
}

/// One out-of-range value found by `--scan`.
struct Example {
    key: String,
    value: String,
    reason: String,
    outcome: String,
}

/// Reads every row of a table through the target conversion; one entry per
/// column whose values would fail or change, naming the rows by key.
async fn scan_table(plan: &Plan, mapped: &Arc<MappedTable>, schema: &TableSchema) -> Result<Vec<String>, CopyError> {
    let reader = SnapshotReader::open_own(&plan.source.url).await?;
    let (tx, mut rx) = mpsc::channel::<Vec<Row>>(4);
    let m = mapped.clone();
    let check = tokio::spawn(async move {
        // The same mapping with every policy `error`: its errors say why a
        // value does not fit and carry the row's key, whatever the policy.
        let mut strict = (*m).clone();
        for c in &mut strict.columns {
            c.policy = LossyPolicy::Error;
        }
        // column → (count, examples)
        let mut found: BTreeMap<usize, (u64, Vec<Example>)> = BTreeMap::new();
        while let Some(rows) = rx.recv().await {
            for row in &rows {
                for i in 0..m.columns.len() {
                    let Err(e) = strict.prepare(i, row) else { continue };
                    let entry = found.entry(i).or_default();
                    entry.0 += 1;
                    if entry.1.len() >= SCAN_EXAMPLES {
                        continue;
                    }
                    let outcome = match m.prepare(i, row) {
                        Err(_) => match m.columns[i].policy {
                            LossyPolicy::Error => "rejected".to_string(),
                            p => format!("rejected even under policy {}", policy_name(p)),
                        },
                        Ok(Cow::Owned(Value::Null)) => "written as NULL".to_string(),
                        Ok(v) => format!("written as {}", mapping::show_value(&v)),
                    };
                    entry.1.push(Example {
                        key: e.key.clone(),
                        value: e.value.clone(),
                        reason: e.reason.clone(),
                        outcome,
                    });
                }
            }
        }
        found
    });
    reader.read_range(schema, &plan.read_from(&schema.name), &CopyRange::Whole, &tx).await?;
    drop(tx);
    let found = check.await.map_err(|e| CopyError::Source(e.to_string()))?;
    Ok(found
        .into_iter()
        .filter_map(|(i, (n, examples))| {
            let c = mapped.columns.get(i)?;
            let col = format!("{}.{}", mapped.source.name, c.name);
            let fix = match c.policy {
                LossyPolicy::Error => format!(
                    "; the copy would stop at the first. Resolve with mapping: {{ policies: {{ {col}: null }} }} \
                     (or clamp), or a wider type with mapping: {{ columns: {{ {col}: <TYPE> }} }}"
                ),
                p => format!("; policy {}", policy_name(p)),
            };
            let mut s = format!("{col}: {n} value(s) {} on {} cannot hold{fix}", c.target_type, mapped.kind);
            for x in examples {
                let _ = write!(s, "\n    key {}: {}: {}; {}", x.key, x.value, x.reason, x.outcome);
            }
            Some(s)
        })
        .collect())
}

fn policy_name(p: LossyPolicy) -> &'static str {
    match p {
        LossyPolicy::Error => "error",
        LossyPolicy::Null => "null",
        LossyPolicy::Clamp => "clamp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{map_table, MappingOverrides, MappingRules};
    use crate::model::{Column, ReplicaIdentity, TableName};

    fn mapped(kind: TargetKind, cols: Vec<(&str, PgType)>) -> MappedTable {
        let columns = cols.into_iter().map(|(n, t)| Column::new(n, t)).collect();
        let t = TableSchema {
            oid: 1,
            name: TableName::new("public", "t"),
            columns,
            replica_identity: ReplicaIdentity::Full,
            primary_key: vec![],
            generated: Vec::new(),
        };
        map_table(&MappingRules::builtin(&kind), &t, &MappingOverrides::default()).unwrap()
    }

    #[test]
    fn notes_name_every_lossy_mapping() {
        let maria = TargetKind::mysql_from_version_string("10.11.6-MariaDB");
        let m = mapped(
            maria,
            vec![
                ("a", PgType::TimestampTz(None)),
                ("b", PgType::Numeric { precision: None, scale: None }),
                ("c", PgType::Numeric { precision: Some(12), scale: Some(2) }),
                ("d", PgType::Varchar(Some(20000))),
                ("e", PgType::Int4),
                ("f", PgType::Float8),
            ],
        );
        let notes: Vec<Vec<String>> = m.columns.iter().map(|c| column_notes(&maria, c)).collect();
        assert!(notes[0][0].starts_with("stored as UTC"), "{notes:?}");
        assert!(notes[0][0].ends_with("the copy stops with an error (policy error)"), "{notes:?}");
        assert!(notes[1][0].starts_with("holds 35 integer and 30 fraction digits"), "{notes:?}");
        assert_eq!(notes[2], vec!["NaN: the copy stops with an error (policy error)".to_string()]);
        assert!(notes[3][0].contains("length limit 20000 is not enforced"), "{notes:?}");
        assert!(notes[4].is_empty());
        assert!(notes[5][0].starts_with("NaN and ±Infinity"));
        let pg = mapped(TargetKind::Postgres, vec![("a", PgType::TimestampTz(None))]);
        assert!(column_notes(&TargetKind::Postgres, &pg.columns[0]).is_empty());
        let lite = mapped(TargetKind::Sqlite, vec![("a", PgType::TimestampTz(None))]);
        assert!(column_notes(&TargetKind::Sqlite, &lite.columns[0])[0].contains("UTC with a trailing Z"));
    }
}

//! `xdb schema`: the target DDL the plan maps to, printed for review or
//! applied, and an optional scan of the source data for values the mapping
//! would reject or alter under each column's lossy policy.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::copy::ranges::CopyRange;
use crate::copy::source_reader::SnapshotReader;
use crate::copy::{map_tables, CopyError};
use crate::mapping::{self, MappedTable};
use crate::model::{Row, TableSchema};
use crate::plan::Plan;
use crate::sink::target::TargetConn;
use crate::source::postgres::catalog::{load_indexes, load_table, TypeCache};
use crate::source::postgres::client;

/// Examples kept per column by `--scan`.
const SCAN_EXAMPLES: usize = 3;

/// What `xdb schema` produced.
#[derive(Debug, Default)]
pub struct SchemaOutcome {
    /// The DDL script (with comments) for people.
    pub script: String,
    /// Tables created by `--apply`.
    pub created: Vec<String>,
    /// Tables that already existed on the target (left as they are).
    pub existing: Vec<String>,
    /// `--scan` findings, one line per column with problems.
    pub scan: Vec<String>,
}

/// Builds (and with `apply`, creates) the target tables; with `scan`, reads
/// every source row through the conversion the copy will use.
pub async fn run(plan: &Plan, apply: bool, scan: bool) -> Result<SchemaOutcome, CopyError> {
    let source = client::connect(&plan.source.url, "xdb schema").await.map_err(|e| CopyError::Source(e.to_string()))?;
    let mut types = TypeCache::new();
    let mut schemas = Vec::new();
    for t in &plan.tables {
        let s = load_table(&source, &mut types, t)
            .await
            .map_err(|e| CopyError::Source(e.to_string()))?
            .ok_or_else(|| CopyError::MissingTable(t.to_string()))?;
        schemas.push(Arc::new(s));
    }
    let mut target = TargetConn::connect(&plan.target.url).await.map_err(|e| CopyError::Target(e.to_string()))?;
    let kind = target.target_kind().await.map_err(|e| CopyError::Target(e.to_string()))?;
    let mapped = map_tables(plan, &kind, &schemas)?;

    let mut out = SchemaOutcome::default();
    let _ = writeln!(out.script, "-- xdb schema for plan {} → {} ({kind})", plan.name, plan.target.url.redacted());
    for m in &mapped {
        let _ = writeln!(out.script, "\n-- {} → {}", m.source.name, m.target_name);
        for w in &m.warnings {
            let _ = writeln!(out.script, "-- note: {w}");
        }
        for (c, mc) in m.source.columns.iter().zip(&m.columns) {
            let _ = writeln!(
                out.script,
                "--   {:<24} {:<28} → {}{}",
                c.name,
                c.pg_type.sql_name(),
                mc.target_type,
                if mc.policy == crate::plan::LossyPolicy::Error {
                    String::new()
                } else {
                    format!(" (lossy: {:?})", mc.policy).to_lowercase()
                }
            );
        }
        for stmt in mapping::create_table_ddl(m, &kind) {
            let _ = writeln!(out.script, "{stmt};");
        }
        let indexes = load_indexes(&source, m.source.oid).await.map_err(|e| CopyError::Source(e.to_string()))?;
        let (index_ddl, skipped) = crate::copy::index_ddl(m, &indexes, &kind);
        if !index_ddl.is_empty() {
            let _ = writeln!(out.script, "-- built by the copy after the data is loaded:");
            for stmt in index_ddl {
                let _ = writeln!(out.script, "-- {stmt};");
            }
        }
        for s in skipped {
            let _ = writeln!(out.script, "-- not rebuilt: {s}");
        }
        if apply {
            let name = m.source.name.to_string();
            match target.table_rows(&m.source.name).await.map_err(|e| CopyError::Target(e.to_string()))? {
                Some(_) => out.existing.push(name),
                None => {
                    let ddl = mapping::create_table_ddl(m, &kind);
                    target
                        .execute_batch(&ddl, &format!("creating the target table for {name}"))
                        .await
                        .map_err(|e| CopyError::Target(e.to_string()))?;
                    out.created.push(name);
                }
            }
        }
    }
    if scan {
        for (m, s) in mapped.iter().zip(&schemas) {
            out.scan.extend(scan_table(plan, m, s).await?);
        }
    }
    Ok(out)
}

/// Reads every row of a table through the target conversion; one line per
/// column whose values would fail or change.
async fn scan_table(plan: &Plan, mapped: &Arc<MappedTable>, schema: &TableSchema) -> Result<Vec<String>, CopyError> {
    let reader = SnapshotReader::open_own(&plan.source.url).await?;
    let (tx, mut rx) = mpsc::channel::<Vec<Row>>(4);
    let m = mapped.clone();
    let check = tokio::spawn(async move {
        // column → (count, examples)
        let mut found: BTreeMap<usize, (u64, Vec<String>)> = BTreeMap::new();
        while let Some(rows) = rx.recv().await {
            for row in &rows {
                for i in 0..m.columns.len() {
                    let problem = match m.prepare(i, row) {
                        Err(e) => Some(e.to_string()),
                        Ok(v) if *v != row[i] => Some(format!(
                            "{}.{}: a value is written as {:?} (policy {:?})",
                            m.source.name, m.columns[i].name, v, m.columns[i].policy
                        )),
                        Ok(_) => None,
                    };
                    if let Some(p) = problem {
                        let e = found.entry(i).or_default();
                        e.0 += 1;
                        if e.1.len() < SCAN_EXAMPLES {
                            e.1.push(p);
                        }
                    }
                }
            }
        }
        found
    });
    reader.read_range(schema, &CopyRange::Whole, &tx).await?;
    drop(tx);
    let found = check.await.map_err(|e| CopyError::Source(e.to_string()))?;
    Ok(found
        .into_iter()
        .map(|(i, (n, examples))| {
            format!(
                "{}.{}: {n} value(s) the target cannot hold exactly; e.g.\n    {}",
                mapped.source.name,
                mapped.columns[i].name,
                examples.join("\n    ")
            )
        })
        .collect())
}

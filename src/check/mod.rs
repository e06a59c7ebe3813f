//! `xdb check`: the preflight a DBA runs before anything is touched.
//!
//! Every check only reads (settings, catalogs, privileges); the one write
//! probe on each target leaves nothing behind. Each failure comes with the
//! exact fix: the SQL or configuration line to change.

pub(crate) mod binlog;
mod continuity;
pub mod existing_target;
pub(crate) mod log;
mod report;
mod runbook;
mod source;
mod target;

pub use report::{CheckReport, CheckSection};

use crate::mapping::{self, MappingOverrides, MappingRules, TargetKind};
use crate::model::TableSchema;
use crate::plan::{Plan, TargetUrl};
use crate::sink::TargetConn;

/// Runs every check of the plan against the real servers.
pub async fn run(plan: &Plan) -> CheckReport {
    let mut sections = Vec::new();
    let facts = source::check_source(plan, &mut sections).await;
    target::check_target(plan, &mut sections).await;
    sections.push(continuity::check(plan).await);
    if !facts.tables.is_empty() {
        sections.push(check_mapping(plan, &facts.tables).await);
    }
    sections.extend(runbook::check(plan).await);
    CheckReport { sections, way_back: false }
}

/// Every column of every table through the plan's mapping rules: the same
/// mapping the copy and the apply will use, so a type that cannot move is
/// found here and not an hour into the copy.
async fn check_mapping(plan: &Plan, tables: &[TableSchema]) -> CheckSection {
    let mut s = CheckSection::new("Type mapping");
    let kind = match &plan.target.url {
        TargetUrl::Nats(_) => {
            s.pass("a log target carries the source's values as Debezium events (README: the event format): no type mapping");
            return s;
        }
        TargetUrl::Sqlite(_) => Some(TargetKind::Sqlite),
        TargetUrl::Postgres(_) => Some(TargetKind::Postgres),
        // The MySQL flavour and version decide some mappings (JSON).
        TargetUrl::Mysql(_) => match TargetConn::connect(&plan.target.url).await {
            Ok(mut conn) => conn.target_kind().await.ok(),
            Err(_) => None,
        },
    };
    let Some(kind) = kind else {
        s.info("not checked: the target is unreachable (see above)");
        return s;
    };
    let rules = match MappingRules::load(&kind, plan.mapping.rules.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            s.fail(plan.scrub(&e.to_string()), "fix mapping.rules in the plan");
            return s;
        }
    };
    let overrides = MappingOverrides::from_plan(&plan.mapping);
    for problem in
        crate::plan::naming::name_problems(&overrides.naming(kind.dialect()), &tables.iter().collect::<Vec<_>>())
    {
        s.fail(problem, "see the naming rule in the README (`xdb schema`)");
    }
    for problem in mapping::unknown_columns(&plan.mapping, &tables.iter().collect::<Vec<_>>()) {
        s.fail(problem, "correct the key in the plan (schema.table.column, as the source names the column)");
    }
    let mut all_mapped = Vec::new();
    for t in tables {
        match mapping::map_table(&rules, t, &overrides) {
            Ok(m) => {
                let cols: Vec<String> = m
                    .columns
                    .iter()
                    .map(|c| format!("{} {} → {}", c.name, c.source_type.sql_name(), c.target_type))
                    .collect();
                s.pass(format!("{} → {}: {}", t.name, kind, cols.join(", ")));
                for g in &m.generated {
                    s.pass(g.describe(&t.name.to_string(), &kind));
                }
                all_mapped.push(std::sync::Arc::new(m.clone()));
                for w in &m.warnings {
                    s.warn(
                        format!("{}: {w}", t.name),
                        "xdb writes every value itself, so this matters only for rows written directly on the \
                         target after the cutover; add it there by hand if the application relies on it, or \
                         override the column under mapping.columns",
                    );
                }
            }
            // Every problem of the table, not only the first.
            Err(_) => {
                for e in mapping::check_table(&rules, t, &overrides) {
                    let text = e.to_string();
                    let (title, fix) =
                        text.split_once('\n').unwrap_or((text.as_str(), "add a column override under mapping.columns"));
                    s.fail(title.to_string(), fix.trim().to_string());
                }
            }
        }
    }
    check_existing_tables(plan, &all_mapped, &mut s).await;
    s
}

/// Existing target tables against the mapping (`existing_target`).
async fn check_existing_tables(plan: &Plan, mapped: &[std::sync::Arc<mapping::MappedTable>], s: &mut CheckSection) {
    // Connecting to a SQLite file that is not there would create it.
    if let TargetUrl::Sqlite(path) = &plan.target.url {
        if !path.exists() {
            return;
        }
    }
    let Ok(mut conn) = TargetConn::connect(&plan.target.url).await else { return };
    let Ok(source) = crate::pg_conn::client::connect(&plan.source.url, "xdb check").await else { return };
    if let Some(kind) = mapped.first().map(|m| m.kind) {
        for m in mapped {
            let Ok(indexes) = crate::source::postgres::catalog::load_indexes(&source, m.source.oid).await else {
                continue;
            };
            for l in mapping::unenforced_unique(m, &crate::copy::index_defs(&indexes), &kind) {
                s.warn(
                    format!("lossy: {l}"),
                    "override the column type under mapping.columns, or accept it (the source enforces uniqueness                      until the cutover)",
                );
            }
        }
    }
    match existing_target::check_plan(plan, &mut conn, &source, mapped).await {
        Ok(found) if found.is_empty() => {}
        Ok(found) => {
            for m in found {
                s.fail(
                    format!("existing target table {}: {}", m.table, m.problem),
                    format!("run on the target: {}", m.fix),
                );
            }
        }
        Err(e) => s.warn(format!("existing target tables not checked: {}", plan.scrub(&e.to_string())), "see above"),
    }
}

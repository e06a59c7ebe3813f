//! `xdb check`: the preflight a DBA runs before anything is touched.
//!
//! Every check only reads (settings, catalogs, privileges); the one write
//! probe on each target leaves nothing behind. Each failure comes with the
//! exact fix: the SQL or configuration line to change.

mod report;
mod source;
mod target;

pub use report::{CheckItem, CheckReport, CheckSection, Status};

use crate::plan::Plan;

/// Runs every check of the plan against the real servers.
pub async fn run(plan: &Plan) -> CheckReport {
    let mut sections = Vec::new();
    let facts = source::check_source(plan, &mut sections).await;
    if !facts.tables.is_empty() {
        let mut types = CheckSection::new("Column types");
        for t in &facts.tables {
            let mut names: Vec<String> = Vec::new();
            for c in &t.columns {
                let n = c.pg_type.sql_name();
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            types.info(format!("{}: {}", t.name, names.join(", ")));
        }
        sections.push(types);
    }
    target::check_target(plan, &mut sections).await;
    CheckReport { sections }
}

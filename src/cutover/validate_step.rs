//! The `validate` step: the validator ([`crate::validate`]) on the listed
//! tables (default: every planned table), failing the step on any
//! difference or on a table that could not be compared.

use super::actions::{ActionError, Env, Outcome};
use crate::validate::{self, ValidateOptions};

/// Validates the listed tables; fails the step on any difference.
pub async fn run(env: &mut Env<'_>, tables: Option<&[String]>, checksums: bool) -> Result<Outcome, ActionError> {
    let opts = ValidateOptions { tables: tables.map(<[String]>::to_vec), checksums, ..Default::default() };
    let report = validate::run(env.plan, &opts).await.map_err(Box::new)?;
    let text = env.plan.scrub(&report.render_text());
    let notes: Vec<String> = text.lines().map(str::to_string).filter(|l| !l.trim().is_empty()).collect();
    if report.is_equal() {
        let mode = if checksums { "row counts and checksums" } else { "row counts" };
        let summary = format!("{} table(s) equal ({mode})", report.tables.len());
        Ok(Outcome { notes, validation: Some(summary), ..Default::default() })
    } else {
        Err(ActionError::Failed(format!("validation found differences:\n{text}")))
    }
}

/// The target's row count of every planned table (missing tables count 0),
/// for telling what writes the target took after the traffic switch.
pub async fn target_counts(env: &mut Env<'_>) -> Result<Vec<(String, u64)>, ActionError> {
    let tables = env.plan.tables.clone();
    let naming = crate::plan::naming::Naming::of_plan(env.plan);
    let t = env.target().await?;
    let mut out = Vec::new();
    for table in &tables {
        let n = t.table_rows(&naming.table(table)).await?.unwrap_or(0);
        out.push((table.to_string(), n));
    }
    Ok(out)
}

/// "orders +3, customers -1" — the tables whose counts changed.
pub fn count_changes(before: &[(String, u64)], now: &[(String, u64)]) -> (i64, String) {
    let mut total = 0i64;
    let mut parts = Vec::new();
    for (table, n) in now {
        let was = before.iter().find(|(t, _)| t == table).map(|(_, n)| *n).unwrap_or(0);
        let d = *n as i64 - was as i64;
        if d != 0 {
            total += d;
            parts.push(format!("{table} {d:+}"));
        }
    }
    (total, if parts.is_empty() { "no table's row count changed".into() } else { parts.join(", ") })
}

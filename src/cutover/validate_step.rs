//! The `validate` step. The full validator (`crate::validate`, chunked
//! checksums and row diffs) is being built in parallel; until it lands this
//! step compares row counts (`COUNT(*)` on both sides, per table) behind
//! the one function [`run`].
//!
//! At merge the lead swaps the body of [`run`] for
//! `crate::validate::run(plan, &ValidateOptions { tables, checksums, ..Default::default() })`,
//! failing the step when `!report.is_equal()` and showing `report.render_text()`.

use super::actions::{ActionError, Env, Outcome};
use crate::model::TableName;

/// Compares the listed tables (default: every planned table) on both sides;
/// fails the step on any difference.
pub async fn run(env: &mut Env<'_>, tables: Option<&[String]>, checksums: bool) -> Result<Outcome, ActionError> {
    let tables: Vec<TableName> = match tables {
        None => env.plan.tables.clone(),
        Some(names) => {
            let mut v = Vec::new();
            for n in names {
                let t =
                    TableName::parse(n).ok_or_else(|| ActionError(format!("validate: invalid table name {n:?}")))?;
                if !env.plan.tables.contains(&t) {
                    return Err(ActionError(format!("validate: {t} is not one of the plan's tables")));
                }
                v.push(t);
            }
            v
        }
    };
    let mut notes = Vec::new();
    let mut differ = Vec::new();
    for t in &tables {
        let source: i64 = env
            .source()
            .await?
            .query_one(&format!("SELECT COUNT(*) FROM {}", t.pg_quoted()), &[])
            .await
            .map_err(|e| {
                ActionError(format!("source: counting {t}: {}", crate::source::postgres::client::error_text(&e)))
            })?
            .get(0);
        let target = env.target().await?.table_rows(t).await.map_err(|e| ActionError(e.to_string()))?;
        match target {
            None => differ.push(format!("{t}: missing on the target")),
            Some(n) if n as i64 != source => {
                differ.push(format!("{t}: {source} rows on the source, {n} on the target"))
            }
            Some(n) => notes.push(format!("{t}: {n} rows on both sides")),
        }
    }
    if !checksums {
        notes.push("(row counts only, as asked)".into());
    } else {
        notes.push("(row counts only: checksums come with the validator)".into());
    }
    if differ.is_empty() {
        let summary = format!("{} table(s) equal by row count", tables.len());
        Ok(Outcome { notes, validation: Some(summary), ..Default::default() })
    } else {
        Err(ActionError(format!("validation found differences: {}", differ.join("; "))))
    }
}

/// The target's row count of every planned table (missing tables count 0),
/// for telling what writes the target took after the traffic switch.
pub async fn target_counts(env: &mut Env<'_>) -> Result<Vec<(String, u64)>, ActionError> {
    let tables = env.plan.tables.clone();
    let t = env.target().await?;
    let mut out = Vec::new();
    for table in &tables {
        let n = t.table_rows(table).await.map_err(|e| ActionError(e.to_string()))?.unwrap_or(0);
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

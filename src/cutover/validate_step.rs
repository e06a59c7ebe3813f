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

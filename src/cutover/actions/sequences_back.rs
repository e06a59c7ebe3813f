//! `sync_sequences: { back: true }`: the way back's counterpart of
//! `sync_sequences`. After the application wrote to the target (and the
//! reverse stream brought its rows back), the original source's sequences
//! must start past every value the target handed out, or the first insert
//! after switching back collides with a row that came back.
//!
//! For each planned table, the source columns owned by a sequence (serial
//! or identity) are matched with the target column of the same name; the
//! target's next value is the larger of its `AUTO_INCREMENT` (MySQL/MariaDB,
//! which counts values handed out by rolled-back inserts too) and
//! `max(column) + 1`; the source sequence is set to that plus `margin` with
//! `setval(seq, n, false)`, never lowered.

use super::sequences::{next_value, read_source};
use super::{ActionError, Env, Outcome};
use crate::plan::naming::{Naming, SqlDialect};
use crate::plan::Plan;

/// For `--dry-run`.
pub fn describe(plan: &Plan, margin: i64) -> Vec<String> {
    vec![
        format!(
            "on the target: the next value of every column of {} that a source sequence owns (AUTO_INCREMENT, max + 1)",
            plan.tables.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
        ),
        format!("on the source: SELECT setval(<sequence>, <target next + {margin}>, false), never lowering it"),
    ]
}

fn parse(v: Option<String>) -> Option<i64> {
    v.and_then(|s| s.trim().parse().ok())
}

/// Sets every source sequence past the target's values.
pub async fn sync_back(env: &mut Env<'_>, margin: i64) -> Result<Outcome, ActionError> {
    let seqs = read_source(env, 0).await?;
    if seqs.is_empty() {
        return Ok(Outcome {
            notes: vec!["no planned table has a sequence-owned column (serial or identity): nothing to set".into()],
            ..Default::default()
        });
    }
    let mut notes = Vec::new();
    let naming = Naming::of_plan(env.plan);
    for s in &seqs {
        let dialect = naming.dialect;
        let table = naming.table_ident(&s.table);
        let col = dialect.ident(&s.column);
        let max = parse(env.target_scalar(&format!("SELECT MAX({col}) FROM {table}")).await?);
        let auto = match dialect {
            SqlDialect::Mysql => parse(
                env.target_scalar(&format!(
                    "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{}'",
                    naming.flat_table_name(&s.table).replace('\'', "''")
                ))
                .await?,
            ),
            _ => None,
        };
        let target_next = max.map(|m| m.saturating_add(1)).into_iter().chain(auto).max().unwrap_or(1);
        let want = target_next.saturating_add(margin);
        let c = env.source().await?;
        let err = |what: &str, e: tokio_postgres::Error| ActionError::source(format!("{what} {}", s.sequence), e);
        let r = c
            .query_one(
                &format!(
                    "SELECT s.last_value, s.is_called, p.seqincrement FROM {} s, pg_sequence p WHERE p.seqrelid = $1::text::regclass",
                    s.sequence
                ),
                &[&s.sequence],
            )
            .await
            .map_err(|e| err("reading", e))?;
        let now = next_value(r.get(0), r.get(1), r.get(2));
        if now >= want {
            notes.push(format!(
                "{}.{}: source {} already hands out {now} (target next {target_next}): kept",
                s.table, s.column, s.sequence
            ));
            continue;
        }
        c.execute("SELECT setval($1::text::regclass, $2, false)", &[&s.sequence, &want])
            .await
            .map_err(|e| err("setting", e))?;
        notes.push(format!(
            "{}.{}: source {} next value {want} (was {now}; target next {target_next})",
            s.table, s.column, s.sequence
        ));
    }
    Ok(Outcome { notes, ..Default::default() })
}

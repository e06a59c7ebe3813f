//! `sync_sequences`: after the freeze, the target's generated keys must
//! start past every value the source handed out, or the first insert on the
//! target collides with a replicated row.
//!
//! For each planned table, the source columns owned by a sequence (serial
//! or identity, found with `pg_get_serial_sequence`) give the next value the
//! source would have used; the target is set to that plus `margin`:
//! MySQL/MariaDB `ALTER TABLE … AUTO_INCREMENT = n`, PostgreSQL `setval`
//! (never lowering the target's own sequence), SQLite `sqlite_sequence`
//! (only tables declared AUTOINCREMENT have one; others use max(rowid)+1,
//! which is reported).

use super::{ActionError, Env, Outcome};
use crate::model::TableName;
use crate::plan::naming::Naming;
use crate::plan::Plan;
use crate::sink::TargetConn;

/// One source sequence and the value the target must start at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqValue {
    pub table: TableName,
    pub column: String,
    pub sequence: String,
    /// The next value the target should hand out (source next + margin).
    pub next: i64,
}

/// The value a sequence hands out next.
pub fn next_value(last_value: i64, is_called: bool, increment: i64) -> i64 {
    if is_called {
        last_value.saturating_add(increment)
    } else {
        last_value
    }
}

/// For `--dry-run`.
pub fn describe(plan: &Plan, margin: i64) -> Vec<String> {
    let what = match plan.target.url.kind_name() {
        "mysql" => "ALTER TABLE <table> AUTO_INCREMENT = <next>",
        "postgres" => "SELECT setval(<sequence>, <next>, false) (never lowering the target's value)",
        _ => "sqlite_sequence upsert for AUTOINCREMENT tables",
    };
    vec![
        format!(
            "on the source: the next value of every sequence owning a column of {} (pg_get_serial_sequence)",
            plan.tables.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
        ),
        format!("on the target: {what}, next = source next + {margin}"),
    ]
}

fn err(what: &str, e: tokio_postgres::Error) -> ActionError {
    ActionError::source(what, e)
}

/// Reads the source's sequences of the planned tables.
pub(super) async fn read_source(env: &mut Env<'_>, margin: i64) -> Result<Vec<SeqValue>, ActionError> {
    let tables = env.plan.tables.clone();
    let c = env.source().await?;
    let mut out = Vec::new();
    for t in tables {
        let q = t.pg_quoted();
        let rows = c
            .query(
                "SELECT a.attname::text, pg_get_serial_sequence($1, a.attname::text) FROM pg_attribute a \
                 WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped \
                 AND pg_get_serial_sequence($1, a.attname::text) IS NOT NULL ORDER BY a.attnum",
                &[&q],
            )
            .await
            .map_err(|e| err(&format!("finding the sequences of {t}"), e))?;
        for row in rows {
            let (column, sequence): (String, String) = (row.get(0), row.get(1));
            let sql = format!(
                "SELECT s.last_value, s.is_called, p.seqincrement FROM {sequence} s, pg_sequence p WHERE p.seqrelid = $1::text::regclass"
            );
            let r = c.query_one(&sql, &[&sequence]).await.map_err(|e| err(&format!("reading {sequence}"), e))?;
            let next = next_value(r.get(0), r.get(1), r.get(2)).saturating_add(margin);
            out.push(SeqValue { table: t.clone(), column, sequence, next });
        }
    }
    Ok(out)
}

/// Sets every target sequence past the source's.
pub async fn sync(env: &mut Env<'_>, margin: i64) -> Result<Outcome, ActionError> {
    let seqs = read_source(env, margin).await?;
    if seqs.is_empty() {
        return Ok(Outcome {
            notes: vec!["no planned table has a sequence-owned column (serial or identity): nothing to set".into()],
            ..Default::default()
        });
    }
    let naming = Naming::of_plan(env.plan);
    let t = env.target().await?;
    let mut notes = Vec::new();
    for s in &seqs {
        let note = set_one(t, &naming, s).await?;
        notes.push(format!("{}.{} (source {}): {note}", s.table, s.column, s.sequence));
    }
    Ok(Outcome { notes, ..Default::default() })
}

async fn set_one(t: &mut TargetConn, naming: &Naming, s: &SeqValue) -> Result<String, ActionError> {
    let table = naming.flat_table_name(&s.table);
    let context = || format!("setting the next value of {}.{} to {}", s.table, s.column, s.next);
    let driver = |source| ActionError::TargetDriver { context: context(), source };
    match t {
        TargetConn::Mysql(c) => c.set_next_value(&table, s.next).await.map_err(driver),
        TargetConn::Sqlite(c) => {
            c.set_next_value(&table, s.next).map_err(|e| ActionError::Failed(e).context(context()))
        }
        TargetConn::Postgres(c) => {
            let table = naming.table_ident(&s.table);
            c.set_next_value(&table, &s.column, s.next).await.map_err(driver)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::next_value;

    #[test]
    fn next_values() {
        assert_eq!(next_value(1, false, 1), 1);
        assert_eq!(next_value(41, true, 1), 42);
        assert_eq!(next_value(40, true, 10), 50);
        assert_eq!(next_value(i64::MAX, true, 1), i64::MAX);
    }
}

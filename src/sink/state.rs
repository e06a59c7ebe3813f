//! xdb's own bookkeeping on the target, written in the same transactions as
//! the data it describes (invariant *exactly once*, docs/architecture.md):
//!
//! - `state`: per slot, the end LSN of the last applied source commit — the
//!   only position xdb ever confirms to PostgreSQL — and the slot's
//!   consistent point;
//! - `tables`: per slot and table, the LSN the table's copy is consistent at
//!   (its sync LSN, invariant *per-table sync LSN*) and whether the copy finished;
//! - `copy_ranges`: finished ranges of a split table copy, so a restart
//!   re-copies only the unfinished ones.
//!
//! On PostgreSQL targets the tables live in schema `xdb`; on MySQL and SQLite
//! they are `xdb_state`, `xdb_tables`, `xdb_copy_ranges`. LSNs are stored as
//! BIGINT (u64 values below 2^63, which every real LSN is).

use crate::plan::naming::SqlDialect;

/// The qualified name of one of xdb's state tables.
pub fn state_table(d: SqlDialect, name: &str) -> String {
    match d {
        SqlDialect::Postgres => format!("xdb.{}", d.ident(name)),
        _ => d.ident(&format!("xdb_{name}")),
    }
}

/// Statements that create the state tables when missing (idempotent).
pub fn create_statements(d: SqlDialect) -> Vec<String> {
    let text = match d {
        SqlDialect::Mysql => "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        _ => "TEXT",
    };
    let slot = match d {
        SqlDialect::Mysql => "VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        _ => "TEXT",
    };
    let engine = if d == SqlDialect::Mysql { " ENGINE=InnoDB" } else { "" };
    let mut v = Vec::new();
    if d == SqlDialect::Postgres {
        v.push("CREATE SCHEMA IF NOT EXISTS xdb".to_string());
    }
    v.push(format!(
        "CREATE TABLE IF NOT EXISTS {} (slot {slot} NOT NULL PRIMARY KEY, applied_lsn BIGINT NOT NULL, \
         applied_commit_time_us BIGINT NOT NULL, consistent_point BIGINT NOT NULL, updated_at_us BIGINT NOT NULL){engine}",
        state_table(d, "state")
    ));
    v.push(format!(
        "CREATE TABLE IF NOT EXISTS {} (slot {slot} NOT NULL, table_name {text} NOT NULL, sync_lsn BIGINT NOT NULL, \
         copy_done SMALLINT NOT NULL, rows_copied BIGINT NOT NULL, PRIMARY KEY (slot, table_name)){engine}",
        state_table(d, "tables")
    ));
    v.push(format!(
        "CREATE TABLE IF NOT EXISTS {} (slot {slot} NOT NULL, table_name {text} NOT NULL, range_no INTEGER NOT NULL, \
         rows_copied BIGINT NOT NULL, PRIMARY KEY (slot, table_name, range_no)){engine}",
        state_table(d, "copy_ranges")
    ));
    v
}

fn ph(d: SqlDialect, n: usize) -> String {
    if d == SqlDialect::Postgres {
        format!("${n}")
    } else {
        "?".into()
    }
}

/// Reads (applied_lsn, applied_commit_time_us, consistent_point) of a slot;
/// one parameter: the slot.
pub fn select_position(d: SqlDialect) -> String {
    format!(
        "SELECT applied_lsn, applied_commit_time_us, consistent_point FROM {} WHERE slot = {}",
        state_table(d, "state"),
        ph(d, 1)
    )
}

/// Records a slot's applied position; parameters: slot, applied_lsn,
/// applied_commit_time_us, consistent_point, updated_at_us. Only moves
/// forward: a lower LSN leaves the row as it is.
pub fn upsert_position(d: SqlDialect) -> String {
    let t = state_table(d, "state");
    let p: Vec<String> = (1..=5).map(|n| ph(d, n)).collect();
    let values = format!(
        "INSERT INTO {t} (slot, applied_lsn, applied_commit_time_us, consistent_point, updated_at_us) VALUES ({})",
        p.join(", ")
    );
    match d {
        SqlDialect::Mysql => format!(
            "{values} ON DUPLICATE KEY UPDATE \
             applied_commit_time_us = IF(VALUES(applied_lsn) >= applied_lsn, VALUES(applied_commit_time_us), applied_commit_time_us), \
             applied_lsn = GREATEST(applied_lsn, VALUES(applied_lsn)), updated_at_us = VALUES(updated_at_us)"
        ),
        SqlDialect::Sqlite | SqlDialect::Postgres => {
            let greatest = if d == SqlDialect::Sqlite { "MAX" } else { "GREATEST" };
            format!(
                "{values} ON CONFLICT (slot) DO UPDATE SET \
                 applied_commit_time_us = CASE WHEN excluded.applied_lsn >= {t}.applied_lsn THEN excluded.applied_commit_time_us ELSE {t}.applied_commit_time_us END, \
                 applied_lsn = {greatest}({t}.applied_lsn, excluded.applied_lsn), updated_at_us = excluded.updated_at_us"
            )
        }
    }
}

/// Reads (table_name, sync_lsn, copy_done, rows_copied) of every table of a
/// slot; one parameter: the slot.
pub fn select_tables(d: SqlDialect) -> String {
    format!(
        "SELECT table_name, sync_lsn, copy_done, rows_copied FROM {} WHERE slot = {}",
        state_table(d, "tables"),
        ph(d, 1)
    )
}

/// Records a table's copy state; parameters: slot, table_name, sync_lsn,
/// copy_done (0/1), rows_copied.
pub fn upsert_table(d: SqlDialect) -> String {
    let t = state_table(d, "tables");
    let p: Vec<String> = (1..=5).map(|n| ph(d, n)).collect();
    let values =
        format!("INSERT INTO {t} (slot, table_name, sync_lsn, copy_done, rows_copied) VALUES ({})", p.join(", "));
    match d {
        SqlDialect::Mysql => format!(
            "{values} ON DUPLICATE KEY UPDATE sync_lsn = VALUES(sync_lsn), copy_done = VALUES(copy_done), rows_copied = VALUES(rows_copied)"
        ),
        _ => format!(
            "{values} ON CONFLICT (slot, table_name) DO UPDATE SET sync_lsn = excluded.sync_lsn, \
             copy_done = excluded.copy_done, rows_copied = excluded.rows_copied"
        ),
    }
}

/// Records a finished copy range; parameters: slot, table_name, range_no, rows_copied.
pub fn insert_range(d: SqlDialect) -> String {
    let p: Vec<String> = (1..=4).map(|n| ph(d, n)).collect();
    format!(
        "INSERT INTO {} (slot, table_name, range_no, rows_copied) VALUES ({})",
        state_table(d, "copy_ranges"),
        p.join(", ")
    )
}

/// Lists finished ranges (range_no, rows_copied) of a table; parameters: slot, table_name.
pub fn select_ranges(d: SqlDialect) -> String {
    format!(
        "SELECT range_no, rows_copied FROM {} WHERE slot = {} AND table_name = {} ORDER BY range_no",
        state_table(d, "copy_ranges"),
        ph(d, 1),
        ph(d, 2)
    )
}

/// Forgets a slot's state entirely (cleanup, or a fresh start after the
/// slot was lost); one parameter: the slot. One statement per table.
pub fn delete_slot(d: SqlDialect) -> Vec<String> {
    ["copy_ranges", "tables", "state"]
        .iter()
        .map(|t| format!("DELETE FROM {} WHERE slot = {}", state_table(d, t), ph(d, 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_per_dialect() {
        assert_eq!(state_table(SqlDialect::Postgres, "state"), "xdb.\"state\"");
        assert_eq!(state_table(SqlDialect::Mysql, "state"), "`xdb_state`");
        assert_eq!(create_statements(SqlDialect::Postgres).len(), 4);
        assert!(upsert_position(SqlDialect::Sqlite).contains("MAX("));
        assert!(select_position(SqlDialect::Postgres).ends_with("slot = $1"));
    }
}

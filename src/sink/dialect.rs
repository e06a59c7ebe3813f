//! The SQL each target speaks for applying changes: placeholders, upsert
//! and keyless matching (identifiers and table names are
//! [`crate::plan::naming`]'s). Pure text generation; the parameter order
//! is [`Op::params`](super::apply_plan::Op::params)'s.

use std::fmt::Write as _;

use super::apply_plan::Op;
use crate::model::TableSchema;
use crate::plan::naming::SqlDialect;

impl SqlDialect {
    /// Opens a write transaction (SQLite: the write lock taken at once,
    /// so a busy database fails here, before any statement ran).
    pub(crate) fn begin(self) -> &'static str {
        match self {
            SqlDialect::Mysql => "START TRANSACTION",
            SqlDialect::Sqlite => "BEGIN IMMEDIATE",
            SqlDialect::Postgres => "BEGIN",
        }
    }

    fn placeholder(self, n: usize) -> String {
        match self {
            SqlDialect::Postgres => format!("${n}"),
            _ => "?".to_string(),
        }
    }

    /// NULL-safe equality, for matching whole rows of keyless tables.
    fn null_safe_eq(self, col: &str, ph: &str) -> String {
        match self {
            SqlDialect::Mysql => format!("{col} <=> {ph}"),
            SqlDialect::Sqlite => format!("{col} IS {ph}"),
            SqlDialect::Postgres => format!("{col} IS NOT DISTINCT FROM {ph}"),
        }
    }

    /// The SQL text of `op` on the target table `table` (its quoted
    /// identifier, `MappedTable::target_ident`).
    pub fn render(self, op: &Op<'_>, table: &str) -> String {
        self.render_with(op, table, &|n, _| self.placeholder(n))
    }

    /// The SQL text of `op`, with `placeholder(n, column)` spelling the n-th
    /// parameter, which binds a value of `column` (PostgreSQL targets cast
    /// their text parameters to the column's type).
    pub fn render_with(self, op: &Op<'_>, t: &str, placeholder: &dyn Fn(usize, usize) -> String) -> String {
        let mut n = 0usize;
        let mut next = |col: usize| {
            n += 1;
            placeholder(n, col)
        };
        let table = op.table();
        let col = |i: usize| self.ident(&table.columns[i].name);
        let mut sql = String::new();
        match op {
            Op::Upsert { rows, .. } | Op::Insert { rows, .. } => {
                let cols: Vec<String> = (0..table.columns.len()).map(col).collect();
                let _ = write!(sql, "INSERT INTO {t} ({}) VALUES ", cols.join(", "));
                for (r, _) in rows.iter().enumerate() {
                    if r > 0 {
                        sql.push_str(", ");
                    }
                    sql.push('(');
                    for c in 0..table.columns.len() {
                        if c > 0 {
                            sql.push_str(", ");
                        }
                        sql.push_str(&next(c));
                    }
                    sql.push(')');
                }
                if matches!(op, Op::Upsert { .. }) {
                    sql.push_str(&self.upsert_tail(table));
                }
            }
            Op::UpdateByKey { set_cols, .. } => {
                let sets: Vec<String> = set_cols.iter().map(|&i| format!("{} = {}", col(i), next(i))).collect();
                let wh: Vec<String> = table.primary_key.iter().map(|&i| format!("{} = {}", col(i), next(i))).collect();
                let _ = write!(sql, "UPDATE {t} SET {} WHERE {}", sets.join(", "), wh.join(" AND "));
            }
            Op::DeleteByKey { keys, .. } | Op::ExpectRows { keys, .. } => {
                let verb = match op {
                    Op::DeleteByKey { .. } => "DELETE",
                    _ => "SELECT COUNT(*)",
                };
                let pk = &table.primary_key;
                if pk.len() == 1 {
                    let phs: Vec<String> = keys.iter().map(|_| next(pk[0])).collect();
                    let _ = write!(sql, "{verb} FROM {t} WHERE {} IN ({})", col(pk[0]), phs.join(", "));
                } else {
                    let cols: Vec<String> = pk.iter().map(|&i| col(i)).collect();
                    let tuples: Vec<String> = keys
                        .iter()
                        .map(|_| format!("({})", pk.iter().map(|&i| next(i)).collect::<Vec<_>>().join(", ")))
                        .collect();
                    let _ = write!(sql, "{verb} FROM {t} WHERE ({}) IN ({})", cols.join(", "), tuples.join(", "));
                }
            }
            Op::UpdateOneMatching { set_cols, .. } => {
                let sets: Vec<String> = set_cols.iter().map(|&i| format!("{} = {}", col(i), next(i))).collect();
                let wh: Vec<String> = (0..table.columns.len()).map(|i| self.null_safe_eq(&col(i), &next(i))).collect();
                let _ = write!(sql, "UPDATE {t} SET {} WHERE {}", sets.join(", "), self.one_row(t, &wh.join(" AND ")));
            }
            Op::DeleteOneMatching { .. } => {
                let wh: Vec<String> = (0..table.columns.len()).map(|i| self.null_safe_eq(&col(i), &next(i))).collect();
                let _ = write!(sql, "DELETE FROM {t} WHERE {}", self.one_row(t, &wh.join(" AND ")));
            }
            Op::Truncate { .. } => match self {
                // MySQL's TRUNCATE commits implicitly: it would split the batch's transaction.
                SqlDialect::Mysql | SqlDialect::Sqlite => {
                    let _ = write!(sql, "DELETE FROM {t}");
                }
                SqlDialect::Postgres => {
                    let _ = write!(sql, "TRUNCATE {t}");
                }
            },
        }
        sql
    }

    /// A WHERE clause body that picks only one of several equal rows.
    fn one_row(self, t: &str, cond: &str) -> String {
        match self {
            SqlDialect::Mysql => format!("{cond} LIMIT 1"),
            SqlDialect::Sqlite => format!("rowid = (SELECT rowid FROM {t} WHERE {cond} LIMIT 1)"),
            SqlDialect::Postgres => format!("ctid = (SELECT ctid FROM {t} WHERE {cond} LIMIT 1)"),
        }
    }

    fn upsert_tail(self, table: &TableSchema) -> String {
        let non_key: Vec<usize> = (0..table.columns.len()).filter(|i| !table.primary_key.contains(i)).collect();
        let col = |i: usize| self.ident(&table.columns[i].name);
        match self {
            SqlDialect::Mysql => {
                if non_key.is_empty() {
                    let k = col(table.primary_key[0]);
                    format!(" ON DUPLICATE KEY UPDATE {k} = {k}")
                } else {
                    let sets: Vec<String> = non_key.iter().map(|&i| format!("{0} = VALUES({0})", col(i))).collect();
                    format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", "))
                }
            }
            SqlDialect::Sqlite | SqlDialect::Postgres => {
                let keys: Vec<String> = table.primary_key.iter().map(|&i| col(i)).collect();
                if non_key.is_empty() {
                    format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", "))
                } else {
                    let sets: Vec<String> = non_key.iter().map(|&i| format!("{0} = excluded.{0}", col(i))).collect();
                    format!(" ON CONFLICT ({}) DO UPDATE SET {}", keys.join(", "), sets.join(", "))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Row, Value};

    fn table(keys: Vec<usize>) -> Arc<TableSchema> {
        crate::model::two_bigint_columns(keys)
    }

    #[test]
    fn renders_each_dialect() {
        let t = table(vec![0]);
        let r1: Row = vec![Value::Int8(1), Value::Int8(2)];
        let r2: Row = vec![Value::Int8(3), Value::Int8(4)];
        let up = Op::Upsert { table: &t, rows: vec![&r1, &r2] };
        assert_eq!(
            SqlDialect::Mysql.render(&up, "`shop__t`"),
            "INSERT INTO `shop__t` (`id`, `v`) VALUES (?, ?), (?, ?) ON DUPLICATE KEY UPDATE `v` = VALUES(`v`)"
        );
        assert_eq!(
            SqlDialect::Postgres.render(&up, "\"shop\".\"t\""),
            "INSERT INTO \"shop\".\"t\" (\"id\", \"v\") VALUES ($1, $2), ($3, $4) ON CONFLICT (\"id\") DO UPDATE SET \"v\" = excluded.\"v\""
        );
        let del = Op::DeleteByKey { table: &t, keys: vec![&r1, &r2] };
        assert_eq!(SqlDialect::Sqlite.render(&del, "\"shop__t\""), "DELETE FROM \"shop__t\" WHERE \"id\" IN (?, ?)");
        let check = Op::ExpectRows { table: &t, keys: vec![&r1, &r2], op: "UPDATE" };
        assert_eq!(
            SqlDialect::Mysql.render(&check, "`shop__t`"),
            "SELECT COUNT(*) FROM `shop__t` WHERE `id` IN (?, ?)"
        );
        let upd = Op::UpdateByKey { table: &t, set_cols: vec![0, 1], new: &r2, key_row: &r1 };
        assert_eq!(
            SqlDialect::Postgres.render(&upd, "\"shop\".\"t\""),
            "UPDATE \"shop\".\"t\" SET \"id\" = $1, \"v\" = $2 WHERE \"id\" = $3"
        );
        let k = table(vec![]);
        let one = Op::DeleteOneMatching { table: &k, old: &r1 };
        assert_eq!(
            SqlDialect::Mysql.render(&one, "`shop__t`"),
            "DELETE FROM `shop__t` WHERE `id` <=> ? AND `v` <=> ? LIMIT 1"
        );
        assert_eq!(
            SqlDialect::Sqlite.render(&one, "\"shop__t\""),
            "DELETE FROM \"shop__t\" WHERE rowid = (SELECT rowid FROM \"shop__t\" WHERE \"id\" IS ? AND \"v\" IS ? LIMIT 1)"
        );
        let composite = table(vec![0, 1]);
        let del2 = Op::DeleteByKey { table: &composite, keys: vec![&r1, &r2] };
        assert_eq!(
            SqlDialect::Postgres.render(&del2, "\"shop\".\"t\""),
            "DELETE FROM \"shop\".\"t\" WHERE (\"id\", \"v\") IN (($1, $2), ($3, $4))"
        );
        let up2 = Op::Upsert { table: &composite, rows: vec![&r1] };
        assert_eq!(
            SqlDialect::Mysql.render(&up2, "`shop__t`"),
            "INSERT INTO `shop__t` (`id`, `v`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `id` = `id`"
        );
        assert_eq!(SqlDialect::Mysql.render(&Op::Truncate { table: &t }, "`shop__t`"), "DELETE FROM `shop__t`");
    }
}

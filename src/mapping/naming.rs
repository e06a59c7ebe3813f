//! Names on the target: each target's SQL flavour, how it quotes an
//! identifier, what a source table is called there (schemas flattened to
//! `<schema>__<table>` where the target has none), and which names a target
//! cannot hold (over its identifier limit, two tables that would become one).

use crate::model::{TableName, TableSchema};

/// A target's SQL flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlDialect {
    Mysql,
    Sqlite,
    Postgres,
}

impl SqlDialect {
    /// Quotes an identifier.
    pub fn ident(self, s: &str) -> String {
        match self {
            SqlDialect::Mysql => format!("`{}`", s.replace('`', "``")),
            SqlDialect::Sqlite | SqlDialect::Postgres => format!("\"{}\"", s.replace('"', "\"\"")),
        }
    }

    /// The target table for a source table: PostgreSQL keeps the schema;
    /// MySQL and SQLite have none, so `public.t` becomes `t` and `s.t`
    /// becomes `s__t` (never silently merging two source tables).
    pub fn table_ident(self, t: &TableName) -> String {
        match self {
            SqlDialect::Postgres => {
                format!("{}.{}", self.ident(&t.schema), self.ident(&super::target_names::target_table_name(self, t)))
            }
            _ => self.ident(&flat_table_name(t)),
        }
    }
}

/// Why the target cannot hold these tables under the names xdb gives them
/// (a name over the target's identifier limit, two source tables that
/// become one target table), one line each; empty when they all fit.
/// Checked before anything is created, so a copy never fails on a name
/// halfway through.
pub fn name_problems(dialect: SqlDialect, tables: &[&TableSchema]) -> Vec<String> {
    let names: Vec<&TableName> = tables.iter().map(|t| &t.name).collect();
    let mut out = super::target_names::table_name_problems(dialect, &names);
    for t in tables {
        for c in &t.columns {
            if super::target_names::too_long(dialect, &c.name) {
                out.push(format!(
                    "{}.{}: the column name is longer than {}",
                    t.name,
                    c.name,
                    super::target_names::limit(dialect)
                ));
            }
        }
    }
    out
}

/// The table name used on targets without schemas (or the plan's
/// `mapping.target_names`, see [`super::target_names`]).
pub fn flat_table_name(t: &TableName) -> String {
    if let Some(name) = super::target_names::overridden(t) {
        name
    } else if t.schema == "public" {
        t.name.clone()
    } else {
        format!("{}__{}", t.schema, t.name)
    }
}
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Column, PgType, ReplicaIdentity};

    fn table(keys: Vec<usize>) -> Arc<TableSchema> {
        let col = |n: &str| Column { type_oid: 20, ..Column::new(n, PgType::Int8) };
        Arc::new(TableSchema {
            oid: 1,
            name: TableName::new("shop", "t"),
            columns: vec![col("id"), col("v")],
            replica_identity: ReplicaIdentity::Default,
            primary_key: keys,
            generated: Vec::new(),
        })
    }

    #[test]
    fn names_over_the_limit_and_collisions_are_found_before_anything_is_created() {
        let named = |schema: &str, name: &str| {
            let mut t = (*table(vec![0])).clone();
            t.name = TableName::new(schema, name);
            t
        };
        let long = named("public", &"x".repeat(60));
        let sales = named("Sales Data", "x");
        let flat = named("public", "Sales Data__x");
        let shop = named("shop", &"y".repeat(60));
        assert!(name_problems(SqlDialect::Mysql, &[&long]).is_empty(), "60 characters fit MySQL");
        let p = name_problems(SqlDialect::Mysql, &[&shop]);
        assert!(p.len() == 1 && p[0].contains("longer than 64"), "{p:?}");
        assert!(name_problems(SqlDialect::Sqlite, &[&shop]).is_empty());
        let p = name_problems(SqlDialect::Sqlite, &[&sales, &flat]);
        assert!(p.len() == 1 && p[0].contains("would both become"), "{p:?}");
        assert!(name_problems(SqlDialect::Postgres, &[&sales, &flat]).is_empty(), "PostgreSQL keeps schemas");
        let euro = named("public", &"é".repeat(40));
        assert!(name_problems(SqlDialect::Mysql, &[&euro]).is_empty(), "40 characters");
        assert_eq!(name_problems(SqlDialect::Postgres, &[&euro]).len(), 1, "80 bytes");
    }
}

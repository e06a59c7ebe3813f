//! Names on the target: each target's SQL flavour, how it quotes an
//! identifier, what a source table is called there (schemas flattened to
//! `<schema>__<table>` where the target has none), and which names a target
//! cannot hold (over its identifier limit, two tables that would become one).

use super::target_names::TargetNames;
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
}

/// What the plan's tables are called on one target: its dialect and the
/// plan's `mapping.target_names`.
#[derive(Debug, Clone)]
pub struct Naming {
    pub dialect: SqlDialect,
    names: TargetNames,
}

/// A source table's table on the target: its name as the target's catalog
/// and messages have it (`schema.table` on PostgreSQL, the flat name
/// elsewhere) and the quoted identifier SQL uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTable {
    pub name: String,
    pub ident: String,
}

impl Naming {
    pub fn new(dialect: SqlDialect, names: TargetNames) -> Self {
        Naming { dialect, names }
    }

    /// The naming of a plan's target (a log keeps schema and table, as
    /// PostgreSQL does).
    pub fn of_plan(plan: &crate::plan::Plan) -> Self {
        use crate::plan::TargetUrl;
        let dialect = match &plan.target.url {
            TargetUrl::Mysql(_) => SqlDialect::Mysql,
            TargetUrl::Sqlite(_) => SqlDialect::Sqlite,
            TargetUrl::Postgres(_) | TargetUrl::Nats(_) => SqlDialect::Postgres,
        };
        Naming::new(dialect, TargetNames::from_mapping(&plan.mapping))
    }

    /// Quotes an identifier.
    pub fn ident(&self, s: &str) -> String {
        self.dialect.ident(s)
    }

    /// The name of `t`'s target table as the target's catalog has it: the
    /// flat name on MySQL/SQLite, the table's name in its schema on
    /// PostgreSQL.
    pub fn target_table_name(&self, t: &TableName) -> String {
        match self.dialect {
            SqlDialect::Postgres => self.names.get(t).map(str::to_string).unwrap_or_else(|| t.name.clone()),
            _ => self.flat_table_name(t),
        }
    }

    /// The table name on targets without schemas: the plan's override, or
    /// `public.t` → `t` and `s.t` → `s__t` (never silently merging two
    /// source tables: [`name_problems`]).
    pub fn flat_table_name(&self, t: &TableName) -> String {
        match self.names.get(t) {
            Some(name) => name.to_string(),
            None => flat_by_rule(t),
        }
    }

    /// The target table for a source table, quoted: PostgreSQL keeps the
    /// schema; MySQL and SQLite have none.
    pub fn table_ident(&self, t: &TableName) -> String {
        match self.dialect {
            SqlDialect::Postgres => format!("{}.{}", self.ident(&t.schema), self.ident(&self.target_table_name(t))),
            _ => self.ident(&self.flat_table_name(t)),
        }
    }

    /// [`TargetTable`] of a source table.
    pub fn table(&self, t: &TableName) -> TargetTable {
        let name = match self.dialect {
            SqlDialect::Postgres => format!("{}.{}", t.schema, self.target_table_name(t)),
            _ => self.flat_table_name(t),
        };
        TargetTable { name, ident: self.table_ident(t) }
    }
}

/// Why the target cannot hold these tables under the names xdb gives them
/// (a name over the target's identifier limit, two source tables that
/// become one target table), one line each; empty when they all fit.
/// Checked before anything is created, so a copy never fails on a name
/// halfway through.
pub fn name_problems(naming: &Naming, tables: &[&TableSchema]) -> Vec<String> {
    let dialect = naming.dialect;
    let names: Vec<&TableName> = tables.iter().map(|t| &t.name).collect();
    let mut out = super::target_names::table_name_problems(naming, &names);
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

/// The naming rule alone for targets without schemas (no plan override):
/// `public.t` → `t`, `s.t` → `s__t`.
pub fn flat_by_rule(t: &TableName) -> String {
    if t.schema == "public" {
        t.name.clone()
    } else {
        format!("{}__{}", t.schema, t.name)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn table(keys: Vec<usize>) -> Arc<TableSchema> {
        crate::model::two_bigint_columns(keys)
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
        assert!(
            name_problems(&Naming::new(SqlDialect::Mysql, TargetNames::default()), &[&long]).is_empty(),
            "60 characters fit MySQL"
        );
        let p = name_problems(&Naming::new(SqlDialect::Mysql, TargetNames::default()), &[&shop]);
        assert!(p.len() == 1 && p[0].contains("longer than 64"), "{p:?}");
        assert!(name_problems(&Naming::new(SqlDialect::Sqlite, TargetNames::default()), &[&shop]).is_empty());
        let p = name_problems(&Naming::new(SqlDialect::Sqlite, TargetNames::default()), &[&sales, &flat]);
        assert!(p.len() == 1 && p[0].contains("would both become"), "{p:?}");
        assert!(
            name_problems(&Naming::new(SqlDialect::Postgres, TargetNames::default()), &[&sales, &flat]).is_empty(),
            "PostgreSQL keeps schemas"
        );
        let euro = named("public", &"é".repeat(40));
        assert!(
            name_problems(&Naming::new(SqlDialect::Mysql, TargetNames::default()), &[&euro]).is_empty(),
            "40 characters"
        );
        assert_eq!(
            name_problems(&Naming::new(SqlDialect::Postgres, TargetNames::default()), &[&euro]).len(),
            1,
            "80 bytes"
        );
    }
}

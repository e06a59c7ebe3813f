//! What each source table is called on the target, and the one place that
//! says whether those names fit.
//!
//! The rule: a table in `public` keeps its name; any other becomes
//! `<schema>__<table>` on MySQL/MariaDB and SQLite, which have no schemas;
//! PostgreSQL targets keep `schema.table`. The plan's
//! `mapping.target_names` (`schema.table: name`) replaces the name of one
//! table — the whole flat name on MySQL/SQLite, the table's name within
//! its schema on PostgreSQL — for names over the target's identifier limit
//! and for two source tables that the rule gives one name.
//!
//! The overrides travel with the plan (`mapping.target_names`, read by
//! [`TargetNames::from_mapping`]) into every [`Naming`] made from it:
//! every command and every part of one (DDL, copy, stream, validate,
//! cutover steps, status, the way back) names tables through a `Naming`
//! or a `MappedTable` made with one, so none can
//! disagree with another about where a table went — and a plan made in the
//! process (the way back's swapped plan) carries its own names, not the
//! forward plan's.

use std::collections::HashMap;
use std::sync::Arc;

use super::naming::{Naming, SqlDialect};
use crate::model::TableName;
use crate::plan::Mapping;

/// The plan's overrides: source table → its name on the target.
#[derive(Debug, Clone, Default)]
pub struct TargetNames(Arc<HashMap<TableName, String>>);

impl TargetNames {
    /// The overrides of a plan's `mapping:` section (keys were checked when
    /// the plan was loaded; one that does not parse names no table).
    pub fn from_mapping(m: &Mapping) -> Self {
        TargetNames(Arc::new(
            m.target_names.iter().filter_map(|(k, v)| Some((TableName::parse(k)?, v.clone()))).collect(),
        ))
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (TableName, String)>) -> Self {
        TargetNames(Arc::new(pairs.into_iter().collect()))
    }

    /// The plan's target name for `t`, if it gives one.
    pub fn get(&self, t: &TableName) -> Option<&str> {
        self.0.get(t).map(String::as_str)
    }
}

/// Why the target cannot hold these tables under the names they get (one
/// line each, naming the override to write); empty when they all fit.
/// Checked by the plan loader, by `check`, and before `snapshot` creates
/// anything.
pub fn table_name_problems(naming: &Naming, tables: &[&TableName]) -> Vec<String> {
    let dialect = naming.dialect;
    let mut out = Vec::new();
    let mut seen: HashMap<String, &TableName> = HashMap::new();
    for &t in tables {
        let target = naming.target_table_name(t);
        if target.is_empty() {
            out.push(format!("{t}: mapping.target_names gives it an empty name"));
            continue;
        }
        if too_long(dialect, &target) {
            out.push(format!(
                "{t}: its target name {target:?} is longer than {}; give it a shorter one in the plan \
                 (`mapping: {{target_names: {{{}: <name>}}}}`), or leave it out of the plan",
                limit(dialect),
                yaml_key(t)
            ));
        }
        // MySQL table names may be case-insensitive (lower_case_table_names),
        // SQLite's are.
        let key = match dialect {
            SqlDialect::Postgres => format!("{}.{target}", t.schema),
            _ => target.to_lowercase(),
        };
        if let Some(other) = seen.insert(key, t) {
            // The one the `<schema>__<table>` rule named is the one to rename.
            let rename = if other.schema != "public" && t.schema == "public" { other } else { t };
            out.push(format!(
                "{other} and {t} would both become the target table {target:?} (a table outside `public` is named \
                 <schema>__<table> on targets without schemas); give one of them another name in the plan \
                 (`mapping: {{target_names: {{{}: <name>}}}}`), or leave one out of the plan",
                yaml_key(rename)
            ));
        }
    }
    out
}

/// Whether an identifier is over the target's limit: MySQL/MariaDB 64
/// characters; PostgreSQL 63 bytes (NAMEDATALEN - 1, longer names are
/// silently truncated); SQLite has none.
pub fn too_long(dialect: SqlDialect, name: &str) -> bool {
    match dialect {
        SqlDialect::Mysql => name.chars().count() > 64,
        SqlDialect::Postgres => name.len() > 63,
        SqlDialect::Sqlite => false,
    }
}

pub fn limit(dialect: SqlDialect) -> &'static str {
    match dialect {
        SqlDialect::Mysql => "64 characters (MySQL/MariaDB)",
        SqlDialect::Postgres => "63 bytes (PostgreSQL)",
        SqlDialect::Sqlite => "",
    }
}

/// `t` as a key of `mapping.target_names` in YAML (quoted when its parts
/// need PostgreSQL quotes).
fn yaml_key(t: &TableName) -> String {
    let part = |s: &str| {
        if s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            s.to_string()
        } else {
            crate::model::pg_ident(s)
        }
    };
    let key = format!("{}.{}", part(&t.schema), part(&t.name));
    if key.contains('"') {
        format!("'{key}'")
    } else {
        key
    }
}

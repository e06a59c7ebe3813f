//! Type mapping: from PostgreSQL columns and values to a target's.
//!
//! * [`MappingRules`] — the type rules of `mappings/pg-to-<target>.yaml`
//!   (built in, replaceable by `plan.mapping.rules`), and [`MappingOverrides`]
//!   — the plan's per-column types and lossy-value policies.
//! * [`map_table`] — a source [`TableSchema`] to a [`MappedTable`]: target
//!   name, column types, defaults, warnings. An unmappable column is a
//!   [`MappingError`] naming the column and the override to add;
//!   [`check_table`] lists every such problem for `xdb check`.
//! * value conversion ([`MappedTable::mysql_params`], …, bulk-load encoders
//!   [`MappedTable::append_load_data_row`] and [`MappedTable::append_pg_copy_row`]).
//!   A value the target cannot hold exactly follows the column's
//!   [`LossyPolicy`]: `error` (default), `null`, or `clamp`. Never silent.
//! * [`canonical`] and `canonical_from_<target>` — one text per logical
//!   value, so a source row and its copy hash alike ([`RowHasher`]) exactly
//!   when they hold the same data.
//! * DDL: [`create_table_ddl`], [`create_index_ddl`], [`add_column_ddl`].
//!
//! Everything here is pure except reading a rule file.

mod canonical;
mod convert;
mod ddl;
mod rules;
mod target_kind;
mod text;

use std::sync::Arc;

pub use canonical::{
    canonical, canonical_from_mysql, canonical_from_pg_text, canonical_from_sqlite, canonical_json, CanonicalValue,
    RowHasher,
};
pub use convert::ConversionError;
pub use ddl::{add_column_ddl, create_index_ddl, create_table_ddl, IndexDef};
pub use rules::{pg_type_sql, MappingOverrides, MappingRules, RULE_NAMES};
pub use target_kind::{MysqlFlavour, TargetKind};

use crate::model::{PgType, TableSchema};
use crate::plan::LossyPolicy;
use crate::sink::dialect::flat_table_name;

/// Why a table cannot be mapped, or a rule file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A column whose type has no rule (extension type, composite, range …).
    #[error(
        "{table}.{column}: type `{type_name}` has no mapping rule for {target}; add a column override to the plan, e.g.\n  mapping:\n    columns:\n      {table}.{column}: {suggestion}"
    )]
    UnknownType { table: String, column: String, type_name: String, target: String, suggestion: String },
    /// A rule file that cannot be read or used.
    #[error("mapping rules {file}: {message}")]
    RuleFile { file: String, message: String },
    /// A table the target cannot hold as it is.
    #[error("{table}: {message}")]
    Table { table: String, message: String },
}

/// What kind of value a target column stores, read from its type text:
/// decides the lossy checks and the wire form of each value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetClass {
    Integer,
    Float,
    /// DECIMAL(p,s) on MySQL: values are checked against its digits.
    Decimal {
        precision: u32,
        scale: u32,
    },
    Text,
    Binary,
    Date,
    DateTime,
    Time,
    Json,
}

impl TargetClass {
    /// The class of a target type text on `kind`.
    pub fn of(kind: &TargetKind, target_type: &str) -> TargetClass {
        let t = target_type.trim().to_ascii_uppercase();
        let word: String = t.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        match kind {
            TargetKind::Mysql { .. } => match word.as_str() {
                "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "INTEGER" | "BIGINT" | "BIT" | "YEAR" => {
                    TargetClass::Integer
                }
                "FLOAT" | "DOUBLE" | "REAL" => TargetClass::Float,
                "DECIMAL" | "NUMERIC" | "DEC" | "FIXED" => {
                    let args: Vec<u32> = t
                        .split_once('(')
                        .and_then(|(_, r)| r.split_once(')'))
                        .map(|(a, _)| a.split(',').filter_map(|x| x.trim().parse().ok()).collect())
                        .unwrap_or_default();
                    TargetClass::Decimal {
                        precision: args.first().copied().unwrap_or(10),
                        scale: args.get(1).copied().unwrap_or(0),
                    }
                }
                "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => TargetClass::Binary,
                "DATETIME" | "TIMESTAMP" => TargetClass::DateTime,
                "DATE" => TargetClass::Date,
                "TIME" => TargetClass::Time,
                "JSON" => TargetClass::Json,
                _ => TargetClass::Text,
            },
            // SQLite's affinity rules (https://sqlite.org/datatype3.html#determination_of_column_affinity),
            // except that NUMERIC affinity is treated as text: xdb writes text there to stay exact.
            TargetKind::Sqlite => {
                if t.contains("INT") {
                    TargetClass::Integer
                } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
                    TargetClass::Text
                } else if t.contains("BLOB") || t.is_empty() {
                    TargetClass::Binary
                } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
                    TargetClass::Float
                } else {
                    TargetClass::Text
                }
            }
            TargetKind::Postgres => TargetClass::Text,
        }
    }
}

/// One column as it is on the target.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedColumn {
    pub name: String,
    /// The source column's type (decides how values are read back).
    pub source_type: PgType,
    /// The target type as written in DDL (`DECIMAL(12,2)`, `TEXT`, `"shop"."mood"` …).
    pub target_type: String,
    pub class: TargetClass,
    pub nullable: bool,
    /// What to do with a value the target cannot hold exactly.
    pub policy: LossyPolicy,
    /// Identity/serial on the source: AUTO_INCREMENT, INTEGER PRIMARY KEY or IDENTITY.
    pub identity: bool,
    /// The default as target SQL, when it translates.
    pub default: Option<String>,
    /// Extra column constraint (SQLite enum CHECK).
    pub check: Option<String>,
}

/// A source table mapped to a target.
#[derive(Debug, Clone)]
pub struct MappedTable {
    pub source: Arc<TableSchema>,
    pub kind: TargetKind,
    /// The target table name: `t` / `s__t` on MySQL and SQLite (see
    /// [`flat_table_name`]), `s.t` on PostgreSQL.
    pub target_name: String,
    /// The target table, quoted for SQL.
    pub target_ident: String,
    /// One per source column, same order.
    pub columns: Vec<MappedColumn>,
    /// Things the user should know that do not stop the mapping
    /// (defaults that do not translate, widened key columns …).
    pub warnings: Vec<String>,
}

/// Maps a table; the first problem is the error (see [`check_table`] for all).
pub fn map_table(
    rules: &MappingRules,
    table: &TableSchema,
    overrides: &MappingOverrides,
) -> Result<MappedTable, MappingError> {
    map_inner(rules, table, overrides).map_err(|mut v| v.remove(0))
}

/// Every mapping problem of a table (empty when it maps), for `xdb check`.
pub fn check_table(rules: &MappingRules, table: &TableSchema, overrides: &MappingOverrides) -> Vec<MappingError> {
    map_inner(rules, table, overrides).err().unwrap_or_default()
}

/// A type a user could write for an unknown type on this target.
fn suggestion(kind: &TargetKind) -> &'static str {
    match kind {
        TargetKind::Mysql { .. } => "LONGTEXT",
        TargetKind::Sqlite | TargetKind::Postgres => "TEXT",
    }
}

fn is_mysql_lob(t: &str) -> bool {
    let u = t.trim().to_ascii_uppercase();
    ["TINYTEXT", "TEXT", "MEDIUMTEXT", "LONGTEXT", "TINYBLOB", "BLOB", "MEDIUMBLOB", "LONGBLOB", "JSON"]
        .iter()
        .any(|w| u == *w || u.starts_with(&format!("{w} ")))
}

/// Bytes a MySQL VARCHAR(n)/CHAR(n) utf8mb4 column needs in the row (0 for others).
fn mysql_row_bytes(t: &str) -> u64 {
    let u = t.trim().to_ascii_uppercase();
    let n = |rest: &str| rest.split_once(')').and_then(|(a, _)| a.trim().parse::<u64>().ok()).unwrap_or(0);
    if let Some(rest) = u.strip_prefix("VARCHAR(") {
        n(rest) * 4 + 2
    } else if let Some(rest) = u.strip_prefix("CHAR(") {
        n(rest) * 4
    } else {
        0
    }
}

fn map_inner(
    rules: &MappingRules,
    table: &TableSchema,
    overrides: &MappingOverrides,
) -> Result<MappedTable, Vec<MappingError>> {
    let kind = *rules.kind();
    let tname = table.name.to_string();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut columns = Vec::with_capacity(table.columns.len());
    for (i, c) in table.columns.iter().enumerate() {
        let is_key = table.primary_key.contains(&i);
        let over = overrides.column_type(&table.name, &c.name);
        let mut target_type = match over.map(str::to_string).or_else(|| rules.target_type(&c.pg_type)) {
            Some(t) => t,
            None => {
                errors.push(MappingError::UnknownType {
                    table: tname.clone(),
                    column: c.name.clone(),
                    type_name: c.pg_type.sql_name(),
                    target: kind.to_string(),
                    suggestion: suggestion(&kind).to_string(),
                });
                continue;
            }
        };
        // MySQL cannot key a TEXT/BLOB column without a prefix; a key column gets
        // the widest type an InnoDB key holds (3072 bytes).
        if kind.is_mysql() && is_key && over.is_none() && is_mysql_lob(&target_type) {
            let wide = if target_type.to_ascii_uppercase().contains("BLOB") { "VARBINARY(3072)" } else { "VARCHAR(768)" };
            warnings.push(format!(
                "{tname}.{}: key column of type {} is {wide} on {kind} (a {target_type} cannot be a key); longer values fail",
                c.name,
                c.pg_type.sql_name()
            ));
            target_type = wide.to_string();
        }
        let class = TargetClass::of(&kind, &target_type);
        let default = ddl::translate_default(&kind, c, &target_type, class, &tname, &mut warnings);
        let check = match (&kind, &c.pg_type, over) {
            (TargetKind::Sqlite, PgType::Enum { labels, .. }, None) => Some(format!(
                "CHECK ({} IN ({}))",
                kind.dialect().ident(&c.name),
                labels.iter().map(|l| ddl::sql_string(&kind, l)).collect::<Vec<_>>().join(", ")
            )),
            _ => None,
        };
        columns.push(MappedColumn {
            name: c.name.clone(),
            source_type: c.pg_type.clone(),
            target_type,
            class,
            nullable: c.nullable,
            policy: overrides.policy(&table.name, &c.name),
            identity: c.identity,
            default,
            check,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // InnoDB rows hold at most 65535 bytes of inline columns: move the widest
    // non-key VARCHARs to LONGTEXT until the row fits.
    if kind.is_mysql() {
        let limit = 65_000u64;
        loop {
            let total: u64 = columns.iter().map(|c| mysql_row_bytes(&c.target_type)).sum();
            if total <= limit {
                break;
            }
            let widest = columns
                .iter()
                .enumerate()
                .filter(|(i, c)| !table.primary_key.contains(i) && mysql_row_bytes(&c.target_type) > 0)
                .max_by_key(|(_, c)| mysql_row_bytes(&c.target_type))
                .map(|(i, _)| i);
            let Some(i) = widest else {
                errors.push(MappingError::Table {
                    table: tname.clone(),
                    message: format!("key columns need {total} bytes per row, more than MySQL's 65535"),
                });
                return Err(errors);
            };
            warnings.push(format!(
                "{tname}.{}: {} is LONGTEXT on {kind} so the row fits MySQL's 65535-byte limit",
                columns[i].name, columns[i].target_type
            ));
            columns[i].target_type = "LONGTEXT".into();
            columns[i].class = TargetClass::Text;
        }
    }
    let dialect = kind.dialect();
    let (target_name, target_ident) = match kind {
        TargetKind::Postgres => (tname.clone(), dialect.table_ident(&table.name)),
        _ => (flat_table_name(&table.name), dialect.table_ident(&table.name)),
    };
    Ok(MappedTable {
        source: Arc::new(table.clone()),
        kind,
        target_name,
        target_ident,
        columns,
        warnings,
    })
}


/// Microseconds per day (shared by the canonical readers).
const MICROS_PER_DAY_PUB: i64 = text::MICROS_PER_DAY;

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
//! * [`reference_markdown`] — docs/mapping.md, rendered from the rules.
//!
//! Everything here is pure except reading a rule file.

mod canonical;
mod convert;
mod ddl;
pub mod generated;
pub(crate) mod json_numbers;
mod override_keys;
pub mod planned;
mod reference;
mod rules;
mod target_kind;
pub(crate) mod text;
mod unique;

use std::sync::Arc;

pub use canonical::{
    canonical, canonical_from_mysql, canonical_from_pg_text, canonical_from_sqlite, canonical_json, value_from_text,
    CanonicalValue, RowHasher,
};
pub use convert::{pg_source_text, show_value, ConversionDetails, ConversionError};
pub use ddl::{
    add_column_ddl, alter_column_type_ddl, create_index_ddl, create_table_ddl, is_constant_default, rename_column_ddl,
    sqlite_affinity, type_keeps_values, IndexDef,
};
pub use override_keys::unknown_columns;
pub use planned::{map_tables, MapTablesError};
pub use reference::reference_markdown;
pub use rules::{pg_type_sql, MappingOverrides, MappingRules, RULE_NAMES};
pub use target_kind::{MysqlFlavour, TargetKind};
pub use unique::unenforced_unique;

use crate::model::{PgType, TableSchema};
use crate::plan::LossyPolicy;

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
    /// [`crate::plan::naming::Naming::flat_table_name`]), `s.t` on PostgreSQL.
    pub target_name: String,
    /// The target table, quoted for SQL.
    pub target_ident: String,
    /// One per source column, same order.
    pub columns: Vec<MappedColumn>,
    /// Things the user should know that do not stop the mapping
    /// (defaults that do not translate, widened key columns …).
    pub warnings: Vec<String>,
    /// The source's stored generated columns, computed by the target
    /// (not among `columns`: nothing writes them).
    pub generated: Vec<generated::MappedGenerated>,
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

/// Sizes the key columns that became VARCHAR/VARBINARY so the whole
/// primary key fits InnoDB's 3072-byte limit: they share what the other key
/// columns leave (utf8mb4 counts 4 bytes a character).
fn fit_mysql_key(
    columns: &mut [MappedColumn],
    widened: &[String],
    primary_key: &[usize],
    tname: &str,
    kind: &TargetKind,
    warnings: &mut Vec<String>,
) {
    const KEY_BYTES: u64 = 3072;
    let others: u64 = primary_key
        .iter()
        .filter_map(|&i| columns.get(i))
        .filter(|c| !widened.contains(&c.name))
        .map(|c| mysql_row_bytes(&c.target_type).max(8))
        .sum();
    let share = KEY_BYTES.saturating_sub(others) / widened.len() as u64;
    for c in columns.iter_mut().filter(|c| widened.contains(&c.name)) {
        let source = c.source_type.sql_name();
        c.target_type = if c.target_type.starts_with("VARBINARY") {
            format!("VARBINARY({})", share.max(1))
        } else {
            format!("VARCHAR({})", (share / 4).max(1))
        };
        warnings.push(format!(
            "{tname}.{}: key column of type {source} is {} on {kind} (a TEXT or BLOB cannot be a key); longer values fail",
            c.name, c.target_type
        ));
    }
}

/// One column's target type, default and check; `true` when a key
/// column was widened from TEXT/BLOB (sized by [`fit_mysql_key`]).
fn map_column(
    rules: &MappingRules,
    table: &TableSchema,
    c: &crate::model::Column,
    is_key: bool,
    overrides: &MappingOverrides,
    warnings: &mut Vec<String>,
) -> Result<(MappedColumn, bool), MappingError> {
    let kind = *rules.kind();
    let tname = table.name.to_string();
    let over = overrides.column_type(&table.name, &c.name);
    let mut target_type = match over.map(str::to_string).or_else(|| rules.target_type(&c.pg_type)) {
        Some(t) => t,
        // PostgreSQL keeps extension and other types as they are; they must exist on the target.
        None if kind == TargetKind::Postgres => {
            warnings.push(format!(
                "{tname}.{}: type {} must exist on the target (create its extension first)",
                c.name,
                c.pg_type.sql_name()
            ));
            pg_type_sql(&c.pg_type)
        }
        None => {
            return Err(MappingError::UnknownType {
                table: tname.clone(),
                column: c.name.clone(),
                type_name: c.pg_type.sql_name(),
                target: kind.to_string(),
                suggestion: suggestion(&kind).to_string(),
            });
        }
    };
    // MySQL cannot key a TEXT/BLOB column without a prefix; a key column gets
    // the widest type an InnoDB key holds (3072 bytes).
    let mut widened = false;
    if kind.is_mysql() && is_key && over.is_none() && is_mysql_lob(&target_type) {
        let wide = if target_type.to_ascii_uppercase().contains("BLOB") { "VARBINARY(3072)" } else { "VARCHAR(768)" };
        widened = true;
        target_type = wide.to_string();
    }
    let class = TargetClass::of(&kind, &target_type);
    let from_source = c.carried.as_ref();
    // A generated column moved as a plain one has no default on the target.
    let default = match from_source {
        Some(_) => None,
        None => ddl::translate_default(&kind, c, &target_type, class, &tname, warnings),
    };
    if let Some(carried) = from_source {
        warnings.push(carried_warning(&tname, c, carried, &target_type, &kind));
    }
    let check = match (&kind, &c.pg_type, over) {
        (TargetKind::Sqlite, PgType::Enum { labels, .. }, None) => Some(format!(
            "CHECK ({} IN ({}))",
            kind.dialect().ident(&c.name),
            labels.iter().map(|l| ddl::sql_string(&kind, l)).collect::<Vec<_>>().join(", ")
        )),
        _ => None,
    };
    let column = MappedColumn {
        name: c.name.clone(),
        source_type: c.pg_type.clone(),
        target_type,
        class,
        nullable: c.nullable,
        policy: overrides.policy(&table.name, &c.name),
        identity: c.identity,
        default,
        check,
    };
    Ok((column, widened))
}

/// A generated column moved as a plain one: nothing computes it on the
/// target after the switch.
fn carried_warning(
    tname: &str,
    c: &crate::model::Column,
    carried: &crate::model::CarriedGenerated,
    target_type: &str,
    kind: &TargetKind,
) -> String {
    let expr = &carried.expression;
    let how = if carried.recomputed {
        "recomputed on the source from each change's values (PostgreSQL before 18 does not publish them)"
    } else {
        "published by the source (PostgreSQL 18)"
    };
    format!(
        "{tname}.{}: generated column on the source (GENERATED ALWAYS AS ({expr}) STORED), a plain {target_type} \
         column on {kind} kept current by xdb from the source's values (mapping.generated: source; {how}): after \
         the switch nothing computes it",
        c.name
    )
}

/// InnoDB rows hold at most 65535 bytes of inline columns: moves the
/// widest non-key VARCHARs to LONGTEXT until the row fits.
fn fit_mysql_row(
    columns: &mut [MappedColumn],
    primary_key: &[usize],
    tname: &str,
    kind: &TargetKind,
    warnings: &mut Vec<String>,
) -> Result<(), MappingError> {
    let limit = 65_000u64;
    loop {
        let total: u64 = columns.iter().map(|c| mysql_row_bytes(&c.target_type)).sum();
        if total <= limit {
            return Ok(());
        }
        let widest = columns
            .iter()
            .enumerate()
            .filter(|(i, c)| !primary_key.contains(i) && mysql_row_bytes(&c.target_type) > 0)
            .max_by_key(|(_, c)| mysql_row_bytes(&c.target_type))
            .map(|(i, _)| i);
        let Some(i) = widest else {
            return Err(MappingError::Table {
                table: tname.to_string(),
                message: format!("key columns need {total} bytes per row, more than MySQL's 65535"),
            });
        };
        warnings.push(format!(
            "{tname}.{}: {} is LONGTEXT on {kind} so the row fits MySQL's 65535-byte limit",
            columns[i].name, columns[i].target_type
        ));
        columns[i].target_type = "LONGTEXT".into();
        columns[i].class = TargetClass::Text;
    }
}

/// The table's generated columns as the target's own generated columns;
/// an expression the target cannot compute is an error in `errors`.
fn map_generated(
    rules: &MappingRules,
    table: &TableSchema,
    overrides: &MappingOverrides,
    errors: &mut Vec<MappingError>,
) -> Vec<generated::MappedGenerated> {
    let kind = *rules.kind();
    let tname = table.name.to_string();
    let mut mapped_generated = Vec::with_capacity(table.generated.len());
    for g in &table.generated {
        let target_type = overrides
            .column_type(&table.name, &g.name)
            .map(str::to_string)
            .or_else(|| rules.target_type(&g.pg_type))
            .unwrap_or_else(|| pg_type_sql(&g.pg_type));
        match generated::translate(&kind, table, g) {
            Ok(expression) => mapped_generated.push(generated::MappedGenerated {
                name: g.name.clone(),
                source_type: g.pg_type.clone(),
                target_type,
                expression,
                source_expression: g.expression.clone(),
            }),
            Err(why) => errors.push(MappingError::Table {
                table: tname.clone(),
                message: format!(
                    "generated column {} (GENERATED ALWAYS AS ({}) STORED) cannot be created as a generated column on \
                     {kind}: {why}. Neither the copy nor the stream carries a generated column, so xdb refuses the \
                     table rather than leave the column out; migrate this table to a PostgreSQL target, or \
                     rewrite the expression on the source with integer/text operations xdb translates, or, for a \
                     stored column, set `mapping: {{generated: source}}` in the plan to move it as a plain column \
                     that xdb keeps current (PostgreSQL 18 publishes it; before 18 xdb recomputes it on the source \
                     for each change) and that nothing computes after the switch (see the README, \"Generated \
                     columns\")",
                    g.name, g.expression
                ),
            }),
        }
    }
    mapped_generated
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
    // Key columns turned from TEXT/BLOB into VARCHAR/VARBINARY (sized below).
    let mut widened: Vec<String> = Vec::new();
    for (i, c) in table.columns.iter().enumerate() {
        let is_key = table.primary_key.contains(&i);
        match map_column(rules, table, c, is_key, overrides, &mut warnings) {
            Ok((column, was_widened)) => {
                if was_widened {
                    widened.push(c.name.clone());
                }
                columns.push(column);
            }
            Err(e) => errors.push(e),
        }
    }
    let mapped_generated = map_generated(rules, table, overrides, &mut errors);
    // Before 18 with `mapping.generated: source`: inputs xdb could not
    // recompute from exactly.
    for message in generated::unreadable_inputs(&kind, table) {
        errors.push(MappingError::Table { table: tname.clone(), message });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if !widened.is_empty() {
        fit_mysql_key(&mut columns, &widened, &table.primary_key, &tname, &kind, &mut warnings);
    }
    if kind.is_mysql() {
        fit_mysql_row(&mut columns, &table.primary_key, &tname, &kind, &mut warnings).map_err(|e| vec![e])?;
    }
    let crate::plan::naming::TargetTable { name: target_name, ident: target_ident } =
        overrides.naming(kind.dialect()).table(&table.name);
    Ok(MappedTable {
        source: Arc::new(table.clone()),
        kind,
        target_name,
        target_ident,
        columns,
        warnings,
        generated: mapped_generated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, DateValue, NumericValue, ReplicaIdentity, TableName, TimestampValue, Value};
    use crate::plan::Mapping;

    fn col(name: &str, ty: PgType, nullable: bool) -> Column {
        Column { nullable, ..Column::new(name, ty) }
    }

    fn table(cols: Vec<Column>) -> TableSchema {
        TableSchema {
            oid: 1,
            name: TableName::new("shop", "orders"),
            columns: cols,
            replica_identity: ReplicaIdentity::Default,
            primary_key: vec![0],
            generated: Vec::new(),
        }
    }

    fn maria() -> TargetKind {
        TargetKind::mysql_from_version_string("10.11.6-MariaDB")
    }

    #[test]
    fn unknown_type_names_column_and_override() {
        let t = table(vec![
            col("id", PgType::Int8, false),
            col("tags", PgType::Other { name: "public.hstore".into() }, true),
            col("geo", PgType::Other { name: "geometry".into() }, true),
        ]);
        let rules = MappingRules::builtin(&maria());
        let o = MappingOverrides::default();
        let e = map_table(&rules, &t, &o).unwrap_err().to_string();
        assert!(e.contains("shop.orders.tags: type `public.hstore` has no mapping rule for MariaDB 10.11.6"), "{e}");
        assert!(e.contains("mapping:\n    columns:\n      shop.orders.tags: LONGTEXT"), "{e}");
        assert_eq!(check_table(&rules, &t, &o).len(), 2);
        let mut m = Mapping::default();
        m.columns.insert("shop.orders.tags".into(), "JSON".into());
        m.columns.insert("shop.orders.geo".into(), "LONGTEXT".into());
        let mt = map_table(&rules, &t, &MappingOverrides::from_plan(&m)).unwrap();
        assert_eq!(mt.columns[1].target_type, "JSON");
        assert_eq!(mt.target_name, "shop__orders");
        assert!(check_table(&rules, &t, &MappingOverrides::from_plan(&m)).is_empty());
    }

    #[test]
    fn mysql_ddl_keys_identity_and_defaults() {
        let mut id = col("id", PgType::Int8, false);
        id.identity = true;
        id.default = Some("nextval('orders_id_seq'::regclass)".into());
        let mut code = col("code", PgType::Text, false);
        code.default = Some("'it''s'::text".into());
        let mut at = col("at", PgType::TimestampTz(None), false);
        at.default = Some("now()".into());
        let mut odd = col("odd", PgType::Int4, true);
        odd.default = Some("my_func()".into());
        let mut t = table(vec![id, code, at, odd, col("flag", PgType::Bool, true)]);
        t.primary_key = vec![0, 1];
        let rules = MappingRules::builtin(&maria());
        let mt = map_table(&rules, &t, &MappingOverrides::default()).unwrap();
        let ddl = create_table_ddl(&mt, &maria());
        assert_eq!(
            ddl,
            vec!["CREATE TABLE IF NOT EXISTS `shop__orders` (\n  `id` BIGINT NOT NULL AUTO_INCREMENT,\n  `code` VARCHAR(766) NOT NULL DEFAULT 'it''s',\n  `at` DATETIME(6) NOT NULL DEFAULT UTC_TIMESTAMP(6),\n  `odd` INT NULL,\n  `flag` TINYINT(1) NULL,\n  PRIMARY KEY (`id`, `code`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"]
        );
        assert!(mt.warnings.iter().any(|w| w.contains("shop.orders.odd: default `my_func()` does not translate")));
        assert!(mt.warnings.iter().any(|w| w.contains("shop.orders.code: key column")));
        let ix = IndexDef { name: "orders_code".into(), columns: vec!["odd".into()], unique: true };
        assert_eq!(
            create_index_ddl(&mt, &[ix], &maria()),
            vec!["CREATE UNIQUE INDEX IF NOT EXISTS `orders_code` ON `shop__orders` (`odd`)"]
        );
        assert_eq!(
            add_column_ddl(&mt, 3, &maria()),
            "ALTER TABLE `shop__orders` ADD COLUMN IF NOT EXISTS `odd` INT NULL"
        );
    }

    /// Constant defaults are given to existing rows by the target itself;
    /// anything else is filled from the source (invariant *schema drift*).
    #[test]
    fn constant_defaults() {
        for d in ["7", "'-1'::integer", "(-1)", "'it''s'::character varying", "NULL", "true", "1.5", "'{}'::jsonb"] {
            assert!(is_constant_default(d), "{d}");
        }
        for d in
            ["now()", "gen_random_uuid()", "nextval('t_n_seq'::regclass)", "CURRENT_DATE", "('a'::text || 'b'::text)"]
        {
            assert!(!is_constant_default(d), "{d}");
        }
    }

    /// Type changes xdb follows by itself keep every value (invariant
    /// *schema drift*); SQLite keeps values within one affinity.
    #[test]
    fn type_changes_that_keep_values() {
        use PgType::*;
        let num = |p, s| Numeric { precision: Some(p), scale: Some(s) };
        for (a, b) in [(Int4, Int8), (Int8, Int4), (Varchar(Some(10)), Varchar(Some(50))), (Varchar(Some(10)), Text)]
            .into_iter()
            .chain([(num(10, 2), num(12, 3)), (Timestamp(Some(0)), Timestamp(None)), (Float4, Float8)])
        {
            assert!(type_keeps_values(&a, &b), "{a:?} -> {b:?}");
        }
        for (a, b) in [(Varchar(Some(50)), Varchar(Some(10))), (Int8, num(20, 1)), (num(10, 2), num(10, 1))]
            .into_iter()
            .chain([(Text, Int4), (Timestamp(None), Timestamp(Some(0))), (Float8, Float4)])
        {
            assert!(!type_keeps_values(&a, &b), "{a:?} -> {b:?}");
        }
        assert_eq!(sqlite_affinity("BIGINT"), sqlite_affinity("INTEGER"));
        assert_eq!(sqlite_affinity("VARCHAR(50)"), "TEXT");
        assert_ne!(sqlite_affinity("INTEGER"), sqlite_affinity("TEXT"));
    }

    #[test]
    fn sqlite_and_postgres_ddl() {
        let mut id = col("id", PgType::Int4, false);
        id.identity = true;
        let mood = PgType::Enum { name: "shop.mood".into(), labels: vec!["ok".into(), "it's".into()] };
        let t = table(vec![id, col("m", mood.clone(), true), col("ms", PgType::Array(Box::new(mood)), true)]);
        let s = map_table(&MappingRules::builtin(&TargetKind::Sqlite), &t, &MappingOverrides::default()).unwrap();
        assert_eq!(
            create_table_ddl(&s, &TargetKind::Sqlite),
            vec!["CREATE TABLE IF NOT EXISTS \"shop__orders\" (\n  \"id\" INTEGER PRIMARY KEY NOT NULL,\n  \"m\" TEXT CHECK (\"m\" IN ('ok', 'it''s')),\n  \"ms\" TEXT\n)"]
        );
        let p = map_table(&MappingRules::builtin(&TargetKind::Postgres), &t, &MappingOverrides::default()).unwrap();
        let ddl = create_table_ddl(&p, &TargetKind::Postgres);
        assert_eq!(ddl[0], "CREATE SCHEMA IF NOT EXISTS \"shop\"");
        assert_eq!(
            ddl[1],
            "DO $xdb$ BEGIN CREATE TYPE \"shop\".\"mood\" AS ENUM ('ok', 'it''s'); EXCEPTION WHEN duplicate_object THEN NULL; END $xdb$"
        );
        assert_eq!(
            ddl[2],
            "CREATE TABLE IF NOT EXISTS \"shop\".\"orders\" (\n  \"id\" integer GENERATED BY DEFAULT AS IDENTITY NOT NULL,\n  \"m\" \"shop\".\"mood\",\n  \"ms\" \"shop\".\"mood\"[],\n  PRIMARY KEY (\"id\")\n)"
        );
        assert_eq!(p.pg_placeholder(3, 2), "$3::text::\"shop\".\"mood\"[]");
    }

    #[test]
    fn lossy_policies() {
        let t = table(vec![
            col("id", PgType::Int8, false),
            col("ts", PgType::Timestamp(None), true),
            col("n", PgType::Numeric { precision: Some(5), scale: Some(2) }, false),
        ]);
        let rules = MappingRules::builtin(&maria());
        let row = vec![
            Value::Int8(7),
            Value::Timestamp(TimestampValue::PosInfinity),
            Value::Numeric(NumericValue::Finite("1234.567".into())),
        ];
        let mt = map_table(&rules, &t, &MappingOverrides::default()).unwrap();
        let e = mt.mysql_params(&row, &[0, 1, 2]).unwrap_err();
        assert_eq!((e.table.as_str(), e.column.as_str(), e.key.as_str()), ("shop.orders", "ts", "id=7"));
        let msg = e.to_string();
        assert!(msg.contains("shop.orders.ts (key id=7): cannot write infinity to MariaDB 10.11.6"), "{msg}");
        assert!(msg.contains("policies: { shop.orders.ts: null }"), "{msg}");

        let mut m = Mapping { policy: Some(LossyPolicy::Null), ..Default::default() };
        let mt = map_table(&rules, &t, &MappingOverrides::from_plan(&m)).unwrap();
        // ts becomes NULL; n is NOT NULL so `null` cannot apply.
        let e = mt.mysql_params(&row, &[1]).unwrap();
        assert_eq!(e, vec![mysql_async::Value::NULL]);
        let e = mt.mysql_params(&row, &[2]).unwrap_err().to_string();
        assert!(e.contains("cannot apply to a NOT NULL column"), "{e}");

        m.policy = Some(LossyPolicy::Clamp);
        let mt = map_table(&rules, &t, &MappingOverrides::from_plan(&m)).unwrap();
        let mut out = Vec::new();
        mt.append_load_data_row(&row, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "7\t9999-12-31 23:59:59.999999\t999.99\n");
    }

    #[test]
    fn load_data_and_copy_text() {
        let t = table(vec![
            col("id", PgType::Int8, false),
            col("s", PgType::Text, true),
            col("b", PgType::Bytea, true),
            col("a", PgType::Array(Box::new(PgType::Text)), true),
            col("f", PgType::Bool, true),
        ]);
        let row = vec![
            Value::Int8(-1),
            Value::Text("a\tb\\c\nd".into()),
            Value::Bytes(vec![0, 0xff]),
            Value::Array(vec![Value::Text("x\"y".into()), Value::Null]),
            Value::Null,
        ];
        let my = map_table(&MappingRules::builtin(&maria()), &t, &MappingOverrides::default()).unwrap();
        let mut out = Vec::new();
        my.append_load_data_row(&row, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "-1\ta\\tb\\\\c\\nd\t00ff\t[\"x\\\\\"y\",null]\t\\N\n");
        assert_eq!(
            my.load_data_sql("xdb/1", "utf8mb4"),
            "LOAD DATA LOCAL INFILE 'xdb/1' INTO TABLE `shop__orders` CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (`id`, `s`, @v2, `a`, `f`) SET `b` = UNHEX(@v2)"
        );
        let pg = map_table(&MappingRules::builtin(&TargetKind::Postgres), &t, &MappingOverrides::default()).unwrap();
        let mut out = Vec::new();
        pg.append_pg_copy_row(&row, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "-1\ta\\tb\\\\c\\nd\t\\\\x00ff\t{\"x\\\\\"y\",NULL}\t\\N\n");
        assert_eq!(pg.pg_copy_sql(), "COPY \"shop\".\"orders\" (\"id\", \"s\", \"b\", \"a\", \"f\") FROM STDIN");
    }

    #[test]
    fn canonical_forms() {
        let c = |v: Value| canonical(&v).0.unwrap();
        assert_eq!(c(Value::Numeric(NumericValue::Finite("-0012.5000".into()))), "-12.5");
        assert_eq!(c(Value::Numeric(NumericValue::Finite("-0.000".into()))), "0");
        assert_eq!(c(Value::Float8(-0.0)), "0");
        assert_eq!(c(Value::Float4(0.1)), "0.10000000149011612");
        assert_eq!(
            c(Value::Json("{ \"b\": 1, \"a\": [1.50, {\"d\":null, \"c\":true}] }".into())),
            r#"{"a":[1.5,{"c":true,"d":null}],"b":1}"#
        );
        assert_eq!(
            c(Value::Uuid(uuid::Uuid::parse_str("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11").unwrap())),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert_eq!(
            c(Value::TimeTz { micros: 3_600_000_000, offset_seconds: 7200 }),
            (23 * 3_600_000_000i64).to_string()
        );
        let mut h = RowHasher::new();
        let a = h.row_hash(&[CanonicalValue(Some("ab".into())), CanonicalValue(Some("c".into()))]);
        let b = h.row_hash(&[CanonicalValue(Some("a".into())), CanonicalValue(Some("bc".into()))]);
        assert_ne!(a, b);
        let (mut x, mut y) = (RowHasher::new(), RowHasher::new());
        x.add_hash(a);
        x.add_hash(b);
        y.add_hash(b);
        y.add_hash(a);
        assert_eq!((x.checksum(), x.count()), (y.checksum(), 2));
    }

    mod props {
        use proptest::prelude::*;

        use super::*;
        use crate::mapping::convert::write_text;

        fn value_and_type() -> impl Strategy<Value = (Value, PgType)> {
            prop_oneof![
                any::<i64>().prop_map(|i| (Value::Int8(i), PgType::Int8)),
                any::<f64>().prop_map(|f| (Value::Float8(f), PgType::Float8)),
                any::<f32>().prop_map(|f| (Value::Float4(f), PgType::Float4)),
                ("-?[0-9]{1,40}(\\.[0-9]{1,30})?").prop_map(|s| (
                    Value::Numeric(NumericValue::Finite(s)),
                    PgType::Numeric { precision: None, scale: None }
                )),
                (-3_000_000i32..3_000_000).prop_map(|d| (Value::Date(DateValue::Days(d)), PgType::Date)),
                (-200_000_000_000_000_000i64..200_000_000_000_000_000)
                    .prop_map(|m| { (Value::TimestampTz(TimestampValue::Micros(m)), PgType::TimestampTz(None)) }),
                (-200_000_000_000_000_000i64..200_000_000_000_000_000)
                    .prop_map(|m| (Value::Timestamp(TimestampValue::Micros(m)), PgType::Timestamp(None))),
                (0i64..=86_400_000_000, -50_000i32..50_000).prop_map(|(micros, offset_seconds)| {
                    (Value::TimeTz { micros, offset_seconds }, PgType::TimeTz(None))
                }),
                (any::<i32>(), any::<i32>(), -100_000_000_000_000_000i64..100_000_000_000_000_000)
                    .prop_map(|(months, days, micros)| (Value::Interval { months, days, micros }, PgType::Interval)),
                any::<Vec<u8>>().prop_map(|b| (Value::Bytes(b), PgType::Bytea)),
                any::<u128>().prop_map(|u| (Value::Uuid(uuid::Uuid::from_u128(u)), PgType::Uuid)),
                any::<String>().prop_map(|s| (Value::Text(s), PgType::Text)),
                proptest::collection::vec(proptest::option::of(any::<String>()), 0..5).prop_map(|v| {
                    let items = v.into_iter().map(|s| s.map(Value::Text).unwrap_or(Value::Null)).collect();
                    (Value::Array(items), PgType::Array(Box::new(PgType::Text)))
                }),
            ]
        }

        proptest! {
            /// Whatever text a target is sent, reading it back gives the source's canonical form.
            #[test]
            fn text_forms_read_back_canonically((v, ty) in value_and_type()) {
                let kinds = [TargetKind::Sqlite, TargetKind::Postgres, TargetKind::mysql_from_version_string("10.11.6-MariaDB")];
                for kind in kinds {
                    let table = TableSchema {
                        oid: 1,
                        name: TableName::new("public", "p"),
                        columns: vec![col("c", ty.clone(), true)],
                        replica_identity: ReplicaIdentity::Full,
                        primary_key: vec![],
                        generated: Vec::new(),
                    };
                    let t = map_table(&MappingRules::builtin(&kind), &table, &MappingOverrides::default()).unwrap();
                    let c = &t.columns[0];
                    // Text form as the target would get it in a text column (binary classes are not text).
                    let class = if c.class == TargetClass::Binary { TargetClass::Text } else { c.class };
                    let mut out = Vec::new();
                    write_text(&kind, class, &v, &mut out);
                    let text = String::from_utf8(out).unwrap();
                    let back = canonical::canonical_from_pg_text(Some(&text), c);
                    let want = canonical(&v);
                    // SQLite REAL cannot hold NaN, and MySQL has none: those never reach the text form.
                    if matches!(v, Value::Float8(f) if f.is_nan()) || matches!(v, Value::Float4(f) if f.is_nan()) {
                        continue;
                    }
                    prop_assert_eq!(back, want, "{} text {:?}", kind, text);
                }
            }
        }
    }
}

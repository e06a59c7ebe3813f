//! The mapping reference (docs/mapping.md), rendered from the built-in rule
//! files and the conversion code itself, so the document cannot drift from
//! what xdb does: every target type shown is [`MappingRules::target_type`]'s
//! answer, every lossy outcome is [`MappedTable::prepare`]'s.
//!
//! A unit test compares docs/mapping.md with [`reference_markdown`];
//! `XDB_BLESS=1 cargo test --lib mapping::reference` rewrites it.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::rules::{BUILTIN_MYSQL, BUILTIN_POSTGRES, BUILTIN_SQLITE};
use super::{create_table_ddl, map_table, show_value, MappingOverrides, MappingRules, MysqlFlavour, TargetKind};
use crate::model::{Column, DateValue, NumericValue, PgType, ReplicaIdentity, TableName, TableSchema};
use crate::model::{TimestampValue, Value};
use crate::plan::{LossyPolicy, Mapping};

/// The MySQL-family target the reference shows (MariaDB and MySQL 8 differ
/// only where a footnote says so).
fn mariadb() -> TargetKind {
    TargetKind::Mysql { flavour: MysqlFlavour::Mariadb, version: (10, 11, 0) }
}

fn mysql8() -> TargetKind {
    TargetKind::Mysql { flavour: MysqlFlavour::Mysql, version: (8, 4, 0) }
}

/// The example column types of the type table, in rule-file order.
fn examples() -> Vec<PgType> {
    use PgType::*;
    let mood = || Enum { name: "mood".into(), labels: vec!["sad".into(), "ok".into(), "happy".into()] };
    vec![
        Bool,
        Int2,
        Int4,
        Int8,
        Float4,
        Float8,
        Numeric { precision: Some(12), scale: Some(2) },
        Numeric { precision: None, scale: None },
        Numeric { precision: Some(70), scale: Some(10) },
        Money,
        Text,
        Varchar(Some(255)),
        Varchar(None),
        Varchar(Some(20000)),
        Char(Some(10)),
        Char(Some(300)),
        InternalChar,
        Name,
        Bytea,
        Date,
        Time(None),
        Time(Some(3)),
        TimeTz(None),
        Timestamp(None),
        Timestamp(Some(3)),
        TimestampTz(None),
        TimestampTz(Some(0)),
        Interval,
        Uuid,
        Json,
        Jsonb,
        Inet,
        Cidr,
        Macaddr,
        Macaddr8,
        Xml,
        TsVector,
        TsQuery,
        Oid,
        Bit(Some(8)),
        VarBit(Some(64)),
        mood(),
        Array(Box::new(Int4)),
        Array(Box::new(Text)),
        Array(Box::new(mood())),
    ]
}

/// The `#` comment lines of a rule file: the header (before `target:`), and
/// per rule name the lines just above it.
fn comments(yaml: &str) -> (Vec<String>, HashMap<String, Vec<String>>) {
    let mut header = Vec::new();
    let mut per_rule = HashMap::new();
    let mut pending = Vec::new();
    let mut in_header = true;
    for line in yaml.lines() {
        let t = line.trim();
        if let Some(c) = t.strip_prefix('#') {
            let c = c.strip_prefix(' ').unwrap_or(c).to_string();
            if in_header {
                header.push(c);
            } else {
                pending.push(c);
            }
            continue;
        }
        if t.starts_with("target:") {
            in_header = false;
            continue;
        }
        if let Some((key, _)) = t.split_once(':') {
            if line.starts_with(' ') && !pending.is_empty() {
                let key = key.trim().trim_matches('\'').to_string();
                per_rule.insert(key, std::mem::take(&mut pending));
            }
        }
    }
    (header, per_rule)
}

fn table_of(columns: Vec<(&str, PgType, bool)>) -> TableSchema {
    TableSchema {
        oid: 0,
        name: TableName::new("public", "t"),
        columns: columns
            .into_iter()
            .map(|(name, pg_type, nullable)| Column {
                name: name.into(),
                pg_type,
                type_oid: 0,
                typmod: -1,
                nullable,
                is_key: name == "id",
                default: None,
                identity: false,
                carried: None,
                feeds_generated: false,
            })
            .collect(),
        replica_identity: ReplicaIdentity::Default,
        primary_key: vec![0],
        generated: Vec::new(),
    }
}

/// Micros since 1970-01-01 ([`Value`]'s epoch) of a date at midnight.
fn micros_at(year: i32, month: u32, day: u32) -> i64 {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let d = chrono::NaiveDate::from_ymd_opt(year, month, day).unwrap_or_default();
    d.signed_duration_since(epoch).num_days() * crate::model::time::MICROS_PER_DAY
}

fn days_at(year: i32, month: u32, day: u32) -> i32 {
    (micros_at(year, month, day) / crate::model::time::MICROS_PER_DAY) as i32
}

/// The lossy cases the reference lists: target, column type, a value.
fn lossy_cases() -> Vec<(TargetKind, PgType, Value)> {
    let ts = |m| Value::Timestamp(TimestampValue::Micros(m));
    let num = |s: &str| Value::Numeric(NumericValue::Finite(s.into()));
    let unbounded = PgType::Numeric { precision: None, scale: None };
    vec![
        (mariadb(), PgType::Timestamp(None), ts(micros_at(0, 1, 1))),
        (mariadb(), PgType::Timestamp(None), ts(micros_at(10000, 1, 1))),
        (mariadb(), PgType::TimestampTz(None), Value::TimestampTz(TimestampValue::PosInfinity)),
        (mariadb(), PgType::TimestampTz(None), Value::TimestampTz(TimestampValue::NegInfinity)),
        (mariadb(), PgType::Date, Value::Date(DateValue::Days(days_at(999, 12, 31)))),
        (mariadb(), PgType::Date, Value::Date(DateValue::PosInfinity)),
        (mariadb(), unbounded.clone(), Value::Numeric(NumericValue::NaN)),
        (mariadb(), unbounded.clone(), Value::Numeric(NumericValue::PosInfinity)),
        (mariadb(), unbounded.clone(), num("1234567890123456789012345678901234567890")),
        (mariadb(), unbounded, num("0.1234567890123456789012345678905")),
        (mariadb(), PgType::Numeric { precision: Some(12), scale: Some(2) }, Value::Numeric(NumericValue::NaN)),
        (mariadb(), PgType::Float8, Value::Float8(f64::NAN)),
        (mariadb(), PgType::Float8, Value::Float8(f64::INFINITY)),
        (TargetKind::Sqlite, PgType::Float8, Value::Float8(f64::NAN)),
        (TargetKind::Postgres, PgType::Text, Value::Text("a\0b".into())),
    ]
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\0', "\\0")
}

/// What a lossy value becomes under `policy` (the first sentence of the
/// error for `error`, or for a policy that cannot apply).
fn outcome(kind: &TargetKind, ty: &PgType, v: &Value, policy: LossyPolicy) -> (String, String) {
    let m = Mapping { policy: Some(policy), ..Default::default() };
    let t = table_of(vec![("id", PgType::Int4, false), ("c", ty.clone(), true)]);
    let Ok(mt) = map_table(&MappingRules::builtin(kind), &t, &MappingOverrides::from_plan(&m)) else {
        return ("(no mapping)".into(), String::new());
    };
    let row = vec![Value::Int4(1), v.clone()];
    match mt.prepare(1, &row) {
        Ok(out) if matches!(*out, Value::Null) => ("NULL".into(), mt.columns[1].target_type.clone()),
        Ok(out) => (format!("`{}`", cell(&show_value(&out))), mt.columns[1].target_type.clone()),
        Err(e) if policy == LossyPolicy::Error => {
            (format!("error: {}", cell(&e.reason)), mt.columns[1].target_type.clone())
        }
        Err(_) => ("error (no nearest value)".into(), mt.columns[1].target_type.clone()),
    }
}

/// docs/mapping.md: the type table per target, the lossy-value cases with
/// each policy's outcome, and the plan's override syntax.
pub fn reference_markdown() -> String {
    let mut s = String::new();
    intro(&mut s);
    types_table(&mut s);
    mysql_tables(&mut s);
    lossy_table(&mut s);
    schema_command(&mut s);
    overrides(&mut s);
    s
}

/// What the reference covers and where the rules live.
fn intro(s: &mut String) {
    s.push_str(
        "<!-- Generated by xdb::mapping::reference_markdown() from mappings/*.yaml: do not edit.\n     \
         Regenerate with `XDB_BLESS=1 cargo test --lib mapping::reference`. -->\n\
         # Type mapping reference\n\n\
         How xdb maps each PostgreSQL column type to a MySQL/MariaDB, SQLite or PostgreSQL target, what happens\n\
         to values a target cannot hold, and how a plan overrides both. The rules live in `mappings/pg-to-mysql.yaml`,\n\
         `mappings/pg-to-sqlite.yaml` and `mappings/pg-to-postgres.yaml` (compiled into xdb); `xdb schema --plan P`\n\
         prints the DDL for a plan's tables with a `lossy:` line on every column that can lose information, and\n\
         `xdb schema --plan P --scan` lists the source values that would be rejected or altered, by key.\n\n\
         Domains map as their base type (their CHECK constraints are not created on the target). A type without a\n\
         rule (extension, composite, range types) is an error naming `schema.table.column` and the override to add;\n\
         a PostgreSQL target keeps such types as they are (the extension must exist there).\n\n\
         ## Types\n\n\
         | PostgreSQL | MySQL / MariaDB | SQLite | PostgreSQL |\n|---|---|---|---|\n",
    );
}

/// Every example type on each target, with the rule files' notes.
fn types_table(s: &mut String) {
    let rules = [
        MappingRules::builtin(&mariadb()),
        MappingRules::builtin(&TargetKind::Sqlite),
        MappingRules::builtin(&TargetKind::Postgres),
    ];
    let notes = [
        ("MySQL", comments(BUILTIN_MYSQL)),
        ("SQLite", comments(BUILTIN_SQLITE)),
        ("PostgreSQL", comments(BUILTIN_POSTGRES)),
    ];
    let mut seen = std::collections::HashSet::new();
    let mut footnotes = Vec::new();
    for ty in examples() {
        let targets: Vec<String> =
            rules.iter().map(|r| r.target_type(&ty).map(|t| format!("`{}`", cell(&t))).unwrap_or_default()).collect();
        let _ = writeln!(s, "| `{}` | {} | {} | {} |", cell(&ty.sql_name()), targets[0], targets[1], targets[2]);
        let rule = ty.rule_name().to_string();
        if seen.insert(rule.clone()) {
            for (target, (_, per_rule)) in &notes {
                if let Some(lines) = per_rule.get(&rule) {
                    footnotes.push(format!("* `{rule}` on {target}: {}", lines.join(" ")));
                }
            }
        }
    }
    s.push_str("\nNotes from the rule files:\n\n");
    for f in footnotes {
        s.push_str(&f);
        s.push('\n');
    }
}

/// How the MySQL family's DDL differs from the bare type names.
fn mysql_tables(s: &mut String) {
    let t = table_of(vec![
        ("id", PgType::Int8, false),
        ("doc", PgType::Jsonb, true),
        ("at", PgType::TimestampTz(None), false),
    ]);
    let mut t = t;
    t.columns[2].default = Some("now()".into());
    s.push_str(
        "\n## MySQL and MariaDB tables\n\n\
         Tables are InnoDB, `utf8mb4` with a binary NO PAD collation so keys compare like PostgreSQL\n\
         (`'a'`, `'A'` and `'a '` are three keys): MariaDB `utf8mb4_nopad_bin`, MySQL 8 `utf8mb4_0900_bin`\n\
         (older MySQL only has the PAD SPACE `utf8mb4_bin`). `timestamptz` is stored in UTC (xdb's sessions run with\n\
         `time_zone = '+00:00'`), and a `now()` default becomes `UTC_TIMESTAMP`. MariaDB's `JSON` is `LONGTEXT` with a\n\
         `json_valid` CHECK, spelled out in the DDL. A key column whose type would be TEXT/BLOB becomes\n\
         `VARCHAR`/`VARBINARY` sized so the whole key fits InnoDB's 3072 bytes (`VARCHAR(768)` alone); if a row's VARCHARs exceed 65535 bytes the widest\n\
         non-key ones become `LONGTEXT`. For example:\n\n```sql\n",
    );
    for kind in [mariadb(), mysql8()] {
        if let Ok(mt) = map_table(&MappingRules::builtin(&kind), &t, &MappingOverrides::default()) {
            let _ = writeln!(s, "-- {}", if kind == mysql8() { "MySQL 8" } else { "MariaDB" });
            for stmt in create_table_ddl(&mt, &kind) {
                let _ = writeln!(s, "{stmt};");
            }
        }
    }
    s.push_str("```\n");
}

/// What each lossy policy does with values a target cannot hold.
fn lossy_table(s: &mut String) {
    s.push_str(
        "\n## Values a target cannot hold\n\n\
         Every value goes through one check before it is written (copy, replication and validation alike). A value\n\
         the target cannot hold exactly follows the column's lossy policy: `error` (the default: the copy or sync\n\
         stops with a message naming table, column, primary key, value and the fix), `null` (write NULL; an error on\n\
         a NOT NULL column) or `clamp` (write the nearest value the target holds; an error when there is none).\n\
         PostgreSQL text never contains NUL characters, so the last row only matters for other sources.\n\n\
         | Target | Column | Value | `error` | `null` | `clamp` |\n|---|---|---|---|---|---|\n",
    );
    for (kind, ty, v) in lossy_cases() {
        let (err, target_type) = outcome(&kind, &ty, &v, LossyPolicy::Error);
        let (null, _) = outcome(&kind, &ty, &v, LossyPolicy::Null);
        let (clamp, _) = outcome(&kind, &ty, &v, LossyPolicy::Clamp);
        let target = match kind {
            TargetKind::Mysql { .. } => "MySQL/MariaDB".to_string(),
            other => other.to_string(),
        };
        let _ = writeln!(
            s,
            "| {target} | `{}` → `{}` | `{}` | {err} | {null} | {clamp} |",
            cell(&ty.sql_name()),
            cell(&target_type),
            cell(&show_value(&v))
        );
    }
}

/// `xdb schema` and its exit codes.
fn schema_command(s: &mut String) {
    s.push_str(
        "\n## Checking a plan: `xdb schema`\n\n\
         * `xdb schema --plan P` prints the target DDL for the plan's tables: per column the source and target\n  \
           type and a `lossy:` line wherever values or constraints can be lost, the CREATE TABLE, the indexes the\n  \
           copy builds after loading, the indexes it cannot rebuild (expression, partial) and the foreign keys and\n  \
           CHECK constraints it does not create.\n\
         * `--apply` creates the tables that do not exist; an existing table is left as it is (a second run creates\n  \
           nothing), and when its columns differ from the plan's the script says how.\n\
         * `--scan` reads every source row through the conversion the copy uses and lists, per column, how many\n  \
           values the target cannot hold, with up to five examples: key, value, reason and what the column's policy\n  \
           does with it (`rejected`, `written as NULL`, `written as <nearest value>`), e.g.\n\n\
         ```text\n\
         public.events.at: 4 value(s) DATETIME(6) on MariaDB 10.11.6 cannot hold; the copy would stop at the first. ...\n    \
             key id=2: 0001-01-01 00:00:00.000000 BC: DATETIME(6) holds 1000-01-01 00:00:00 to 9999-12-31 23:59:59.999999; rejected\n\
         ```\n\n\
         Exit codes: `0` done (and with `--scan`, every value maps exactly); `1` `--scan` found values the mapping\n\
         would reject or alter, or the command failed (the reason is on stderr, after `error:`); `2` the plan is\n\
         invalid.\n",
    );
}

/// The plan's overrides and rule files.
fn overrides(s: &mut String) {
    let (header, _) = comments(BUILTIN_MYSQL);
    s.push_str(
        "\n## Overrides in the plan\n\n\
         Per column, by `schema.table.column` (`table.column` means schema `public`):\n\n\
         ```yaml\n\
         mapping:\n  \
           rules: my-pg-to-mysql.yaml     # optional: replaces the built-in rule file for the target\n  \
           columns:                       # target type, used as written in CREATE TABLE\n    \
             public.orders.note: VARCHAR(2000)\n    \
             public.products.attrs: LONGTEXT\n  \
           policy: error                  # default policy for every column: error | null | clamp\n  \
           policies:                      # per-column policy\n    \
             public.events.happened_at: clamp\n    \
             public.readings.value: null\n\
         ```\n\n\
         A column override is not checked against the source type: the target must accept the values' text form.\n\n\
         ## Rule files\n\n\
         A rule file must name every built-in type (copy the built-in one and edit it). From `mappings/pg-to-mysql.yaml`:\n\n\
         ```text\n",
    );
    for line in header {
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str("```\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_mapping_md_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/mapping.md");
        let fresh = reference_markdown();
        if std::env::var("XDB_BLESS").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &fresh).unwrap();
            return;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == fresh,
            "docs/mapping.md is stale: regenerate it with `XDB_BLESS=1 cargo test --lib mapping::reference` and commit it"
        );
    }

    #[test]
    fn every_rule_has_an_example() {
        let names: std::collections::HashSet<String> = examples().iter().map(|t| t.rule_name().to_string()).collect();
        for r in super::super::RULE_NAMES {
            assert!(names.contains(*r), "no example type for rule {r}");
        }
    }
}

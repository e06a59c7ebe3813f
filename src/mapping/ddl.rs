//! DDL for mapped tables: CREATE TABLE (and the enum types a PostgreSQL
//! target needs), secondary indexes built after the bulk load, and ADD
//! COLUMN for schema drift. Statements are idempotent where the target
//! allows (`IF NOT EXISTS`), so a resumed run can issue them again.

use std::collections::BTreeSet;

use super::{MappedColumn, MappedTable, MysqlFlavour, TargetClass, TargetKind};
use crate::model::{Column, PgType, TableName};
use crate::plan::naming::{flat_by_rule, SqlDialect};

/// A secondary (or unique) index of a source table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDef {
    /// The index name on the source.
    pub name: String,
    /// Indexed column names, in index order.
    pub columns: Vec<String>,
    pub unique: bool,
}

/// A string literal for `kind` (MySQL also escapes backslashes).
pub fn sql_string(kind: &TargetKind, s: &str) -> String {
    match kind {
        TargetKind::Mysql { .. } => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
        _ => format!("'{}'", s.replace('\'', "''")),
    }
}

/// A PostgreSQL default expression, simplified: a string literal with its
/// casts removed, or the bare expression.
enum PgDefault {
    Str(String),
    Expr(String),
}

fn parse_pg_default(d: &str) -> PgDefault {
    let d = d.trim();
    if let Some(rest) = d.strip_prefix('\'') {
        let mut out = String::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().map(|(_, c)| *c) == Some('\'') {
                    chars.next();
                    out.push('\'');
                    continue;
                }
                let tail = &rest[i + 1..];
                if tail.is_empty() || tail.starts_with("::") {
                    return PgDefault::Str(out);
                }
                break;
            }
            out.push(c);
        }
        return PgDefault::Expr(d.to_string());
    }
    // `(-1)::integer`, `0`, `now()`.
    let mut e = d;
    if let Some(i) = e.find("::") {
        e = &e[..i];
    }
    let e = e.trim().trim_start_matches('(').trim_end_matches(')');
    let e = if e.ends_with('(') { &d[..d.find("::").unwrap_or(d.len())] } else { e };
    PgDefault::Expr(e.trim().to_string())
}

/// True when a PostgreSQL default is a constant (a number, a string
/// literal with casts, `NULL`, `true`/`false`): the value every existing
/// row got when a column was added with it, which the target can give its
/// rows the same way. Anything else (`now()`, `gen_random_uuid()`,
/// `nextval(…)`, an operator) is not: for `now()` PostgreSQL stored the
/// ALTER's own time, for a volatile one a value per row, so the values
/// must be read from the source (invariant *schema drift*).
pub fn is_constant_default(d: &str) -> bool {
    match parse_pg_default(d) {
        PgDefault::Str(_) => {
            // `'a'::text` is a constant; `'a'::text || 'b'` is parsed as
            // the string `a` too, so look at what follows the literal.
            let t = d.trim();
            let close = t.rfind('\'').unwrap_or(0);
            let tail = &t[close + 1..];
            t.starts_with('\'') && tail.chars().all(|c| c.is_ascii_alphanumeric() || " _:,.()[]\"".contains(c))
        }
        PgDefault::Expr(e) => is_number(&e) || matches!(e.to_ascii_lowercase().as_str(), "null" | "true" | "false"),
    }
}

fn is_number(s: &str) -> bool {
    let b = s.strip_prefix('-').unwrap_or(s);
    !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit() || c == b'.') && b.bytes().filter(|c| *c == b'.').count() <= 1
}

fn precision_of(target_type: &str) -> Option<String> {
    let (_, r) = target_type.split_once('(')?;
    let (p, _) = r.split_once(')')?;
    Some(p.trim().to_string())
}

/// The target SQL for a column default, or `None` (with a warning when
/// the source had a default that does not translate).
pub(super) fn translate_default(
    kind: &TargetKind,
    c: &Column,
    target_type: &str,
    class: TargetClass,
    table: &str,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let d = c.default.as_deref()?;
    if c.identity || d.starts_with("nextval(") {
        return None;
    }
    if matches!(kind, TargetKind::Postgres) {
        return Some(d.to_string());
    }
    let parsed = parse_pg_default(d);
    let lower = match &parsed {
        PgDefault::Expr(e) => e.to_ascii_lowercase(),
        PgDefault::Str(_) => String::new(),
    };
    let is_now = matches!(
        lower.as_str(),
        "now()" | "current_timestamp" | "transaction_timestamp()" | "statement_timestamp()" | "localtimestamp"
    );
    let mysql_lob = matches!(class, TargetClass::Json)
        || ["TEXT", "BLOB"].iter().any(|w| target_type.to_ascii_uppercase().contains(w));
    let out = match (kind, &parsed) {
        (_, PgDefault::Expr(_)) if lower == "null" => Some("NULL".to_string()),
        (_, PgDefault::Expr(e)) if is_number(e) => Some(e.clone()),
        (TargetKind::Mysql { .. } | TargetKind::Sqlite, PgDefault::Expr(_)) if lower == "true" => Some("1".into()),
        (TargetKind::Mysql { .. } | TargetKind::Sqlite, PgDefault::Expr(_)) if lower == "false" => Some("0".into()),
        (TargetKind::Mysql { flavour, version }, PgDefault::Str(s)) => {
            let lit = sql_string(kind, s);
            if mysql_lob && *flavour == MysqlFlavour::Mysql {
                // MySQL allows defaults on TEXT/BLOB/JSON only as expressions (8.0.13+).
                (*version >= (8, 0, 13)).then(|| format!("({lit})"))
            } else {
                Some(lit)
            }
        }
        (TargetKind::Mysql { flavour, version }, PgDefault::Expr(_)) if is_now && class == TargetClass::DateTime => {
            let call = |f: &str| match precision_of(target_type) {
                Some(p) => format!("{f}({p})"),
                None => f.to_string(),
            };
            // A timestamptz column holds UTC; CURRENT_TIMESTAMP would give the
            // inserting session's local time once applications write after cutover.
            match (&c.pg_type, flavour) {
                (PgType::TimestampTz(_), MysqlFlavour::Mariadb) => Some(call("UTC_TIMESTAMP")),
                (PgType::TimestampTz(_), MysqlFlavour::Mysql) if *version >= (8, 0, 13) => {
                    Some(format!("({})", call("UTC_TIMESTAMP")))
                }
                (PgType::TimestampTz(_), MysqlFlavour::Mysql) => {
                    warnings.push(format!(
                        "{table}.{}: default `{d}` is CURRENT_TIMESTAMP on {kind}, in the session time zone, \
                         while the column holds UTC: run writers with time_zone = '+00:00'",
                        c.name
                    ));
                    Some(call("CURRENT_TIMESTAMP"))
                }
                _ => Some(call("CURRENT_TIMESTAMP")),
            }
        }
        (TargetKind::Sqlite, PgDefault::Str(s)) => Some(sql_string(kind, s)),
        (TargetKind::Sqlite, PgDefault::Expr(_)) if is_now => Some(match c.pg_type {
            PgType::TimestampTz(_) => "(strftime('%Y-%m-%dT%H:%M:%fZ','now'))".into(),
            _ => "(strftime('%Y-%m-%dT%H:%M:%f','now'))".into(),
        }),
        (TargetKind::Sqlite, PgDefault::Expr(_)) if lower == "current_date" => Some("(date('now'))".into()),
        _ => None,
    };
    if out.is_none() {
        warnings.push(format!(
            "{table}.{}: default `{d}` does not translate to {kind}; the target column has no default",
            c.name
        ));
    }
    out
}

fn column_def(t: &MappedTable, i: usize, kind: &TargetKind, inline_rowid_pk: bool, for_add: bool) -> String {
    let d = kind.dialect();
    let c: &MappedColumn = &t.columns[i];
    // MariaDB's JSON is an alias of LONGTEXT with a json_valid CHECK: spell
    // out what the server creates, so the reviewed DDL is what SHOW CREATE TABLE shows.
    let mariadb_json = matches!(kind, TargetKind::Mysql { flavour: MysqlFlavour::Mariadb, .. })
        && c.target_type.trim().eq_ignore_ascii_case("JSON");
    let ty = if mariadb_json { "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" } else { c.target_type.as_str() };
    let mut s = format!("{} {ty}", d.ident(&c.name));
    let int_identity = c.identity && matches!(c.source_type, PgType::Int2 | PgType::Int4 | PgType::Int8);
    let not_null = !c.nullable && (!for_add || c.default.is_some());
    match kind {
        TargetKind::Mysql { .. } => {
            s.push_str(if not_null { " NOT NULL" } else { " NULL" });
            if int_identity && t.source.primary_key.first() == Some(&i) && !for_add {
                s.push_str(" AUTO_INCREMENT");
            }
        }
        TargetKind::Sqlite => {
            if inline_rowid_pk {
                s.push_str(" PRIMARY KEY");
            }
            if not_null {
                s.push_str(" NOT NULL");
            }
        }
        TargetKind::Postgres => {
            if int_identity && !for_add {
                s.push_str(" GENERATED BY DEFAULT AS IDENTITY");
            }
            if not_null {
                s.push_str(" NOT NULL");
            }
        }
    }
    if let Some(def) = &c.default {
        s.push_str(" DEFAULT ");
        s.push_str(def);
    }
    if let Some(check) = &c.check {
        s.push(' ');
        s.push_str(check);
    }
    if mariadb_json {
        s.push_str(&format!(" CHECK (json_valid({}))", d.ident(&c.name)));
    }
    s
}

fn enum_types(ty: &PgType, out: &mut BTreeSet<(String, Vec<String>)>) {
    match ty {
        PgType::Enum { name, labels } => {
            out.insert((name.clone(), labels.clone()));
        }
        PgType::Array(inner) => enum_types(inner, out),
        _ => {}
    }
}

/// CREATE TABLE for a mapped table, preceded on PostgreSQL by its schema
/// and enum types (created when missing). MySQL tables are InnoDB, utf8mb4
/// with the binary NO PAD collation of [`TargetKind::mysql_collation`].
pub fn create_table_ddl(t: &MappedTable, kind: &TargetKind) -> Vec<String> {
    let d = kind.dialect();
    let mut out = Vec::new();
    let pk = &t.source.primary_key;
    if let TargetKind::Postgres = kind {
        if t.source.name.schema != "public" {
            out.push(format!("CREATE SCHEMA IF NOT EXISTS {}", d.ident(&t.source.name.schema)));
        }
        let mut enums = BTreeSet::new();
        for c in &t.columns {
            let mut mine = BTreeSet::new();
            enum_types(&c.source_type, &mut mine);
            // A column overridden to another type needs no enum type.
            let ty = |n: &str| super::pg_type_sql(&PgType::Enum { name: n.to_string(), labels: vec![] });
            enums.extend(mine.into_iter().filter(|(n, _)| c.target_type.contains(&ty(n))));
        }
        for (name, labels) in enums {
            let ty = super::pg_type_sql(&PgType::Enum { name, labels: vec![] });
            let labels: Vec<String> = labels.iter().map(|l| sql_string(kind, l)).collect();
            out.push(format!(
                "DO $xdb$ BEGIN CREATE TYPE {ty} AS ENUM ({}); EXCEPTION WHEN duplicate_object THEN NULL; END $xdb$",
                labels.join(", ")
            ));
        }
    }
    // SQLite: a single integer identity key is the rowid (INTEGER PRIMARY KEY).
    let rowid_pk = matches!(kind, TargetKind::Sqlite)
        && pk.len() == 1
        && t.columns.get(pk[0]).is_some_and(|c| c.target_type.eq_ignore_ascii_case("INTEGER") && c.identity);
    let mut defs: Vec<String> =
        (0..t.columns.len()).map(|i| column_def(t, i, kind, rowid_pk && pk.first() == Some(&i), false)).collect();
    // Generated columns last: nothing writes them, the target computes them.
    defs.extend(
        t.generated
            .iter()
            .map(|g| format!("{} {} GENERATED ALWAYS AS ({}) STORED", d.ident(&g.name), g.target_type, g.expression)),
    );
    if !pk.is_empty() && !rowid_pk {
        let cols: Vec<String> = pk.iter().filter_map(|&i| t.columns.get(i)).map(|c| d.ident(&c.name)).collect();
        defs.push(format!("PRIMARY KEY ({})", cols.join(", ")));
    }
    let mut sql = format!("CREATE TABLE IF NOT EXISTS {} (\n  {}\n)", t.target_ident, defs.join(",\n  "));
    if kind.is_mysql() {
        sql.push_str(&format!(" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={}", kind.mysql_collation()));
    }
    out.push(sql);
    out
}

fn index_name(t: &TableName, name: &str, dialect: SqlDialect) -> String {
    match dialect {
        // SQLite index names share one namespace per database, like flat table names.
        SqlDialect::Sqlite => flat_by_rule(&TableName::new(t.schema.clone(), name.to_string())),
        _ => name.to_string(),
    }
}

/// CREATE INDEX statements for secondary indexes, to run after the bulk
/// load. On MySQL a TEXT/BLOB column is indexed by its first 768
/// characters; such an index cannot be UNIQUE without false duplicates, so
/// it is created non-unique (the source keeps enforcing uniqueness).
pub fn create_index_ddl(t: &MappedTable, indexes: &[IndexDef], kind: &TargetKind) -> Vec<String> {
    let d = kind.dialect();
    indexes
        .iter()
        .map(|ix| {
            let mut unique = ix.unique;
            let cols: Vec<String> = ix
                .columns
                .iter()
                .map(|name| {
                    let q = d.ident(name);
                    let col = t.columns.iter().find(|c| &c.name == name);
                    let lob = col.is_some_and(|c| {
                        let u = c.target_type.to_ascii_uppercase();
                        kind.is_mysql() && (u.contains("TEXT") || u.contains("BLOB") || c.class == TargetClass::Json)
                    });
                    if lob {
                        unique = false;
                        format!("{q}(768)")
                    } else {
                        q
                    }
                })
                .collect();
            let if_not_exists = match kind {
                TargetKind::Mysql { flavour: MysqlFlavour::Mysql, .. } => "",
                _ => "IF NOT EXISTS ",
            };
            format!(
                "CREATE {}INDEX {if_not_exists}{} ON {} ({})",
                if unique { "UNIQUE " } else { "" },
                d.ident(&index_name(&t.source.name, &ix.name, d)),
                t.target_ident,
                cols.join(", ")
            )
        })
        .collect()
}

/// ALTER TABLE … ADD COLUMN for a column added on the source (schema
/// drift). The column is NOT NULL only when it has a default: existing
/// rows need a value.
///
/// SQLite refuses ADD COLUMN with an expression default (`Cannot add a
/// column with non-constant default`): there the column is added without
/// it (and so nullable); the writer fills the existing rows from the
/// source, as it does for every non-constant default.
pub fn add_column_ddl(t: &MappedTable, col: usize, kind: &TargetKind) -> String {
    let if_not_exists = match kind {
        TargetKind::Sqlite | TargetKind::Mysql { flavour: MysqlFlavour::Mysql, .. } => "",
        _ => "IF NOT EXISTS ",
    };
    let expr_default = t.columns[col].default.as_deref().is_some_and(|d| d.trim_start().starts_with('('));
    let def = if matches!(kind, TargetKind::Sqlite) && expr_default {
        let mut t = t.clone();
        t.columns[col].default = None;
        column_def(&t, col, kind, false, true)
    } else {
        column_def(t, col, kind, false, true)
    };
    format!("ALTER TABLE {} ADD COLUMN {if_not_exists}{def}", t.target_ident)
}

/// True when every value of a `from` column is, unchanged, a value of the
/// `to` type: PostgreSQL's ALTER … TYPE rewrote no value, so the target
/// only needs its column to hold the new type (int to bigint, a longer
/// varchar, varchar to text, more numeric digits or fractional seconds).
pub fn type_keeps_values(from: &PgType, to: &PgType) -> bool {
    use PgType::*;
    let p = |x: &Option<u32>| x.unwrap_or(6);
    match (from, to) {
        (a, b) if a == b => true,
        // Narrower integers too: PostgreSQL refused the ALTER unless every
        // value fits, and a value that fits is the same number.
        (Int2 | Int4 | Int8, Int2 | Int4 | Int8) | (Float4, Float8) => true,
        (Int2 | Int4 | Int8, Numeric { precision: None, .. }) => true,
        (Numeric { .. }, Numeric { precision: None, .. }) => true,
        (Numeric { precision: Some(p1), scale: s1 }, Numeric { precision: Some(p2), scale: s2 }) => {
            let (s1, s2) = (s1.unwrap_or(0), s2.unwrap_or(0));
            s2 >= s1 && p2.saturating_sub(s2) >= p1.saturating_sub(s1)
        }
        (Varchar(Some(n)), Varchar(Some(m))) => m >= n,
        (Varchar(_), Varchar(None) | Text) | (Text, Varchar(None)) => true,
        (Timestamp(a), Timestamp(b)) | (TimestampTz(a), TimestampTz(b)) | (Time(a), Time(b)) => p(b) >= p(a),
        _ => false,
    }
}

/// SQLite's type affinity of a declared column type (the rules of
/// "Determination Of Column Affinity"): a column keeps its values across
/// a change of declared type with the same affinity.
pub fn sqlite_affinity(declared: &str) -> &'static str {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        "INTEGER"
    } else if ["CHAR", "CLOB", "TEXT"].iter().any(|w| t.contains(w)) {
        "TEXT"
    } else if t.contains("BLOB") || t.trim().is_empty() {
        "BLOB"
    } else if ["REAL", "FLOA", "DOUB"].iter().any(|w| t.contains(w)) {
        "REAL"
    } else {
        "NUMERIC"
    }
}

/// The statement that changes column `col` of the target table to the
/// type (and, on MySQL, the whole definition) of `t`, or `None` on SQLite,
/// which cannot change a column's type.
pub fn alter_column_type_ddl(t: &MappedTable, col: usize, kind: &TargetKind) -> Option<String> {
    let d = kind.dialect();
    let c = &t.columns[col];
    match kind {
        TargetKind::Sqlite => None,
        // MODIFY restates the column: its NULL, default and AUTO_INCREMENT
        // as the table was created with them.
        TargetKind::Mysql { .. } => {
            Some(format!("ALTER TABLE {} MODIFY COLUMN {}", t.target_ident, column_def(t, col, kind, false, false)))
        }
        TargetKind::Postgres => Some(format!(
            "ALTER TABLE {} ALTER COLUMN {} TYPE {ty} USING {}::{ty}",
            t.target_ident,
            d.ident(&c.name),
            d.ident(&c.name),
            ty = c.target_type
        )),
    }
}

/// ALTER TABLE … RENAME COLUMN for a column renamed on the source (the
/// same statement on every target: MySQL 8.0, MariaDB 10.5, SQLite 3.25).
pub fn rename_column_ddl(t: &MappedTable, from: &str, to: &str, kind: &TargetKind) -> String {
    let d = kind.dialect();
    format!("ALTER TABLE {} RENAME COLUMN {} TO {}", t.target_ident, d.ident(from), d.ident(to))
}

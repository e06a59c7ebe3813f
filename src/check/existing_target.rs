//! Target tables that exist before xdb fills them (created by hand, by a
//! migration tool, by an earlier attempt) are checked, not trusted: a
//! column of another type than the mapping's, a different primary key, a
//! case- or accent-insensitive collation on a key or unique text column
//! (two source keys would become one), fewer fractional seconds than the
//! source's timestamps, or a non-transactional engine (the position would
//! no longer commit with the data: invariant *exactly once*) each is a
//! [`Mismatch`] with the statement that fixes it.
//!
//! `xdb check` reports them; the copy (`snapshot`, `sync`) refuses them
//! before anything is created on the source. Tables xdb itself records as
//! filling or filled are not checked here: it made them from the mapping.
//!
//! What counts as the mapping's type is what the target itself makes of the
//! mapped DDL (a temporary probe table on MySQL/MariaDB and PostgreSQL, the
//! column affinity on SQLite), so spellings (`INT` / `int(11)`, `JSON` /
//! `longtext`) never differ.

use mysql_async::prelude::Queryable;

use crate::error_policy::DriverError;
use crate::mapping::{MappedTable, TargetClass, TargetKind};
use crate::sink::{TargetConn, TargetError};

/// One way an existing target table differs from what xdb needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The target table as named on the target.
    pub table: String,
    pub problem: String,
    /// The statement(s) that fix it, ready to run on the target.
    pub fix: String,
}

/// One column as the existing table (or the probe) has it.
#[derive(Debug, Clone)]
struct TargetColumn {
    name: String,
    /// The type as the target prints it, lower case.
    ty: String,
    /// The collation, when the column has one.
    collation: Option<String>,
    /// False for a case- or accent-insensitive collation.
    exact_collation: bool,
}

/// Mismatches of the existing target table of `m` (none when the table
/// does not exist). `unique` names the source columns under a unique
/// constraint; `insensitive_ok` the `schema.table.column`s the plan allows
/// an insensitive collation on (`mapping.insensitive_keys`).
pub async fn check_table(
    conn: &mut TargetConn,
    m: &MappedTable,
    unique: &[String],
    insensitive_ok: &[String],
) -> Result<Vec<Mismatch>, TargetError> {
    if !conn.table_exists(&m.target_table()).await? {
        return Ok(Vec::new());
    }
    let found = read_existing(conn, m).await?;
    let ident = &m.target_ident;
    let mut out = Vec::new();
    let mut push = |problem: String, fix: String| out.push(Mismatch { table: m.target_name.clone(), problem, fix });
    if let Some(engine) = found.engine.as_ref().filter(|e| !e.eq_ignore_ascii_case("InnoDB")) {
        push(
            format!(
                "engine {engine} is not transactional: the position xdb records would not commit with the data \
                 (a crash could apply changes twice or lose them)"
            ),
            format!("ALTER TABLE {ident} ENGINE=InnoDB"),
        );
    }
    let want_pk: Vec<String> = m.source.primary_key.iter().map(|&i| m.source.columns[i].name.clone()).collect();
    for (i, c) in m.columns.iter().enumerate() {
        let Some(have) = found.columns.iter().find(|e| e.name == c.name) else {
            let add = crate::mapping::add_column_ddl(m, i, &m.kind);
            push(format!("column {} is missing", c.name), add);
            continue;
        };
        if let Some((problem, fix)) = type_problem(m, c, have, found.probe.as_deref()) {
            push(problem, fix);
        }
        let keyish = want_pk.contains(&c.name) || unique.contains(&c.name);
        let allowed = insensitive_ok.iter().any(|a| a == &format!("{}.{}", m.source.name, c.name));
        if keyish && !have.exact_collation && !allowed {
            let (problem, fix) = collation_problem(m, c, have, want_pk.contains(&c.name));
            push(problem, fix);
        }
    }
    if found.pk != want_pk {
        let (problem, fix) = primary_key_problem(m, &found.pk, &want_pk);
        push(problem, fix);
    }
    Ok(out)
}

/// What the target has: its columns, the mapped types as the target
/// spells them (a probe table; none on SQLite, or when a type is missing),
/// its primary key and (MySQL) its engine.
struct Existing {
    columns: Vec<TargetColumn>,
    probe: Option<Vec<TargetColumn>>,
    pk: Vec<String>,
    engine: Option<String>,
}

async fn read_existing(conn: &mut TargetConn, m: &MappedTable) -> Result<Existing, TargetError> {
    let label = conn.label();
    match conn {
        TargetConn::Mysql(crate::sink::mysql::MysqlConn { conn, .. }) => read_mysql(conn, m, &label).await,
        TargetConn::Postgres(crate::sink::postgres::PgConn { client, .. }) => read_postgres(client, m, &label).await,
        TargetConn::Sqlite(crate::sink::sqlite::SqliteConn { conn, .. }) => read_sqlite(conn, m, &label),
    }
}

/// A driver error while reading `context` on the target `label`.
fn sql_error(label: &str, context: String) -> impl Fn(DriverError) -> TargetError + '_ {
    move |e| TargetError::Sql { target: label.to_string(), context: context.clone(), source: e }
}

async fn read_mysql(conn: &mut mysql_async::Conn, m: &MappedTable, label: &str) -> Result<Existing, TargetError> {
    let err = |context: String| sql_error(label, context);
    let ident = &m.target_ident;
    let e = err(format!("reading the columns of {ident}"));
    let existing = mysql_columns(conn, ident).await.map_err(|x| e(DriverError::from(x)))?;
    let probe_name = format!("`xdb_probe_{}`", std::process::id());
    let defs: Vec<String> =
        m.columns.iter().map(|c| format!("`{}` {}", c.name.replace('`', "``"), c.target_type)).collect();
    let create = format!(
        "CREATE TEMPORARY TABLE {probe_name} ({}) DEFAULT CHARSET=utf8mb4 COLLATE={}",
        defs.join(", "),
        m.kind.mysql_collation()
    );
    let e = err(format!("probing the mapped types of {ident}"));
    conn.query_drop(create.as_str()).await.map_err(|x| e(DriverError::from(x)))?;
    let probe = mysql_columns(conn, &probe_name).await;
    let _ = conn.query_drop(format!("DROP TEMPORARY TABLE IF EXISTS {probe_name}")).await;
    let probe = probe.map_err(|x| e(DriverError::from(x)))?;
    let e = err(format!("reading the primary key of {ident}"));
    let keys: Vec<mysql_async::Row> = conn
        .query(format!("SHOW KEYS FROM {ident} WHERE Key_name = 'PRIMARY'"))
        .await
        .map_err(|x| e(DriverError::from(x)))?;
    let mut pk: Vec<(u64, String)> = keys
        .into_iter()
        .map(|r| (r.get::<u64, _>("Seq_in_index").unwrap_or(0), r.get::<String, _>("Column_name").unwrap_or_default()))
        .collect();
    pk.sort();
    let e = err(format!("reading the engine of {ident}"));
    let engine: Option<String> = conn
        .exec_first(
            "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
            (m.target_name.as_str(),),
        )
        .await
        .map_err(|x| e(DriverError::from(x)))?;
    Ok(Existing { columns: existing, probe: Some(probe), pk: pk.into_iter().map(|(_, n)| n).collect(), engine })
}

async fn read_postgres(client: &tokio_postgres::Client, m: &MappedTable, label: &str) -> Result<Existing, TargetError> {
    let err = |context: String| sql_error(label, context);
    let ident = &m.target_ident;
    let e = err(format!("reading the columns of {ident}"));
    let existing = pg_columns(client, ident).await.map_err(|x| e(DriverError::from(x)))?;
    // The probe may fail (an enum type the target lacks): the
    // existing table then cannot have that type either.
    let defs: Vec<String> =
        m.columns.iter().map(|c| format!("{} {}", crate::model::pg_ident(&c.name), c.target_type)).collect();
    let probe = match client.batch_execute(&format!("BEGIN; CREATE TEMP TABLE xdb_probe ({})", defs.join(", "))).await {
        Ok(()) => {
            let p = pg_columns(client, "pg_temp.xdb_probe").await.ok();
            let _ = client.batch_execute("ROLLBACK").await;
            p
        }
        Err(_) => {
            let _ = client.batch_execute("ROLLBACK").await;
            None
        }
    };
    let e = err(format!("reading the primary key of {ident}"));
    let rows = client
        .query(
            "SELECT a.attname::text FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary ORDER BY k.ord",
            &[&ident],
        )
        .await
        .map_err(|x| e(DriverError::from(x)))?;
    Ok(Existing { columns: existing, probe, pk: rows.iter().map(|r| r.get::<_, String>(0)).collect(), engine: None })
}

fn read_sqlite(conn: &rusqlite::Connection, m: &MappedTable, label: &str) -> Result<Existing, TargetError> {
    let err = |context: String| sql_error(label, context);
    let ident = &m.target_ident;
    let e = err(format!("reading the columns of {ident}"));
    let (existing, pk) = sqlite_columns(conn, &m.target_name).map_err(|x| e(DriverError::from(x)))?;
    Ok(Existing { columns: existing, probe: None, pk, engine: None })
}

/// A column whose type does not hold what the mapping writes, with the
/// statement that fixes it.
fn type_problem(
    m: &MappedTable,
    c: &crate::mapping::MappedColumn,
    have: &TargetColumn,
    probe: Option<&[TargetColumn]>,
) -> Option<(String, String)> {
    let ident = &m.target_ident;
    let col = m.kind.dialect().ident(&c.name);
    let null = if c.nullable { "" } else { " NOT NULL" };
    match (&m.kind, probe) {
        (TargetKind::Mysql { .. }, Some(probe)) => {
            let want = probe.iter().find(|p| p.name == c.name).map(|p| p.ty.clone()).unwrap_or_default();
            let problem = mysql_type_problem(&have.ty, &want, c.class)?;
            let charset = if have.collation.is_some() || c.class == TargetClass::Text {
                format!(" CHARACTER SET utf8mb4 COLLATE {}", m.kind.mysql_collation())
            } else {
                String::new()
            };
            Some((
                format!("column {} is {}; {problem}", c.name, have.ty),
                format!("ALTER TABLE {ident} MODIFY COLUMN {col} {}{charset}{null}", c.target_type),
            ))
        }
        (TargetKind::Postgres, probe) => {
            let want = probe
                .and_then(|p| p.iter().find(|p| p.name == c.name).map(|p| p.ty.clone()))
                .unwrap_or_else(|| c.target_type.to_ascii_lowercase());
            (!pg_type_holds(&have.ty, &want)).then(|| {
                (
                    format!("column {} is {}, the mapping makes it {want}", c.name, have.ty),
                    format!("ALTER TABLE {ident} ALTER COLUMN {col} TYPE {}", c.target_type),
                )
            })
        }
        (TargetKind::Sqlite, _) => {
            let (h, w) = (crate::mapping::sqlite_affinity(&have.ty), crate::mapping::sqlite_affinity(&c.target_type));
            (h != w).then(|| {
                (
                    format!(
                        "column {} is declared {} ({h} affinity), the mapping makes it {} ({w} affinity): \
                         values would be stored converted",
                        c.name, have.ty, c.target_type
                    ),
                    format!("DROP TABLE {ident}; -- empty; xdb creates it from the mapping"),
                )
            })
        }
        _ => None,
    }
}

/// A key or unique column with a case- or accent-insensitive collation:
/// keys the source keeps apart would merge.
fn collation_problem(
    m: &MappedTable,
    c: &crate::mapping::MappedColumn,
    have: &TargetColumn,
    is_pk: bool,
) -> (String, String) {
    let ident = &m.target_ident;
    let col = m.kind.dialect().ident(&c.name);
    let null = if c.nullable { "" } else { " NOT NULL" };
    let coll = have.collation.clone().unwrap_or_default();
    let what = if is_pk { "primary key" } else { "unique" };
    let fix = match m.kind {
        TargetKind::Mysql { .. } => format!(
            "ALTER TABLE {ident} MODIFY COLUMN {col} {} CHARACTER SET utf8mb4 COLLATE {}{null}",
            c.target_type,
            m.kind.mysql_collation()
        ),
        TargetKind::Postgres => {
            format!("ALTER TABLE {ident} ALTER COLUMN {col} TYPE {} COLLATE \"C\"", c.target_type)
        }
        TargetKind::Sqlite => format!("DROP TABLE {ident}; -- empty; xdb creates it with binary collation"),
    };
    (
        format!(
            "{what} column {} has the case- or accent-insensitive collation {coll}: keys the source keeps \
             apart ('a' and 'A') would be one row on the target (or, if the plan means it, list \
             {}.{} under mapping.insensitive_keys)",
            c.name, m.source.name, c.name
        ),
        fix,
    )
}

/// The target's primary key differs from the source's.
fn primary_key_problem(m: &MappedTable, pk: &[String], want_pk: &[String]) -> (String, String) {
    let ident = &m.target_ident;
    let d = m.kind.dialect();
    let cols: Vec<String> = want_pk.iter().map(|c| d.ident(c)).collect();
    let fix = match (&m.kind, pk.is_empty(), want_pk.is_empty()) {
        (TargetKind::Sqlite, _, _) => format!("DROP TABLE {ident}; -- empty; xdb creates it from the mapping"),
        (_, _, true) => match m.kind {
            TargetKind::Mysql { .. } => format!("ALTER TABLE {ident} DROP PRIMARY KEY"),
            _ => format!("ALTER TABLE {ident} DROP CONSTRAINT <its primary key constraint>"),
        },
        (TargetKind::Mysql { .. }, true, false) => {
            format!("ALTER TABLE {ident} ADD PRIMARY KEY ({})", cols.join(", "))
        }
        (TargetKind::Mysql { .. }, false, false) => {
            format!("ALTER TABLE {ident} DROP PRIMARY KEY, ADD PRIMARY KEY ({})", cols.join(", "))
        }
        (_, true, false) => format!("ALTER TABLE {ident} ADD PRIMARY KEY ({})", cols.join(", ")),
        (_, false, false) => format!(
            "ALTER TABLE {ident} DROP CONSTRAINT <its primary key constraint>, ADD PRIMARY KEY ({})",
            cols.join(", ")
        ),
    };
    let show = |v: &[String]| if v.is_empty() { "none".to_string() } else { format!("({})", v.join(", ")) };
    (format!("primary key is {}, the source's is {}", show(pk), show(want_pk)), fix)
}

/// Reading what the check needs failed.
#[derive(Debug, thiserror::Error)]
pub enum ExistingTargetError {
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("source: {0}")]
    Source(#[from] crate::source::postgres::catalog::CatalogError),
}

/// Every mismatch of the plan's existing target tables that xdb has not
/// recorded as its own (see the module doc), for `check` and the copy.
pub async fn check_plan(
    plan: &crate::plan::Plan,
    conn: &mut TargetConn,
    source: &tokio_postgres::Client,
    mapped: &[std::sync::Arc<MappedTable>],
) -> Result<Vec<Mismatch>, ExistingTargetError> {
    // No state tables yet (a target xdb never wrote to): nothing is its own.
    let own: Vec<String> =
        conn.read_tables(&plan.source.slot).await.unwrap_or_default().into_iter().map(|s| s.table).collect();
    let mut out = Vec::new();
    for m in mapped {
        if own.contains(&m.source.name.to_string()) {
            continue;
        }
        let unique: Vec<String> = crate::source::postgres::catalog::load_indexes(source, m.source.oid)
            .await?
            .into_iter()
            .filter(|ix| ix.unique && ix.definition.is_none())
            .flat_map(|ix| ix.columns)
            .collect();
        out.extend(check_table(conn, m, &unique, &plan.mapping.insensitive_keys).await?);
    }
    Ok(out)
}

/// The refusal text for mismatches: each with its fix.
pub fn refusal(mismatches: &[Mismatch]) -> String {
    let mut s = String::from(
        "existing target tables differ from what xdb needs; nothing was created on the source. Fix each, then run \
         the command again:",
    );
    for m in mismatches {
        s.push_str(&format!("\n  - {}: {}\n    fix: {};", m.table, m.problem, m.fix));
    }
    s
}

/// Why an existing MySQL column of type `have` cannot stand for the
/// mapping's `want` (both as SHOW COLUMNS prints them), or `None`.
fn mysql_type_problem(have: &str, want: &str, class: TargetClass) -> Option<String> {
    let parse = |t: &str| -> (String, Vec<u32>, bool) {
        let base: String = t.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        let args = t
            .split_once('(')
            .and_then(|(_, r)| r.split_once(')'))
            .map(|(a, _)| a.split(',').filter_map(|x| x.trim().parse().ok()).collect())
            .unwrap_or_default();
        (base, args, t.contains("unsigned"))
    };
    let (hb, ha, hu) = parse(have);
    let (wb, wa, wu) = parse(want);
    let int_rank = |b: &str| ["tinyint", "smallint", "mediumint", "int", "bigint"].iter().position(|x| *x == b);
    let lob_rank = |b: &str| {
        ["tinytext", "text", "mediumtext", "longtext"]
            .iter()
            .position(|x| *x == b)
            .or_else(|| ["tinyblob", "blob", "mediumblob", "longblob"].iter().position(|x| *x == b))
    };
    let ok = match (hb.as_str(), wb.as_str()) {
        _ if have == want => true,
        (h, w) if int_rank(h).is_some() && int_rank(w).is_some() => int_rank(h) >= int_rank(w) && hu == wu,
        ("decimal", "decimal") => {
            let (hp, hs) = (ha.first().copied().unwrap_or(10), ha.get(1).copied().unwrap_or(0));
            let (wp, ws) = (wa.first().copied().unwrap_or(10), wa.get(1).copied().unwrap_or(0));
            hs >= ws && hp - hs >= wp - ws
        }
        ("datetime" | "time", w) if w == hb => {
            let (hf, wf) = (ha.first().copied().unwrap_or(0), wa.first().copied().unwrap_or(0));
            if hf < wf {
                return Some(format!(
                    "the source's values have {wf} fractional digits and {hb}({hf}) keeps {hf}: they would be cut"
                ));
            }
            true
        }
        ("varchar", "varchar") | ("varbinary", "varbinary") => ha.first() >= wa.first(),
        (h, w) if lob_rank(h).is_some() && lob_rank(w).is_some() => {
            h.ends_with("text") == w.ends_with("text") && lob_rank(h) >= lob_rank(w)
        }
        _ => false,
    };
    if ok {
        return None;
    }
    let what = match class {
        TargetClass::DateTime => " (a timestamp with microseconds)",
        _ => "",
    };
    Some(format!("the mapping makes it {want}{what}"))
}

/// True when a PostgreSQL column of type `have` takes the copy's values
/// (both as `format_type` prints them). The copy loads PostgreSQL in COPY
/// binary, whose form is the type's own: only the same type, or `text` for
/// a `character varying` (the same binary form), will do.
fn pg_type_holds(have: &str, want: &str) -> bool {
    have == want || (have == "text" && want.starts_with("character varying"))
}

async fn mysql_columns(conn: &mut mysql_async::Conn, ident: &str) -> Result<Vec<TargetColumn>, mysql_async::Error> {
    let rows: Vec<mysql_async::Row> = conn.query(format!("SHOW FULL COLUMNS FROM {ident}")).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let collation: Option<String> = r.get::<Option<String>, _>("Collation").flatten();
            let exact = collation.as_deref().is_none_or(|c| !(c.contains("_ci") || c.contains("_ai")));
            TargetColumn {
                name: r.get::<String, _>("Field").unwrap_or_default(),
                ty: r.get::<String, _>("Type").unwrap_or_default().to_ascii_lowercase(),
                collation,
                exact_collation: exact,
            }
        })
        .collect())
}

async fn pg_columns(client: &tokio_postgres::Client, ident: &str) -> Result<Vec<TargetColumn>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), co.collname::text, \
                    coalesce(co.collisdeterministic, true) \
             FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation \
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&ident],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TargetColumn {
            name: r.get(0),
            ty: r.get::<_, String>(1).to_ascii_lowercase(),
            collation: r.get(2),
            exact_collation: r.get(3),
        })
        .collect())
}

/// Columns (with the collation of their unique index entries) and the
/// primary key of a SQLite table.
fn sqlite_columns(
    conn: &rusqlite::Connection,
    table: &str,
) -> Result<(Vec<TargetColumn>, Vec<String>), rusqlite::Error> {
    let mut st = conn.prepare("SELECT name, type, pk FROM pragma_table_info(?1)")?;
    let cols: Vec<(String, String, i64)> =
        st.query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    let mut st = conn.prepare(
        "SELECT x.name, x.coll FROM pragma_index_list(?1) l, pragma_index_xinfo(l.name) x \
         WHERE l.\"unique\" AND x.key AND x.name IS NOT NULL",
    )?;
    let colls: Vec<(String, String)> =
        st.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut pk: Vec<(i64, String)> = cols.iter().filter(|c| c.2 > 0).map(|c| (c.2, c.0.clone())).collect();
    pk.sort();
    let out = cols
        .into_iter()
        .map(|(name, ty, _)| {
            let coll =
                colls.iter().find(|(n, c)| n == &name && !c.eq_ignore_ascii_case("BINARY")).map(|(_, c)| c.clone());
            TargetColumn { exact_collation: coll.is_none(), collation: coll, ty, name }
        })
        .collect();
    Ok((out, pk.into_iter().map(|(_, n)| n).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_types() {
        assert_eq!(mysql_type_problem("int(11)", "int(11)", TargetClass::Integer), None);
        assert_eq!(mysql_type_problem("bigint(20)", "int(11)", TargetClass::Integer), None);
        assert!(mysql_type_problem("int(11)", "bigint(20)", TargetClass::Integer).is_some());
        let e = mysql_type_problem("datetime", "datetime(6)", TargetClass::DateTime).unwrap();
        assert!(e.contains("fractional"), "{e}");
        assert_eq!(
            mysql_type_problem("decimal(14,3)", "decimal(12,2)", TargetClass::Decimal { precision: 12, scale: 2 }),
            None
        );
        assert!(mysql_type_problem("decimal(12,1)", "decimal(12,2)", TargetClass::Decimal { precision: 12, scale: 2 })
            .is_some());
        assert!(mysql_type_problem("text", "varchar(768)", TargetClass::Text).is_some());
        assert_eq!(mysql_type_problem("longtext", "text", TargetClass::Text), None);
    }
}

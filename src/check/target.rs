//! Preflight checks of the target. Nothing persistent is created: MySQL's
//! write probe is a temporary table, SQLite's a probe file removed at once.

use std::path::Path;

use mysql_async::prelude::Queryable;

use super::report::CheckSection;
use crate::pg_conn::client;
use crate::plan::{Plan, SecretUrl, TargetUrl};

/// Runs the target checks for the plan's target kind.
pub async fn check_target(plan: &Plan, out: &mut Vec<CheckSection>) {
    let mut s = CheckSection::new(format!("Target {}", plan.target.url.redacted()));
    match &plan.target.url {
        TargetUrl::Mysql(url) => check_mysql(plan, url, &mut s).await,
        TargetUrl::Sqlite(path) => check_sqlite(plan, path, &mut s),
        TargetUrl::Postgres(url) => check_postgres(plan, url, &mut s).await,
        TargetUrl::Nats(url) => crate::check::log::check(plan, url, &mut s).await,
    }
    out.push(s);
}

/// VERSION(), version_comment, local_infile, sql_mode, charset, collation, read_only.
type MysqlSettings = (String, String, i64, String, String, String, i64);

/// A MySQL/MariaDB target: reachable, its settings, the database writable.
async fn check_mysql(plan: &Plan, url: &SecretUrl, s: &mut CheckSection) {
    let Some((mut conn, server, db)) = connect_mysql(plan, url, s).await else { return };
    if mysql_settings(plan, &mut conn, &server, s).await {
        mysql_database(plan, &mut conn, &db, s).await;
    }
    let _ = conn.disconnect().await;
}

/// Connects without the database first, so a missing database is reported
/// as such: the connection, `host:port` and the database name.
async fn connect_mysql(
    plan: &Plan,
    url: &SecretUrl,
    s: &mut CheckSection,
) -> Option<(mysql_async::Conn, String, String)> {
    let (opts, tls) = match crate::sink::mysql::tls::opts_from_url(url) {
        Ok(o) => o,
        Err(e) => {
            s.fail(
                format!("invalid MySQL URL: {}", plan.scrub(&e)),
                "fix target.url (mysql://user:${PASSWORD}@host:3306/database)",
            );
            return None;
        }
    };
    let server = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
    let Some(db) = opts.db_name().map(str::to_string) else {
        s.fail("target.url names no database", "add the database to the URL: mysql://user:${PASSWORD}@host:3306/shop");
        return None;
    };
    let opts_no_db = mysql_async::OptsBuilder::from_opts(opts.clone()).db_name(None::<String>);
    let conn = match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        crate::sink::mysql::tls::connect(opts_no_db, &tls),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            s.fail(
                format!("target unreachable at {server}: {}", plan.scrub(&e.reason)),
                "check target.url (host, port, user, password) and that the server accepts TCP connections from this host",
            );
            return None;
        }
        Err(_) => {
            s.fail(format!("target unreachable at {server}: no answer within 10 s"), "check host, port and firewalls");
            return None;
        }
    };
    Some((conn, server, db))
}

/// The server's version and the settings xdb depends on; false when
/// nothing more can be checked (read-only server, settings unreadable).
async fn mysql_settings(plan: &Plan, conn: &mut mysql_async::Conn, server: &str, s: &mut CheckSection) -> bool {
    let row: Result<Option<MysqlSettings>, _> = conn
        .query_first(
            "SELECT VERSION(), CAST(@@version_comment AS CHAR), @@local_infile, CAST(@@sql_mode AS CHAR), \
             CAST(@@character_set_server AS CHAR), CAST(@@collation_server AS CHAR), @@read_only",
        )
        .await;
    let (version, comment, local_infile, sql_mode, charset, collation, read_only) = match row {
        Ok(Some(r)) => r,
        Ok(None) => return false,
        Err(e) => {
            s.fail(format!("could not read server settings: {}", plan.scrub(&e.to_string())), "see the error above");
            return false;
        }
    };
    let flavour =
        if version.to_ascii_lowercase().contains("mariadb") || comment.to_ascii_lowercase().contains("mariadb") {
            "MariaDB"
        } else {
            "MySQL"
        };
    s.pass(format!("reachable at {server}: {flavour} {version}"));
    if local_infile == 1 {
        s.pass("local_infile = ON (bulk copy uses LOAD DATA LOCAL INFILE)");
    } else {
        s.fail(
            "local_infile = OFF: the bulk copy loads with LOAD DATA LOCAL INFILE",
            "SET GLOBAL local_infile = 1;  -- and local_infile = 1 under [mysqld] in my.cnf to keep it",
        );
    }
    s.info(format!(
        "sql_mode = {}; xdb sets its own strict session sql_mode",
        if sql_mode.is_empty() { "''" } else { &sql_mode }
    ));
    s.info(format!(
        "server default charset {charset} / {collation}; xdb creates its tables as utf8mb4 / utf8mb4_bin (PostgreSQL key equality)"
    ));
    if read_only != 0 {
        s.fail(
            "the server is read_only: xdb cannot write",
            "SET GLOBAL read_only = 0;  -- or point target.url at the primary",
        );
        return false;
    }
    true
}

/// The planned database exists and this login can create tables in it.
async fn mysql_database(plan: &Plan, conn: &mut mysql_async::Conn, db: &str, s: &mut CheckSection) {
    let exists: Result<Option<String>, _> =
        conn.exec_first("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", (db,)).await;
    match exists {
        Ok(Some(_)) => {}
        Ok(None) => {
            s.fail(
                format!("database {db} does not exist"),
                format!("CREATE DATABASE `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;", db.replace('`', "``")),
            );
            return;
        }
        Err(e) => {
            s.fail(format!("could not look up database {db}: {}", plan.scrub(&e.to_string())), "see the error above");
            return;
        }
    }
    mysql_triggers(plan, conn, db, s).await;
    let probe = format!("CREATE TEMPORARY TABLE `{}`.xdb_check_probe (x INT) ENGINE=InnoDB", db.replace('`', "``"));
    match conn.query_drop(probe).await {
        Ok(()) => {
            let _ = conn.query_drop("DROP TEMPORARY TABLE IF EXISTS xdb_check_probe").await;
            s.pass(format!("database {db} exists and is writable"));
        }
        Err(e) => s.fail(
            format!("cannot write to database {db}: {}", plan.scrub(&e.to_string())),
            format!("GRANT ALL PRIVILEGES ON `{}`.* TO <xdb user>;", db.replace('`', "``")),
        ),
    }
}

/// Triggers on existing target tables fire on every row xdb writes, and
/// MySQL/MariaDB cannot keep them quiet for one session (PostgreSQL
/// targets can: `sink::postgres::triggers`): said before anything runs.
async fn mysql_triggers(plan: &Plan, conn: &mut mysql_async::Conn, db: &str, s: &mut CheckSection) {
    let names: Vec<String> = {
        let n = crate::plan::naming::Naming::of_plan(plan);
        plan.tables.iter().map(|t| n.flat_table_name(t)).collect()
    };
    let found: Result<Vec<(String, String)>, _> = conn
        .exec(
            "SELECT EVENT_OBJECT_TABLE, GROUP_CONCAT(TRIGGER_NAME ORDER BY TRIGGER_NAME SEPARATOR ', ') \
             FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ? GROUP BY EVENT_OBJECT_TABLE",
            (db,),
        )
        .await;
    let Ok(found) = found else { return };
    for (table, triggers) in found.into_iter().filter(|(t, _)| names.contains(t)) {
        s.warn(
            format!(
                "existing target table {table} has triggers ({triggers}): they fire on every row xdb copies and \
                 applies, and MySQL/MariaDB cannot keep them quiet for xdb's session; a value they change makes \
                 the target differ from the source (`xdb validate` reports it)"
            ),
            "if they belong to the application, keep their definitions (SHOW CREATE TRIGGER …), drop them \
             until the switch (DROP TRIGGER …) and create them again then; keep them only if what they change \
             is meant to differ from the source",
        );
    }
}

/// As [`mysql_triggers`]: SQLite has no way to keep a table's triggers
/// quiet for one connection either.
fn sqlite_triggers(plan: &Plan, path: &Path, s: &mut CheckSection) {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let Ok(db) = rusqlite::Connection::open_with_flags(path, flags) else { return };
    let names: Vec<String> = {
        let n = crate::plan::naming::Naming::of_plan(plan);
        plan.tables.iter().map(|t| n.flat_table_name(t)).collect()
    };
    let Ok(mut st) = db.prepare(
        "SELECT tbl_name, group_concat(name, ', ') FROM (SELECT tbl_name, name FROM sqlite_master \
         WHERE type = 'trigger' ORDER BY name) GROUP BY tbl_name",
    ) else {
        return;
    };
    let Ok(rows) = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))) else { return };
    for (table, triggers) in rows.flatten().filter(|(t, _)| names.iter().any(|n| n.eq_ignore_ascii_case(t))) {
        s.warn(
            format!(
                "existing target table {table} has triggers ({triggers}): they fire on every row xdb copies and \
                 applies, and SQLite cannot keep them quiet for xdb's connection; a value they change makes the \
                 target differ from the source (`xdb validate` reports it)"
            ),
            "if they belong to the application, keep their definitions (SELECT sql FROM sqlite_master WHERE \
             type = 'trigger'), drop them until the switch (DROP TRIGGER …) and create them again then",
        );
    }
}

fn check_sqlite(plan: &Plan, path: &Path, s: &mut CheckSection) {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = abs.parent().map(Path::to_path_buf).unwrap_or_else(|| ".".into());
    if !dir.is_dir() {
        s.fail(format!("directory {} does not exist", dir.display()), format!("mkdir -p {}", dir.display()));
        return;
    }
    let probe = dir.join(format!(".xdb-check-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            s.pass(format!("directory {} is writable", dir.display()));
        }
        Err(e) => {
            s.fail(
                format!("cannot create files in {}: {e}", dir.display()),
                "choose a writable directory in target.url or fix its permissions",
            );
            return;
        }
    }
    if abs.exists() {
        match std::fs::read(&abs).map(|b| b.get(..16).map(|h| h == b"SQLite format 3\0")) {
            Ok(Some(true)) | Ok(None) => {
                s.pass(format!("{} exists: existing tables are checked, missing ones created", abs.display()));
                sqlite_triggers(plan, &abs, s);
            }
            Ok(Some(false)) => s.fail(
                format!("{} exists but is not a SQLite database", abs.display()),
                "point target.url at a new file or an existing SQLite database",
            ),
            Err(e) => s.fail(format!("cannot read {}: {e}", abs.display()), "fix the file's permissions"),
        }
    } else {
        s.pass(format!("{} will be created", abs.display()));
    }
}

async fn check_postgres(plan: &Plan, url: &SecretUrl, s: &mut CheckSection) {
    let c = match client::connect(url, "xdb check").await {
        Ok(c) => c,
        Err(e) => {
            s.fail(
                format!("target unreachable: {}", plan.scrub(&e.to_string())),
                "check target.url (host, port, database, user) and pg_hba.conf on the target",
            );
            return;
        }
    };
    let row = c
        .query_one(
            "SELECT current_setting('server_version'), pg_is_in_recovery(), \
                    has_database_privilege(current_database(), 'CREATE'), current_user::text, current_database()::text",
            &[],
        )
        .await;
    match row {
        Ok(r) => {
            let version: String = r.get(0);
            let recovery: bool = r.get(1);
            let create: bool = r.get(2);
            let user: String = r.get(3);
            let db: String = r.get(4);
            s.pass(format!("reachable as {user}: PostgreSQL {version}"));
            check_not_the_source(plan, &c, s).await;
            if recovery {
                s.fail("the target is a standby (in recovery): it cannot be written", "point target.url at a primary");
            } else if create {
                s.pass(format!("database {db} is writable (CREATE privilege)"));
            } else {
                s.fail(
                    format!("role {user} lacks CREATE on database {db}"),
                    format!("GRANT CREATE ON DATABASE \"{db}\" TO \"{user}\";"),
                );
            }
            target_triggers(plan, &c, s).await;
        }
        Err(e) => s.fail(
            format!("could not read server settings: {}", crate::error_policy::pg_error_text(&e)),
            "see the error above",
        ),
    }
}

/// Triggers of existing target tables (a schema restored before the copy)
/// must not fire on what xdb writes (`sink::postgres::triggers`).
async fn target_triggers(plan: &Plan, c: &tokio_postgres::Client, s: &mut CheckSection) {
    let naming = crate::plan::naming::Naming::of_plan(plan);
    let tables: Vec<String> = plan.tables.iter().map(|t| naming.table_ident(t)).collect();
    match crate::sink::postgres::triggers::preflight(c, &tables).await {
        Ok(None) => {}
        Ok(Some((firing, None))) => s.pass(format!(
            "the target's own triggers ({firing}) will not fire on what xdb writes: it applies with \
             session_replication_role = replica"
        )),
        Ok(Some((problem, Some(fix)))) => s.fail(problem, fix),
        Err(e) => s.warn(format!("cannot read the target's triggers: {e}"), "check the target connection"),
    }
}

/// ✘ when the target database is the source's own (same system identifier
/// and database name, however the URLs are spelt): `snapshot` would create
/// the slot, publication and `xdb` schema in the source.
async fn check_not_the_source(plan: &Plan, target: &tokio_postgres::Client, s: &mut CheckSection) {
    use crate::source::postgres::identity;
    let (Ok(t), Ok(src)) = (identity::read(target).await, identity::of_url(&plan.source.url).await) else {
        s.warn(
            "could not read the identities of source and target (pg_control_system()): cannot tell whether the target is the source",
            "make sure target.url does not name the source database",
        );
        return;
    };
    if t == src {
        s.fail(identity::TargetIsSource(t).to_string(), "point target.url at another database (or another server)");
    } else {
        s.pass("the target is not the source database");
    }
}

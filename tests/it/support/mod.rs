//! Shared test helpers: server addresses from the environment that
//! `scripts/dev-dbs.sh env` prints, unique names, throw-away databases.

#![allow(dead_code)]

pub mod edge_values;
pub mod nats;
mod own_mariadb;
mod run;
mod target;

pub use own_mariadb::{install as install_mariadb, OwnMariaDb, PW as OWN_MY_PW};

pub use run::{kill9, ok, output_within, spawn, sync_across_an_alter_at_the_snapshot, wait_until, xdb, xdb_command};
pub use target::{pg_rows, Target};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Reads a harness variable; a missing one is a failure, never a skip.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test.sh (it starts the servers and exports their URLs)")
    })
}

/// A name unique to this test process and call: `prefix_<pid>_<n>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The PostgreSQL superuser URL for database `db`.
pub fn pg_super_url(db: &str) -> String {
    replace_db(&env("XDB_PG_SUPER_URL"), db)
}

/// The replication role's URL for database `db`.
pub fn pg_repl_url(db: &str) -> String {
    replace_db(&env("XDB_PG_URL"), db)
}

fn replace_db(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("URL with a database");
    format!("{base}/{db}")
}

pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to PostgreSQL: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A throw-away PostgreSQL database, dropped (with its slots) when the
/// value is dropped, even when the test panics.
pub struct PgDb {
    pub name: String,
}

impl PgDb {
    pub async fn create(prefix: &str) -> PgDb {
        let name = unique(prefix);
        let admin = pg_connect(&pg_super_url("postgres")).await;
        admin.batch_execute(&format!("CREATE DATABASE {name} OWNER xdb_repl")).await.expect("create database");
        let db = PgDb { name };
        let c = db.super_client().await;
        c.batch_execute("GRANT ALL ON SCHEMA public TO xdb_repl").await.expect("grant");
        db
    }

    pub fn super_url(&self) -> String {
        pg_super_url(&self.name)
    }

    pub fn repl_url(&self) -> String {
        pg_repl_url(&self.name)
    }

    pub async fn super_client(&self) -> tokio_postgres::Client {
        pg_connect(&self.super_url()).await
    }

    /// Runs SQL as superuser.
    pub async fn exec(&self, sql: &str) {
        self.super_client().await.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let url = pg_super_url("postgres");
        // Async drop is not a thing: use a short-lived runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let c = pg_connect(&url).await;
                let _ = c
                    .execute(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active",
                        &[&name],
                    )
                    .await;
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            });
        })
        .join();
    }
}

/// MariaDB URL for database `db` (user with all privileges).
pub fn mysql_url(db: &str) -> String {
    replace_db(&env("XDB_MYSQL_URL"), db)
}

/// A throw-away MariaDB database, dropped when the value is dropped.
pub struct MyDb {
    pub name: String,
}

impl MyDb {
    pub async fn create(prefix: &str) -> MyDb {
        use mysql_async::prelude::Queryable;
        let name = unique(prefix);
        let mut c = mysql_async::Conn::from_url(mysql_url("mysql")).await.expect("connect MariaDB");
        c.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")).await.unwrap();
        let _ = c.disconnect().await;
        MyDb { name }
    }

    pub fn url(&self) -> String {
        mysql_url(&self.name)
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                use mysql_async::prelude::Queryable;
                if let Ok(mut c) = mysql_async::Conn::from_url(mysql_url("mysql")).await {
                    let _ = c.query_drop(format!("DROP DATABASE IF EXISTS `{name}`")).await;
                    let _ = c.disconnect().await;
                }
            });
        })
        .join();
    }
}

/// A plan file written to a temporary directory, removed on drop.
pub struct PlanFile {
    pub dir: std::path::PathBuf,
    pub path: std::path::PathBuf,
}

impl PlanFile {
    pub fn new(yaml: &str) -> PlanFile {
        let dir = std::env::temp_dir().join(unique("xdb_plan"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plan.yaml");
        std::fs::write(&path, yaml).unwrap();
        PlanFile { dir, path }
    }
}

impl Drop for PlanFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the xdb binary with the harness environment.
/// Runs the `xdb` binary with exactly `args` (for commands given no plan
/// or a plan by hand); [`xdb`] is the usual way.
pub fn xdb_args(args: &[&str]) -> Output {
    crate::support::xdb_command().args(args).output().expect("run xdb")
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A PostgreSQL server of the test's own (initdb, pg_ctl as the unprivileged
/// dev user when the tests run as root, since initdb refuses root), on a
/// free loopback port with trust authentication: it can be restarted, and it
/// can be another major version than the shared server. Stopped and removed
/// on drop, even when the test panics.
pub struct OwnPostgres {
    bindir: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

pub(crate) fn as_dev(program: &Path) -> Command {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", &std::env::var("XDB_DEV_USER").unwrap_or_else(|_| "xdbdev".into()), "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl OwnPostgres {
    /// A server of the same version as the shared one (`XDB_PG_BINDIR`).
    pub fn start() -> OwnPostgres {
        OwnPostgres::start_from(Path::new(&env("XDB_PG_BINDIR")))
    }

    /// A server from the binaries in `bindir` (initdb, pg_ctl, postgres).
    pub fn start_from(bindir: &Path) -> OwnPostgres {
        for tool in ["initdb", "pg_ctl", "postgres"] {
            assert!(bindir.join(tool).is_file(), "{} is missing: run scripts/test.sh", bindir.join(tool).display());
        }
        let dir = std::env::temp_dir().join(unique("xdb_own_pg"));
        std::fs::create_dir_all(&dir).unwrap();
        let user = std::env::var("XDB_DEV_USER").unwrap_or_else(|_| "xdbdev".into());
        let _ = Command::new("chown").arg(&user).arg(&dir).status();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let data = dir.join("data");
        let out = as_dev(&bindir.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "-N"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", text(&out));
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str(&format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nwal_level = logical\n\
             max_wal_senders = 10\nmax_replication_slots = 10\nfsync = off\nshared_buffers = 16MB\n",
            dir.display()
        ));
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
        let pg = OwnPostgres { bindir: bindir.to_path_buf(), dir, port };
        pg.pg_ctl(&["-w", "-t", "60", "start"]);
        pg
    }

    pub fn pg_ctl(&self, args: &[&str]) {
        let out = as_dev(&self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(args)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl {args:?}: {}", text(&out));
    }

    /// The superuser `postgres`, database `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = as_dev(&self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The one plan builder of the sync-style tests: `db` as the source (the
/// replication role, a slot and publication named after the database, 1 s
/// heartbeats), `target`, the `tables` list and any `extra` YAML.
pub fn plan(db: &PgDb, target: &Target, tables: &str, extra: &str) -> PlanFile {
    PlanFile::new(&format!(
        "name: sync\nsource:\n  url: {}\n  slot: {}_slot\n  publication: {}_pub\n  heartbeat_interval_secs: 1\n\
         target:\n  url: {}\ntables: [{tables}]\n{extra}",
        db.repl_url(),
        db.name,
        db.name,
        target.url()
    ))
}

/// pagila's `film` reduced to what its triggers touch: `last_updated`
/// stamps `last_update = now()` on every UPDATE, an audit trigger adds a
/// row to `audit` per INSERT (the triggers a restored schema brings).
pub const FILM_WITH_TRIGGERS: &str = "CREATE TABLE film (film_id int PRIMARY KEY, title text NOT NULL,
       last_update timestamp NOT NULL DEFAULT now());
     CREATE TABLE audit (n serial PRIMARY KEY, film_id int);
     CREATE FUNCTION last_updated() RETURNS trigger LANGUAGE plpgsql AS
       $$ BEGIN NEW.last_update = now(); RETURN NEW; END $$;
     CREATE TRIGGER last_updated BEFORE UPDATE ON film FOR EACH ROW EXECUTE FUNCTION last_updated();
     CREATE FUNCTION audit_film() RETURNS trigger LANGUAGE plpgsql AS
       $$ BEGIN INSERT INTO audit (film_id) VALUES (NEW.film_id); RETURN NEW; END $$;
     CREATE TRIGGER audit_film AFTER INSERT ON film FOR EACH ROW EXECUTE FUNCTION audit_film();";

/// Two tables without a primary key: `visits` under REPLICA IDENTITY FULL
/// with two equal rows, and `codes` keyed by its REPLICA IDENTITY unique
/// index; owned by the replication role.
pub const KEYLESS_TABLES: &str = "CREATE TABLE visits (page text NOT NULL, n int, at date);
     ALTER TABLE visits REPLICA IDENTITY FULL;
     INSERT INTO visits VALUES ('a', 1, '2024-01-01'), ('a', 1, '2024-01-01'), ('b', 2, NULL);
     CREATE TABLE codes (code text NOT NULL, label text);
     CREATE UNIQUE INDEX codes_code ON codes (code);
     ALTER TABLE codes REPLICA IDENTITY USING INDEX codes_code;
     INSERT INTO codes VALUES ('x', 'ex'), ('y', 'why');
     ALTER TABLE visits OWNER TO xdb_repl; ALTER TABLE codes OWNER TO xdb_repl;";

//! TLS against real servers with a self-signed CA (scripts/tls-certs.sh).
//! The shared dev servers run without TLS and must not be restarted, so the
//! TLS tests start their own throw-away PostgreSQL (ssl=on, hostssl only) and
//! MariaDB (--ssl-*, user REQUIRE SSL) on free loopback ports, as the
//! unprivileged dev user when run as root, and stop them on drop. The
//! plaintext-only cases use the shared servers.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use xdb::pg_conn::client;
use xdb::plan::{SecretUrl, TargetUrl};
use xdb::sink::TargetConn;
use xdb::source::postgres::replication::{
    ReplicationClient, ReplicationError, ReplicationEvent, SnapshotAction, StartReplicationOptions,
};

use crate::support::{self, env, unique, PlanFile};

const PW: &str = "tls-secret-pw";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// Runs `program` as the unprivileged dev user when we are root (initdb and
/// postgres refuse root), as ourselves otherwise.
fn as_dev(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", &std::env::var("XDB_DEV_USER").unwrap_or_else(|_| "xdbdev".into()), "--", program]);
        c
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", support::text(&out));
}

/// A temp dir the dev user owns, with the test CA and server certificate in it.
fn cert_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tls-certs.sh");
    run(Command::new(&script).arg(&dir), "scripts/tls-certs.sh");
    if is_root() {
        let user = std::env::var("XDB_DEV_USER").unwrap_or_else(|_| "xdbdev".into());
        run(Command::new("chown").args(["-R", &user]).arg(&dir), "chown");
    }
    dir
}

/// A second, unrelated CA: what a server is NOT signed by.
fn other_ca() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(unique("xdb_tls_other"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tls-certs.sh");
    run(Command::new(&script).arg(&dir).arg("other"), "scripts/tls-certs.sh other");
    let ca = dir.join("other-ca.pem");
    (dir, ca)
}

/// A throw-away PostgreSQL with ssl=on whose pg_hba accepts only TLS
/// (`hostssl`), so a connection that gets in is encrypted.
struct TlsPostgres {
    dir: PathBuf,
    port: u16,
}

impl TlsPostgres {
    fn start() -> TlsPostgres {
        let bindir = PathBuf::from(env("XDB_PG_BINDIR"));
        let dir = cert_dir("xdb_tls_pg");
        let data = dir.join("data");
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, format!("{PW}\n")).unwrap();
        if is_root() {
            run(
                Command::new("chown")
                    .arg(std::env::var("XDB_DEV_USER").unwrap_or_else(|_| "xdbdev".into()))
                    .arg(&pwfile),
                "chown",
            );
        }
        let pg = TlsPostgres { dir: dir.clone(), port: free_port() };
        run(
            as_dev(bindir.join("initdb").to_str().unwrap())
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "-N"])
                .arg(format!("--pwfile={}", pwfile.display())),
            "initdb",
        );
        let conf = format!(
            "listen_addresses = '127.0.0.1,127.0.0.2'\nport = {}\nunix_socket_directories = '{}'\n\
             wal_level = logical\nmax_wal_senders = 10\nmax_replication_slots = 10\nfsync = off\n\
             shared_buffers = 16MB\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
            pg.port,
            dir.display(),
            dir.join("xdb-test-server.pem").display(),
            dir.join("xdb-test-server.key").display(),
            dir.join("xdb-test-ca.pem").display()
        );
        let mut pgconf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        pgconf.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), pgconf).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            // Two logins that ask for cleartext and MD5 passwords, also
            // without TLS (postgres_sql_connections_refuse_insecure_password_requests).
            "local all all trust\nhostssl all xdb_cert_user 127.0.0.0/8 cert\n\
             host all xdb_pw_user 127.0.0.0/8 password\nhost all xdb_md5_user 127.0.0.0/8 md5\n\
             hostssl replication xdb_cert_user 127.0.0.0/8 cert\n\
             hostssl all all 127.0.0.0/8 scram-sha-256\n\
             hostssl replication all 127.0.0.0/8 scram-sha-256\n",
        )
        .unwrap();
        run(
            as_dev(bindir.join("pg_ctl").to_str().unwrap())
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("postgres.log"))
                .args(["-w", "-t", "60", "start"])
                .stdout(Stdio::null()),
            "pg_ctl start",
        );
        pg
    }

    fn ca(&self) -> String {
        self.dir.join("xdb-test-ca.pem").display().to_string()
    }

    fn url(&self, host: &str, params: &str) -> String {
        format!("postgres://postgres:{PW}@{host}:{}/postgres?{params}", self.port)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let bindir = PathBuf::from(std::env::var("XDB_PG_BINDIR").unwrap_or_default());
        let _ = as_dev(bindir.join("pg_ctl").to_str().unwrap_or("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn identify(url: &str) -> Result<ReplicationClient, ReplicationError> {
    let mut c = ReplicationClient::connect_url(&SecretUrl::new(url), "xdb_it_tls").await?;
    let id = c.identify_system().await?;
    assert!(!id.systemid.is_empty());
    Ok(c)
}

/// True when the replication connection's own backend is encrypted.
async fn repl_uses_ssl(c: &mut ReplicationClient) -> bool {
    let rows = c.simple_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").await.unwrap();
    rows.first().and_then(|r| r.first()).cloned().flatten().as_deref() == Some("t")
}

#[tokio::test]
async fn postgres_over_tls() {
    let pg = tokio::task::spawn_blocking(TlsPostgres::start).await.unwrap();
    let ca = pg.ca();
    let (other_dir, other) = other_ca();

    // verify-full with the right CA: chain and host name check out.
    let full = pg.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}"));
    let mut c = identify(&full).await.unwrap_or_else(|e| panic!("verify-full: {e}"));
    assert!(repl_uses_ssl(&mut c).await);
    c.close().await;

    // The same through "localhost" (a DNS name in the certificate).
    identify(&pg.url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"))).await.unwrap().close().await;

    // require (no CA) and the default prefer encrypt without verifying; the
    // server's pg_hba accepts only TLS, so getting in proves encryption.
    for params in ["sslmode=require", "", "sslmode=prefer"] {
        let mut c = identify(&pg.url("127.0.0.1", params)).await.unwrap_or_else(|e| panic!("{params}: {e}"));
        assert!(repl_uses_ssl(&mut c).await, "{params}");
        c.close().await;
    }
    // disable: plaintext, which this server refuses.
    let e = identify(&pg.url("127.0.0.1", "sslmode=disable")).await.unwrap_err().to_string();
    assert!(e.contains("no encryption"), "{e}");

    // A CA that did not sign the server's certificate: refused, saying why and where.
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = pg.url("127.0.0.1", &format!("sslmode={mode}&sslrootcert={}", other.display()));
        let e = identify(&url).await.unwrap_err();
        assert!(matches!(e, ReplicationError::Tls(_)), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("not signed by a CA in") && e.contains(&format!("127.0.0.1:{}", pg.port)), "{e}");
        assert!(!e.contains(PW), "{e}");
    }

    // 127.0.0.2 reaches the same server but is not in the certificate:
    // verify-full refuses the name, verify-ca only checks the chain.
    let e = identify(&pg.url("127.0.0.2", &format!("sslmode=verify-full&sslrootcert={ca}"))).await.unwrap_err();
    assert!(e.to_string().contains("not valid for host \"127.0.0.2\""), "{e}");
    identify(&pg.url("127.0.0.2", &format!("sslmode=verify-ca&sslrootcert={ca}"))).await.unwrap().close().await;

    // A missing CA file is a configuration error before any connection.
    let e = identify(&pg.url("127.0.0.1", "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")).await.unwrap_err();
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");

    // Streaming over TLS: a slot, a publication, one transaction decoded from the stream.
    let sql = client::connect(&SecretUrl::new(full.clone()), "xdb_it_tls").await.unwrap_or_else(|e| panic!("{e}"));
    let ssl: bool =
        sql.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
    assert!(ssl, "tokio-postgres client over TLS");
    sql.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION p FOR TABLE t").await.unwrap();
    let mut repl = identify(&full).await.unwrap();
    let slot = repl.create_replication_slot("tls_slot", true, SnapshotAction::NoExport).await.unwrap();
    let opts = StartReplicationOptions { publication_names: vec!["p".into()], ..Default::default() };
    let mut stream = repl.start_replication("tls_slot", slot.consistent_point, &opts).await.unwrap();
    sql.batch_execute("INSERT INTO t SELECT g, repeat('x', 1000) FROM generate_series(1, 500) g").await.unwrap();
    let mut inserts = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while inserts < 500 {
        assert!(Instant::now() < deadline, "only {inserts} inserts streamed over TLS within 30 s");
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.next()).await.expect("event").unwrap().unwrap();
        if let ReplicationEvent::XLogData { data, .. } = ev {
            inserts += usize::from(data.first() == Some(&b'I'));
        }
    }
    stream.stop().await.unwrap();

    // The tokio-postgres client verifies like the replication connection.
    let bad = pg.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={}", other.display()));
    let e = client::connect(&SecretUrl::new(bad), "x").await.unwrap_err();
    assert!(e.reason.contains("not signed by a CA in") && !e.retryable, "{e}");
    let e =
        client::connect(&SecretUrl::new(pg.url("127.0.0.2", &format!("sslmode=verify-full&sslrootcert={ca}"))), "x")
            .await
            .unwrap_err();
    assert!(e.reason.contains("not valid for host"), "{e}");
    client::connect(&SecretUrl::new(pg.url("127.0.0.2", &format!("sslmode=verify-ca&sslrootcert={ca}"))), "x")
        .await
        .unwrap_or_else(|e| panic!("verify-ca via 127.0.0.2: {e}"));
    let _ = std::fs::remove_dir_all(other_dir);
}

#[tokio::test]
async fn postgres_sslmode_require_against_a_server_without_tls() {
    // The shared dev server runs with ssl=off.
    let url = format!("{}?sslmode=require", env("XDB_PG_URL"));
    let e = ReplicationClient::connect_url(&SecretUrl::new(url.clone()), "x").await.unwrap_err();
    assert!(matches!(e, ReplicationError::Tls(_)), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("does not support TLS but sslmode=require"), "{text}");
    assert!(!text.contains(&env("XDB_PG_REPL_PASSWORD")), "{text}");
    let e = client::connect(&SecretUrl::new(url), "x").await.unwrap_err();
    assert!(e.reason.contains("does not support TLS but sslmode=require"), "{e}");
    // prefer (the default) falls back to plaintext.
    let url = format!("{}?sslmode=prefer", env("XDB_PG_URL"));
    ReplicationClient::connect_url(&SecretUrl::new(url.clone()), "x").await.unwrap().close().await;
    client::connect(&SecretUrl::new(url), "x").await.unwrap();
}

/// A throw-away MariaDB started with a server certificate; its user `xdb`
/// is created `REQUIRE SSL`.
struct TlsMariaDb {
    dir: PathBuf,
    port: u16,
    /// mariadbd (under runuser when root), reaped on drop.
    child: Option<std::process::Child>,
}

impl TlsMariaDb {
    fn start() -> TlsMariaDb {
        let dir = cert_dir("xdb_tls_my");
        let data = dir.join("data");
        let mut my = TlsMariaDb { dir: dir.clone(), port: free_port(), child: None };
        support::install_mariadb(&data);
        let bin = if Path::new("/usr/sbin/mariadbd").exists() { "/usr/sbin/mariadbd" } else { "mariadbd" };
        let sock = dir.join("sock");
        let child = as_dev(bin)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            // Its own tmpdir (see support/own_mariadb.rs).
            .arg(format!("--tmpdir={}", data.display()))
            .arg(format!("--port={}", my.port))
            .arg("--bind-address=127.0.0.1,127.0.0.2")
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-error={}", dir.join("err.log").display()))
            .arg(format!("--ssl-ca={}", dir.join("xdb-test-ca.pem").display()))
            .arg(format!("--ssl-cert={}", dir.join("xdb-test-server.pem").display()))
            .arg(format!("--ssl-key={}", dir.join("xdb-test-server.key").display()))
            .args(["--skip-log-bin", "--innodb-buffer-pool-size=16M", "--skip-name-resolve"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        my.child = Some(child);
        // Socket authentication admits the OS user that ran mariadb-install-db.
        let admin = |sql: &str| {
            as_dev("mariadb")
                .arg("--no-defaults")
                .arg("-S")
                .arg(&sock)
                .args(["-e", sql])
                .output()
                .map(|o| o.status.success())
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while admin("SELECT 1").ok() != Some(true) {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("err.log")).unwrap_or_default();
                panic!("the TLS MariaDB did not start: {log}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let users = format!(
            "CREATE USER 'xdb'@'127.0.0.%' IDENTIFIED BY '{PW}' REQUIRE SSL; \
             GRANT ALL PRIVILEGES ON *.* TO 'xdb'@'127.0.0.%'; CREATE DATABASE shop; \
             CREATE USER 'xdb_cert_user'@'127.0.0.%' REQUIRE SUBJECT '/CN=xdb_cert_user'; \
             GRANT ALL PRIVILEGES ON shop.* TO 'xdb_cert_user'@'127.0.0.%';"
        );
        assert_eq!(admin(&users).ok(), Some(true), "create the TLS user");
        my
    }

    fn ca(&self) -> String {
        self.dir.join("xdb-test-ca.pem").display().to_string()
    }

    fn url(&self, params: &str) -> String {
        self.url_at("127.0.0.1", params)
    }

    fn url_at(&self, host: &str, params: &str) -> String {
        format!("mysql://xdb:{PW}@{host}:{}/shop?{params}", self.port)
    }
}

impl Drop for TlsMariaDb {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let pid = pid.trim().to_string();
            let _ = Command::new("kill").arg(&pid).output();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Command::new("kill").args(["-0", &pid]).output().is_ok_and(|o| o.status.success()) {
                if Instant::now() > deadline {
                    let _ = Command::new("kill").args(["-9", &pid]).output();
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // only reaches runuser if mariadbd is gone already
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn target(url: &str) -> Result<TargetConn, String> {
    let t = TargetUrl::parse(url).map_err(|e| e.to_string())?;
    TargetConn::connect(&t).await.map_err(|e| e.to_string())
}

/// The session's cipher (empty when the connection is plaintext).
async fn mysql_cipher(t: &mut TargetConn) -> String {
    let TargetConn::Mysql(xdb::sink::mysql::MysqlConn { conn, .. }) = t else { panic!("a MySQL target") };
    let row: Option<(String, String)> = conn.query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'").await.unwrap();
    row.map(|(_, v)| v).unwrap_or_default()
}

#[tokio::test]
async fn mariadb_over_tls() {
    let my = tokio::task::spawn_blocking(TlsMariaDb::start).await.unwrap();
    let ca = my.ca();
    let (other_dir, other) = other_ca();

    for params in [
        format!("ssl-mode=VERIFY_CA&ssl-ca={ca}"),
        format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"),
        "ssl-mode=REQUIRED".to_string(),
        String::new(), // PREFERRED by default
    ] {
        let mut t = target(&my.url(&params)).await.unwrap_or_else(|e| panic!("{params}: {e}"));
        assert!(!mysql_cipher(&mut t).await.is_empty(), "{params}: not encrypted");
    }
    // DISABLED: plaintext, which the REQUIRE SSL user may not use.
    let e = target(&my.url("ssl-mode=DISABLED")).await.err().expect("plaintext refused");
    assert!(e.contains("Access denied") && !e.contains(PW), "{e}");
    // A CA that did not sign the server's certificate.
    let e = target(&my.url(&format!("ssl-mode=VERIFY_CA&ssl-ca={}", other.display()))).await.err().expect("wrong CA");
    assert!(e.contains("not signed by a CA in") && e.contains(&format!("127.0.0.1:{}", my.port)), "{e}");
    assert!(!e.contains(PW), "{e}");
    // 127.0.0.2 reaches the same server but is not in the certificate:
    // VERIFY_IDENTITY refuses the name, VERIFY_CA only checks the chain.
    let e = target(&my.url_at("127.0.0.2", &format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"))).await.err();
    let e = e.expect("name mismatch refused");
    assert!(e.contains("not valid for host \"127.0.0.2\""), "{e}");
    let mut t = target(&my.url_at("127.0.0.2", &format!("ssl-mode=VERIFY_CA&ssl-ca={ca}")))
        .await
        .unwrap_or_else(|e| panic!("VERIFY_CA via 127.0.0.2: {e}"));
    assert!(!mysql_cipher(&mut t).await.is_empty());
    // ... and a wrong CA still fails on that path.
    let e = target(&my.url_at("127.0.0.2", &format!("ssl-mode=VERIFY_CA&ssl-ca={}", other.display()))).await.err();
    assert!(e.expect("wrong CA").contains("not signed by a CA in"));
    let _ = std::fs::remove_dir_all(other_dir);
}

#[tokio::test]
async fn mariadb_ssl_mode_required_against_a_server_without_tls() {
    // The shared dev MariaDB runs without TLS.
    let base = support::mysql_url("mysql");
    let e = target(&format!("{base}?ssl-mode=REQUIRED")).await.err().expect("REQUIRED refused");
    assert!(e.contains("does not support TLS but ssl-mode=REQUIRED"), "{e}");
    assert!(!e.contains(&env("XDB_MYSQL_PASSWORD")), "{e}");
    // PREFERRED (also the default) falls back to plaintext.
    let mut t = target(&format!("{base}?ssl-mode=PREFERRED")).await.unwrap();
    assert!(mysql_cipher(&mut t).await.is_empty());
    target(&base).await.unwrap();
}

#[tokio::test]
async fn check_plan_with_tls_urls() {
    let pg = tokio::task::spawn_blocking(TlsPostgres::start).await.unwrap();
    let my = tokio::task::spawn_blocking(TlsMariaDb::start).await.unwrap();
    let src = pg.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={}", pg.ca()));
    let sql = client::connect(&SecretUrl::new(src.clone()), "x").await.unwrap();
    sql.batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, total numeric(12,2))").await.unwrap();
    let tgt = my.url(&format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", my.ca()));
    let plan = PlanFile::new(&format!(
        "name: tlscheck\nsource:\n  url: \"{src}\"\ntarget:\n  url: \"{tgt}\"\ntables: [public.orders]\n"
    ));
    let out = support::xdb_args(&["check", "--plan", plan.path.to_str().unwrap()]);
    let text = support::text(&out);
    assert!(out.status.success(), "xdb check over TLS failed:\n{text}");
    assert!(!text.contains(PW), "{text}");
}

/// SCRAM-SHA-256-PLUS: over TLS both the replication connection and the SQL
/// connection bind the login to the TLS session; `channel_binding=require`
/// proves it (the login fails when the binding was not used), and without
/// TLS it is refused before a password is sent.
#[tokio::test]
async fn postgres_scram_channel_binding_over_tls() {
    let pg = tokio::task::spawn_blocking(TlsPostgres::start).await.unwrap();
    let ca = pg.ca();
    for params in [
        format!("sslmode=verify-full&sslrootcert={ca}&channel_binding=require"),
        "sslmode=require&channel_binding=require".to_string(),
    ] {
        let url = pg.url("127.0.0.1", &params);
        let mut c = identify(&url).await.unwrap_or_else(|e| panic!("replication, {params}: {e}"));
        assert!(repl_uses_ssl(&mut c).await);
        c.close().await;
        let sql =
            client::connect(&SecretUrl::new(url), "xdb_it_tls").await.unwrap_or_else(|e| panic!("sql, {params}: {e}"));
        let ssl: bool =
            sql.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
        assert!(ssl);
    }
    // The default (prefer) binds too when it can: the login works as before.
    identify(&pg.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}"))).await.unwrap().close().await;
    // Without TLS there is nothing to bind to: refused, saying why.
    let plain = format!("postgres://postgres:x@127.0.0.1:{}/postgres?sslmode=disable&channel_binding=require", pg.port);
    let e = identify(&plain).await.unwrap_err().to_string();
    assert!(!e.contains("tls-secret-pw"), "{e}");
}

/// `sslcert` / `sslkey`: a login by client certificate (pg_hba `cert`, the
/// certificate's CN is the role), on the replication and the SQL connection;
/// without the certificate the same login is refused. And a URL that does
/// not authenticate the server gets one warning, not one per connection.
#[tokio::test]
async fn postgres_client_certificates_and_the_unauthenticated_warning() {
    let pg = tokio::task::spawn_blocking(TlsPostgres::start).await.unwrap();
    let ca = pg.ca();
    let admin =
        client::connect(&SecretUrl::new(pg.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}"))), "x")
            .await
            .unwrap();
    admin.batch_execute("CREATE ROLE xdb_cert_user LOGIN REPLICATION").await.unwrap();
    let cert = pg.dir.join("xdb-test-client.pem").display().to_string();
    let key = pg.dir.join("xdb-test-client.key").display().to_string();
    let url = format!(
        "postgres://xdb_cert_user@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={ca}&sslcert={cert}&sslkey={key}",
        pg.port
    );
    let mut c = identify(&url).await.unwrap_or_else(|e| panic!("replication with a client certificate: {e}"));
    assert!(repl_uses_ssl(&mut c).await);
    c.close().await;
    let sql = client::connect(&SecretUrl::new(url), "x")
        .await
        .unwrap_or_else(|e| panic!("sql with a client certificate: {e}"));
    let who: String = sql.query_one("SELECT current_user::text", &[]).await.unwrap().get(0);
    assert_eq!(who, "xdb_cert_user");
    let without =
        format!("postgres://xdb_cert_user@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={ca}", pg.port);
    assert!(identify(&without).await.is_err(), "no certificate, no login");
    let half = format!("{without}&sslcert={cert}");
    let e = identify(&half).await.unwrap_err().to_string();
    assert!(e.contains("sslcert is given without sslkey"), "{e}");

    // The warning: a source across the network (TEST-NET-1, nothing answers
    // there) with sslmode=require is named once, however many connections
    // `xdb check` tries; a loopback server gets none (nothing sits between).
    let plan = PlanFile::new(&format!(
        "name: tls_warn\nsource:\n  url: postgres://u:{PW}@192.0.2.1:5432/d?sslmode=require&connect_timeout=2\ntarget:\n  url: sqlite://{}/t.db\ntables: [public.t]\n",
        std::env::temp_dir().display()
    ));
    let out = support::xdb_args(&["check", "--plan", plan.path.to_str().unwrap()]);
    let o = support::text(&out);
    assert_eq!(o.matches("is not authenticated").count(), 1, "{o}");
    assert!(o.contains("192.0.2.1:5432") && o.contains("verify-full") && !o.contains(PW), "{o}");
    let local = PlanFile::new(&format!(
        "name: tls_warn\nsource:\n  url: {}\ntarget:\n  url: sqlite://{}/t.db\ntables: [public.t]\n",
        pg.url("127.0.0.1", "sslmode=require"),
        std::env::temp_dir().display()
    ));
    let o = support::text(&support::xdb_args(&["check", "--plan", local.path.to_str().unwrap()]));
    assert!(!o.contains("is not authenticated"), "{o}");
    let _ = admin.batch_execute("DROP ROLE xdb_cert_user").await;
}

/// A cleartext or MD5 password request from a server that is not
/// authenticated gets no password on the SQL connections either (the
/// replication connection refuses it in its own handshake): with TLS that
/// does not verify the certificate and without TLS, for a server across the
/// network (here: loopback treated as remote). `verify-full`,
/// `allow_insecure_password=true` and a real loopback address let it through.
#[tokio::test]
async fn postgres_sql_connections_refuse_insecure_password_requests() {
    use client::{connect_with, PasswordGuard};
    let pg = tokio::task::spawn_blocking(TlsPostgres::start).await.unwrap();
    let ca = pg.ca();
    let admin =
        client::connect(&SecretUrl::new(pg.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}"))), "x")
            .await
            .unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE xdb_pw_user LOGIN PASSWORD '{PW}'; SET password_encryption = 'md5'; \
             CREATE ROLE xdb_md5_user LOGIN PASSWORD '{PW}'"
        ))
        .await
        .unwrap();
    let url = |user: &str, params: &str| {
        SecretUrl::new(format!("postgres://{user}:{PW}@127.0.0.1:{}/postgres?{params}", pg.port))
    };
    let logged_in = |c: tokio_postgres::Client| async move {
        c.query_one("SELECT current_user::text", &[]).await.unwrap().get::<_, String>(0)
    };
    for (user, method) in [("xdb_pw_user", "a cleartext"), ("xdb_md5_user", "an MD5")] {
        for params in ["sslmode=require", "sslmode=prefer", "sslmode=disable"] {
            let e = connect_with(&url(user, params), "x", PasswordGuard::TreatAsRemote)
                .await
                .map(|_| ())
                .expect_err(&format!("{user} {params}: a password was sent"))
                .to_string();
            assert!(e.contains(&format!("asks for {method} password")), "{e}");
            assert!(e.contains("verify-full") && e.contains("allow_insecure_password") && !e.contains(PW), "{e}");
        }
        let ok = |params: String| {
            let u = url(user, &params);
            async move {
                connect_with(&u, "x", PasswordGuard::TreatAsRemote)
                    .await
                    .unwrap_or_else(|e| panic!("{user} {params}: {e}"))
            }
        };
        assert_eq!(logged_in(ok(format!("sslmode=verify-full&sslrootcert={ca}")).await).await, user);
        assert_eq!(logged_in(ok("sslmode=require&allow_insecure_password=true".into()).await).await, user);
        // Loopback: nothing sits between, the password goes.
        let local = client::connect(&url(user, "sslmode=disable"), "x").await.unwrap();
        assert_eq!(logged_in(local).await, user);
    }
    // SCRAM over TLS that does not verify: the guard lets the login through
    // and steps aside (the session then works as any other).
    let scram =
        connect_with(&SecretUrl::new(pg.url("127.0.0.1", "sslmode=require")), "x", PasswordGuard::TreatAsRemote)
            .await
            .unwrap();
    let ssl: bool =
        scram.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
    assert!(ssl);
    let n: i64 = scram.query_one("SELECT count(*) FROM generate_series(1, 100000)", &[]).await.unwrap().get(0);
    assert_eq!(n, 100_000);
}

/// MySQL `ssl-cert` / `ssl-key`: a user that must present a certificate
/// with its subject logs in with one, and is refused without.
#[tokio::test]
async fn mariadb_client_certificates() {
    let my = tokio::task::spawn_blocking(TlsMariaDb::start).await.unwrap();
    let ca = my.ca();
    let cert = my.dir.join("xdb-test-client.pem").display().to_string();
    let key = my.dir.join("xdb-test-client.key").display().to_string();
    let base = format!("mysql://xdb_cert_user@127.0.0.1:{}/shop?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}", my.port);
    let mut t = target(&format!("{base}&ssl-cert={cert}&ssl-key={key}"))
        .await
        .unwrap_or_else(|e| panic!("login with a client certificate: {e}"));
    assert!(!mysql_cipher(&mut t).await.is_empty());
    assert!(target(&base).await.is_err(), "no certificate, no login");
    let e = target(&format!("{base}&ssl-cert={cert}")).await.err().unwrap_or_default();
    assert!(e.contains("ssl-cert is given without ssl-key"), "{e}");
}

//! The way back as its header says: `cutover-plans/rollback-to-postgres.yaml`,
//! copied verbatim, run end to end against real servers (a PostgreSQL and a
//! MariaDB of the test's own, the demo shop schema): the forward move with
//! `start_reverse`, the application writing to MariaDB while `sync
//! --reverse` streams back, then the rollback runbook — freeze MariaDB's
//! writers, stop and drain the reverse stream, validate, sequences back,
//! source writable, traffic switched back — and `xdb validate`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mysql_async::prelude::Queryable;

use crate::support::{self, pg_connect, OwnMariaDb, OwnPostgres, OWN_MY_PW};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The forward plan: `pg-to-mysql.yaml` with a short runbook that ends at
/// the switch point (freeze the shop's role, drain, sequences, start_reverse).
fn forward_plan() -> String {
    let text = std::fs::read_to_string(root().join("cutover-plans/pg-to-mysql.yaml")).unwrap();
    let head = &text[..text.find("\ncutover:").expect("a cutover section")];
    format!(
        "{head}\ncutover:\n  steps:\n    - name: Stop writes on the source\n      stop_source_writes: {{ roles: [shop_app] }}\n      \
         rollback: resume_source_writes\n    - name: Drain\n      wait_for_catchup: {{ timeout: 2m }}\n    - name: Sequences\n      \
         sync_sequences: {{ margin: 1000 }}\n    - name: The way back starts here\n      start_reverse: {{}}\n"
    )
}

struct Env {
    dir: PathBuf,
    vars: Vec<(String, String)>,
}

impl Env {
    fn xdb(&self, args: &[&str]) -> Output {
        let mut c = support::xdb_command();
        c.args(args).current_dir(&self.dir);
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn spawn(&self, args: &[&str]) -> std::process::Child {
        let mut c = support::xdb_command();
        c.args(args).current_dir(&self.dir).stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c.spawn().unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Answers every HTTP request with 200 (the application's health check).
fn health_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    port
}

fn out(o: &Output) -> String {
    support::text(o)
}

/// The application on MariaDB after the switch: new customers, orders and
/// items (AUTO_INCREMENT ids), updates, deletes, one rolled-back order.
async fn app_writes(url: &str) {
    let mut c = mysql_async::Conn::from_url(url).await.unwrap();
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    for i in 0..30 {
        c.query_drop("START TRANSACTION").await.unwrap();
        c.query_drop(format!(
            "INSERT INTO customers (public_id, email, name, profile, created_at) VALUES \
             (UUID(), 'after{i}@example.com', 'Nach dem Wechsel {i} ✓', '{{\"tier\": \"gold\"}}', NOW(6))"
        ))
        .await
        .unwrap();
        c.query_drop(
            "INSERT INTO orders (customer_id, status, total, placed_at, note) VALUES (LAST_INSERT_ID(), 'paid', 12.50, NOW(6), 'on MariaDB')",
        )
        .await
        .unwrap();
        c.query_drop(
            "INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price) VALUES (LAST_INSERT_ID(), 1, 7, 2, 6.25)",
        )
        .await
        .unwrap();
        c.query_drop("COMMIT").await.unwrap();
        c.query_drop(format!("UPDATE orders SET status = 'shipped', shipped_at = NOW(6) WHERE id = {}", 10 + i))
            .await
            .unwrap();
        c.query_drop(format!("DELETE FROM order_items WHERE order_id = {} AND line_no = 3", 20 + i)).await.unwrap();
    }
    c.query_drop("START TRANSACTION").await.unwrap();
    c.query_drop("INSERT INTO orders (customer_id, status, total, placed_at) VALUES (1, 'new', 1, NOW(6))")
        .await
        .unwrap();
    c.query_drop("ROLLBACK").await.unwrap();
    let _ = c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rollback_runbook_switches_back_to_postgres_with_nothing_lost() {
    let pg = OwnPostgres::start();
    let admin = pg_connect(&pg.url()).await;
    admin.batch_execute("CREATE ROLE xdb LOGIN SUPERUSER REPLICATION; CREATE ROLE shop_app LOGIN").await.unwrap();
    admin.batch_execute("CREATE DATABASE shop OWNER xdb").await.unwrap();
    let shop_url = format!("postgres://postgres@127.0.0.1:{}/shop", pg.port);
    let shop = pg_connect(&shop_url).await;
    shop.batch_execute(&std::fs::read_to_string(root().join("scripts/demo/shop.sql")).unwrap()).await.unwrap();
    shop.batch_execute(
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO shop_app; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO shop_app",
    )
    .await
    .unwrap();
    let my = OwnMariaDb::start(51);
    my.admin(
        "CREATE DATABASE shop CHARACTER SET utf8mb4 COLLATE utf8mb4_bin; \
         CREATE USER 'shop_app'@'127.0.0.1' IDENTIFIED BY 'app-pw'; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON shop.* TO 'shop_app'@'127.0.0.1';",
    );
    let app_url = format!("mysql://shop_app:app-pw@127.0.0.1:{}/shop", my.port);

    let dir = std::env::temp_dir().join(support::unique("xdb_rollback"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root().join("cutover-plans/rollback-to-postgres.yaml"), dir.join("rollback-to-postgres.yaml"))
        .unwrap();
    std::fs::write(dir.join("pg-to-mysql.yaml"), forward_plan()).unwrap();
    let scripts = [
        // The reverse stream runs as a service; stopping it is a TERM.
        ("stop-reverse-sync.sh", "#!/bin/sh\nkill -TERM \"$(cat reverse.pid)\"\nsleep 1\n"),
        ("switch-to-postgres.sh", "#!/bin/sh\necho postgres > traffic\n"),
        ("switch-to-mysql.sh", "#!/bin/sh\necho mysql > traffic\n"),
    ];
    for (name, body) in scripts {
        std::fs::write(dir.join(name), body).unwrap();
        Command::new("chmod").arg("+x").arg(dir.join(name)).status().unwrap();
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_xdb")).parent().unwrap().display().to_string();
    let env = Env {
        dir: dir.clone(),
        vars: vec![
            ("SOURCE_PASSWORD".into(), "unused-trust".into()),
            ("SOURCE_PORT".into(), pg.port.to_string()),
            ("SOURCE_SSLMODE".into(), "disable".into()),
            ("TARGET_PASSWORD".into(), OWN_MY_PW.into()),
            ("TARGET_PORT".into(), my.port.to_string()),
            ("TARGET_SSL_MODE".into(), "DISABLED".into()),
            ("APP_HEALTH_URL".into(), format!("http://127.0.0.1:{}/health", health_server())),
            ("PATH".into(), format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default())),
        ],
    };

    // Forward: copy, stream, and the cutover up to the switch point.
    let o = env.xdb(&["sync", "--until-caught-up", "--plan", "pg-to-mysql.yaml"]);
    assert!(o.status.success(), "{}", out(&o));
    let o = env.xdb(&["sync", "--cutover", "--yes", "--plan", "pg-to-mysql.yaml"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("sync --reverse will start at"), "{}", out(&o));

    // The switch: the application writes to MariaDB, the way back streams.
    let mut reverse = env.spawn(&["sync", "--reverse", "--plan", "rollback-to-postgres.yaml"]);
    std::fs::write(dir.join("reverse.pid"), reverse.id().to_string()).unwrap();
    app_writes(&app_url).await;

    // Regret: the rollback runbook, as shipped.
    let o = env.xdb(&["cutover", "--yes", "--plan", "rollback-to-postgres.yaml"]);
    let text = out(&o);
    if !o.status.success() {
        let again = env.xdb(&["sync", "--reverse", "--until-caught-up", "--plan", "rollback-to-postgres.yaml"]);
        panic!("{text}\n--- the drain again:\n{}", out(&again));
    }
    let status = reverse.wait().unwrap();
    let mut err = String::new();
    let _ = reverse.stderr.take().unwrap().read_to_string(&mut err);
    assert!(status.success(), "the reverse stream stopped cleanly on TERM: {err}");
    assert_eq!(std::fs::read_to_string(dir.join("traffic")).unwrap().trim(), "postgres");

    // MariaDB is frozen for the application …
    let mut app = mysql_async::Conn::from_url(app_url.as_str()).await.unwrap();
    let frozen = app.query_drop("INSERT INTO customers (public_id, email) VALUES (UUID(), 'late@example.com')").await;
    assert!(frozen.is_err(), "the application can still write to MariaDB");
    // … everything written there is on PostgreSQL, once …
    let after: i64 = shop.query_one("SELECT count(*) FROM orders WHERE note = 'on MariaDB'", &[]).await.unwrap().get(0);
    assert_eq!(after, 30);
    let rolled_back: i64 = shop.query_one("SELECT count(*) FROM orders WHERE total = 1", &[]).await.unwrap().get(0);
    assert_eq!(rolled_back, 0);
    // … and the application's next ids on PostgreSQL are past MariaDB's.
    let max_my: (Option<i64>, Option<i64>) = {
        let mut c = mysql_async::Conn::from_url(my.url().replace("/app", "/shop")).await.unwrap();
        let a: Option<i64> = c.query_first("SELECT MAX(id) FROM customers").await.unwrap();
        let b: Option<i64> = c.query_first("SELECT MAX(id) FROM orders").await.unwrap();
        (a, b)
    };
    let app_pg = pg_connect(&format!("postgres://shop_app@127.0.0.1:{}/shop", pg.port)).await;
    let c_id: i64 = app_pg
        .query_one("INSERT INTO customers (email) VALUES ('back@example.com') RETURNING id", &[])
        .await
        .expect("the source is writable for the application again")
        .get(0);
    let o_id: i64 =
        app_pg.query_one("INSERT INTO orders (customer_id) VALUES ($1) RETURNING id", &[&c_id]).await.unwrap().get(0);
    assert!(c_id > max_my.0.unwrap() && o_id > max_my.1.unwrap(), "{c_id} / {o_id} vs MariaDB's {max_my:?}");
    eprintln!(
        "after the way back: next customer id {c_id} (MariaDB max {:?}), next order id {o_id} (MariaDB max {:?})",
        max_my.0, max_my.1
    );
    assert!(text.contains("next value"), "{text}");
    // Undo the probe writes, then prove it.
    app_pg.batch_execute("DELETE FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE email = 'back@example.com'); DELETE FROM customers WHERE email = 'back@example.com'").await.unwrap();
    let v = env.xdb(&["validate", "--plan", "rollback-to-postgres.yaml"]);
    assert!(v.status.success(), "validate after the way back: {}", out(&v));
}

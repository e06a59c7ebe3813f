//! `cutover-plans/pg-to-postgres-upgrade.yaml` against the local harness:
//! the application talks to PostgreSQL through pgbouncer, `xdb sync
//! --cutover` copies, tails, freezes the application's role, proves the
//! target, moves the sequences and repoints pgbouncer. The application's own
//! pgbouncer connection then reads and writes the target.

use std::path::Path;
use std::process::Command;

use crate::support::{self, PgDb};

const APP_PASSWORD: &str = "shop-app-upgrade-pw";

fn pgbouncer(args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/pgbouncer.sh")).args(args).output().expect("run scripts/pgbouncer.sh");
    assert!(out.status.success(), "pgbouncer.sh {args:?}: {}", support::text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The file names in a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_plan_switches_pgbouncer_to_the_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = PgDb::create("xdb_upg_src").await;
    let tgt = PgDb::create("xdb_upg_tgt").await;
    src.exec(&std::fs::read_to_string(root.join("scripts/demo/shop.sql")).unwrap()).await;
    src.exec(&format!(
        "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_app') THEN
           CREATE ROLE shop_app LOGIN PASSWORD '{APP_PASSWORD}'; END IF; END$$;
         ALTER ROLE shop_app PASSWORD '{APP_PASSWORD}';
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO shop_app;
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO shop_app;"
    ))
    .await;
    pgbouncer(&["up", &src.name, "shop_app", APP_PASSWORD]);
    let port = std::env::var("XDB_PGBOUNCER_PORT").unwrap_or_else(|_| "26432".into());
    let app_url = format!("postgres://shop_app@127.0.0.1:{port}/app");
    let app = support::pg_connect(&app_url).await;
    let db: String = app.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    assert_eq!(db, src.name, "the application starts on the source");
    app.batch_execute("INSERT INTO orders (customer_id, note) VALUES (1, 'before the cutover')").await.unwrap();

    // The application keeps writing through pgbouncer during the whole
    // cutover; a write counts once the server acknowledged it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, app_url) = (stop.clone(), app_url.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut conn: Option<tokio_postgres::Client> = None;
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if conn.as_ref().is_none_or(|c| c.is_closed()) {
                    conn = match tokio_postgres::connect(&app_url, tokio_postgres::NoTls).await {
                        Ok((c, connection)) => {
                            tokio::spawn(connection);
                            Some(c)
                        }
                        Err(_) => None,
                    };
                }
                if let Some(c) = &conn {
                    i += 1;
                    let note = format!("w{i}");
                    match c.execute("INSERT INTO orders (customer_id, note) VALUES (3, $1)", &[&note]).await {
                        Ok(_) => acked.push(note),
                        Err(_) => conn = None,
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            acked
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let super_pw = support::env("XDB_PG_SUPER_PASSWORD");
    // The plan lives in the repository: the run must not write beside it.
    let plans_before = listing(&root.join("cutover-plans"));
    let state = std::env::temp_dir().join(support::unique("xdb_upg_state"));
    // Exactly as the plan's header says: from the repository root, the plan
    // named relatively, no variable pointing at the scripts.
    let run = crate::support::xdb_command()
        .args(["sync", "--plan", "cutover-plans/pg-to-postgres-upgrade.yaml"])
        .args(["--cutover", "--yes"])
        .env("SOURCE_PASSWORD", &super_pw)
        .env("TARGET_PASSWORD", &super_pw)
        .env("SOURCE_PORT", support::env("XDB_PG_PORT"))
        .env("TARGET_PORT", support::env("XDB_PG_PORT"))
        .env("SOURCE_DB", &src.name)
        .env("TARGET_DB", &tgt.name)
        .env_remove("XDB_SCRIPTS")
        .env("XDB_STATE_DIR", &state)
        .current_dir(root)
        .output();
    let out = run.unwrap();
    // Writes keep coming for a moment after the switch: they land on the target.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.await.unwrap();
    let text = support::text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(listing(&root.join("cutover-plans")), plans_before, "files written beside the plan:\n{text}");
    let journals = std::fs::read_dir(state.join("cutover/shop-pg-upgrade")).map(|d| d.count()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&state);
    assert_eq!(journals, 1, "the journal is in the state directory, under the plan's name");
    assert!(text.contains("cutover complete"), "{text}");
    // The write freeze is measured and reported, in seconds.
    let freeze = text
        .lines()
        .find_map(|l| l.split("writes stopped on the source for ").nth(1))
        .unwrap_or_else(|| panic!("no freeze duration reported:\n{text}"));
    assert!(
        freeze.contains("ms")
            || freeze.trim_start().split(' ').next().is_some_and(|n| n.parse::<f64>().is_ok_and(|s| s < 60.0)),
        "freeze {freeze}"
    );
    assert!(!text.contains(&super_pw), "password printed:\n{text}");

    // The same application connection now reaches the target, and can write there.
    assert_eq!(pgbouncer(&["current"]).trim(), tgt.name);
    let app = support::pg_connect(&app_url).await;
    let db: String = app.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    assert_eq!(db, tgt.name, "pgbouncer sends the application to the target");
    let notes: i64 =
        app.query_one("SELECT count(*) FROM orders WHERE note = 'before the cutover'", &[]).await.unwrap().get(0);
    assert_eq!(notes, 1, "the write made through pgbouncer before the cutover is on the target");
    app.batch_execute("INSERT INTO orders (customer_id, note) VALUES (2, 'after the cutover')").await.unwrap();
    // Every write the application saw acknowledged — on the source before the
    // freeze, or on the target after the switch — is on the target, once.
    let rows = app.query("SELECT note FROM orders WHERE note LIKE 'w%'", &[]).await.unwrap();
    let mut on_target: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    on_target.sort();
    let mut want = acked.clone();
    want.sort();
    assert!(acked.len() > 20, "the writer ran ({} writes)", acked.len());
    assert_eq!(on_target, want, "acknowledged writes missing or doubled on the target");
    pgbouncer(&["down"]);
    // Frozen on the source: the application role cannot write there any more.
    let c = support::pg_connect(&src.super_url()).await;
    let frozen: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
             JOIN pg_database d ON d.oid = s.setdatabase
             WHERE r.rolname = 'shop_app' AND d.datname = current_database()
               AND 'default_transaction_read_only=on' = ANY(s.setconfig)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(frozen, 1, "the source stays read-only for the application");
}

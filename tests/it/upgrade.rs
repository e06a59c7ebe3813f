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
    let port = std::env::var("XDB_PGBOUNCER_PORT").unwrap_or_else(|_| "56432".into());
    let app_url = format!("postgres://shop_app@127.0.0.1:{port}/app");
    let app = support::pg_connect(&app_url).await;
    let db: String = app.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    assert_eq!(db, src.name, "the application starts on the source");
    app.batch_execute("INSERT INTO orders (customer_id, note) VALUES (1, 'before the cutover')").await.unwrap();

    let super_pw = support::env("XDB_PG_SUPER_PASSWORD");
    let out = Command::new(env!("CARGO_BIN_EXE_xdb"))
        .args(["sync", "--plan", root.join("cutover-plans/pg-to-postgres-upgrade.yaml").to_str().unwrap()])
        .args(["--cutover", "--yes"])
        .env("SOURCE_PASSWORD", &super_pw)
        .env("TARGET_PASSWORD", &super_pw)
        .env("SOURCE_PORT", support::env("XDB_PG_PORT"))
        .env("TARGET_PORT", support::env("XDB_PG_PORT"))
        .env("SOURCE_DB", &src.name)
        .env("TARGET_DB", &tgt.name)
        .env("XDB_SCRIPTS", root.join("scripts"))
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let text = support::text(&out);
    // The plan's journal lands beside the plan: leave the repository clean.
    let _ = std::fs::remove_file(root.join("cutover-plans/pg-to-postgres-upgrade.yaml.cutover.jsonl"));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("cutover complete"), "{text}");
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

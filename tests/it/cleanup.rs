//! `xdb cleanup`: drops the slot, xdb's own publication and state; keeps a
//! publication it did not create; refuses while the slot is streaming.

use crate::support::{self, PgDb, PlanFile};
use xdb::plan::TargetUrl;

async fn setup(db: &PgDb, publication_by_xdb: bool, sqlite: &std::path::Path) -> PlanFile {
    db.exec("CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t OWNER TO xdb_repl;").await;
    let c = support::pg_connect(&db.repl_url()).await;
    let tables = vec![xdb::model::TableName::new("public", "t")];
    if publication_by_xdb {
        assert!(xdb::source::postgres::publication::ensure(&c, "xdb_clean", &tables, &[], Default::default())
            .await
            .unwrap());
    } else {
        c.batch_execute("CREATE PUBLICATION xdb_clean FOR TABLE t").await.unwrap();
    }
    c.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", &[&format!("{}_slot", db.name)])
        .await
        .unwrap();
    let plan = PlanFile::new(&format!(
        "name: clean\nsource:\n  url: {}\n  publication: xdb_clean\n  slot: {}_slot\ntarget:\n  url: sqlite://{}\ntables: [t]\n",
        db.repl_url(),
        db.name,
        sqlite.display()
    ));
    let p = xdb::plan::Plan::load(&plan.path).unwrap();
    let mut t = xdb::sink::TargetConn::connect(&TargetUrl::Sqlite(sqlite.to_path_buf())).await.unwrap();
    t.ensure_state_tables().await.unwrap();
    t.execute_batch(&[format!("INSERT INTO xdb_state VALUES ('{}', 100, 0, 100, 0)", p.source.slot)], "test")
        .await
        .unwrap();
    plan
}

async fn counts(db: &PgDb) -> (i64, i64) {
    let c = db.super_client().await;
    let slots: i64 = c
        .query_one("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()", &[])
        .await
        .unwrap()
        .get(0);
    let pubs: i64 = c.query_one("SELECT count(*) FROM pg_publication", &[]).await.unwrap().get(0);
    (slots, pubs)
}

#[tokio::test]
async fn removes_slot_publication_and_state_after_confirmation() {
    let db = PgDb::create("xdb_cleanup").await;
    let dir = std::env::temp_dir().join(support::unique("xdb_cleanup"));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = dir.join("t.db");
    let plan = setup(&db, true, &sqlite).await;
    let p = plan.path.to_str().unwrap();

    let out = support::xdb_args(&["cleanup", "--plan", p]);
    assert_eq!(out.status.code(), Some(2), "no --yes without a terminal: {}", support::text(&out));
    assert_eq!(counts(&db).await, (1, 1), "refused cleanup changed something");

    let out = support::xdb_args(&["cleanup", "--plan", p, "--dry-run"]);
    let text = support::text(&out);
    assert!(text.contains("drop replication slot") && text.contains("drop publication xdb_clean"), "{text}");
    assert!(text.contains("delete xdb's state"), "{text}");
    assert_eq!(counts(&db).await, (1, 1), "dry run changed something");

    let out = support::xdb_args(&["cleanup", "--plan", p, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    assert_eq!(counts(&db).await, (0, 0));
    let conn = rusqlite::Connection::open(&sqlite).unwrap();
    let n: i64 = conn.query_row("SELECT count(*) FROM xdb_state", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0);
    let out = support::xdb_args(&["cleanup", "--plan", p, "--yes"]);
    assert!(support::text(&out).contains("nothing to clean up"), "{}", support::text(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn keeps_foreign_publication_and_refuses_an_active_slot() {
    let db = PgDb::create("xdb_cleanup_active").await;
    let dir = std::env::temp_dir().join(support::unique("xdb_cleanup"));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = setup(&db, false, &dir.join("t.db")).await;
    let p = plan.path.to_str().unwrap();
    let out = support::xdb_args(&["cleanup", "--plan", p, "--dry-run"]);
    assert!(
        support::text(&out).contains("keep publication xdb_clean: it was not created by xdb"),
        "{}",
        support::text(&out)
    );

    // Make the slot active with pg_recvlogical streaming from it.
    let bindir = support::env("XDB_PG_BINDIR");
    let mut recv = std::process::Command::new(format!("{bindir}/pg_recvlogical"))
        .args([
            "-d",
            &db.super_url(),
            "--slot",
            &format!("{}_slot", db.name),
            "--start",
            "-o",
            "proto_version=1",
            "-o",
            "publication_names=xdb_clean",
            "-f",
            "/dev/null",
        ])
        .spawn()
        .unwrap();
    let c = db.super_client().await;
    for _ in 0..50 {
        let active: bool = c
            .query_one("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&format!("{}_slot", db.name)])
            .await
            .unwrap()
            .get(0);
        if active {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = support::xdb_args(&["cleanup", "--plan", p, "--yes"]);
    let _ = recv.kill();
    let _ = recv.wait();
    let text = support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("is in use by process"), "{text}");
    assert_eq!(counts(&db).await, (1, 1), "an active slot's cleanup changed something");
    let _ = std::fs::remove_dir_all(&dir);
}

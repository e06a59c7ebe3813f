//! The way back from a PostgreSQL target: forward copy and stream into
//! PostgreSQL, the cutover's `start_reverse` (a publication and slot on the
//! target at the switch point), then writes on the target streamed back to
//! the original source through kill -9s, ending with `xdb validate`.

use std::time::Duration;

use crate::support::{self, kill9, plan, spawn, xdb, PgDb, Target};

const TABLE: &str = "
CREATE TABLE items (id bigserial PRIMARY KEY, n int NOT NULL, note text, doc jsonb, at timestamptz);
ALTER TABLE items OWNER TO xdb_repl;
INSERT INTO items (n, note, doc, at) SELECT g, 'seed ' || g, jsonb_build_object('g', g),
  '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 s' FROM generate_series(1, 300) g;
";

fn out(o: &std::process::Output) -> String {
    support::text(o)
}

/// The application on the target after the switch: inserts, updates (also
/// of the key), deletes, a rolled-back transaction, one of 50,000 rows.
async fn target_load(target: tokio_postgres::Client) {
    for round in 0..40i64 {
        target
            .batch_execute(&format!(
                "INSERT INTO items (n, note, doc, at) VALUES ({round}, 'après ✓ {round}', '{{\"r\": {round}}}', now());
                 UPDATE items SET note = note || ' ü', n = n + 1 WHERE id = {};
                 UPDATE items SET id = {} WHERE id = {};",
                1 + round,
                1_000_000 + round,
                100 + round
            ))
            .await
            .unwrap();
        if round % 3 == 0 {
            target.batch_execute(&format!("DELETE FROM items WHERE id = {}", 200 + round)).await.unwrap();
        }
        target.batch_execute("BEGIN; INSERT INTO items (n, note) VALUES (-1, 'rolled back'); ROLLBACK").await.unwrap();
        if round == 20 {
            target
                .batch_execute(
                    "INSERT INTO items (id, n, note, at) SELECT 2000000 + g, g, 'bulk ' || g, now() FROM generate_series(1, 50000) g",
                )
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_on_a_postgresql_target_flow_back_through_kills_and_validate() {
    let db = PgDb::create("xdb_revpg_src").await;
    db.exec(TABLE).await;
    let tdb = PgDb::create("xdb_revpg_tgt").await;
    let target_client = tdb.super_client().await;
    let target = Target::Postgres(tdb);
    let runbook = "cutover:\n  steps:\n    - name: Freeze\n      stop_source_writes: { database: true }\n      rollback: resume_source_writes\n    - name: Drain\n      wait_for_catchup: { timeout: 60s }\n    - name: Sequences\n      sync_sequences: {}\n    - name: The way back starts here\n      start_reverse: {}\n";
    let plan = plan(&db, &target, "public.items", runbook);
    let o = xdb(&plan, &["sync", "--until-caught-up"]);
    assert!(o.status.success(), "{}", out(&o));
    let o = xdb(&plan, &["check", "--reverse"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("the target has wal_level = logical"), "{}", out(&o));
    // Without the switch point the way back refuses and says how.
    let o = xdb(&plan, &["sync", "--reverse", "--until-caught-up"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("start_reverse"), "{}", out(&o));

    db.exec("UPDATE items SET note = 'just before the switch' WHERE id = 5").await;
    let o = xdb(&plan, &["sync", "--cutover", "--yes"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("sync --reverse will start at"), "{}", out(&o));

    let load = tokio::spawn(target_load(target_client));
    let mut kills = 0;
    while !load.is_finished() || kills < 5 {
        let mut child = spawn(&plan, &["sync", "--reverse"]);
        tokio::time::sleep(Duration::from_millis(1200 + 300 * kills)).await;
        kill9(&mut child);
        kills += 1;
    }
    load.await.unwrap();
    let o = xdb(&plan, &["sync", "--reverse", "--until-caught-up"]);
    assert!(o.status.success(), "{}", out(&o));
    let src = db.super_client().await;
    let rolled_back: i64 =
        src.query_one("SELECT count(*) FROM items WHERE note = 'rolled back'", &[]).await.unwrap().get(0);
    assert_eq!(rolled_back, 0);
    let bulk: i64 = src.query_one("SELECT count(*) FROM items WHERE id > 2000000", &[]).await.unwrap().get(0);
    assert_eq!(bulk, 50_000, "the large transaction came back whole");
    let moved: i64 =
        src.query_one("SELECT count(*) FROM items WHERE id >= 1000000 AND id < 2000000", &[]).await.unwrap().get(0);
    assert_eq!(moved, 40, "key changes came back");
    let st = xdb(&plan, &["status", "--reverse"]);
    assert!(st.status.success() && out(&st).contains("reverse slot:"), "{}", out(&st));
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate after the way back from PostgreSQL: {}", out(&v));
    assert!(kills >= 5);
    // A column added on the target comes to the original source with its
    // values (the forward stream's schema-drift rules, swapped).
    let t = match &target {
        Target::Postgres(t) => t.super_client().await,
        _ => unreachable!(),
    };
    t.batch_execute("ALTER TABLE items ADD COLUMN extra int DEFAULT 7; UPDATE items SET extra = 42 WHERE id = 1")
        .await
        .unwrap();
    let o = xdb(&plan, &["sync", "--reverse", "--until-caught-up"]);
    assert!(o.status.success(), "{}", out(&o));
    let extra: Option<i32> = src.query_one("SELECT extra FROM items WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(extra, Some(42));
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate after a column added on the target: {}", out(&v));
    // Cleanup drops the reverse slot and publication on the target too
    // (a slot left there would keep the target's WAL forever).
    let o = xdb(&plan, &["cleanup", "--dry-run"]);
    assert!(out(&o).contains("drop the way back's slot"), "{}", out(&o));
    let o = xdb(&plan, &["cleanup", "--yes"]);
    assert!(o.status.success(), "{}", out(&o));
    let left: i64 = src
        .query_one("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%_reverse'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the reverse slot is gone");
    let rows: i64 =
        src.query_one("SELECT count(*) FROM xdb.state WHERE slot LIKE '%_reverse'", &[]).await.unwrap().get(0);
    assert_eq!(rows, 0);
}

/// A stored generated column on the way back from a PostgreSQL target: the
/// target computes it (the default), the stream back does not carry it,
/// and the original source computes it again. With `mapping.generated:
/// source` the target holds it as a plain column the original source
/// would refuse a value for (SQLSTATE 428C9, every change stopped): the way
/// back refuses before it starts, naming the column and the fix.
#[tokio::test(flavor = "multi_thread")]
async fn a_generated_column_is_computed_again_on_the_way_back() {
    let db = PgDb::create("xdb_revpg_gen").await;
    db.exec(
        "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL,
           shout text GENERATED ALWAYS AS (upper(name)) STORED);
         ALTER TABLE people OWNER TO xdb_repl;
         INSERT INTO people (id, name) VALUES (1, 'jürgen'), (2, 'zoë');",
    )
    .await;
    let tdb = PgDb::create("xdb_revpg_gent").await;
    let target_client = tdb.super_client().await;
    let target = Target::Postgres(tdb);
    let plan = plan(&db, &target, "public.people", "");
    let o = xdb(&plan, &["sync", "--until-caught-up"]);
    assert!(o.status.success(), "{}", out(&o));
    let o = xdb(&plan, &["sync", "--reverse", "--set-start-here"]);
    assert!(o.status.success(), "{}", out(&o));
    target_client
        .batch_execute("INSERT INTO people (id, name) VALUES (3, 'ana'); UPDATE people SET name = 'jo' WHERE id = 1")
        .await
        .unwrap();
    let o = xdb(&plan, &["sync", "--reverse", "--until-caught-up"]);
    assert!(o.status.success(), "{}", out(&o));
    let src = db.super_client().await;
    let rows: Vec<(i32, String, String)> = src
        .query("SELECT id, name, shout FROM people ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![(1, "jo".into(), "JO".into()), (2, "zoë".into(), "ZOË".into()), (3, "ana".into(), "ANA".into())]
    );
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate: {}", out(&v));

    // The same column moved as a plain one: refused before anything starts.
    let db2 = PgDb::create("xdb_revpg_gen2").await;
    db2.exec(
        "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL,
           shout text GENERATED ALWAYS AS (upper(name)) STORED);
         ALTER TABLE people OWNER TO xdb_repl;
         INSERT INTO people (id, name) VALUES (1, 'jürgen');",
    )
    .await;
    let target2 = Target::Postgres(PgDb::create("xdb_revpg_gen2t").await);
    let plan2 = support::plan(&db2, &target2, "public.people", "mapping:\n  generated: source\n");
    let o = xdb(&plan2, &["sync", "--until-caught-up"]);
    assert!(o.status.success(), "{}", out(&o));
    for args in [&["check", "--reverse"][..], &["sync", "--reverse", "--set-start-here"]] {
        let o = xdb(&plan2, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", out(&o));
        assert!(out(&o).contains("public.people.shout"), "{args:?}: {}", out(&o));
        assert!(out(&o).contains("mapping.generated: target"), "{args:?}: {}", out(&o));
    }
    let slots: i64 = db2
        .super_client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&format!("{}_slot_reverse", db2.name)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0, "no reverse slot made");
}

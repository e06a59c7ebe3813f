//! Issue 18: the set-based apply of PostgreSQL targets (staging COPY, then
//! one DELETE / UPDATE / upsert per table and group). Each scenario is
//! committed on the source while `sync` is stopped, so that it reaches
//! the target as one large group, then `sync --until-caught-up` applies it;
//! the log says whether the group was merged (`applied set-based`), the
//! target must equal the source, and `xdb validate` must agree.

use std::time::Duration;

use crate::support::{self, kill9, ok, pg_rows, plan, spawn, wait_until, xdb, PgDb, PlanFile, Target};

const MERGED: &str = "applied set-based";

fn sync_debug(plan: &PlanFile) -> (bool, String) {
    let out = xdb(plan, &["sync", "--until-caught-up", "--log", "debug"]);
    (out.status.success(), support::text(&out))
}

fn validate(plan: &PlanFile) {
    let v = xdb(plan, &["validate"]);
    assert!(v.status.success(), "validate: {}", support::text(&v));
}

/// Every row of `table` as text, on the source and on the target.
async fn both(db: &PgDb, target: &PgDb, table: &str) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let sql = format!("SELECT x::text FROM {table} AS x ORDER BY 1");
    (pg_rows(&db.super_client().await, &sql).await, pg_rows(&target.super_client().await, &sql).await)
}

/// Keys changed several times, delete then re-insert, insert then update,
/// insert then delete, update then delete, NULLs, arrays, jsonb, and
/// non-ASCII table and column names: merged, and equal to the source.
#[tokio::test]
async fn merged_groups_keep_the_last_image_of_every_key() {
    let db = PgDb::create("xdb_merge").await;
    db.exec(
        "CREATE TABLE aufträge (id bigint PRIMARY KEY, größe int, note text, tags text[], nums int[], doc jsonb,
                                \"Zeit ü\" timestamptz);
         ALTER TABLE aufträge OWNER TO xdb_repl;
         INSERT INTO aufträge SELECT g, g, 'n' || g, ARRAY['a', 'b ' || g], ARRAY[g, NULL], jsonb_build_object('g', g),
                                     '2024-01-01 00:00+00'::timestamptz + g * interval '1 minute'
           FROM generate_series(1, 200) g;",
    )
    .await;
    let t = PgDb::create("xdb_merge_t").await;
    let target = Target::Postgres(t);
    let plan = plan(&db, &target, "aufträge", "");
    ok(&xdb(&plan, &["snapshot"]));
    let Target::Postgres(t) = &target else { unreachable!() };

    // One big transaction, then many small ones: all in one group.
    db.exec(
        "BEGIN;
         UPDATE aufträge SET größe = größe + 1000, note = NULL WHERE id <= 40;
         UPDATE aufträge SET größe = größe + 1 WHERE id <= 10;
         DELETE FROM aufträge WHERE id BETWEEN 41 AND 45;
         INSERT INTO aufträge VALUES (41, -41, 'wieder da', '{\"x y\",\"ä\"}', '{}', '{\"re\": true}', NULL);
         INSERT INTO aufträge VALUES (1001, 1, 'neu', NULL, '{1,2,3}', 'null', now());
         UPDATE aufträge SET note = 'neu, geändert', tags = ARRAY[NULL, 'q\"uote', 'back\\slash'] WHERE id = 1001;
         INSERT INTO aufträge VALUES (1002, 2, 'kurz', NULL, NULL, NULL, NULL);
         DELETE FROM aufträge WHERE id = 1002;
         UPDATE aufträge SET note = 'gleich weg' WHERE id = 50;
         DELETE FROM aufträge WHERE id = 50;
         COMMIT;",
    )
    .await;
    for i in 0..40 {
        db.exec(&format!(
            "UPDATE aufträge SET größe = größe * 2, doc = doc || '{{\"i\": {i}}}' WHERE id = {}",
            60 + i % 7
        ))
        .await;
    }
    db.exec("UPDATE aufträge SET nums = NULL, \"Zeit ü\" = NULL, note = E'tab\\there\\nnewline' WHERE id = 100").await;

    let (success, log) = sync_debug(&plan);
    assert!(success, "{log}");
    assert!(log.contains(MERGED), "the group was merged: {log}");
    let (s, tg) = both(&db, t, "aufträge").await;
    assert_eq!(s.len(), 200 - 5 + 1 - 1 + 1, "source rows");
    assert_eq!(tg, s);
    validate(&plan);
}

/// A key-changing UPDATE and an UPDATE that leaves a TOASTed column
/// unchanged cannot be said by a last image: such a group takes the
/// statement path (nothing merged), and the result is still exact.
#[tokio::test]
async fn key_changes_and_unchanged_toast_take_the_statement_path() {
    let db = PgDb::create("xdb_merge_fb").await;
    db.exec(
        "CREATE TABLE o (id int PRIMARY KEY, v int, body text);
         ALTER TABLE o OWNER TO xdb_repl;
         INSERT INTO o SELECT g, g, CASE WHEN g = 7 THEN (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 1000) i) END
           FROM generate_series(1, 100) g;",
    )
    .await;
    let target = Target::Postgres(PgDb::create("xdb_merge_fb_t").await);
    let plan = plan(&db, &target, "o", "");
    ok(&xdb(&plan, &["snapshot"]));
    let Target::Postgres(t) = &target else { unreachable!() };

    // A key change inside a large group: row 5 becomes 500, then 500 is
    // updated, and a new row takes key 5.
    db.exec(
        "BEGIN; UPDATE o SET v = v + 1 WHERE id > 50;
         UPDATE o SET id = 500 WHERE id = 5; UPDATE o SET v = -500 WHERE id = 500;
         INSERT INTO o VALUES (5, 5, 'new five'); COMMIT;",
    )
    .await;
    let (success, log) = sync_debug(&plan);
    assert!(success, "{log}");
    assert!(!log.contains(MERGED), "a key change is not merged: {log}");
    let (s, tg) = both(&db, t, "o").await;
    assert_eq!(tg, s);

    // Unchanged TOAST: row 7's body is not in the stream.
    db.exec("BEGIN; UPDATE o SET v = v + 1 WHERE id > 50; UPDATE o SET v = 70 WHERE id = 7; COMMIT;").await;
    let (success, log) = sync_debug(&plan);
    assert!(success, "{log}");
    assert!(!log.contains(MERGED), "unchanged TOAST is not merged: {log}");
    let (s, tg) = both(&db, t, "o").await;
    assert_eq!(tg, s);
    assert_eq!(
        t.super_client()
            .await
            .query_one("SELECT length(body) FROM o WHERE id = 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        32_000
    );

    // Later groups without either are merged again.
    db.exec("UPDATE o SET v = v - 1 WHERE id > 50").await;
    let (success, log) = sync_debug(&plan);
    assert!(success && log.contains(MERGED), "{log}");
    let (s, tg) = both(&db, t, "o").await;
    assert_eq!(tg, s);
    validate(&plan);
}

/// A row the target lost: the merged UPDATE (or DELETE) matches fewer
/// rows than it has keys; sync stops naming the table and the exact key,
/// applies nothing of the group, and goes on once the row is back.
#[tokio::test]
async fn a_missing_row_stops_a_merged_group_with_its_key() {
    let db = PgDb::create("xdb_merge_lost").await;
    db.exec(
        "CREATE TABLE o (id int PRIMARY KEY, v text);
         ALTER TABLE o OWNER TO xdb_repl;
         INSERT INTO o SELECT g, 'v' || g FROM generate_series(1, 100) g;",
    )
    .await;
    let target = Target::Postgres(PgDb::create("xdb_merge_lost_t").await);
    let plan = plan(&db, &target, "o", "");
    ok(&xdb(&plan, &["snapshot"]));
    let Target::Postgres(t) = &target else { unreachable!() };
    let tc = t.super_client().await;

    tc.batch_execute("DELETE FROM o WHERE id = 42").await.unwrap();
    db.exec("BEGIN; INSERT INTO o VALUES (1000, 'new'); UPDATE o SET v = 'changed' WHERE id <= 60; COMMIT;").await;
    let (success, log) = sync_debug(&plan);
    assert!(!success, "sync must stop: {log}");
    assert!(log.contains("public.o") && log.contains("UPDATE matched no row") && log.contains("id=42"), "{log}");
    let n: i64 = tc.query_one("SELECT count(*) FROM o WHERE id = 1000 OR v = 'changed'", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "nothing of the failing group applied");
    tc.batch_execute("INSERT INTO o VALUES (42, 'v42')").await.unwrap();
    let (success, log) = sync_debug(&plan);
    assert!(success && log.contains(MERGED), "{log}");

    tc.batch_execute("DELETE FROM o WHERE id = 77").await.unwrap();
    db.exec("DELETE FROM o WHERE id > 50").await;
    let (success, log) = sync_debug(&plan);
    assert!(!success, "sync must stop: {log}");
    assert!(log.contains("public.o") && log.contains("DELETE matched no row") && log.contains("id=77"), "{log}");
    tc.batch_execute("INSERT INTO o VALUES (77, 'v77')").await.unwrap();
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    let (s, tg) = both(&db, t, "o").await;
    assert_eq!(tg, s);
    validate(&plan);
}

/// A transaction too large for memory reaches a PostgreSQL target chunk by
/// chunk inside one target transaction, each chunk merged on its own: rows
/// staged for one chunk must not be applied again with the next (they were,
/// until the staging table was emptied per group: an UPDATE then matched
/// more rows than its chunk had and sync stopped, or took an older image).
#[tokio::test]
async fn a_spilled_transaction_merges_each_chunk_alone() {
    let db = PgDb::create("xdb_merge_spill").await;
    db.exec(
        "CREATE TABLE big (id bigint PRIMARY KEY, v int, note text);
         ALTER TABLE big OWNER TO xdb_repl;
         INSERT INTO big SELECT g, 0, 'start' FROM generate_series(1, 10) g;",
    )
    .await;
    let t = PgDb::create("xdb_merge_spill_t").await;
    let target = Target::Postgres(t);
    let plan = plan(&db, &target, "big", "");
    ok(&xdb(&plan, &["snapshot"]));
    let Target::Postgres(t) = &target else { unreachable!() };
    // 8,000 inserts and two updates of every row: 24,000 changes, spilled
    // (1 MiB threshold) and applied in chunks of 5,000 that share keys.
    db.exec(
        "BEGIN;
         INSERT INTO big SELECT g, 0, 'new' FROM generate_series(11, 8000) g;
         UPDATE big SET v = v + 1;
         UPDATE big SET v = v + 10, note = note || ' twice';
         COMMIT;",
    )
    .await;
    let out = crate::support::xdb_command()
        .args(["sync", "--plan", plan.path.to_str().unwrap(), "--until-caught-up"])
        .env("XDB_SPILL_THRESHOLD_BYTES", (1 << 20).to_string())
        .output()
        .expect("xdb sync");
    assert!(out.status.success(), "{}", support::text(&out));
    let (s, tg) = both(&db, t, "big").await;
    assert_eq!(s.len(), 8000);
    assert_eq!(tg, s);
    validate(&plan);
}

/// What decides the merge (no foreign key, trigger or other unique index
/// on the target table) is read again for every merged group, inside its
/// transaction: a foreign key added on the target while `sync` runs, on
/// the same connection, is obeyed from the next group on. A key deleted
/// and inserted again must cascade to the target's child rows, as a
/// DELETE then INSERT does on the statement path. (It was read once per
/// connection: a running sync kept merging, the key's last image became
/// one UPDATE, and the child rows silently stayed.)
#[tokio::test]
async fn a_foreign_key_added_while_sync_runs_is_seen_by_the_next_group() {
    let db = PgDb::create("xdb_merge_live").await;
    db.exec(
        "CREATE TABLE o (id int PRIMARY KEY, v int);
         ALTER TABLE o OWNER TO xdb_repl;
         INSERT INTO o SELECT g, 0 FROM generate_series(1, 100) g;",
    )
    .await;
    let target = Target::Postgres(PgDb::create("xdb_merge_live_t").await);
    let plan = plan(&db, &target, "o", "");
    ok(&xdb(&plan, &["snapshot"]));
    let Target::Postgres(t) = &target else { unreachable!() };
    let tc = t.super_client().await;
    let count = |sql: &'static str| {
        let tc = &tc;
        async move { tc.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let mut sync = spawn(&plan, &["sync", "--log", "info,xdb::sink::postgres::merge=debug"]);

    // A first group, merged: the table's catalog is read on this connection.
    db.exec("BEGIN; UPDATE o SET v = 1; UPDATE o SET v = 2; COMMIT;").await;
    wait_until("the first group on the target", Duration::from_secs(60), || async {
        count("SELECT count(*) FROM o WHERE v = 2").await == 100
    })
    .await;

    // A child table on the target only, cascading deletes of o's rows.
    tc.batch_execute(
        "CREATE TABLE child (id int PRIMARY KEY, o_id int REFERENCES o (id) ON DELETE CASCADE);
         ALTER TABLE child OWNER TO xdb_repl;
         INSERT INTO child VALUES (1, 5), (2, 6);",
    )
    .await
    .unwrap();
    db.exec(
        "BEGIN; UPDATE o SET v = 3 WHERE id <= 40; DELETE FROM o WHERE id = 5; INSERT INTO o VALUES (5, 50);
         UPDATE o SET v = 4 WHERE id <= 40 AND id <> 5; COMMIT;",
    )
    .await;
    wait_until("the second group on the target", Duration::from_secs(60), || async {
        count("SELECT count(*) FROM o WHERE v = 4").await == 39
    })
    .await;
    kill9(&mut sync);
    let mut log = String::new();
    std::io::Read::read_to_string(&mut sync.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.contains(MERGED), "the first group was merged: {log}");
    assert_eq!(count("SELECT count(*) FROM child WHERE o_id = 5").await, 0, "the delete of key 5 cascaded: {log}");
    assert_eq!(log.matches(MERGED).count(), 1, "the second group was not: {log}");
    assert_eq!(count("SELECT count(*) FROM child").await, 1);
    assert_eq!(count("SELECT v::bigint FROM o WHERE id = 5").await, 50);
    validate(&plan);
}

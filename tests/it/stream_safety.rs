//! No silent loss: each test reproduces a way changes were lost or the
//! source was harmed on a real database, and ends with an exact target
//! (`xdb validate`, every column of every row) or a clear refusal that
//! touched nothing.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::support::{self, ok, plan, spawn, wait_until, xdb, MyDb, OwnPostgres, PgDb, PlanFile, Target};

fn fails_with(out: &std::process::Output, needles: &[&str]) -> String {
    let text = support::text(out);
    assert!(!out.status.success(), "expected a refusal, got success: {text}");
    for n in needles {
        assert!(text.contains(n), "expected {n:?} in: {text}");
    }
    text
}

fn validate(plan: &PlanFile) {
    let v = xdb(plan, &["validate"]);
    assert!(v.status.success(), "validate: {}", support::text(&v));
}

/// The slot exists and its creation finished (its snapshot is exported).
async fn slot_ready(db: &PgDb, slot: &str) -> bool {
    let c = db.super_client().await;
    let q = "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn IS NOT NULL";
    c.query_opt(q, &[&slot]).await.unwrap().is_some()
}

async fn slot_exists(db: &PgDb, slot: &str) -> bool {
    let c = db.super_client().await;
    c.query_opt("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", &[&slot]).await.unwrap().is_some()
}

#[tokio::test]
async fn keyless_table_is_refused_before_anything_is_published() {
    let db = PgDb::create("xdb_safe_keyless").await;
    db.exec(
        "CREATE TABLE events (at timestamptz, what text); INSERT INTO events VALUES (now(), 'a');
         CREATE TABLE ok (id int PRIMARY KEY); ALTER TABLE events OWNER TO xdb_repl; ALTER TABLE ok OWNER TO xdb_repl;",
    )
    .await;
    let target = Target::sqlite("xdb_safe_keyless");
    let plan = plan(&db, &target, "ok, events", "");
    for cmd in [&["snapshot"][..], &["sync", "--until-caught-up"][..], &["tail", "--max-transactions", "1"][..]] {
        let out = xdb(&plan, cmd);
        fails_with(&out, &["public.events", "REPLICA IDENTITY FULL", "nothing was published"]);
    }
    let c = db.super_client().await;
    let pubs = c.query("SELECT 1 FROM pg_publication", &[]).await.unwrap();
    assert!(pubs.is_empty(), "no publication may exist after the refusal");
    assert!(!slot_exists(&db, &format!("{}_slot", db.name)).await, "no slot may exist after the refusal");
    // The application's writes keep working.
    c.batch_execute("UPDATE events SET what = 'b'; DELETE FROM events").await.expect("application writes");
}

#[tokio::test]
async fn partitioned_parent_with_composite_key_streams_every_partition_including_attached_ones() {
    for target in [
        Target::sqlite("xdb_safe_part"),
        Target::Mysql(support::MyDb::create("xdb_safe_part").await),
        Target::Postgres(PgDb::create("xdb_safe_part_t").await),
    ] {
        partitioned(target).await;
    }
}

async fn partitioned(target: Target) {
    let db = PgDb::create("xdb_safe_part").await;
    db.exec(
        "CREATE TABLE payment (id bigint, payment_date date, amount numeric(10,2), note text,
            PRIMARY KEY (id, payment_date)) PARTITION BY RANGE (payment_date);
         CREATE TABLE payment_01 PARTITION OF payment FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
         CREATE TABLE payment_02 PARTITION OF payment FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
         ALTER TABLE payment OWNER TO xdb_repl; ALTER TABLE payment_01 OWNER TO xdb_repl;
         ALTER TABLE payment_02 OWNER TO xdb_repl;
         INSERT INTO payment SELECT g, DATE '2024-01-01' + (g % 59), g / 10.0, 'p' || g FROM generate_series(1, 500) g;",
    )
    .await;
    let plan = plan(&db, &target, "payment", "");
    let check = support::text(&xdb(&plan, &["check"]));
    assert!(check.contains("public.payment: partitioned (2 partitions now)"), "{check}");
    ok(&xdb(&plan, &["snapshot"]));
    let mut sync = spawn(&plan, &["sync"]);
    let c = db.super_client().await;
    wait_until("sync streaming", Duration::from_secs(30), || async {
        c.query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active",
            &[&format!("{}_slot", db.name)],
        )
        .await
        .unwrap()
        .is_some()
    })
    .await;
    for g in 501..=700 {
        c.execute(
            "INSERT INTO payment VALUES ($1::bigint, DATE '2024-01-01' + ($1::bigint % 59)::int, $1::bigint / 10.0, 'streamed')",
            &[&(g as i64)],
        )
        .await
        .unwrap();
    }
    c.batch_execute(
        "UPDATE payment SET amount = amount + 1 WHERE id % 7 = 0;
         UPDATE payment SET payment_date = payment_date + 31 WHERE id % 11 = 0 AND payment_date < '2024-01-29';
         DELETE FROM payment WHERE id % 13 = 0;
         CREATE TABLE payment_03 PARTITION OF payment FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');
         CREATE TABLE payment_04 (LIKE payment);
         ALTER TABLE payment ATTACH PARTITION payment_04 FOR VALUES FROM ('2024-04-01') TO ('2024-05-01');
         INSERT INTO payment SELECT g, DATE '2024-03-01' + (g % 60), 1, 'new partitions' FROM generate_series(701, 900) g;
         UPDATE payment SET note = 'moved' WHERE id BETWEEN 701 AND 720;",
    )
    .await
    .unwrap();
    let _ = Command::new("kill").args(["-TERM", &sync.id().to_string()]).status();
    let status = sync.wait().unwrap();
    assert!(status.success(), "sync ended with {status}");
    // A second run starts (the publication is accepted) and catches up.
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    let n: i64 = c.query_one("SELECT count(*) FROM payment", &[]).await.unwrap().get(0);
    assert_eq!(target.count("payment").await, n);
    validate(&plan);
}

/// A publication made by hand that lists a partitioned table but does not
/// publish via the root: the stream would name leaf partitions (not in the
/// plan) and lose every change. `check` said the publication "lacks" the
/// table and gave `ADD TABLE` (which fails: it is already a member); it
/// must name `publish_via_partition_root`, and `snapshot` must refuse
/// with the same fix before copying anything.
#[tokio::test]
async fn a_hand_made_publication_not_via_the_root_is_named_with_its_fix() {
    let db = PgDb::create("xdb_safe_viaroot").await;
    db.exec(&format!(
        "CREATE TABLE payment (id bigint, payment_date date, PRIMARY KEY (id, payment_date)) PARTITION BY RANGE (payment_date);
         CREATE TABLE payment_01 PARTITION OF payment FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
         ALTER TABLE payment OWNER TO xdb_repl; ALTER TABLE payment_01 OWNER TO xdb_repl;
         INSERT INTO payment SELECT g, DATE '2024-01-01' + (g % 28) FROM generate_series(1, 50) g;
         CREATE PUBLICATION {}_pub FOR TABLE payment;",
        db.name
    ))
    .await;
    let target = Target::sqlite("xdb_safe_viaroot");
    let plan = plan(&db, &target, "payment", "");
    let check = xdb(&plan, &["check"]);
    let text = fails_with(&check, &["publish_via_partition_root = true", "public.payment"]);
    assert!(!text.contains("ADD TABLE"), "the table is a member already: {text}");
    fails_with(&xdb(&plan, &["snapshot"]), &["publish_via_partition_root = true"]);
    assert_eq!(target.rows("SELECT count(*) FROM sqlite_master WHERE name = 'payment'").await[0][0], "0");
    db.exec(&format!("ALTER PUBLICATION {}_pub SET (publish_via_partition_root = true)", db.name)).await;
    let check = xdb(&plan, &["check"]);
    assert!(check.status.success(), "{}", support::text(&check));
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    validate(&plan);
}

/// A source with `t(id, v)` holding `rows` rows, a SQLite target, a plan.
async fn small_table(prefix: &str, rows: i32) -> (PgDb, Target, PlanFile) {
    let db = PgDb::create(prefix).await;
    db.exec(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, v text); ALTER TABLE t OWNER TO xdb_repl;
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, {rows}) g;"
    ))
    .await;
    let target = Target::sqlite(prefix);
    let plan = plan(&db, &target, "t", "");
    (db, target, plan)
}

#[tokio::test]
async fn slot_dropped_while_sync_is_stopped_is_refused_and_recopy_recovers() {
    let (db, target, plan) = small_table("xdb_safe_lost", 100).await;
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    let slot = format!("{}_slot", db.name);
    db.exec(&format!("SELECT pg_drop_replication_slot('{slot}')")).await;
    db.exec("INSERT INTO t SELECT g, 'gap' FROM generate_series(101, 150) g").await;
    fails_with(&xdb(&plan, &["check"]), &["Stream continuity", "does not exist", "--recopy"]);
    let out = xdb(&plan, &["sync", "--until-caught-up"]);
    fails_with(&out, &[&slot, "does not exist", "--recopy"]);
    assert!(!slot_exists(&db, &slot).await, "the slot must not be re-created by a refusal");
    ok(&xdb(&plan, &["sync", "--until-caught-up", "--recopy"]));
    assert_eq!(target.count("t").await, 150);
    validate(&plan);
}

#[tokio::test]
async fn slot_dropped_while_sync_runs_stops_sync_instead_of_recreating_it() {
    let (db, _target, plan) = small_table("xdb_safe_drop", 100).await;
    ok(&xdb(&plan, &["snapshot"]));
    let slot = format!("{}_slot", db.name);
    let mut sync = spawn(&plan, &["sync"]);
    let c = db.super_client().await;
    // Drop the slot under the running sync: end its walsender, then drop
    // while the slot is free (sync reconnects within a second).
    wait_until("the slot dropped", Duration::from_secs(60), || async {
        let _ = c
            .execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active",
                &[&slot],
            )
            .await;
        let _ = c.execute("SELECT pg_drop_replication_slot($1)", &[&slot]).await;
        !slot_exists(&db, &slot).await
    })
    .await;
    c.batch_execute("INSERT INTO t SELECT g, 'gap' FROM generate_series(101, 150) g").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = sync.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "sync kept running after its slot was dropped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut err = String::new();
    use std::io::Read;
    sync.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!status.success(), "sync must stop with an error: {err}");
    assert!(err.contains("does not exist") && err.contains("--recopy"), "{err}");
    assert!(!slot_exists(&db, &slot).await, "the slot must not be re-created silently");
}

#[tokio::test]
async fn slot_moved_past_the_target_by_another_reader_is_refused() {
    let (db, target, plan) = small_table("xdb_safe_ahead", 10).await;
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    let slot = format!("{}_slot", db.name);
    // Flushed at commit (the test server runs with synchronous_commit off),
    // so that the slot can be advanced past it.
    db.exec(
        "SET synchronous_commit = on; INSERT INTO t SELECT g, 'read by someone else' FROM generate_series(11, 20) g",
    )
    .await;
    // Another consumer of the slot acknowledges those changes.
    db.exec(&format!("SELECT pg_replication_slot_advance('{slot}', pg_current_wal_lsn())")).await;
    // `check` says it first; `sync` refuses.
    fails_with(&xdb(&plan, &["check"]), &["Stream continuity", "has confirmed changes up to", "--recopy"]);
    let out = xdb(&plan, &["sync", "--until-caught-up"]);
    fails_with(&out, &[&slot, "has confirmed changes up to", "bytes", "--recopy", "--accept-slot-position"]);
    assert_eq!(target.count("t").await, 10, "nothing applied by the refused run");
    ok(&xdb(&plan, &["sync", "--until-caught-up", "--recopy"]));
    validate(&plan);
}

/// The snapshot/stream boundary under load: slots are created while
/// several clients commit single-row inserts non-stop; every run must end
/// with exactly the source's rows (a commit at the consistent point is
/// streamed, not skipped, and nothing is doubled).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_and_stream_meet_exactly_at_the_consistent_point_under_load() {
    let db = PgDb::create("xdb_safe_edge").await;
    db.exec(
        "CREATE TABLE t (id bigint PRIMARY KEY, w int, at timestamptz DEFAULT clock_timestamp());
             ALTER TABLE t OWNER TO xdb_repl;",
    )
    .await;
    let next = Arc::new(AtomicI64::new(1));
    for round in 0..5 {
        // Writers commit single-row inserts non-stop while the slot (and
        // its snapshot) is created, and a little after.
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..4 {
            let (next, stop, url) = (next.clone(), stop.clone(), db.super_url());
            writers.push(tokio::spawn(async move {
                let c = support::pg_connect(&url).await;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) || n < 50 {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    c.execute("INSERT INTO t (id, w) VALUES ($1, $2)", &[&id, &w]).await.unwrap();
                    n += 1;
                }
            }));
        }
        let target = Target::sqlite("xdb_safe_edge");
        let plan = PlanFile::new(&format!(
            "name: edge\nsource:\n  url: {}\n  slot: {}_s{round}\n  publication: {}_pub\n  heartbeat_interval_secs: 1\n\
             target:\n  url: {}\ntables: [t]\n",
            db.repl_url(),
            db.name,
            db.name,
            target.url()
        ));
        ok(&xdb(&plan, &["snapshot"]));
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        ok(&xdb(&plan, &["sync", "--until-caught-up"]));
        let c = db.super_client().await;
        let src: i64 = c.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
        assert_eq!(target.count("t").await, src, "round {round}: every row exactly once");
        validate(&plan);
        ok(&xdb(&plan, &["cleanup", "--yes"]));
    }
}

#[tokio::test]
async fn source_restart_mid_stream_is_survived() {
    let pg = OwnPostgres::start();
    let admin = support::pg_connect(&pg.url()).await;
    admin.batch_execute("CREATE TABLE t (id bigint PRIMARY KEY, v text, at timestamptz DEFAULT now())").await.unwrap();
    let target = Target::sqlite("xdb_safe_restart");
    let plan = PlanFile::new(&format!(
        "name: restart\nsource:\n  url: {}\n  slot: restart_slot\n  publication: restart_pub\n  heartbeat_interval_secs: 1\n\
         target:\n  url: {}\ntables: [t]\n",
        pg.url(),
        target.url()
    ));
    ok(&xdb(&plan, &["snapshot"]));
    let mut sync = spawn(&plan, &["sync"]);
    let insert = |from: i64, to: i64| {
        let url = pg.url();
        async move {
            let c = support::pg_connect(&url).await;
            for id in from..to {
                c.execute("INSERT INTO t (id, v) VALUES ($1, 'x')", &[&id]).await.unwrap();
            }
        }
    };
    insert(1, 300).await;
    // Mid-stream: the first rows have arrived, so sync is past its copy.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while target.rows("SELECT count(*) FROM t").await[0][0] != "299" {
        assert!(std::time::Instant::now() < deadline, "the first rows did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pg.pg_ctl(&["-m", "fast", "-w", "restart"]);
    insert(300, 600).await;
    // sync must still be running, reconnect, and apply everything.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while target.rows("SELECT count(*) FROM t").await[0][0] != "599" {
        if sync.try_wait().unwrap().is_some() {
            let mut err = String::new();
            use std::io::Read;
            sync.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("sync exited after the source restart: {err}");
        }
        assert!(std::time::Instant::now() < deadline, "the rows written after the restart did not arrive");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = Command::new("kill").args(["-TERM", &sync.id().to_string()]).status();
    assert!(sync.wait().unwrap().success());
    validate(&plan);
}

/// A schema change carried inside a streamed (large, in-progress)
/// transaction that is rolled back must not alter the target. (PostgreSQL
/// 15 streams this transaction without its changes, so this end-to-end run
/// passes on the old assembler too; the assembler's unit tests
/// `aborted_streamed_relation_change_is_never_reported` and
/// `committed_streamed_relation_change_comes_before_its_transaction` are the
/// ones that fail when the rule is broken.)
#[tokio::test]
async fn aborted_streamed_transaction_leaves_no_schema_change() {
    let db = PgDb::create("xdb_safe_abort").await;
    db.exec(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, v text); ALTER TABLE t OWNER TO xdb_repl;
         INSERT INTO t VALUES (1, 'one');
         ALTER DATABASE {} SET logical_decoding_work_mem = '64kB';",
        db.name
    ))
    .await;
    let target = Target::sqlite("xdb_safe_abort");
    let plan = plan(&db, &target, "t", "");
    ok(&xdb(&plan, &["snapshot"]));
    let c = db.super_client().await;
    // Large enough to be streamed before it ends (64 kB decoding memory).
    c.batch_execute(
        "BEGIN; ALTER TABLE t ADD COLUMN extra int DEFAULT 7;
         INSERT INTO t SELECT g, repeat('x', 100), g FROM generate_series(1000, 6000) g; ROLLBACK;
         INSERT INTO t VALUES (2, 'after the rollback');",
    )
    .await
    .unwrap();
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    let cols: Vec<String> = target
        .rows("SELECT name FROM pragma_table_info('t') ORDER BY cid")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(cols, ["id", "v"], "the rolled-back ADD COLUMN must not reach the target");
    assert_eq!(target.count("t").await, 2);
    validate(&plan);
}

/// A data error is not retried (the old word list matched "connection" in
/// the column name and retried for ten minutes): `sync` stops at once and
/// names the table, the row and the driver's code.
#[tokio::test]
async fn data_error_stops_sync_at_once_naming_the_row() {
    use mysql_async::prelude::Queryable;
    let db = PgDb::create("xdb_safe_data").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, connection_note text); ALTER TABLE t OWNER TO xdb_repl;
             INSERT INTO t VALUES (1, 'short');",
    )
    .await;
    let my = support::MyDb::create("xdb_safe_data").await;
    let url = my.url();
    let target = Target::Mysql(my);
    let plan = plan(&db, &target, "t", "");
    ok(&xdb(&plan, &["snapshot"]));
    // An existing target column narrower than the source's values.
    let mut c = mysql_async::Conn::from_url(url).await.unwrap();
    c.query_drop("ALTER TABLE t MODIFY connection_note VARCHAR(8)").await.unwrap();
    let _ = c.disconnect().await;
    db.exec("INSERT INTO t VALUES (2, 'ok'), (3, 'a note far too long for eight characters'), (4, 'ok')").await;
    let started = std::time::Instant::now();
    let out = xdb(&plan, &["sync", "--until-caught-up"]);
    let text = fails_with(&out, &["public.t", "id=3", "1406", "connection_note"]);
    assert!(started.elapsed() < Duration::from_secs(30), "not retried: {text}");
    assert!(!text.contains("retrying"), "a data error must not be retried: {text}");
    assert_eq!(target.count("t").await, 1, "nothing of the batch applied");
}

/// An inheritance parent is refused unless the plan says `ONLY`; with it,
/// the parent's own rows are copied, streamed and validated, its children's
/// left out on every path.
#[tokio::test]
async fn inheritance_parent_needs_only_and_then_moves_its_own_rows() {
    let db = PgDb::create("xdb_safe_inh").await;
    db.exec(
        "CREATE TABLE measurement (id int PRIMARY KEY, city text, v int);
         CREATE TABLE measurement_2024 (CHECK (id > 1000)) INHERITS (measurement);
         ALTER TABLE measurement_2024 ADD PRIMARY KEY (id);
         ALTER TABLE measurement OWNER TO xdb_repl; ALTER TABLE measurement_2024 OWNER TO xdb_repl;
         INSERT INTO measurement SELECT g, 'Zürich', g FROM generate_series(1, 200) g;
         INSERT INTO measurement_2024 SELECT g, 'Genève', g FROM generate_series(1001, 1300) g;",
    )
    .await;
    let target = Target::sqlite("xdb_safe_inh");
    let refused = plan(&db, &target, "public.measurement", "");
    fails_with(&xdb(&refused, &["snapshot"]), &["inheritance parent", "ONLY public.measurement"]);
    let plan = plan(&db, &target, "ONLY public.measurement", "");
    ok(&xdb(&plan, &["snapshot"]));
    assert_eq!(target.count("measurement").await, 200, "the parent's own rows only");
    db.exec(
        "INSERT INTO measurement VALUES (201, 'Bern', 1);
         UPDATE measurement SET v = v + 1 WHERE id % 3 = 0;
         DELETE FROM ONLY measurement WHERE id % 10 = 0;
         INSERT INTO measurement_2024 VALUES (1301, 'Basel', 1);",
    )
    .await;
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    let c = db.super_client().await;
    let own: i64 = c.query_one("SELECT count(*) FROM ONLY measurement", &[]).await.unwrap().get(0);
    assert_eq!(target.count("measurement").await, own);
    validate(&plan);
}

/// `items`: 1,000 rows with a non-ASCII note, owned by the replication role.
async fn items_1000(db: &PgDb) {
    db.exec(
        "CREATE TABLE items (id int PRIMARY KEY, v int, note text);
         INSERT INTO items SELECT g, g, 'ü ' || g FROM generate_series(1, 1000) g;
         ALTER TABLE items OWNER TO xdb_repl;",
    )
    .await;
}

/// A table rewritten after the slot's snapshot was exported but before the
/// copy read it — here by `ALTER TABLE … TYPE`, as a TRUNCATE would — looks
/// empty to that snapshot (rewrites are not MVCC-safe), and no change on the
/// stream brings its rows back: the copy must notice and read it from a
/// fresh snapshot. (Found by `mixed_load_with_ten_kills_*`, whose mid-run
/// TRUNCATE landed in that window under load.) The window is held open by
/// a target transaction that holds the row xdb records the slot's position
/// in, right after creating the slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_rewritten_while_the_copy_starts_is_copied_whole() {
    let db = PgDb::create("xdb_safe_rewrite").await;
    items_1000(&db).await;
    // On another server than the source: a transaction holding an xid on
    // the source's server would hold up the slot's creation itself.
    let tdb = MyDb::create("xdb_safe_rewrite_t").await;
    let mut holder = mysql_async::Conn::from_url(tdb.url()).await.unwrap();
    let d = xdb::plan::naming::SqlDialect::Mysql;
    for sql in xdb::sink::state::create_statements(d) {
        holder.query_drop(sql).await.unwrap();
    }
    let slot = format!("{}_slot", db.name);
    holder.query_drop("BEGIN").await.unwrap();
    holder
        .query_drop(format!(
            "INSERT INTO xdb_state (slot, applied_lsn, applied_commit_time_us, consistent_point, updated_at_us) \
             VALUES ('{slot}', 0, 0, 0, 0)"
        ))
        .await
        .unwrap();
    let target = Target::Mysql(tdb);
    let plan = plan(&db, &target, "items", "");
    let mut child = spawn(&plan, &["sync", "--until-caught-up"]);
    wait_until("the slot's snapshot", Duration::from_secs(60), || slot_ready(&db, &slot)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    db.exec("ALTER TABLE items ALTER COLUMN v TYPE bigint").await;
    holder.query_drop("ROLLBACK").await.unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "sync: {err}");
    db.exec("UPDATE items SET v = v + 1 WHERE id <= 10").await;
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    validate(&plan);
    let rows = target.rows("SELECT count(*) FROM items").await;
    assert_eq!(rows[0][0], "1000");
    assert!(err.contains("taking a fresh snapshot"), "the rewrite is said: {err}");
}

/// A column type changed after xdb read the table's columns but before the
/// slot's snapshot (the slot's creation waits for that ALTER to commit): the
/// copy would decode the rows by the old shape. It notices at the snapshot,
/// and `sync` starts again by itself with the new shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_changed_while_the_copy_starts_are_read_again() {
    let db = PgDb::create("xdb_safe_shape").await;
    items_1000(&db).await;
    db.exec(&format!("CREATE PUBLICATION {}_pub FOR TABLE items WITH (publish_via_partition_root = true)", db.name))
        .await;
    let target = Target::sqlite("xdb_safe_shape");
    let plan = plan(&db, &target, "items", "");
    // An ALTER in progress (it holds a transaction id): the slot's creation
    // waits for it, after xdb has read the columns.
    let err =
        support::sync_across_an_alter_at_the_snapshot(&db, &plan, "ALTER TABLE items ALTER COLUMN v TYPE bigint").await;
    assert!(err.contains("changed on the source (ALTER TABLE) while the copy was starting"), "said: {err}");
    validate(&plan);
    let rows = target.rows("SELECT count(*) FROM items").await;
    assert_eq!(rows[0][0], "1000");
}

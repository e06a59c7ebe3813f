//! `xdb tail` against the real server: decoded values of many types, TOAST
//! left unchanged, PK changes, REPLICA IDENTITY FULL, a 200k-row streamed
//! transaction in bounded memory, restart without redelivery, heartbeats,
//! clean stop on SIGTERM.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::support::{PgDb, PlanFile};

fn plan_for(db: &PgDb, tables: &str, heartbeat_secs: u64) -> PlanFile {
    let sqlite = std::env::temp_dir().join(format!("{}.db", db.name));
    PlanFile::new(&format!(
        "name: tail\nsource:\n  url: {}\n  slot: {}_slot\n  publication: {}_pub\n  heartbeat_interval_secs: {heartbeat_secs}\n\
         target:\n  url: sqlite://{}\ntables: [{tables}]\n",
        db.repl_url(),
        db.name,
        db.name,
        sqlite.display()
    ))
}

fn spawn_tail(plan: &PlanFile, extra: &[&str], envs: &[(&str, &str)]) -> Child {
    let mut cmd = crate::support::xdb_command();
    cmd.args(["tail", "--plan", plan.path.to_str().unwrap()]).args(extra);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn xdb tail")
}

/// Waits for the child to exit (killing it after `limit`), tracking its
/// peak resident memory. Returns (exit code, stdout, stderr, peak RSS kB).
fn finish(mut child: Child, limit: Duration) -> (Option<i32>, String, String, u64) {
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let start = Instant::now();
    let mut peak = 0;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            for line in s.lines() {
                if let Some(v) = line.strip_prefix("VmHWM:") {
                    let kb: u64 = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
                    peak = peak.max(kb);
                }
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let out = reader.join().unwrap();
            let err = err_reader.join().unwrap();
            panic!("xdb tail did not finish within {limit:?}\nstdout: {out}\nstderr: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), reader.join().unwrap(), err_reader.join().unwrap(), peak)
}

fn lines(out: &str) -> Vec<Json> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))).collect()
}

fn sigterm(child: &Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
}

/// Waits until a tail streams from a slot of this database (its own
/// temporary one, or the plan's with `--plan-slot`) that has reached its
/// consistent point, so that changes made afterwards are streamed.
async fn wait_for_slot(db: &PgDb) {
    let c = db.super_client().await;
    for _ in 0..600 {
        // The walsender of `xdb tail` (application_name), not one a sync
        // that just exited may still hold for a moment.
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid \
                 WHERE s.database = current_database() AND r.application_name = 'xdb tail' \
                 AND s.confirmed_flush_lsn IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("xdb tail did not start streaming in database {}", db.name);
}

/// The plan slot's confirmed_flush_lsn, as text.
async fn plan_slot_confirmed(db: &PgDb) -> String {
    let c = db.super_client().await;
    let slot = format!("{}_slot", db.name);
    c.query_one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .unwrap_or_else(|e| panic!("slot {slot}: {e}"))
        .get(0)
}

/// Replication slots of the test database, by name.
async fn slot_names(db: &PgDb) -> Vec<String> {
    let c = db.super_client().await;
    c.query("SELECT slot_name::text FROM pg_replication_slots WHERE database = $1 ORDER BY 1", &[&db.name])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn prints_every_operation_with_typed_values() {
    let db = PgDb::create("xdb_tail_ops").await;
    db.exec(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE t (id bigint PRIMARY KEY, n numeric(20,4), ts timestamptz, d date, b bool, u uuid, j jsonb,
                         tags text[], m mood, raw bytea, body text, f float8, iv interval);
         -- EXTERNAL: stored out of line uncompressed, so the test string is TOASTed whatever its entropy.
         ALTER TABLE t ALTER body SET STORAGE EXTERNAL;
         ALTER TABLE t OWNER TO xdb_repl;
         CREATE TABLE full_t (a int, b text); ALTER TABLE full_t REPLICA IDENTITY FULL; ALTER TABLE full_t OWNER TO xdb_repl;",
    )
    .await;
    let plan = plan_for(&db, "t, full_t", 10);
    let child = spawn_tail(&plan, &["--max-transactions", "7"], &[]);
    wait_for_slot(&db).await;
    let big: String = (0..20_000).map(|i| char::from(b'a' + ((i * 7919) % 26) as u8)).collect();
    db.exec(&format!(
        "SET TimeZone = 'Asia/Kolkata';
         INSERT INTO t VALUES (1, 12345.6789, '2024-02-29 23:59:59.123456+05:30', '0044-03-15 BC', true,
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"k\": [1, \"x\"]}}', ARRAY['a,b', 'q\"uote', NULL], 'happy',
           '\\x00ff', '{big}', 'Infinity', '1 day -02:00:00');"
    ))
    .await;
    db.exec("UPDATE t SET b = false WHERE id = 1").await; // body unchanged: TOASTed, not sent
    db.exec("UPDATE t SET id = 2 WHERE id = 1").await; // PK change: old key sent
    db.exec("DELETE FROM t WHERE id = 2").await;
    db.exec("INSERT INTO full_t VALUES (7, 'seven'); DELETE FROM full_t WHERE a = 7;").await;
    db.exec("TRUNCATE t").await;
    db.exec("BEGIN; INSERT INTO t (id) VALUES (10); INSERT INTO t (id) VALUES (11); COMMIT;").await;
    let (code, out, err, _) = finish(child, Duration::from_secs(60));
    assert_eq!(code, Some(0), "stderr: {err}");
    let l = lines(&out);
    let ops: Vec<(&str, &str)> =
        l.iter().map(|j| (j["op"].as_str().unwrap(), j["table"].as_str().unwrap_or("-"))).collect();
    assert_eq!(
        ops,
        vec![
            ("insert", "public.t"),
            ("update", "public.t"),
            ("update", "public.t"),
            ("delete", "public.t"),
            ("insert", "public.full_t"),
            ("delete", "public.full_t"),
            ("truncate", "-"),
            ("insert", "public.t"),
            ("insert", "public.t"),
        ],
        "{out}"
    );
    let ins = &l[0]["new"];
    assert_eq!(ins["id"], 1);
    assert_eq!(ins["n"], "12345.6789");
    assert_eq!(ins["ts"], "2024-02-29T18:29:59.123456Z", "timestamptz lands as UTC");
    assert_eq!(ins["b"], true);
    assert_eq!(ins["u"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(ins["j"], serde_json::json!({"k": [1, "x"]}));
    assert_eq!(ins["tags"], serde_json::json!(["a,b", "q\"uote", null]));
    assert_eq!(ins["m"], "happy");
    assert_eq!(ins["raw"], "\\x00ff");
    assert_eq!(ins["body"].as_str().map(str::len), Some(20_000));
    assert_eq!(ins["f"], "Infinity");
    assert_eq!(l[0]["key"], serde_json::json!({"id": 1}));
    assert!(l[0]["lsn"].as_str().unwrap().contains('/'), "{}", l[0]);

    // The TOASTed column was not sent: reported, not nulled.
    assert_eq!(l[1]["unchanged_toast"], serde_json::json!(["body"]), "{}", l[1]);
    assert!(l[1]["new"].get("body").is_none(), "{}", l[1]);
    assert_eq!(l[1]["new"]["b"], false);
    // PK change: the old key travels with the new row.
    assert_eq!(l[2]["old"]["id"], 1, "{}", l[2]);
    assert_eq!(l[2]["new"]["id"], 2);
    assert_eq!(l[3]["key"], serde_json::json!({"id": 2}));
    // REPLICA IDENTITY FULL: the whole old row.
    assert_eq!(l[5]["old"], serde_json::json!({"a": 7, "b": "seven"}), "{}", l[5]);
    assert_eq!(l[6]["tables"], serde_json::json!(["public.t"]));
    // One transaction, one xid, in order.
    assert_eq!(l[7]["xid"], l[8]["xid"]);
    assert_eq!(l[7]["lsn"], l[8]["lsn"]);
}

#[tokio::test]
async fn restart_continues_after_the_last_printed_transaction() {
    let db = PgDb::create("xdb_tail_restart").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t OWNER TO xdb_repl;").await;
    let plan = plan_for(&db, "t", 10);
    // First run creates slot and publication; nothing to print yet. The
    // plan's slot is read only on request, and with no target position
    // (no sync ever ran) tail confirms on it as it prints.
    let child = spawn_tail(&plan, &["--plan-slot"], &[]);
    wait_for_slot(&db).await;
    sigterm(&child);
    let (code, _, err, _) = finish(child, Duration::from_secs(30));
    assert_eq!(code, Some(0), "SIGTERM is a clean stop: {err}");

    for i in 1..=3 {
        db.exec(&format!("INSERT INTO t VALUES ({i})")).await;
    }
    let ids = |out: &str| lines(out).iter().map(|j| j["new"]["id"].as_i64().unwrap()).collect::<Vec<_>>();

    let (_, out, err, _) = finish(
        spawn_tail(&plan, &["--plan-slot", "--max-transactions", "1", "--no-ack"], &[]),
        Duration::from_secs(30),
    );
    assert_eq!(ids(&out), vec![1], "{err}");
    let (_, out, err, _) =
        finish(spawn_tail(&plan, &["--plan-slot", "--max-transactions", "2"], &[]), Duration::from_secs(30));
    assert_eq!(ids(&out), vec![1, 2], "--no-ack left the slot where it was: {err}");
    let (_, out, err, _) =
        finish(spawn_tail(&plan, &["--plan-slot", "--max-transactions", "1"], &[]), Duration::from_secs(30));
    assert_eq!(ids(&out), vec![3], "confirmed transactions are not delivered again: {err}");
}

#[tokio::test]
async fn streamed_200k_row_transaction_in_bounded_memory() {
    let db = PgDb::create("xdb_tail_big").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, pad text); ALTER TABLE t OWNER TO xdb_repl;").await;
    let plan = plan_for(&db, "t", 10);
    let child = spawn_tail(&plan, &["--max-transactions", "1"], &[("XDB_SPILL_THRESHOLD_BYTES", "4000000")]);
    wait_for_slot(&db).await;
    // ~110 MB of row data in one transaction: streamed in progress (the
    // server's logical_decoding_work_mem is 64kB), spilled by xdb.
    db.exec("INSERT INTO t SELECT g, repeat(md5(g::text), 16) FROM generate_series(1, 200000) g").await;
    let (code, out, err, peak_kb) = finish(child, Duration::from_secs(240));
    assert_eq!(code, Some(0), "{err}");
    let mut n = 0;
    let mut last = 0;
    let mut xids = std::collections::BTreeSet::new();
    for line in out.lines() {
        let j: Json = serde_json::from_str(line).unwrap();
        let id = j["new"]["id"].as_i64().unwrap();
        assert_eq!(id, last + 1, "rows in order");
        last = id;
        n += 1;
        xids.insert(j["xid"].as_i64().unwrap());
    }
    assert_eq!(n, 200_000);
    assert_eq!(xids.len(), 1, "one transaction");
    assert!(peak_kb > 0 && peak_kb < 150_000, "peak RSS {peak_kb} kB for a ~110 MB transaction");
}

#[tokio::test]
async fn idle_slot_moves_forward_with_heartbeats() {
    let db = PgDb::create("xdb_tail_idle").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t OWNER TO xdb_repl;").await;
    let plan = plan_for(&db, "t", 1);
    let child = spawn_tail(&plan, &["--plan-slot"], &[]);
    wait_for_slot(&db).await;
    let c = db.super_client().await;
    let slot = format!("{}_slot", db.name);
    let confirmed = |c: tokio_postgres::Client| {
        let slot = slot.clone();
        async move {
            let row = c
                .query_one(
                    "SELECT (confirmed_flush_lsn - '0/0')::int8 FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await
                .unwrap();
            (row.get::<_, Option<i64>>(0).unwrap_or(0), c)
        }
    };
    let (before, c) = confirmed(c).await;
    // Other databases keep writing WAL; this one is idle.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (after, _) = confirmed(c).await;
    sigterm(&child);
    let (code, out, err, _) = finish(child, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{err}");
    assert!(after > before, "heartbeats confirmed nothing: {before} -> {after}\n{err}");
    assert!(out.is_empty(), "heartbeats are not printed: {out}");
}

#[tokio::test]
async fn missing_table_is_named_and_nothing_is_created() {
    let db = PgDb::create("xdb_tail_missing").await;
    let plan = plan_for(&db, "public.nope", 10);
    let (code, _, err, _) = finish(spawn_tail(&plan, &[], &[]), Duration::from_secs(30));
    assert_eq!(code, Some(1));
    assert!(err.contains("public.nope"), "{err}");
    let c = db.super_client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "no slot created for a bad plan");
}

/// Runs `xdb tail` with `extra` until it has printed `n` transactions,
/// making them (one row each, ids `from..from+n`) once it streams.
async fn tail_while_writing(
    db: &PgDb,
    plan: &PlanFile,
    extra: &[&str],
    from: i64,
    n: i64,
) -> (Option<i32>, String, String) {
    let max = n.to_string();
    let mut args = vec!["--max-transactions", max.as_str()];
    args.extend_from_slice(extra);
    let child = spawn_tail(plan, &args, &[]);
    wait_for_slot(db).await;
    for id in from..from + n {
        db.exec(&format!("INSERT INTO items VALUES ({id}, 'written while tail ran')")).await;
    }
    let (code, out, err, _) = finish(child, Duration::from_secs(60));
    (code, out, err)
}

fn sync_plan(db: &PgDb, target: &crate::support::Target) -> PlanFile {
    crate::support::plan(db, target, "items", "")
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "xdb failed: {}", crate::support::text(out));
}

const ITEMS: &str = "CREATE TABLE items (id bigint PRIMARY KEY, v text); ALTER TABLE items OWNER TO xdb_repl;
                     INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 100) g;";

/// Issue 14: a `tail` between two `sync` runs used to read (and confirm on)
/// the plan's slot, so the next sync started after what tail printed and
/// those rows never reached the target. By default tail now reads a
/// temporary slot of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_between_syncs_loses_nothing() {
    let db = PgDb::create("xdb_tail_between").await;
    db.exec(ITEMS).await;
    let target = crate::support::Target::Mysql(crate::support::MyDb::create("xdb_tail_between_my").await);
    let plan = sync_plan(&db, &target);
    ok(&crate::support::xdb(&plan, &["sync", "--until-caught-up"]));
    assert_eq!(target.count("items").await, 100);

    // Sync is stopped; rows written now must wait in the plan's slot.
    let (code, out, err) = tail_while_writing(&db, &plan, &[], 101, 10).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(lines(&out).len(), 10, "tail printed the 10 rows: {out}\n{err}");

    ok(&crate::support::xdb(&plan, &["sync", "--until-caught-up"]));
    assert_eq!(target.count("items").await, 110, "rows printed by tail reached the target too");
    let v = crate::support::xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate: {}", crate::support::text(&v));
}

/// By default tail never moves the plan's slot, and its own temporary slot
/// is gone once it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_tail_leaves_the_plan_slot_where_it_is() {
    let db = PgDb::create("xdb_tail_own_slot").await;
    db.exec(ITEMS).await;
    let target = crate::support::Target::sqlite("xdb_tail_own_slot");
    let plan = sync_plan(&db, &target);
    ok(&crate::support::xdb(&plan, &["snapshot"]));
    let plan_slot = format!("{}_slot", db.name);
    let before = plan_slot_confirmed(&db).await;

    let (code, out, err) = tail_while_writing(&db, &plan, &[], 101, 3).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(lines(&out).len(), 3, "{out}\n{err}");
    assert_eq!(plan_slot_confirmed(&db).await, before, "tail moved the plan's slot: {err}");
    assert_eq!(slot_names(&db).await, vec![plan_slot], "tail's temporary slot outlived it");
}

/// `--plan-slot` reads the plan's slot; once a sync has recorded a position
/// on the target, tail must not confirm there (that would skip rows for the
/// next sync): it runs as --no-ack and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_slot_with_a_target_position_is_never_confirmed() {
    let db = PgDb::create("xdb_tail_plan_slot").await;
    db.exec(ITEMS).await;
    let target = crate::support::Target::sqlite("xdb_tail_plan_slot");
    let plan = sync_plan(&db, &target);
    ok(&crate::support::xdb(&plan, &["snapshot"]));
    let before = plan_slot_confirmed(&db).await;

    let (code, out, err) = tail_while_writing(&db, &plan, &["--plan-slot"], 101, 3).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(lines(&out).len(), 3, "{out}\n{err}");
    assert!(err.contains("not confirming"), "tail says it runs as --no-ack: {err}");
    assert_eq!(plan_slot_confirmed(&db).await, before, "tail --plan-slot moved the slot: {err}");

    ok(&crate::support::xdb(&plan, &["sync", "--until-caught-up"]));
    assert_eq!(target.count("items").await, 103);
}

/// A temporary slot starts at its creation: an earlier --from-lsn cannot be
/// honoured, so it is refused rather than silently moved.
#[tokio::test]
async fn from_lsn_requires_the_plan_slot() {
    let db = PgDb::create("xdb_tail_from_lsn").await;
    db.exec(ITEMS).await;
    let plan = plan_for(&db, "items", 10);
    let (code, _, err, _) = finish(spawn_tail(&plan, &["--from-lsn", "0/1"], &[]), Duration::from_secs(30));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--plan-slot"), "{err}");
}

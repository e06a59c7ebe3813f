//! PostgreSQL → NATS JetStream (a three-node cluster on loopback) as
//! Debezium change events: the event format, and exactly once through
//! kill -9 of the producer and of a cluster node (invariant *log exactly
//! once*).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::nats::NatsCluster;
use crate::support::{self, kill9, ok, xdb, MyDb, PgDb, PlanFile, Target};

fn log_plan(db: &PgDb, cluster: &NatsCluster, options: &str, tables: &str) -> PlanFile {
    PlanFile::new(&format!(
        "name: logtest\nsource:\n  url: {}\n  slot: {}_slot\n  publication: {}_pub\n  heartbeat_interval_secs: 1\n\
         target:\n  url: {}?{options}\ntables: [{tables}]\n",
        db.repl_url(),
        db.name,
        db.name,
        cluster.url()
    ))
}

/// Each consumer applies everything the log holds; then its target must
/// equal the original source (`xdb validate`: every column of every row).
fn catch_up_and_validate(consumers: &[PlanFile]) {
    for c in consumers {
        ok(&xdb(c, &["sync", "--until-caught-up"]));
        let v = xdb(c, &["validate"]);
        assert!(v.status.success(), "{}: validate: {}", c.path.display(), support::text(&v));
    }
}

/// The payload of a message whether or not it inlines its schema.
fn payload(v: &Value) -> &Value {
    if v.get("schema").is_some() && v.get("payload").is_some() {
        &v["payload"]
    } else {
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_events_have_debeziums_field_names_op_codes_and_source() {
    let cluster = NatsCluster::start().await;
    let db = PgDb::create("xdb_log_fmt").await;
    db.exec(
        "CREATE TABLE items (id int PRIMARY KEY, name text, body text, price numeric(10,2), at timestamptz, \
           d date, raw bytea);
         ALTER TABLE items ALTER body SET STORAGE EXTERNAL;
         CREATE TABLE tags (id int PRIMARY KEY, tag text);
         INSERT INTO items VALUES (1, 'one', repeat(md5('x'), 200), 12.50, '2024-01-02 03:04:05.5+00', '2024-01-02', '\\x0102'),
                                  (2, 'two', 'short', NULL, NULL, NULL, NULL);
         INSERT INTO tags VALUES (1, 'a');
         ALTER TABLE items OWNER TO xdb_repl; ALTER TABLE tags OWNER TO xdb_repl;",
    )
    .await;
    let plan = log_plan(&db, &cluster, "stream=FMT&replicas=3&subject_prefix=shop", "public.items, public.tags");
    let c = xdb(&plan, &["check"]);
    assert!(c.status.success(), "check: {}", support::text(&c));
    let out = support::text(&c);
    assert!(out.contains("JetStream is enabled") && out.contains("3 replicas"), "{out}");
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    db.exec(
        "BEGIN; INSERT INTO items (id, name) VALUES (3, 'three'); UPDATE items SET name = 'uno' WHERE id = 1;
           DELETE FROM items WHERE id = 2; INSERT INTO tags VALUES (2, 'b'); COMMIT;
         TRUNCATE tags;",
    )
    .await;
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));

    let msgs = cluster.messages("FMT").await;
    let ids: HashSet<&str> = msgs.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), msgs.len(), "every message id once");
    let on = |subject: &str| msgs.iter().filter(|(s, _, _)| s == subject).map(|(_, _, v)| v).collect::<Vec<_>>();
    let items = on("shop.public.items");
    let reads: Vec<&Value> = items.iter().copied().filter(|v| payload(v)["op"] == "r").collect();
    assert_eq!(reads.len(), 2, "the copy as op r");
    let e = reads[0];
    assert_eq!(e["schema"]["name"], "shop.public.items.Envelope", "inline schema by default");
    let p = payload(e);
    assert_eq!(p["source"]["snapshot"], "first");
    assert_eq!(p["after"]["price"], "12.50");
    assert_eq!(p["after"]["at"], "2024-01-02T03:04:05.500000Z");
    assert_eq!(p["after"]["d"], 19724);
    assert_eq!(p["after"]["raw"], "AQI=");
    let ops: Vec<&str> = items.iter().map(|v| payload(v)["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["r", "r", "c", "u", "d"]);
    let u = payload(items[3]);
    assert_eq!(u["after"]["name"], "uno");
    assert_eq!(u["after"]["body"], "__debezium_unavailable_value", "unchanged TOAST");
    for field in ["version", "connector", "name", "ts_ms", "snapshot", "db", "schema", "table", "txId", "lsn"] {
        assert!(u["source"].get(field).is_some(), "source.{field}: {u}");
    }
    assert_eq!(u["source"]["connector"], "postgresql");
    assert_eq!(u["source"]["name"], "shop");
    assert_eq!(u["source"]["db"], db.name.as_str());
    assert_eq!(u["source"]["table"], "items");
    assert_eq!(u["source"]["snapshot"], "false");
    let d = payload(items[4]);
    assert_eq!(d["before"]["id"], 2);
    assert_eq!(d["after"], Value::Null);
    let tx_id = u["transaction"]["id"].as_str().unwrap().to_string();
    assert_eq!(tx_id, format!("{}:{}", u["source"]["txId"], u["source"]["lsn"]));
    assert_eq!(u["transaction"]["total_order"], 2);
    assert_eq!(u["transaction"]["data_collection_order"], 2);
    let tags = on("shop.public.tags");
    let tag_ops: Vec<&str> = tags.iter().map(|v| payload(v)["op"].as_str().unwrap()).collect();
    assert_eq!(tag_ops, ["r", "c", "t"]);
    assert_eq!(payload(tags[1])["transaction"]["id"], tx_id.as_str(), "one transaction over both tables");
    let txs = on("shop.transaction");
    let begin = txs.iter().find(|v| payload(v)["id"] == tx_id.as_str() && payload(v)["status"] == "BEGIN");
    let end = txs.iter().find(|v| payload(v)["id"] == tx_id.as_str() && payload(v)["status"] == "END").unwrap();
    assert!(begin.is_some());
    assert_eq!(payload(end)["event_count"], 4);
    let counts: BTreeMap<String, i64> = payload(end)["data_collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["data_collection"].as_str().unwrap().to_string(), c["event_count"].as_i64().unwrap()))
        .collect();
    assert_eq!(counts, BTreeMap::from([("public.items".into(), 3), ("public.tags".into(), 1)]));
    // Each table's shape once, as Debezium's schema-change event, at the copy.
    let shape = on("shop.xdb_schema.public.items");
    assert_eq!(shape.len(), 1, "no ALTER without a schema change");
    assert_eq!(shape[0]["tableChanges"][0]["type"], "CREATE");
    assert_eq!(shape[0]["tableChanges"][0]["table"]["primaryKeyColumnNames"], serde_json::json!(["id"]));
    assert_eq!(shape[0]["tableChanges"][0]["table"]["columns"][3]["typeName"], "numeric(10,2)");

    // A table added to the plan after the copy is refused: its rows are
    // not in the log.
    db.exec("CREATE TABLE extra (id int PRIMARY KEY); ALTER TABLE extra OWNER TO xdb_repl;").await;
    let more =
        log_plan(&db, &cluster, "stream=FMT&replicas=3&subject_prefix=shop", "public.items, public.tags, public.extra");
    let r = xdb(&more, &["sync", "--until-caught-up"]);
    let t = support::text(&r);
    assert!(!r.status.success() && t.contains("public.extra is in the plan but not in the copy"), "{t}");

    // An existing stream that differs is refused, naming both.
    let other = log_plan(&db, &cluster, "stream=FMT&replicas=1&subject_prefix=shop", "public.items, public.tags");
    let r = xdb(&other, &["sync", "--until-caught-up"]);
    assert!(!r.status.success());
    let t = support::text(&r);
    assert!(t.contains("FMT") && t.contains("replicas 3") && t.contains("asks for 1"), "{t}");
}

/// `xdb sync` with a 64 KiB spill threshold: large transactions are read
/// back from disk in parts while they are published.
fn spawn_sync(plan: &PlanFile) -> std::process::Child {
    support::xdb_command()
        .args(["sync", "--plan", plan.path.to_str().unwrap()])
        .env("XDB_SPILL_THRESHOLD_BYTES", "65536")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn xdb")
}

/// A consumer's `xdb sync` that applies transactions of more than 500
/// changes in parts (the load's 1500-row updates).
fn spawn_consumer(plan: &PlanFile) -> std::process::Child {
    support::xdb_command()
        .args(["sync", "--plan", plan.path.to_str().unwrap()])
        .env("XDB_LOG_PART_CHANGES", "500")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn xdb")
}

/// The load: transactions over two tables (inserts, counter updates,
/// deletes) until told to stop; returns how many committed.
fn start_load(url: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let c = support::pg_connect(&url).await;
        let mut seed = 4242u64;
        let mut next = |m: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            let sql = match n % 4 {
                // A large transaction, spilled by the producer (see `spawn_sync`).
                _ if n.is_multiple_of(300) => "UPDATE a SET n = n + 1 WHERE id <= 1500".to_string(),
                0 => format!(
                    "BEGIN; INSERT INTO a (note) VALUES ('new {n}'); UPDATE b SET n = n + 1 WHERE id = {};
                     UPDATE a SET n = n + 1 WHERE id = {}; COMMIT;",
                    1 + next(500),
                    1 + next(2000)
                ),
                1 => format!("UPDATE a SET n = n + 1, note = note || '.' WHERE id = {}", 1 + next(2000)),
                2 => format!("DELETE FROM b WHERE id = {}", 1 + next(600)),
                _ => format!("INSERT INTO b (a_id) VALUES ({n})"),
            };
            c.batch_execute(&sql).await.unwrap();
        }
        n
    })
}

/// Replays the stream: every change applies to exactly the state the one
/// before it left (a counter goes up by one; an insert finds no row, an
/// update or delete finds one); BEGIN/END frame each transaction once with
/// the right count; commit LSNs only grow. Returns the rows per table.
fn replay(msgs: &[(String, String, Value)]) -> HashMap<String, BTreeMap<i64, Value>> {
    let mut tables: HashMap<String, BTreeMap<i64, Value>> = HashMap::new();
    let mut seen_tx: HashSet<String> = HashSet::new();
    let mut current: Option<(String, u64)> = None;
    let mut last_lsn = 0u64;
    for (subject, id, v) in msgs {
        let p = payload(v);
        if subject.ends_with(".xdb_heartbeat") || subject.contains(".xdb_schema.") {
            continue;
        }
        if subject.ends_with(".xdb") {
            if p["snapshot"] == "start" {
                tables.clear();
            }
            continue;
        }
        if subject.ends_with(".transaction") {
            let tid = p["id"].as_str().unwrap().to_string();
            if p["status"] == "BEGIN" {
                assert!(current.is_none(), "BEGIN {tid} inside another transaction");
                assert!(seen_tx.insert(tid.clone()), "transaction {tid} twice");
                let lsn: u64 = tid.split(':').nth(1).unwrap().parse().unwrap();
                assert!(lsn > last_lsn, "commit order: {tid} after LSN {last_lsn}");
                last_lsn = lsn;
                current = Some((tid, 0));
            } else {
                let (cur, count) = current.take().expect("END without BEGIN");
                assert_eq!(cur, tid);
                assert_eq!(p["event_count"].as_u64().unwrap(), count, "END of {tid} counts its events");
            }
            continue;
        }
        let table = p["source"]["table"].as_str().unwrap().to_string();
        let rows = tables.entry(table.clone()).or_default();
        let op = p["op"].as_str().unwrap();
        if op != "r" {
            let (cur, count) = current.as_mut().unwrap_or_else(|| panic!("{id} outside a transaction"));
            assert_eq!(p["transaction"]["id"].as_str().unwrap(), cur.as_str());
            *count += 1;
        }
        match op {
            "r" | "c" => {
                let key = p["after"]["id"].as_i64().unwrap();
                assert!(rows.insert(key, p["after"].clone()).is_none(), "{op} of {table} {key} twice ({id})");
            }
            "u" => {
                let key = p["after"]["id"].as_i64().unwrap();
                let prev = rows.get(&key).unwrap_or_else(|| panic!("update of missing {table} {key} ({id})"));
                assert_eq!(
                    p["after"]["n"].as_i64().unwrap(),
                    prev["n"].as_i64().unwrap() + 1,
                    "{table} {key}: an update lost or repeated ({id})"
                );
                rows.insert(key, p["after"].clone());
            }
            "d" => {
                let key = p["before"]["id"].as_i64().unwrap();
                assert!(rows.remove(&key).is_some(), "delete of missing {table} {key} ({id})");
            }
            other => panic!("unexpected op {other}"),
        }
    }
    assert!(current.is_none(), "the stream ends inside a transaction");
    tables
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_kill9_of_producer_and_a_node_neither_loses_nor_repeats() {
    let cluster = NatsCluster::start().await;
    let db = PgDb::create("xdb_log_kill").await;
    db.exec(
        "CREATE TABLE a (id bigserial PRIMARY KEY, n int NOT NULL DEFAULT 0, note text);
         CREATE TABLE b (id bigserial PRIMARY KEY, n int NOT NULL DEFAULT 0, a_id bigint);
         INSERT INTO a (note) SELECT 'seed ' || g FROM generate_series(1, 2000) g;
         INSERT INTO b (a_id) SELECT g FROM generate_series(1, 500) g;
         ALTER TABLE a OWNER TO xdb_repl; ALTER TABLE b OWNER TO xdb_repl;",
    )
    .await;
    let plan = log_plan(&db, &cluster, "stream=KILLS&replicas=3&schemas=false", "public.a, public.b");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = start_load(db.super_url(), stop.clone());
    let mut child = spawn_sync(&plan);
    let mut seed = 99u64;
    for i in 0..6 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(800 + (seed >> 33) % 2000)).await;
        if i == 2 {
            // One node of three gone mid-stream: the stream keeps a quorum.
            cluster.kill_node(1);
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        if i == 4 {
            cluster.start_node(1);
        }
        kill9(&mut child);
        child = spawn_sync(&plan);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = load.await.unwrap();
    assert!(writes > 200, "the load ran ({writes} transactions)");
    kill9(&mut child);
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));

    let msgs = cluster.messages("KILLS").await;
    let ids: HashSet<&str> = msgs.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), msgs.len(), "no message stored twice");
    let tables = replay(&msgs);
    let c = db.super_client().await;
    for (t, cols) in [("a", "note"), ("b", "a_id")] {
        let rows = c.query(&format!("SELECT id, n, {cols} FROM {t} ORDER BY id"), &[]).await.unwrap();
        let got = tables.get(t).cloned().unwrap_or_default();
        assert_eq!(got.len(), rows.len(), "{t}: rows in the log vs the source");
        for r in rows {
            let id: i64 = r.get(0);
            let n: i32 = r.get(1);
            let row = got.get(&id).unwrap_or_else(|| panic!("{t} {id} missing from the log"));
            assert_eq!(row["n"].as_i64(), Some(n as i64), "{t} {id}");
            let other = match t {
                "a" => Value::from(r.get::<_, Option<String>>(2)),
                _ => Value::from(r.get::<_, Option<i64>>(2)),
            };
            assert_eq!(row[cols], other, "{t} {id}");
        }
    }
    eprintln!("{} messages for {writes} source transactions", msgs.len());
}

/// A consumer plan: the log as source (`validate_url`: the original
/// PostgreSQL), `target` as target, its position under `slot`.
fn consumer_plan(
    db: &PgDb,
    cluster: &NatsCluster,
    stream: &str,
    slot: &str,
    target: &Target,
    tables: &str,
) -> PlanFile {
    PlanFile::new(&format!(
        "name: logtest\nsource:\n  url: {}?stream={stream}\n  validate_url: {}\n  slot: {slot}\n\
         target:\n  url: {}\ntables: [{tables}]\napply:\n  max_batch_rows: 300\n",
        cluster.url(),
        db.repl_url(),
        target.url()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_into_mariadb_and_sqlite_split_with_kill9_of_each_side_then_validate() {
    let cluster = NatsCluster::start().await;
    let db = PgDb::create("xdb_log_apply").await;
    db.exec(
        "CREATE TABLE a (id bigserial PRIMARY KEY, n int NOT NULL DEFAULT 0, note text,
           price numeric(12,2) DEFAULT 1.50, at timestamptz DEFAULT now(), doc jsonb DEFAULT '{\"k\": [1, 2]}');
         CREATE TABLE b (id bigserial PRIMARY KEY, n int NOT NULL DEFAULT 0, a_id bigint);
         INSERT INTO a (note) SELECT 'seed ' || g FROM generate_series(1, 2000) g;
         INSERT INTO b (a_id) SELECT g FROM generate_series(1, 500) g;
         ALTER TABLE a OWNER TO xdb_repl; ALTER TABLE b OWNER TO xdb_repl;",
    )
    .await;
    let producer = log_plan(&db, &cluster, "stream=APPLY&replicas=3", "public.a, public.b");
    let maria = Target::Mysql(MyDb::create("xdb_log_apply_my").await);
    let lite = Target::sqlite("xdb_log_apply_lite");
    let to_maria = consumer_plan(&db, &cluster, "APPLY", "to_maria", &maria, "public.a, public.b");
    // Appliers split the tables: SQLite takes only `b`, events of `a` are
    // skipped there (its transactions still move its position).
    let to_lite = consumer_plan(&db, &cluster, "APPLY", "to_lite", &lite, "public.b");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = start_load(db.super_url(), stop.clone());
    let mut p = spawn_sync(&producer);
    let mut cm = spawn_consumer(&to_maria);
    let mut cl = spawn_consumer(&to_lite);
    let mut seed = 7u64;
    for i in 0..5 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(1000 + (seed >> 33) % 2000)).await;
        kill9(&mut cm);
        cm = spawn_consumer(&to_maria);
        kill9(&mut cl);
        cl = spawn_consumer(&to_lite);
        if i == 2 {
            kill9(&mut p);
            p = spawn_sync(&producer);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = load.await.unwrap();
    assert!(writes > 200, "the load ran ({writes} transactions)");
    kill9(&mut p);
    kill9(&mut cm);
    kill9(&mut cl);
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    let c = support::text(&xdb(&to_maria, &["check"]));
    assert!(c.contains("stream APPLY holds") && !c.contains("Publication and slot"), "{c}");
    for plan in [&to_maria, &to_lite] {
        ok(&xdb(plan, &["sync", "--until-caught-up"]));
        let v = xdb(plan, &["validate"]);
        assert!(v.status.success(), "validate: {}", support::text(&v));
    }
    let source_rows = support::pg_rows(&db.super_client().await, "SELECT count(*) FROM a").await;
    assert_eq!(maria.count("a").await.to_string(), source_rows[0][0]);
    let b_rows = support::pg_rows(&db.super_client().await, "SELECT count(*) FROM b").await;
    assert_eq!(lite.count("b").await.to_string(), b_rows[0][0]);
    assert!(lite.rows("SELECT name FROM sqlite_master WHERE name = 'a'").await.is_empty(), "a is not SQLite's");
}

#[test]
fn a_log_source_needs_the_original_postgres_for_catalog_and_validate() {
    let yaml = "name: p\nsource:\n  url: nats://127.0.0.1:4222?stream=S\ntarget:\n  url: sqlite://x.db\ntables: [t]\n";
    let e = xdb::plan::Plan::parse(yaml, std::path::Path::new("p.yaml")).unwrap_err().to_string();
    assert!(e.contains("validate_url"), "{e}");
    let with = yaml.replace("stream=S\n", "stream=S\n  validate_url: postgres://u@h/db\n");
    let plan = xdb::plan::Plan::parse(&with, std::path::Path::new("p.yaml")).unwrap();
    assert!(plan.source.log.is_some());
    assert!(plan.source.url.expose().starts_with("postgres://"));
    let bad = yaml.replace("stream=S", "stream=S&replicas=0");
    let bad = bad.replace("stream=S&replicas=0\n", "stream=S&replicas=0\n  validate_url: postgres://u@h/db\n");
    let e = xdb::plan::Plan::parse(&bad, std::path::Path::new("p.yaml")).unwrap_err().to_string();
    assert!(e.contains("replicas"), "{e}");
}

/// kill -9 of the producer in the middle of its copy: the next run drops
/// the unfinished slot and copies again from a fresh snapshot; a consumer
/// empties its tables at the new `snapshot: start`, and ends equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_copy_killed_midway_is_copied_again_and_the_consumer_follows() {
    let cluster = NatsCluster::start().await;
    let db = PgDb::create("xdb_log_recopy").await;
    db.exec(
        "CREATE TABLE a (id bigserial PRIMARY KEY, n int NOT NULL DEFAULT 0, note text);
         CREATE TABLE b (id bigserial PRIMARY KEY, n int NOT NULL DEFAULT 0, a_id bigint);
         INSERT INTO a (note) SELECT 'seed ' || g FROM generate_series(1, 60000) g;
         INSERT INTO b (a_id) SELECT g FROM generate_series(1, 500) g;
         ALTER TABLE a OWNER TO xdb_repl; ALTER TABLE b OWNER TO xdb_repl;",
    )
    .await;
    let producer = log_plan(&db, &cluster, "stream=RECOPY&replicas=3&schemas=false", "public.a, public.b");
    let lite = Target::sqlite("xdb_log_recopy_lite");
    let consumer = consumer_plan(&db, &cluster, "RECOPY", "to_lite", &lite, "public.a, public.b");
    let mut p = spawn_sync(&producer);
    let mut c = spawn_consumer(&consumer);
    let messages = |n: u64| {
        let cluster = &cluster;
        async move {
            let client = cluster.client().await.unwrap();
            let js = async_nats::jetstream::new(client);
            match js.get_stream("RECOPY").await {
                Ok(mut s) => s.info().await.map(|i| i.state.messages >= n).unwrap_or(false),
                Err(_) => false,
            }
        }
    };
    support::wait_until("part of the copy in the log", Duration::from_secs(60), || messages(5000)).await;
    kill9(&mut p);
    let msgs = cluster.messages("RECOPY").await;
    assert!(
        !msgs.iter().any(|(_, id, _)| id.starts_with("snap-end")),
        "the kill came after the copy: make the table larger"
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = start_load(db.super_url(), stop.clone());
    p = spawn_sync(&producer);
    tokio::time::sleep(Duration::from_secs(3)).await;
    kill9(&mut c);
    c = spawn_consumer(&consumer);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    kill9(&mut p);
    kill9(&mut c);
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    let msgs = cluster.messages("RECOPY").await;
    let starts = msgs.iter().filter(|(_, id, _)| id.starts_with("snap-start")).count();
    // The second run may be killed in its copy too (it is slow in a debug build).
    assert!(starts >= 2, "a second copy from a fresh snapshot");
    let ids: HashSet<&str> = msgs.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), msgs.len(), "no message stored twice");
    let tables = replay(&msgs);
    let n: i64 = db.super_client().await.query_one("SELECT count(*) FROM a", &[]).await.unwrap().get(0);
    assert_eq!(tables["a"].len() as i64, n);
    catch_up_and_validate(std::slice::from_ref(&consumer));
}

/// Schema changes on the source travel through the log as Debezium
/// schema-change events, in order with the data, and each consumer follows
/// them as the direct path follows a Relation message (invariant *schema
/// drift through the log*): columns added with and without a default (a
/// non-constant one filled from the source, rows inserted before the ALTER
/// in its own transaction included), a rename; a dropped column stops the
/// consumer naming table, column and the statement, which once run lets it
/// go on. Every consumer (MariaDB, SQLite, PostgreSQL) ends equal to the
/// source by `xdb validate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_schema_changes_are_followed_by_every_consumer_then_validate() {
    let cluster = NatsCluster::start().await;
    let db = PgDb::create("xdb_log_ddl").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, a text, b int);
         INSERT INTO t SELECT g, 'a' || g, g FROM generate_series(1, 200) g;
         ALTER TABLE t OWNER TO xdb_repl;",
    )
    .await;
    let producer = log_plan(&db, &cluster, "stream=DDL&replicas=3", "public.t");
    let targets = [
        ("to_maria", Target::Mysql(MyDb::create("xdb_log_ddl_my").await)),
        ("to_lite", Target::sqlite("xdb_log_ddl_lite")),
        ("to_pg", Target::Postgres(PgDb::create("xdb_log_ddl_pg").await)),
    ];
    let consumers: Vec<PlanFile> =
        targets.iter().map(|(slot, t)| consumer_plan(&db, &cluster, "DDL", slot, t, "public.t")).collect();
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    for c in &consumers {
        ok(&xdb(c, &["sync", "--until-caught-up"]));
    }
    db.exec(
        "ALTER TABLE t ADD COLUMN c int;
         UPDATE t SET c = id * 2 WHERE id <= 10;
         ALTER TABLE t ADD COLUMN d int NOT NULL DEFAULT 7;
         INSERT INTO t (id, a, b, c) VALUES (201, 'new', 1, 1);
         BEGIN; INSERT INTO t (id, a, b) VALUES (202, 'before the alter', 2);
           ALTER TABLE t ADD COLUMN e timestamptz DEFAULT clock_timestamp();
           INSERT INTO t (id, a, b) VALUES (203, 'after the alter', 3); COMMIT;
         ALTER TABLE t RENAME COLUMN a TO label;
         UPDATE t SET label = label || '!' WHERE id % 7 = 0;",
    )
    .await;
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    let msgs = cluster.messages("DDL").await;
    let shapes: Vec<&Value> =
        msgs.iter().filter(|(s, _, _)| s == "logtest.xdb_schema.public.t").map(|(_, _, v)| v).collect();
    let types: Vec<&str> = shapes.iter().map(|v| v["tableChanges"][0]["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["CREATE", "ALTER", "ALTER", "ALTER", "ALTER"], "one event per new shape");
    let last = shapes.last().unwrap();
    assert_eq!(last["xdb"]["renamed"][0]["from"], "a");
    assert_eq!(last["xdb"]["renamed"][0]["to"], "label");
    let cols = last["tableChanges"][0]["table"]["columns"].as_array().unwrap();
    let names: Vec<&str> = cols.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["id", "label", "b", "c", "d", "e"]);
    assert_eq!(cols[4]["defaultValueExpression"], "7");
    assert_eq!(cols[4]["optional"], false);
    // The data events after a change carry the new shape inline.
    let after = msgs.iter().rev().find(|(s, _, _)| s == "logtest.public.t").unwrap();
    assert!(after.2["schema"]["fields"][1]["fields"].as_array().unwrap().iter().any(|f| f["field"] == "label"));
    catch_up_and_validate(&consumers);

    // A dropped column stops each consumer with the statement to run.
    db.exec("ALTER TABLE t DROP COLUMN b; UPDATE t SET c = 0 WHERE id = 1;").await;
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    for (c, (_, target)) in consumers.iter().zip(&targets) {
        let r = xdb(c, &["sync", "--until-caught-up"]);
        let out = support::text(&r);
        assert!(!r.status.success(), "{out}");
        assert!(out.contains("public.t") && out.contains("column b was dropped"), "{out}");
        let stmt = out.split("(`").nth(1).and_then(|s| s.split("`)").next()).unwrap_or_else(|| panic!("{out}"));
        assert!(stmt.contains("DROP COLUMN"), "{stmt}");
        target.exec(stmt).await;
        ok(&xdb(c, &["sync", "--until-caught-up"]));
        let v = xdb(c, &["validate"]);
        assert!(v.status.success(), "validate: {}", support::text(&v));
    }
}

/// kill -9 of the producer and of the consumer while a shape changes
/// under a write load: the log holds each new shape once, in order with
/// the data, and the consumer (restarted at any point, also between a
/// followed ALTER and the position that moves past it) ends equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_schema_change_under_load_with_kill9_of_both_sides_then_validate() {
    let cluster = NatsCluster::start().await;
    let db = PgDb::create("xdb_log_ddl_kill").await;
    db.exec(
        "CREATE TABLE a (id bigserial PRIMARY KEY, n int NOT NULL DEFAULT 0, note text);
         CREATE TABLE b (id bigserial PRIMARY KEY, n int NOT NULL DEFAULT 0, a_id bigint, extra int DEFAULT 3);
         INSERT INTO a (note) SELECT 'seed ' || g FROM generate_series(1, 2000) g;
         INSERT INTO b (a_id) SELECT g FROM generate_series(1, 500) g;
         ALTER TABLE a OWNER TO xdb_repl; ALTER TABLE b OWNER TO xdb_repl;",
    )
    .await;
    let producer = log_plan(&db, &cluster, "stream=DDLK&replicas=3&schemas=false", "public.a, public.b");
    let maria = Target::Mysql(MyDb::create("xdb_log_ddlk_my").await);
    let consumer = consumer_plan(&db, &cluster, "DDLK", "to_maria", &maria, "public.a, public.b");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = start_load(db.super_url(), stop.clone());
    let mut p = spawn_sync(&producer);
    let mut c = spawn_consumer(&consumer);
    let ddl = [
        "ALTER TABLE b ADD COLUMN flag int",
        "ALTER TABLE b ADD COLUMN tag text NOT NULL DEFAULT 'x'",
        // A column the table had: a column added and renamed before the
        // producer reads the ADD stops the consumer by design
        // (`log_a_column_renamed_before_the_producer_read_its_add_stops_the_consumer`).
        "ALTER TABLE b RENAME COLUMN extra TO extra2",
        "ALTER TABLE b ADD COLUMN seen timestamptz",
    ];
    for (i, stmt) in ddl.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        db.exec(stmt).await;
        tokio::time::sleep(Duration::from_millis(300 + 200 * i as u64)).await;
        kill9(&mut c);
        c = spawn_consumer(&consumer);
        if i % 2 == 1 {
            kill9(&mut p);
            p = spawn_sync(&producer);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = load.await.unwrap();
    assert!(writes > 100, "the load ran ({writes} transactions)");
    kill9(&mut p);
    kill9(&mut c);
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    let msgs = cluster.messages("DDLK").await;
    let ids: HashSet<&str> = msgs.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), msgs.len(), "no message stored twice");
    // Each shape once, in order: the copy's (CREATE) is whichever the
    // producer read at its snapshot (on a loaded machine it can start
    // after the first ALTER), then one ALTER per later statement.
    let shapes: Vec<String> = msgs
        .iter()
        .filter(|(s, _, _)| s == "logtest.xdb_schema.public.b")
        .map(|(_, _, v)| {
            let cols = v["tableChanges"][0]["table"]["columns"].as_array().cloned().unwrap_or_default();
            let names: Vec<&str> = cols.iter().filter_map(|c| c["name"].as_str()).collect();
            format!("{} {}", v["tableChanges"][0]["type"].as_str().unwrap_or("?"), names.join(","))
        })
        .collect();
    let every = [
        "id,n,a_id,extra",
        "id,n,a_id,extra,flag",
        "id,n,a_id,extra,flag,tag",
        "id,n,a_id,extra2,flag,tag",
        "id,n,a_id,extra2,flag,tag,seen",
    ];
    let first = shapes.first().and_then(|s| s.strip_prefix("CREATE ")).unwrap_or_else(|| panic!("{shapes:#?}"));
    let from = every.iter().position(|s| *s == first).unwrap_or_else(|| panic!("{shapes:#?}"));
    let expected: Vec<String> = std::iter::once(format!("CREATE {first}"))
        .chain(every[from + 1..].iter().map(|s| format!("ALTER {s}")))
        .collect();
    assert_eq!(shapes, expected, "each new shape once, in order");
    catch_up_and_validate(std::slice::from_ref(&consumer));
}

/// A cluster, a source database with `t (id, v)` holding `rows` rows, a
/// producer plan into `stream` (three replicas, extra URL `options`) and a
/// consumer plan from it into SQLite.
async fn one_table_to_sqlite(
    name: &str,
    stream: &str,
    options: &str,
    rows: u32,
) -> (NatsCluster, PgDb, PlanFile, Target, PlanFile) {
    let cluster = NatsCluster::start().await;
    let db = PgDb::create(name).await;
    db.exec(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, {rows}) g;
         ALTER TABLE t OWNER TO xdb_repl;"
    ))
    .await;
    let producer = log_plan(&db, &cluster, &format!("stream={stream}&replicas=3{options}"), "public.t");
    let lite = Target::sqlite(&format!("{name}_lite"));
    let consumer = consumer_plan(&db, &cluster, stream, "to_lite", &lite, "public.t");
    (cluster, db, producer, lite, consumer)
}

/// `xdb status`, `xdb cleanup` and `xdb cutover` on the two plans of a log:
/// the producer's position (slot confirmed LSN, what the log holds) and a
/// consumer's (stream sequence, lag in messages); cleanup removes the
/// producer's slot and publication (the stream only with --drop-stream) and
/// a consumer's state on its target, never the original source's; cutover
/// refuses both, naming the commands that do it for a plan pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_plans_have_status_cleanup_and_a_cutover_refusal() {
    let (cluster, db, producer, _lite, consumer) = one_table_to_sqlite("xdb_log_ops", "OPS", "", 100).await;
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    ok(&xdb(&consumer, &["sync", "--until-caught-up"]));
    db.exec("INSERT INTO t SELECT g, 'w' FROM generate_series(101, 150) g; UPDATE t SET v = 'x' WHERE id < 10;").await;
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));

    let json = |plan: &PlanFile| -> Value {
        let out = xdb(plan, &["status", "--format", "json"]);
        assert!(out.status.success(), "{}", support::text(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", support::text(&out)))
    };
    let p = json(&producer);
    assert_eq!(p["role"], "producer");
    assert_eq!(p["slot_exists"], true);
    assert_eq!(p["copy"], "done");
    assert_eq!(p["replicas"], 3);
    let published: xdb::model::Lsn = p["published_lsn"].as_str().unwrap().parse().unwrap();
    let confirmed: xdb::model::Lsn = p["slot_confirmed_flush_lsn"].as_str().unwrap().parse().unwrap();
    assert!(published >= confirmed, "the slot is confirmed only up to what the log holds: {p}");
    assert!(p["lag_bytes"].is_u64(), "{p}");
    let text = support::text(&xdb(&producer, &["status"]));
    assert!(text.contains("producer of log stream OPS") && text.contains("published       up to LSN"), "{text}");

    let c = json(&consumer);
    assert_eq!(c["role"], "consumer");
    let last = c["last_change_sequence"].as_u64().unwrap();
    let applied = c["applied_sequence"].as_u64().unwrap();
    assert!(applied < last && c["lag_messages"].as_u64() == Some(last - applied), "behind before its sync: {c}");
    ok(&xdb(&consumer, &["sync", "--until-caught-up"]));
    let c = json(&consumer);
    assert_eq!(c["lag_messages"], 0, "{c}");
    assert_eq!(c["tables"][0]["copy"], "done");
    let text = support::text(&xdb(&consumer, &["status"]));
    assert!(text.contains("consumer of log stream OPS") && text.contains("0 messages"), "{text}");
    let v = xdb(&consumer, &["validate"]);
    assert!(v.status.success(), "validate: {}", support::text(&v));

    for plan in [&producer, &consumer] {
        let r = xdb(plan, &["cutover", "--yes"]);
        let t = support::text(&r);
        assert_eq!(r.status.code(), Some(2), "{t}");
        assert!(t.contains("OPS") && t.contains("--until-caught-up") && t.contains("xdb validate"), "{t}");
    }

    // A consumer's cleanup: its state on the target only.
    let r = xdb(&consumer, &["cleanup", "--yes", "--drop-stream"]);
    assert!(!r.status.success() && support::text(&r).contains("producer's plan"), "{}", support::text(&r));
    let r = xdb(&consumer, &["cleanup", "--yes"]);
    let t = support::text(&r);
    assert!(r.status.success() && t.contains("position (stream sequence)"), "{t}");
    let c = json(&consumer);
    assert!(c["applied_sequence"].is_null(), "{c}");
    let pg = db.super_client().await;
    let slot = format!("{}_slot", db.name);
    let slot_sql = "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1";
    let n: i64 = pg.query_one(slot_sql, &[&slot]).await.unwrap().get(0);
    assert_eq!(n, 1, "the producer's slot is not a consumer's to drop");

    // The producer's: slot and publication; the stream only when asked.
    let dry = support::text(&xdb(&producer, &["cleanup", "--dry-run"]));
    assert!(dry.contains("drop replication slot") && dry.contains("keep NATS stream OPS"), "{dry}");
    ok(&xdb(&producer, &["cleanup", "--yes", "--drop-stream"]));
    let n: i64 = pg.query_one(slot_sql, &[&slot]).await.unwrap().get(0);
    assert_eq!(n, 0);
    let publications: i64 = pg
        .query_one("SELECT count(*) FROM pg_publication WHERE pubname = $1", &[&format!("{}_pub", db.name)])
        .await
        .unwrap()
        .get(0);
    assert_eq!(publications, 0);
    let js = async_nats::jetstream::new(cluster.client().await.unwrap());
    assert!(js.get_stream("OPS").await.is_err(), "the stream is deleted");
    let again = support::text(&xdb(&producer, &["cleanup", "--yes"]));
    assert!(again.contains("nothing to clean up"), "{again}");
}

/// A consumer under a steady trickle of small transactions applies each
/// within the plan's `apply.max_batch_delay_ms`, not once `max_batch_rows`
/// have piled up (a batch waits for more only as long as the direct path's
/// does): the commit-to-visible time of probe rows stays well under the
/// time the trickle takes to fill a batch (5000 rows at a few hundred a
/// second: many seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_consumer_applies_a_steady_trickle_without_waiting_for_a_full_batch() {
    let cluster = NatsCluster::start().await;
    let db = PgDb::create("xdb_log_trickle").await;
    db.exec("CREATE TABLE t (id bigint PRIMARY KEY, v int); ALTER TABLE t OWNER TO xdb_repl;").await;
    let producer = log_plan(&db, &cluster, "stream=TRICKLE&replicas=3&schemas=false", "public.t");
    let lite = Target::sqlite("xdb_log_trickle_lite");
    // The default batch size (5000 rows).
    let consumer = PlanFile::new(&format!(
        "name: logtest\nsource:\n  url: {}?stream=TRICKLE\n  validate_url: {}\n  slot: to_lite\n\
         target:\n  url: {}\ntables: [public.t]\n",
        cluster.url(),
        db.repl_url(),
        lite.url()
    ));
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    let mut p = spawn_sync(&producer);
    let mut c = spawn_consumer(&consumer);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Three writers: no 50 ms without a commit, so nothing but the batch
    // delay closes a batch before it is full.
    let trickle: Vec<_> = (1..=3i64)
        .map(|w| {
            let (url, stop) = (db.super_url(), stop.clone());
            tokio::spawn(async move {
                let pg = support::pg_connect(&url).await;
                let mut id = w * 10_000_000;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    id += 1;
                    pg.execute("INSERT INTO t VALUES ($1, 0)", &[&id]).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    let pg = db.super_client().await;
    let mut took = Vec::new();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 1..=6i64 {
        pg.execute("INSERT INTO t VALUES ($1, 1)", &[&i]).await.unwrap();
        let t0 = std::time::Instant::now();
        support::wait_until("the probe row on the target", Duration::from_secs(60), || {
            let lite = &lite;
            async move { lite.count(&format!("t WHERE id = {i}")).await == 1 }
        })
        .await;
        took.push(t0.elapsed().as_millis());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in trickle {
        t.await.unwrap();
    }
    kill9(&mut p);
    kill9(&mut c);
    took.sort();
    eprintln!("commit-to-visible under a trickle, ms: {took:?}");
    assert!(took[took.len() / 2] < 1500, "commit-to-visible under a trickle, ms: {took:?}");
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    catch_up_and_validate(std::slice::from_ref(&consumer));
}

/// A column added with a default and renamed on the source before the
/// producer read the ALTER (here: the producer was not running): the
/// catalog no longer knows its NOT NULL and default, the event says so, and
/// the consumer stops naming the column instead of adding it without its
/// default (rows that existed would get NULL); once the user added it on
/// the target, the consumer follows the rename and ends equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_a_column_renamed_before_the_producer_read_its_add_stops_the_consumer() {
    let cluster = NatsCluster::start().await;
    let db = PgDb::create("xdb_log_ddl_late").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         INSERT INTO t SELECT g, g FROM generate_series(1, 50) g;
         ALTER TABLE t OWNER TO xdb_repl;",
    )
    .await;
    let producer = log_plan(&db, &cluster, "stream=LATE&replicas=3", "public.t");
    let maria = Target::Mysql(MyDb::create("xdb_log_ddl_late_my").await);
    let consumer = consumer_plan(&db, &cluster, "LATE", "to_maria", &maria, "public.t");
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    ok(&xdb(&consumer, &["sync", "--until-caught-up"]));
    // Four transactions (one exec of several statements is one).
    for sql in [
        "ALTER TABLE t ADD COLUMN tag text NOT NULL DEFAULT 'x'",
        "INSERT INTO t (id, v) VALUES (51, 51)",
        "ALTER TABLE t RENAME COLUMN tag TO label",
        "UPDATE t SET v = 0 WHERE id = 1",
    ] {
        db.exec(sql).await;
    }
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    let msgs = cluster.messages("LATE").await;
    let unknown: Vec<&Value> = msgs
        .iter()
        .filter(|(s, _, _)| s.contains(".xdb_schema."))
        .map(|(_, _, v)| &v["xdb"]["catalog_unknown"])
        .collect();
    assert_eq!(unknown.len(), 3, "CREATE, ALTER (tag), ALTER (label)");
    assert_eq!(unknown[1], &serde_json::json!(["tag"]));
    let r = xdb(&consumer, &["sync", "--until-caught-up"]);
    let out = support::text(&r);
    assert!(!r.status.success() && out.contains("column tag was added") && out.contains("public.t"), "{out}");
    maria.exec("ALTER TABLE t ADD COLUMN tag text NOT NULL DEFAULT 'x'").await;
    catch_up_and_validate(std::slice::from_ref(&consumer));
}

/// The shape a consumer starts from is the one its next row was written
/// with (invariant *schema drift through the log*): a consumer whose
/// position is before the copy's `CREATE` events (it applied only the
/// copy's start marker when it was killed) starts from those shapes, not
/// from the source catalog's current one, which has columns added since
/// (once taken as "flag was dropped on the source" when the copy's shape
/// arrived, with a DROP COLUMN as the advice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_before_the_copys_shapes_starts_from_them() {
    let (cluster, db, producer, _lite, _consumer) = one_table_to_sqlite("xdb_log_early", "EARLY", "", 20).await;
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    db.exec("ALTER TABLE t ADD COLUMN flag int NOT NULL DEFAULT 7; INSERT INTO t (id, v) VALUES (21, 'v21');").await;
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    let url = xdb::plan::SecretUrl::new(format!("{}?stream=EARLY", cluster.url()));
    let target = xdb::nats::NatsTarget::parse(&url, "logtest").unwrap();
    let names = |after: u64| {
        let target = &target;
        async move {
            let shapes = xdb::source::nats::shapes::shapes_at(target, after).await.unwrap();
            let p = shapes.values().next().unwrap_or_else(|| panic!("no shape at {after}"));
            p.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
        }
    };
    // Sequence 1 is the copy's start marker, 0 is "nothing applied".
    assert_eq!(names(1).await, ["id", "v"], "after the start marker: the copy's shape");
    assert_eq!(names(0).await, ["id", "v"], "from the start: the copy's shape");
    let last = cluster.messages("EARLY").await.len() as u64;
    assert_eq!(names(last).await, ["id", "v", "flag"], "at the end: the shape after the ALTER");
}

/// A producer killed inside a transaction and not restarted leaves the
/// log's tail in the middle of it: the consumer's `--until-caught-up`
/// applies every whole transaction and ends (the unfinished one stays
/// unapplied) instead of waiting forever for its END; once the producer
/// has run again, the consumer applies it whole and the target is equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_caught_up_ends_before_a_transaction_the_producer_left_unfinished() {
    let (cluster, db, producer, lite, consumer) =
        one_table_to_sqlite("xdb_log_halftx", "HALF", "&schemas=false", 10).await;
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    db.exec("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(11, 200010) g;").await;
    let mut p = spawn_sync(&producer);
    let before = cluster.messages("HALF").await.len() as u64;
    let begun = || {
        let cluster = &cluster;
        async move {
            let js = async_nats::jetstream::new(cluster.client().await.unwrap());
            let mut s = js.get_stream("HALF").await.unwrap();
            s.info().await.map(|i| i.state.messages > before + 5000).unwrap_or(false)
        }
    };
    support::wait_until("the big transaction partly in the log", Duration::from_secs(120), begun).await;
    kill9(&mut p);
    let msgs = cluster.messages("HALF").await;
    let ends = |m: &[(String, String, Value)]| m.iter().filter(|(_, id, _)| id.contains(":end:")).count();
    assert_eq!(ends(&msgs[before as usize..]), 0, "the kill came after the END: make the insert larger");
    let mut c = support::xdb_command()
        .args(["sync", "--plan", consumer.path.to_str().unwrap(), "--until-caught-up"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(120) {
            kill9(&mut c);
            panic!("the consumer still waits for the END of a transaction the producer never finished");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "consumer: {status}");
    let rows: i64 = match &lite {
        Target::Sqlite(path) => {
            rusqlite::Connection::open(path).unwrap().query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap()
        }
        _ => unreachable!(),
    };
    assert_eq!(rows, 10, "only whole transactions are applied");
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    catch_up_and_validate(std::slice::from_ref(&consumer));
}

/// The application schema of `app_schema.rs` (domains, one with a
/// non-ASCII name, an enum, arrays, tsvector, bytea, generated columns, a
/// partitioned table with a composite key, foreign keys) through the log:
/// copied into it, then a write load streamed while consumers into MariaDB
/// and SQLite apply it; each ends equal to the source by `xdb validate`
/// (every column, the generated ones included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_schema_through_the_log_into_mariadb_and_sqlite_then_validate() {
    use crate::app_schema::{load_step, APP, TABLES};
    let cluster = NatsCluster::start().await;
    let db = PgDb::create("xdb_log_app").await;
    db.exec(APP).await;
    let producer = log_plan(&db, &cluster, "stream=APP&replicas=3", TABLES);
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    let targets = [
        ("to_maria", Target::Mysql(MyDb::create("xdb_log_app_my").await)),
        ("to_lite", Target::sqlite("xdb_log_app_lite")),
    ];
    let consumers: Vec<PlanFile> =
        targets.iter().map(|(slot, t)| consumer_plan(&db, &cluster, "APP", slot, t, TABLES)).collect();
    let mut p = spawn_sync(&producer);
    let mut running: Vec<std::process::Child> = consumers.iter().map(spawn_consumer).collect();
    let client = db.super_client().await;
    for i in 1..=120 {
        client.batch_execute(&load_step(i)).await.unwrap();
    }
    kill9(&mut p);
    for c in &mut running {
        kill9(c);
    }
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    catch_up_and_validate(&consumers);
}

/// Tables without a primary key through the log: one with REPLICA
/// IDENTITY FULL holding duplicate rows (an update or delete of one of two
/// equal rows changes one row on the consumer's target, as on the source),
/// and one keyed by a unique index (REPLICA IDENTITY USING INDEX). Both end
/// equal to the source by `xdb validate` on MariaDB and SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_and_unique_index_tables_through_the_log_then_validate() {
    let cluster = NatsCluster::start().await;
    let db = PgDb::create("xdb_log_keyless").await;
    db.exec(support::KEYLESS_TABLES).await;
    let tables = "public.visits, public.codes";
    let producer = log_plan(&db, &cluster, "stream=KEYLESS&replicas=3", tables);
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    let targets = [
        ("to_maria", Target::Mysql(MyDb::create("xdb_log_keyless_my").await)),
        ("to_lite", Target::sqlite("xdb_log_keyless_lite")),
    ];
    let consumers: Vec<PlanFile> =
        targets.iter().map(|(slot, t)| consumer_plan(&db, &cluster, "KEYLESS", slot, t, tables)).collect();
    for c in &consumers {
        ok(&xdb(c, &["sync", "--until-caught-up"]));
    }
    db.exec(
        "UPDATE visits SET n = 5 WHERE ctid = (SELECT min(ctid) FROM visits WHERE page = 'a');
         INSERT INTO visits VALUES ('c', NULL, '2024-02-02'), ('c', NULL, '2024-02-02');
         DELETE FROM visits WHERE ctid = (SELECT max(ctid) FROM visits WHERE page = 'c');
         UPDATE codes SET code = 'z', label = 'zed' WHERE code = 'x';
         DELETE FROM codes WHERE code = 'y';
         INSERT INTO codes VALUES ('y', 'again');",
    )
    .await;
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    catch_up_and_validate(&consumers);
}

/// Edge values of every common type through the log — the copy's `op: r`
/// events (row 1) and a streamed change (row 2, committed in another time
/// zone) — land identical on MariaDB, SQLite and PostgreSQL consumers, and
/// equal to the source by `xdb validate`: the Debezium encoding loses no
/// precision, time zone, JSON spelling or byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_values_through_the_log_land_as_the_direct_path_lands_them() {
    let cluster = NatsCluster::start().await;
    let db = PgDb::create("xdb_log_values").await;
    support::edge_values::create(&db).await;
    let producer = log_plan(&db, &cluster, "stream=VALUES&replicas=3", "public.v");
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    support::edge_values::insert(&db, 2, "Asia/Kolkata").await;
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    let targets = [
        ("to_maria", Target::Mysql(MyDb::create("xdb_log_values_my").await)),
        ("to_lite", Target::sqlite("xdb_log_values_lite")),
        ("to_pg", Target::Postgres(PgDb::create("xdb_log_values_pg").await)),
    ];
    for (slot, target) in &targets {
        let consumer = consumer_plan(&db, &cluster, "VALUES", slot, target, "public.v");
        ok(&xdb(&consumer, &["sync", "--until-caught-up"]));
        let rows = support::edge_values::rows_on(target).await;
        assert_eq!(rows.len(), 2, "{slot}");
        assert_eq!(rows[0], rows[1], "{slot}: the copy's event (row 1) and the change's (row 2) differ");
        let v = xdb(&consumer, &["validate"]);
        assert!(v.status.success(), "{slot}: validate: {}", support::text(&v));
    }
}

/// A column added and filled after the producer read the table's columns
/// but before the copy's snapshot (the slot's creation waits for that
/// ALTER to commit): the copy into the log would publish the rows without
/// it, and the consumer would add it empty. The producer notices at the
/// snapshot and starts the copy again with the new shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_changed_while_the_log_copy_starts_are_read_again() {
    let (cluster, db, producer, _lite, consumer) = one_table_to_sqlite("xdb_log_shape", "SHAPE", "", 1000).await;
    // Made beforehand: creating it would wait for the ALTER's lock.
    db.exec(&format!("CREATE PUBLICATION {}_pub FOR TABLE t", db.name)).await;
    // An ALTER in progress (it holds a transaction id): the slot's creation
    // waits for it, after the producer has read the columns.
    let err = support::sync_across_an_alter_at_the_snapshot(
        &db,
        &producer,
        "ALTER TABLE t ADD COLUMN flag int; UPDATE t SET flag = id * 3",
    )
    .await;
    assert!(err.contains("changed on the source (ALTER TABLE) while the copy was starting"), "said: {err}");
    let msgs = cluster.messages("SHAPE").await;
    let create = msgs.iter().find(|(s, _, _)| s == "logtest.xdb_schema.public.t").expect("the copy's shape");
    let cols = create.2["tableChanges"][0]["table"]["columns"].as_array().unwrap();
    let names: Vec<&str> = cols.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["id", "v", "flag"], "the copy's shape is the snapshot's");
    catch_up_and_validate(std::slice::from_ref(&consumer));
}

/// Two consumers of one position (the same plan started twice, or a
/// restart while the old process still lives) would apply the same
/// messages twice: the second stops at once with the reason, `cleanup`
/// refuses to delete a running consumer's position, and once the first
/// has gone both work — on every kind of target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_consumer_of_one_position_is_refused_while_the_first_runs() {
    let (cluster, db, producer, lite, _) = one_table_to_sqlite("xdb_log_two", "TWO", "", 100).await;
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    let targets = [
        ("to_lite", lite),
        ("to_maria", Target::Mysql(MyDb::create("xdb_log_two_my").await)),
        ("to_pg", Target::Postgres(PgDb::create("xdb_log_two_pg").await)),
    ];
    for (n, (slot, target)) in targets.iter().enumerate() {
        let consumer = consumer_plan(&db, &cluster, "TWO", slot, target, "public.t");
        ok(&xdb(&consumer, &["sync", "--until-caught-up"]));
        let mut first = spawn_consumer(&consumer);
        // A row it applies: from then on it holds the lock.
        let id = 1000 + n as i32;
        db.exec(&format!("INSERT INTO t VALUES ({id}, 'while the first runs')")).await;
        ok(&xdb(&producer, &["sync", "--until-caught-up"]));
        support::wait_until("the first consumer's row", Duration::from_secs(60), || async move {
            target.count(&format!("t WHERE id = {id}")).await == 1
        })
        .await;
        let second = xdb(&consumer, &["sync", "--until-caught-up"]);
        let out = support::text(&second);
        assert!(!second.status.success(), "{slot}: {out}");
        assert!(out.contains("another `xdb sync` is applying the log") && out.contains(slot), "{slot}: {out}");
        let cleanup = xdb(&consumer, &["cleanup", "--yes"]);
        let out = support::text(&cleanup);
        assert!(!cleanup.status.success() && out.contains("stop it first"), "{slot}: {out}");
        let status = support::text(&xdb(&consumer, &["status", "--format", "json"]));
        assert!(status.contains("\"applier_running\": true"), "{slot}: {status}");
        // The same slot name into another database of the same server is
        // another position (MySQL's named locks are server-wide).
        let other = match target {
            Target::Mysql(_) => Target::Mysql(MyDb::create("xdb_log_two_my2").await),
            Target::Postgres(_) => Target::Postgres(PgDb::create("xdb_log_two_pg2").await),
            _ => Target::sqlite("xdb_log_two_lite2"),
        };
        ok(&xdb(&consumer_plan(&db, &cluster, "TWO", slot, &other, "public.t"), &["sync", "--until-caught-up"]));
        kill9(&mut first);
        ok(&xdb(&consumer, &["sync", "--until-caught-up"]));
        let status = support::text(&xdb(&consumer, &["status"]));
        assert!(status.contains("applier         not running"), "{slot}: {status}");
        let v = xdb(&consumer, &["validate"]);
        assert!(v.status.success(), "{slot}: validate: {}", support::text(&v));
        ok(&xdb(&consumer, &["cleanup", "--yes"]));
    }
}

/// A framework migration through the log: rows, ADD COLUMN, RENAME COLUMN,
/// rows, in one source transaction, after the producer's session already
/// described the table. The producer decodes the rows before the ALTER with
/// their own shape, the consumer applies them under the new name; then
/// `xdb validate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_adding_and_renaming_in_one_transaction_goes_through_the_log() {
    let (_cluster, db, producer, _lite, consumer) = one_table_to_sqlite("xdb_log_mig", "MIG", "", 20).await;
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    ok(&xdb(&consumer, &["sync", "--until-caught-up"]));
    db.exec("UPDATE t SET v = 'before' WHERE id = 1").await;
    db.exec(
        "BEGIN;
         INSERT INTO t VALUES (100, 'old shape');
         UPDATE t SET v = 'touched' WHERE id = 2;
         ALTER TABLE t ADD COLUMN flag int NOT NULL DEFAULT 7;
         ALTER TABLE t RENAME COLUMN v TO label;
         INSERT INTO t (id, label, flag) VALUES (101, 'new shape', 9);
         UPDATE t SET label = label || '!', flag = 8 WHERE id = 2;
         COMMIT;",
    )
    .await;
    ok(&xdb(&producer, &["sync", "--until-caught-up"]));
    catch_up_and_validate(std::slice::from_ref(&consumer));
}

/// `mapping.generated: source` before PostgreSQL 18: only `sync` into a
/// database recomputes the stored generated columns, so a log would carry
/// rows without them. `sync` into a log refuses, naming the column and the
/// ways out, before it publishes anything. (The decision comes from the
/// column's own `CarriedGenerated`, read from the catalog with the plan's
/// setting: nothing process-wide.)
#[tokio::test]
async fn a_log_refuses_generated_columns_its_source_cannot_publish() {
    let cluster = NatsCluster::start().await;
    let pg = support::OwnPostgres::start_from(&crate::versions::bindir(13));
    let c = support::pg_connect(&pg.url()).await;
    c.batch_execute(
        "CREATE TABLE trips (id int PRIMARY KEY, length int NOT NULL, \
           hours numeric(6,2) GENERATED ALWAYS AS (round(length / 60.0, 2)) STORED); \
         INSERT INTO trips (id, length) SELECT g, g * 7 FROM generate_series(1, 20) g",
    )
    .await
    .unwrap();
    let plan = |mapping: &str| {
        PlanFile::new(&format!(
            "name: genlog\nsource:\n  url: {}\n  slot: genlog\n  publication: genlog\n  heartbeat_interval_secs: 1\n\
             target:\n  url: {}?stream=GENLOG&replicas=1\ntables: [trips]\n{mapping}",
            pg.url(),
            cluster.url()
        ))
    };
    let refused = xdb(&plan("mapping:\n  generated: source\n"), &["sync", "--until-caught-up"]);
    let text = support::text(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("hours is a stored generated column") && text.contains("Sync into a database"), "{text}");
    let published = cluster.messages("GENLOG").await;
    assert!(published.iter().all(|(subject, _, _)| !subject.contains("trips")), "{published:?}");
}

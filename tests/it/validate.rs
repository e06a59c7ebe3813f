//! `xdb validate` end to end: a table copied with `xdb snapshot` to each
//! target kind, then differences planted on the target by hand. Each must
//! be found with its exact key and column; equivalent forms (JSON key order
//! and spacing, the same instant under another time zone) must not count;
//! `--repair` must make the next run report equality. Also: validation
//! while `xdb sync` applies a live write load reports equality.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as J;

use crate::support::{self, plan, xdb, MyDb, PgDb, PlanFile, Target};

const SOURCE: &str = "
    CREATE TABLE vt (id bigint PRIMARY KEY, amount numeric(12,4), at timestamptz, doc jsonb, data bytea, note text);
    ALTER TABLE vt OWNER TO xdb_repl;";

/// Rows `from..=to`: row g has amount g*1.0001, at 2024-01-01 UTC + g minutes + g µs,
/// doc {"g": g, "tags": ["a", g%3], "nested": {"x": g}}, data md5(g) bytes.
async fn fill(db: &PgDb, from: i64, to: i64) {
    db.exec(&format!(
        "INSERT INTO vt SELECT g, g * 1.0001, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 minute' \
           + g * interval '1 microsecond', jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 3), \
           'nested', jsonb_build_object('x', g)), decode(md5(g::text), 'hex'), 'row ' || g \
         FROM generate_series({from}, {to}) g"
    ))
    .await;
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn validate_json(plan: &PlanFile, extra: &[&str]) -> (i32, J, String) {
    let mut args = vec!["validate", "--format", "json"];
    args.extend(extra);
    if !extra.contains(&"--chunk-rows") {
        args.extend(["--chunk-rows", "1000"]);
    }
    let out = xdb(plan, &args);
    let text = support::text(&out);
    let json: J = serde_json::from_slice(&out.stdout).unwrap_or(J::Null);
    (code(&out), json, text)
}

fn strs(v: &J) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// (key, [columns]) of every changed row in a table report.
fn changed(table: &J) -> Vec<(String, Vec<String>)> {
    let mut v: Vec<(String, Vec<String>)> = table["changed"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    let cols = c["columns"]
                        .as_array()
                        .map(|cs| cs.iter().filter_map(|x| x["column"].as_str().map(String::from)).collect())
                        .unwrap_or_default();
                    (c["key"].as_str().unwrap_or("").to_string(), cols)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

async fn planted_differences(target: Target) {
    let db = PgDb::create("xdb_val").await;
    db.exec(SOURCE).await;
    fill(&db, 1, 2500).await;
    db.exec("ANALYZE vt").await;
    let plan = plan(&db, &target, "vt", "");
    let out = xdb(&plan, &["snapshot"]);
    assert!(out.status.success(), "snapshot: {}", support::text(&out));

    // A faithful copy is equal.
    let (c, json, text) = validate_json(&plan, &[]);
    assert_eq!(c, 0, "fresh copy validates equal: {text}");
    assert_eq!(json["tables"][0]["source_rows"], 2500);
    assert_eq!(json["tables"][0]["target_rows"], 2500);
    assert_eq!(json["tables"][0]["chunks"], 3, "{text}");

    // The source bytes of row 50, with the last byte changed.
    let src =
        crate::support::pg_rows(&db.super_client().await, "SELECT encode(data, 'hex') FROM vt WHERE id = 50").await;
    let mut hex = src[0][0].clone();
    let last = if hex.ends_with('0') { '1' } else { '0' };
    hex.pop();
    hex.push(last);

    let (ts_plus_1us, bytes, amount) = match &target {
        Target::Mysql(_) => (
            "UPDATE vt SET at = at + INTERVAL 1 MICROSECOND WHERE id = 20".to_string(),
            format!("UPDATE vt SET data = X'{hex}' WHERE id = 50"),
            "UPDATE vt SET amount = amount + 0.0001 WHERE id = 30".to_string(),
        ),
        Target::Sqlite(_) => (
            "UPDATE vt SET at = '2024-01-01T00:20:00.000021Z' WHERE id = 20".to_string(),
            format!("UPDATE vt SET data = X'{hex}' WHERE id = 50"),
            "UPDATE vt SET amount = '30.0031' WHERE id = 30".to_string(),
        ),
        Target::Postgres(_) => (
            "UPDATE vt SET at = at + interval '1 microsecond' WHERE id = 20".to_string(),
            format!("UPDATE vt SET data = '\\x{hex}'::bytea WHERE id = 50"),
            "UPDATE vt SET amount = amount + 0.0001 WHERE id = 30".to_string(),
        ),
    };
    let sqls = [
        "DELETE FROM vt WHERE id = 10".to_string(),
        "INSERT INTO vt (id, amount, at, doc, data, note) SELECT 5000, amount, at, doc, data, note FROM vt WHERE id = 11"
            .to_string(),
        ts_plus_1us,
        amount,
        r#"UPDATE vt SET doc = '{"g": 40, "tags": ["a", 1], "nested": {"x": 41}}' WHERE id = 40"#.to_string(),
        bytes,
        // Not differences: the same JSON with other key order and spacing …
        r#"UPDATE vt SET doc = '{ "nested":{"x":60},"tags" : ["a",0],   "g":60 }' WHERE id = 60"#.to_string(),
    ];
    for s in &sqls {
        target.exec(s).await;
    }
    // … and the same instant written under another time zone.
    match &target {
        Target::Sqlite(_) => target.exec("UPDATE vt SET at = '2024-01-01 03:10:00.00007+02:00' WHERE id = 70").await,
        Target::Postgres(t) => t.exec(&format!("ALTER DATABASE {} SET timezone TO 'Asia/Kolkata'", t.name)).await,
        // DATETIME holds no zone: xdb writes UTC, and reads it back as UTC.
        Target::Mysql(_) => {}
    }

    let (c, json, text) = validate_json(&plan, &[]);
    assert_eq!(c, 1, "differences give exit 1: {text}");
    let t = &json["tables"][0];
    assert_eq!(t["status"], "differs");
    assert_eq!(t["source_rows"], 2500);
    assert_eq!(t["target_rows"], 2500);
    assert_eq!(strs(&t["missing"]), vec!["id=10"], "{text}");
    assert_eq!(strs(&t["extra"]), vec!["id=5000"], "{text}");
    let ch = changed(t);
    let expect: Vec<(String, Vec<String>)> =
        [("id=20", "at"), ("id=30", "amount"), ("id=40", "doc"), ("id=50", "data")]
            .iter()
            .map(|(k, c)| (k.to_string(), vec![c.to_string()]))
            .collect();
    assert_eq!(ch, expect, "exactly the planted changes, no false alarms: {text}");
    let at = &t["changed"].as_array().unwrap().iter().find(|c| c["key"] == "id=20").unwrap()["columns"][0];
    assert_eq!(at["source"], "'2024-01-01 00:20:00.00002+00'", "timestamps as the source writes them, in UTC");
    assert_eq!(at["target"], "'2024-01-01 00:20:00.000021+00'");
    let num = &t["changed"].as_array().unwrap().iter().find(|c| c["key"] == "id=30").unwrap()["columns"][0];
    assert_eq!((num["source"].as_str(), num["target"].as_str()), (Some("30.003"), Some("30.0031")));

    // The text form names the same things.
    let out = xdb(&plan, &["validate", "--chunk-rows", "1000"]);
    assert_eq!(code(&out), 1);
    let human = support::text(&out);
    for needle in ["DIFFERS", "missing on the target", "id=10", "extra on the target", "id=5000", "doc: source"] {
        assert!(human.contains(needle), "text report shows {needle:?}: {human}");
    }
    // Counts only: equal counts (one missing, one extra).
    let (c, _, text) = validate_json(&plan, &["--counts-only"]);
    assert_eq!(c, 0, "counts alone match: {text}");

    // Repair, then a fresh run is equal.
    let (c, json, text) = validate_json(&plan, &["--repair"]);
    assert_eq!(c, 0, "repair fixes everything: {text}");
    assert_eq!(json["tables"][0]["status"], "repaired", "{text}");
    assert_eq!(json["tables"][0]["repair"]["remaining"], 0, "{text}");
    let (c, json, text) = validate_json(&plan, &[]);
    assert_eq!(c, 0, "equal after repair: {text}");
    assert_eq!(json["tables"][0]["status"], "equal");

    // Could not validate: exit 2.
    let (c, _, text) = validate_json(&plan, &["--tables", "nope"]);
    assert_eq!(c, 2, "an unknown table cannot be validated: {text}");
}

#[tokio::test]
async fn validate_finds_planted_differences_on_sqlite() {
    planted_differences(Target::sqlite("xdb_val_sqlite")).await;
}

#[tokio::test]
async fn validate_finds_planted_differences_on_mariadb() {
    planted_differences(Target::Mysql(MyDb::create("xdb_val_my").await)).await;
}

#[tokio::test]
async fn validate_finds_planted_differences_on_postgres() {
    planted_differences(Target::Postgres(PgDb::create("xdb_val_pgt").await)).await;
}

/// Text and composite keys split into ranges that select the same rows on
/// both sides (byte order everywhere), including keys that sort differently
/// under a linguistic collation.
#[tokio::test]
async fn validate_composite_text_keys_on_mariadb() {
    let db = PgDb::create("xdb_val_txt").await;
    db.exec(
        "CREATE TABLE kv (a varchar(100), b int, v text, PRIMARY KEY (a, b)); ALTER TABLE kv OWNER TO xdb_repl;
         INSERT INTO kv SELECT (ARRAY['a','B','b','Ä','z',' x','a '])[1 + g % 7] || (g % 50), g, 'v' || g
           FROM generate_series(1, 3000) g;",
    )
    .await;
    let target = Target::Mysql(MyDb::create("xdb_val_txt").await);
    let plan = plan(&db, &target, "kv", "");
    let out = xdb(&plan, &["snapshot"]);
    assert!(out.status.success(), "snapshot: {}", support::text(&out));
    let (c, json, text) = validate_json(&plan, &["--chunk-rows", "250"]);
    assert_eq!(c, 0, "{text}");
    assert!(json["tables"][0]["chunks"].as_u64().unwrap() > 5, "{text}");
    target.exec("UPDATE kv SET v = 'changed' WHERE a = 'B1' AND b = 351").await;
    let (c, json, text) = validate_json(&plan, &["--chunk-rows", "250"]);
    assert_eq!(c, 1, "{text}");
    assert_eq!(changed(&json["tables"][0]), vec![("a='B1' AND b=351".to_string(), vec!["v".to_string()])], "{text}");
}

/// A partitioned table's key holds its partition column (a date here, after
/// the integer id of a city): it used to be compared as one range, the
/// whole table in memory on both sides when it differed. It is split on
/// the key's leading integer column, on every target, and a planted
/// change, missing row and extra row are each found.
#[tokio::test]
async fn validate_splits_a_partition_key_on_its_leading_integer_column() {
    for target in [
        Target::sqlite("xdb_val_part"),
        Target::Mysql(MyDb::create("xdb_val_part").await),
        Target::Postgres(PgDb::create("xdb_val_part_t").await),
    ] {
        let db = PgDb::create("xdb_val_part").await;
        db.exec(
            "CREATE TABLE measurements (city_id int NOT NULL, logdate date NOT NULL, peak int,
               PRIMARY KEY (city_id, logdate)) PARTITION BY RANGE (logdate);
             CREATE TABLE m2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
             CREATE TABLE m2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
             ALTER TABLE measurements OWNER TO xdb_repl; ALTER TABLE m2024 OWNER TO xdb_repl;
             ALTER TABLE m2025 OWNER TO xdb_repl;
             INSERT INTO measurements SELECT g % 40, DATE '2024-01-01' + g / 40, g FROM generate_series(0, 11999) g;",
        )
        .await;
        let plan = plan(&db, &target, "measurements", "");
        let out = xdb(&plan, &["snapshot"]);
        assert!(out.status.success(), "snapshot: {}", support::text(&out));
        let (c, json, text) = validate_json(&plan, &["--chunk-rows", "1000"]);
        assert_eq!(c, 0, "{text}");
        assert!(json["tables"][0]["chunks"].as_u64().unwrap() >= 10, "split on city_id: {text}");
        target
            .exec(
                "UPDATE measurements SET peak = -1 WHERE city_id = 7 AND logdate = '2024-03-01';
             DELETE FROM measurements WHERE city_id = 21 AND logdate = '2024-05-05';
             INSERT INTO measurements VALUES (39, '2025-12-31', 1);",
            )
            .await;
        let (c, json, text) = validate_json(&plan, &["--chunk-rows", "1000"]);
        assert_eq!(c, 1, "{text}");
        let t = &json["tables"][0];
        assert_eq!(
            changed(t),
            vec![("city_id=7 AND logdate='2024-03-01'".to_string(), vec!["peak".to_string()])],
            "{text}"
        );
        assert_eq!(strs(&t["missing"]), vec!["city_id=21 AND logdate='2024-05-05'".to_string()], "{text}");
        assert_eq!(strs(&t["extra"]), vec!["city_id=39 AND logdate='2025-12-31'".to_string()], "{text}");
    }
}

/// While `xdb sync` applies a steady write load, validation compares at
/// positions the target has applied and reports no false difference.
#[tokio::test]
async fn validate_during_live_sync_reports_equality() {
    let db = PgDb::create("xdb_val_live").await;
    db.exec(SOURCE).await;
    fill(&db, 1, 5000).await;
    let target = Target::Mysql(MyDb::create("xdb_val_live").await);
    let plan = plan(&db, &target, "vt", "apply:\n  max_batch_delay_ms: 20\n");
    let out = xdb(&plan, &["snapshot"]);
    assert!(out.status.success(), "snapshot: {}", support::text(&out));
    let mut sync = crate::support::xdb_command()
        .args(["sync", "--plan", plan.path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn xdb sync");

    // A writer: inserts, updates and deletes, a few transactions per 10 ms.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let url = db.super_url();
        tokio::spawn(async move {
            let c = support::pg_connect(&url).await;
            let mut n = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let id = 10_000 + n;
                let sql = format!(
                    "BEGIN; INSERT INTO vt SELECT {id}, 1.5, now(), '{{\"n\": {n}}}', '\\x00ff', 'live';
                     UPDATE vt SET amount = amount + 1, note = 'u{n}' WHERE id = {};
                     DELETE FROM vt WHERE id = {}; COMMIT;",
                    1 + (n * 37) % 5000,
                    10_000 + n / 2
                );
                c.batch_execute(&sql).await.expect("write");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            n
        })
    };
    // Let the stream start and the load run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    let (c, json, text) = tokio::task::spawn_blocking({
        let path = plan.path.clone();
        move || {
            let out = crate::support::xdb_command()
                .args(["validate", "--plan", path.to_str().unwrap(), "--format", "json", "--chunk-rows", "500"])
                .output()
                .expect("run validate");
            let json: J = serde_json::from_slice(&out.stdout).unwrap_or(J::Null);
            (code(&out), json, support::text(&out))
        }
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.await.unwrap();
    let _ = Command::new("kill").args(["-TERM", &sync.id().to_string()]).status();
    let _ = sync.wait();
    assert!(writes > 20, "the load ran ({writes} transactions)");
    assert_eq!(json["live_sync"], true, "the running sync was detected: {text}");
    assert_eq!(c, 0, "no false alarm under load ({:?}): {text}", started.elapsed());
}

/// Sparse integer keys make uneven ranges; a large differing range is
/// bisected down to small ones and the exact keys are still found.
#[tokio::test]
async fn validate_sparse_keys_bisects_large_ranges() {
    let db = PgDb::create("xdb_val_sparse").await;
    db.exec(
        "CREATE TABLE sp (id bigint PRIMARY KEY, v text); ALTER TABLE sp OWNER TO xdb_repl;
         INSERT INTO sp SELECT g, 'v' || g FROM generate_series(1, 100) g;
         INSERT INTO sp SELECT g, 'v' || g FROM generate_series(1000000, 1005000) g;",
    )
    .await;
    let target = Target::sqlite("xdb_val_sparse");
    let plan = plan(&db, &target, "sp", "");
    let out = xdb(&plan, &["snapshot"]);
    assert!(out.status.success(), "snapshot: {}", support::text(&out));
    target.exec("UPDATE sp SET v = 'x' WHERE id = 1004321; DELETE FROM sp WHERE id = 1000007").await;
    let (c, json, text) = validate_json(&plan, &[]);
    assert_eq!(c, 1, "{text}");
    let t = &json["tables"][0];
    assert_eq!(strs(&t["missing"]), vec!["id=1000007"], "{text}");
    assert_eq!(changed(t), vec![("id=1004321".to_string(), vec!["v".to_string()])], "{text}");
    assert_eq!(t["source_rows"], 5101);
    assert_eq!(t["target_rows"], 5100);
}

/// Many column types, each differing in one row of its own key range
/// (`--chunk-rows 10`: ten keys a range), so a server digest that missed a
/// difference would drop that row from the report.
const TYPED: &str = "
    CREATE TABLE typed (id bigint PRIMARY KEY, n numeric, n4 numeric(12,4), f8 float8, f4 real, ts timestamptz,
        t timestamp, d date, iv interval, jb jsonb, js json, ia int[], ta text[], b bytea, txt text,
        vc varchar(20), u uuid, bo bool, ip inet);
    ALTER TABLE typed OWNER TO xdb_repl;
    INSERT INTO typed SELECT g, g * 1.5, g * 1.0001, g * 0.1, g * 0.25, '2024-01-01 00:00:00+00'::timestamptz
        + g * interval '1 minute 1 microsecond', '2024-01-01'::timestamp + g * interval '1 second',
        '2024-01-01'::date + g, g * interval '1 hour', jsonb_build_object('g', g, 'a', jsonb_build_array(g, 'x')),
        json_build_object('g', g), ARRAY[g, g + 1, g + 2], ARRAY['a', 'b' || g],
        decode(md5(g::text), 'hex'), CASE WHEN g % 10 = 0 THEN '' ELSE 'café ' || g END, 'v' || g,
        md5(g::text)::uuid, g % 2 = 0, ('10.0.' || (g % 250) || '.1')::inet
      FROM generate_series(1, 3000) g;";

/// The report's findings, without timings (which differ from run to run).
fn findings(json: &J) -> J {
    let mut t = json["tables"][0].clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("seconds");
    }
    t
}

#[tokio::test]
async fn validate_server_digest_reports_every_difference_like_row_by_row() {
    let db = PgDb::create("xdb_val_sd").await;
    db.exec(TYPED).await;
    let tdb = PgDb::create("xdb_val_sdt").await;
    let target = Target::Postgres(tdb);
    let plan = plan(&db, &target, "typed", "");
    let out = xdb(&plan, &["snapshot"]);
    assert!(out.status.success(), "snapshot: {}", support::text(&out));
    let (c, json, text) = validate_json(&plan, &["--chunk-rows", "10"]);
    assert_eq!(c, 0, "a fresh copy is equal: {text}");
    assert_eq!(json["tables"][0]["chunks"], 300, "{text}");
    assert!(text.contains("ranges are digested on both servers first"), "same types: the servers digest: {text}");

    let Target::Postgres(t) = &target else { unreachable!() };
    // Each one in a range of its own: NULL vs empty string, trailing zeros,
    // one microsecond, a nested JSON value, an array element, NULL vs the
    // string 'NULL' in an array, one bytea byte, composed vs decomposed é,
    // a few float ulps, a trailing blank, a uuid, a bool, an inet, '1 day'
    // vs '24 hours', and JSON spacing (equal as JSON: the row-by-row path
    // decides, the server digest only sends the range there).
    t.exec(
        "UPDATE typed SET txt = NULL WHERE id = 10;
         UPDATE typed SET n = 30.00 WHERE id = 20;
         UPDATE typed SET ts = ts + interval '1 microsecond' WHERE id = 30;
         UPDATE typed SET jb = jsonb_set(jb, '{a,1}', '\"y\"') WHERE id = 40;
         UPDATE typed SET ia[3] = 0 WHERE id = 50;
         UPDATE typed SET ta = ARRAY['a', NULL] WHERE id = 52;
         UPDATE typed SET ta = ARRAY['a', 'NULL'] WHERE id = 62;
         UPDATE typed SET b = overlay(b placing '\\x00'::bytea from 16) WHERE id = 70;
         UPDATE typed SET txt = 'cafe' || U&'\\0301' || ' 80' WHERE id = 80;
         UPDATE typed SET f8 = f8 * (1 + 4e-16) WHERE id = 90;
         UPDATE typed SET vc = vc || ' ' WHERE id = 110;
         UPDATE typed SET u = md5('other')::uuid WHERE id = 120;
         UPDATE typed SET bo = NOT bo WHERE id = 130;
         UPDATE typed SET ip = '10.0.140.2' WHERE id = 140;
         UPDATE typed SET iv = interval '6 days 24 hours' WHERE id = 150;
         UPDATE typed SET js = '{ \"g\" :  160 }' WHERE id = 160;
         UPDATE typed SET n4 = n4 + 0.0001 WHERE id = 170;
         UPDATE typed SET f4 = f4 + 1 WHERE id = 180;
         UPDATE typed SET d = d + 1, t = t + interval '1 microsecond' WHERE id = 190;
         DELETE FROM typed WHERE id = 200;
         INSERT INTO typed (id, n) VALUES (99999, 1);",
    )
    .await;

    let (c, fast, text) = validate_json(&plan, &["--chunk-rows", "10"]);
    assert_eq!(c, 1, "differences give exit 1: {text}");
    assert!(text.contains("ranges are digested on both servers first"), "{text}");
    let (c2, slow, text2) = validate_json(&plan, &["--chunk-rows", "10", "--row-by-row"]);
    assert_eq!(c2, 1, "{text2}");
    assert!(!text2.contains("digested on both servers"), "--row-by-row reads every row: {text2}");
    assert_eq!(findings(&fast), findings(&slow), "the server digest reports exactly what row by row reports");

    let t = &fast["tables"][0];
    assert_eq!(strs(&t["missing"]), vec!["id=200"], "{text}");
    assert_eq!(strs(&t["extra"]), vec!["id=99999"], "{text}");
    let keys: Vec<String> = changed(t).into_iter().map(|(k, _)| k).collect();
    for k in [10, 30, 40, 50, 52, 62, 70, 80, 90, 110, 120, 130, 140, 170, 180, 190] {
        assert!(keys.contains(&format!("id={k}")), "id={k} is reported changed: {keys:?}\n{text}");
    }
    assert!(!keys.contains(&"id=160".to_string()), "JSON spacing is no difference: {keys:?}");
    let empty = t["changed"].as_array().unwrap().iter().find(|c| c["key"] == "id=10").unwrap();
    assert_eq!(empty["columns"][0]["column"], "txt", "{text}");

    // A bounded range of 1000 keys differing is narrowed down on the servers
    // (halves digested there) before rows are read: still the same report.
    target
        .exec("UPDATE typed SET n4 = 0 WHERE id IN (1001, 1377, 1500, 2000); DELETE FROM typed WHERE id = 1700")
        .await;
    let (c, fast, text) = validate_json(&plan, &["--chunk-rows", "1000"]);
    assert_eq!(c, 1, "{text}");
    let (_, slow, _) = validate_json(&plan, &["--chunk-rows", "1000", "--row-by-row"]);
    assert_eq!(findings(&fast), findings(&slow), "bisected on the servers, the same report");
    let keys: Vec<String> = changed(&fast["tables"][0]).into_iter().map(|(k, _)| k).collect();
    for k in [1001, 1377, 1500, 2000] {
        assert!(keys.contains(&format!("id={k}")), "id={k}: {keys:?}");
    }
    assert_eq!(strs(&fast["tables"][0]["missing"]), vec!["id=200", "id=1700"], "{text}");
}

#[tokio::test]
async fn validate_differing_column_types_compare_row_by_row() {
    let db = PgDb::create("xdb_val_sdty").await;
    db.exec(
        "CREATE TABLE vt2 (id bigint PRIMARY KEY, qty int4, doc jsonb); ALTER TABLE vt2 OWNER TO xdb_repl;
         INSERT INTO vt2 SELECT g, g, jsonb_build_object('g', g) FROM generate_series(1, 500) g;",
    )
    .await;
    let tdb = PgDb::create("xdb_val_sdtyt").await;
    let target = Target::Postgres(tdb);
    let plan = plan(&db, &target, "vt2", "");
    let out = xdb(&plan, &["snapshot"]);
    assert!(out.status.success(), "snapshot: {}", support::text(&out));
    let Target::Postgres(t) = &target else { unreachable!() };
    // Another type on the target, and one value changed.
    t.exec("ALTER TABLE vt2 ALTER COLUMN qty TYPE int8; UPDATE vt2 SET qty = 0 WHERE id = 33").await;
    let (c, json, text) = validate_json(&plan, &["--chunk-rows", "100"]);
    assert_eq!(c, 1, "{text}");
    assert!(
        text.contains("ranges are compared row by row: column qty is integer on the source and bigint on the target"),
        "{text}"
    );
    assert_eq!(changed(&json["tables"][0]), vec![("id=33".to_string(), vec!["qty".to_string()])], "{text}");
    // json on the target where the source has jsonb: row by row too.
    t.exec(
        "UPDATE vt2 SET qty = 33 WHERE id = 33; ALTER TABLE vt2 ALTER COLUMN qty TYPE int4, ALTER COLUMN doc TYPE json",
    )
    .await;
    let (c, _, text) = validate_json(&plan, &["--chunk-rows", "100"]);
    assert_eq!(c, 0, "{text}");
    assert!(text.contains("column doc is jsonb on the source and json on the target"), "{text}");
}

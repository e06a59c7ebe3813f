//! The way back's guarantees on servers of the test's own (`OwnMariaDb`):
//! GTID positions recorded with every applied transaction and used where
//! file:offset means nothing any more (the file purged, a failover to a
//! replica), a MariaDB restart while `sync --reverse` runs, and a 200,000-row
//! target transaction in bounded memory. Each ends with `xdb validate`.

use std::io::Read;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::support::{self, kill9, spawn, wait_until, xdb, OwnMariaDb, PgDb, PlanFile};

const TABLE: &str = "
CREATE TABLE items (id bigserial PRIMARY KEY, n int NOT NULL, note text, at timestamptz);
ALTER TABLE items OWNER TO xdb_repl;
INSERT INTO items (n, note, at) SELECT g, 'seed ' || g, '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 s'
  FROM generate_series(1, 200) g;
";

fn out(o: &std::process::Output) -> String {
    support::text(o)
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", out(o));
}

/// The plan of `db` into the MariaDB at `target_url` (slot and publication
/// named after the source database, so a second plan on another target URL
/// is the same way back).
fn plan_to(db: &PgDb, target_url: &str) -> PlanFile {
    PlanFile::new(&format!(
        "name: rev\nsource:\n  url: {}\n  slot: {}_slot\n  publication: {}_pub\n  heartbeat_interval_secs: 1\n\
         target:\n  url: {target_url}\ntables: [public.items]\n",
        db.repl_url(),
        db.name,
        db.name
    ))
}

async fn my(url: &str) -> mysql_async::Conn {
    let mut c = mysql_async::Conn::from_url(url).await.expect("connect MariaDB");
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    c
}

/// `n` small target transactions: an insert, an update and (every third)
/// a delete, tagged with `tag`.
async fn writes(url: &str, tag: &str, n: usize) {
    let mut c = my(url).await;
    for i in 0..n {
        c.query_drop(format!("INSERT INTO items (n, note, at) VALUES ({i}, '{tag} {i} ✓', NOW(6))")).await.unwrap();
        c.query_drop(format!("UPDATE items SET note = CONCAT(note, ' ü') WHERE n = {i} AND id <= 200")).await.unwrap();
        if i % 3 == 0 {
            c.query_drop(format!("DELETE FROM items WHERE id = {}", 150 + i)).await.unwrap();
        }
    }
    let _ = c.disconnect().await;
}

async fn count_pg(db: &PgDb) -> i64 {
    db.super_client().await.query_one("SELECT count(*) FROM items", &[]).await.unwrap().get(0)
}

async fn count_my(url: &str) -> i64 {
    let mut c = my(url).await;
    let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM items").await.unwrap();
    n.unwrap()
}

async fn recorded_gtid(db: &PgDb) -> Option<String> {
    let c = db.super_client().await;
    c.query_opt("SELECT gtid FROM xdb.reverse_position WHERE slot LIKE '%.reverse'", &[])
        .await
        .unwrap()
        .and_then(|r| r.get::<_, Option<String>>(0))
}

/// Forward copy into `target`, then the switch point.
async fn moved_and_switched(db: &PgDb, plan: &PlanFile) {
    db.exec(TABLE).await;
    ok(&xdb(plan, &["sync", "--until-caught-up"]));
    ok(&xdb(plan, &["sync", "--reverse", "--set-start-here"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn gtid_positions_are_recorded_and_resume_after_the_binlog_is_purged() {
    let server = OwnMariaDb::start(11);
    let db = PgDb::create("xdb_rg_purge").await;
    let plan = plan_to(&db, &server.url());
    moved_and_switched(&db, &plan).await;

    writes(&server.url(), "first", 20).await;
    ok(&xdb(&plan, &["sync", "--reverse", "--until-caught-up"]));
    // The GTID of the last applied transaction is recorded with it.
    let mut c = my(&server.url()).await;
    let binlog_pos: Option<String> = c.query_first("SELECT @@GLOBAL.gtid_binlog_pos").await.unwrap();
    let gtid = recorded_gtid(&db).await.expect("a GTID position is recorded");
    assert!(gtid.starts_with("0-11-"), "{gtid}");
    assert_eq!(Some(gtid.clone()), binlog_pos, "the recorded GTID is the target's last transaction");
    let st = xdb(&plan, &["status", "--reverse"]);
    ok(&st);
    assert!(out(&st).contains(&format!("(GTID {gtid})")), "{}", out(&st));
    assert!(out(&st).contains("on server_id 11"), "{}", out(&st));

    // The applied position's file is purged; the new writes are in the next.
    let (old_file, _): (String, u64) = {
        let r: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
        (r.get(0).unwrap(), r.get(1).unwrap())
    };
    c.query_drop("FLUSH BINARY LOGS").await.unwrap();
    writes(&server.url(), "after the purge", 15).await;
    let r: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    let new_file: String = r.get(0).unwrap();
    // MariaDB keeps a file until InnoDB has flushed its transactions (the
    // binlog checkpoint, within a second or so here): purge until it goes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        c.query_drop(format!("PURGE BINARY LOGS TO '{new_file}'")).await.unwrap();
        let logs: Vec<String> = c
            .query("SHOW BINARY LOGS")
            .await
            .unwrap()
            .into_iter()
            .map(|r: mysql_async::Row| r.get(0).unwrap())
            .collect();
        if !logs.contains(&old_file) {
            break;
        }
        assert!(Instant::now() < deadline, "{old_file} was not purged: {logs:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let st = xdb(&plan, &["status", "--reverse"]);
    assert!(out(&st).contains("resumes at the GTID position"), "{}", out(&st));

    // Without the GTID the way back cannot resume, and says so.
    let src = db.super_client().await;
    src.execute("UPDATE xdb.reverse_position SET gtid = NULL", &[]).await.unwrap();
    let o = xdb(&plan, &["sync", "--reverse", "--until-caught-up"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains(&format!("no longer has binlog {old_file} (purged")), "{}", out(&o));
    assert!(out(&o).contains("no GTID position was recorded"), "{}", out(&o));
    src.execute("UPDATE xdb.reverse_position SET gtid = $1", &[&gtid]).await.unwrap();

    // Binlogs that expire before the way back catches up are warned about.
    c.query_drop("SET GLOBAL binlog_expire_logs_seconds = 4").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = xdb(&plan, &["status", "--reverse"]);
    assert!(out(&st).contains("WARNING: the way back is") && out(&st).contains("expire after 4 s"), "{}", out(&st));
    let ck = xdb(&plan, &["check", "--reverse"]);
    assert!(out(&ck).contains("binlogs expire after 4 s"), "{}", out(&ck));
    c.query_drop("SET GLOBAL binlog_expire_logs_seconds = 0").await.unwrap();

    // With it, the server finds the place: nothing missing, nothing twice.
    let o = xdb(&plan, &["sync", "--reverse", "--until-caught-up"]);
    ok(&o);
    assert!(out(&o).contains("resuming at the GTID position"), "{}", out(&o));
    assert_eq!(count_pg(&db).await, count_my(&server.url()).await);
    let binlog_pos: Option<String> = c.query_first("SELECT @@GLOBAL.gtid_binlog_pos").await.unwrap();
    assert_eq!(recorded_gtid(&db).await, binlog_pos);
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate after resuming by GTID: {}", out(&v));
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_failover_to_a_replica_the_way_back_resumes_by_gtid() {
    let primary = OwnMariaDb::start(21);
    let mut primary = primary;
    let replica = OwnMariaDb::start(22);
    replica.replicate_from(&primary);
    let db = PgDb::create("xdb_rg_failover").await;
    let plan = plan_to(&db, &primary.url());
    moved_and_switched(&db, &plan).await;

    writes(&primary.url(), "on the primary", 20).await;
    ok(&xdb(&plan, &["sync", "--reverse", "--until-caught-up"]));
    // More writes the way back has not read yet when the primary goes.
    writes(&primary.url(), "unread at the failover", 12).await;
    let want: Option<String> = my(&primary.url()).await.query_first("SELECT @@GLOBAL.gtid_binlog_pos").await.unwrap();
    let replica_url = replica.url();
    wait_until("the replica to catch up", Duration::from_secs(60), || {
        let (url, want) = (replica_url.clone(), want.clone());
        async move {
            let got: Option<String> = my(&url).await.query_first("SELECT @@GLOBAL.gtid_slave_pos").await.unwrap();
            got == want
        }
    })
    .await;
    primary.stop(true);
    replica.promote();
    writes(&replica.url(), "on the new primary", 10).await;

    // The same way back, now reading the replica.
    let plan = plan_to(&db, &replica.url());
    let st = xdb(&plan, &["status", "--reverse"]);
    assert!(out(&st).contains("read on another server (server_id 21)"), "{}", out(&st));
    let o = xdb(&plan, &["sync", "--reverse", "--until-caught-up"]);
    ok(&o);
    assert!(out(&o).contains("another server (a failover)"), "{}", out(&o));
    let src = db.super_client().await;
    let unread: i64 = src
        .query_one("SELECT count(*) FROM items WHERE note LIKE 'unread at the failover%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(unread, 12, "what the old primary had not sent came from the replica, once");
    let server: String = src.query_one("SELECT server FROM xdb.reverse_position", &[]).await.unwrap().get(0);
    assert_eq!(server, "server_id 22");
    assert_eq!(count_pg(&db).await, count_my(&replica.url()).await);
    // Later restarts on the new primary resume by file:offset again.
    writes(&replica.url(), "later", 5).await;
    ok(&xdb(&plan, &["sync", "--reverse", "--until-caught-up"]));
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate after the failover: {}", out(&v));
}

/// A write load that carries on through a server restart: a failed
/// statement reconnects and moves on (whether it committed is for the
/// comparison at the end to see).
async fn load_through_restarts(url: String, rounds: usize) -> usize {
    let mut failed = 0;
    let mut c: Option<mysql_async::Conn> = None;
    for i in 0..rounds {
        if c.is_none() {
            c = mysql_async::Conn::from_url(url.clone()).await.ok();
        }
        let Some(conn) = c.as_mut() else {
            failed += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let r = async {
            conn.query_drop("START TRANSACTION").await?;
            conn.query_drop(format!("INSERT INTO items (n, note, at) VALUES ({i}, 'load {i}', NOW(6))")).await?;
            conn.query_drop(format!("UPDATE items SET n = n + 1 WHERE id = {}", 1 + i % 200)).await?;
            if i % 5 == 0 {
                conn.query_drop(format!("DELETE FROM items WHERE id = {}", 201 + i / 5)).await?;
            }
            conn.query_drop("COMMIT").await
        }
        .await;
        if r.is_err() {
            failed += 1;
            c = None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    failed
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_restart_while_sync_reverse_runs_loses_and_doubles_nothing() {
    let mut server = OwnMariaDb::start(31);
    let db = PgDb::create("xdb_rg_restart").await;
    let plan = plan_to(&db, &server.url());
    moved_and_switched(&db, &plan).await;

    let mut child = spawn(&plan, &["sync", "--reverse"]);
    let load = tokio::spawn(load_through_restarts(server.url(), 600));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Killed hard, then a clean restart later: both mid-load.
    tokio::task::block_in_place(|| server.restart(true));
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| server.restart(false));
    let failed = load.await.unwrap();
    eprintln!("load statements that failed across the restarts: {failed}");
    let url = server.url();
    let deadline = Instant::now() + Duration::from_secs(120);
    while count_pg(&db).await != count_my(&url).await {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            kill9(&mut child);
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("the running sync --reverse did not catch up after the restarts: {err}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kill9(&mut child);
    ok(&xdb(&plan, &["sync", "--reverse", "--until-caught-up"]));
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate after the MariaDB restarts: {}", out(&v));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_200k_row_target_transaction_comes_back_in_bounded_memory() {
    let server = OwnMariaDb::start(41);
    let db = PgDb::create("xdb_rg_large").await;
    let plan = plan_to(&db, &server.url());
    moved_and_switched(&db, &plan).await;
    let mut c = my(&server.url()).await;
    c.query_drop("START TRANSACTION").await.unwrap();
    c.query_drop(
        "INSERT INTO items (id, n, note, at) SELECT 1000 + seq, seq, CONCAT('bulk ', seq, ' ', REPEAT('x', 200)), NOW(6) \
         FROM seq_1_to_200000",
    )
    .await
    .unwrap();
    c.query_drop("UPDATE items SET note = 'changed in the same transaction' WHERE id <= 200").await.unwrap();
    c.query_drop("COMMIT").await.unwrap();

    let mut child = spawn(&plan, &["sync", "--reverse", "--until-caught-up"]);
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (mut peak_kb, start) = (0u64, Instant::now());
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            if let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "sync --reverse did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let err = err.join().unwrap();
    assert!(status.success(), "{err}");
    let secs = start.elapsed().as_secs_f64();
    eprintln!("200,000-row target transaction: applied back in {secs:.1} s, peak RSS {} MiB", peak_kb / 1024);
    assert!(peak_kb > 0 && peak_kb < 150 * 1024, "peak RSS {peak_kb} kB for a 200,000-row transaction");
    assert_eq!(count_pg(&db).await, 200_200);
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate after the large transaction: {}", out(&v));
}

//! The source versions xdb supports, 12 through 18 (and 11, refused): for
//! each major, a server of the test's own (binaries from
//! `scripts/pg-versions.sh`, exported by `scripts/test.sh` as
//! `XDB_PG_MATRIX`), a small shop table copied, written to, streamed with
//! `sync --until-caught-up` and validated column by column. Below 14 pgoutput has neither logical messages nor streaming of
//! large transactions, so there a 100k-row transaction is streamed too, with
//! a small spill threshold and a bound on the peak memory of `xdb sync`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, ok, spawn, wait_until, xdb, MyDb, OwnPostgres, PlanFile, Target};

/// The bin directory of `major` from `XDB_PG_MATRIX` ("13=/path/bin 14=…");
/// a missing one is a failure, never a skip.
pub(crate) fn bindir(major: u32) -> PathBuf {
    let matrix = support::env("XDB_PG_MATRIX");
    let found = matrix.split_whitespace().find_map(|e| {
        let (m, dir) = e.split_once('=')?;
        (m == major.to_string()).then(|| PathBuf::from(dir))
    });
    found.unwrap_or_else(|| {
        panic!("XDB_PG_MATRIX ({matrix}) has no PostgreSQL {major}: run the tests with scripts/test.sh")
    })
}

const SHOP: &str = "
    CREATE TABLE orders (
        id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2), qty int,
        placed_at timestamptz, paid boolean, note text, doc jsonb,
        qty_twice int GENERATED ALWAYS AS (qty * 2) STORED);
    CREATE INDEX orders_customer ON orders (customer);";

fn fill(from: i64, to: i64) -> String {
    format!(
        "INSERT INTO orders SELECT g, 'customer ' || (g % 97), (g % 1000) + 0.25, g % 7,
           '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 minute', g % 2 = 0,
           CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || md5(g::text) END,
           jsonb_build_object('g', g, 'items', jsonb_build_array(g % 3, 'x'))
         FROM generate_series({from}, {to}) g"
    )
}

/// Peak resident memory of a running process, from /proc (Linux), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `xdb sync --until-caught-up` with a 1 MiB spill threshold; returns its
/// output and its peak memory in KiB.
fn sync_measured(plan: &PlanFile) -> (std::process::Output, u64) {
    let child = crate::support::xdb_command()
        .args(["sync", "--plan", plan.path.to_str().unwrap(), "--until-caught-up"])
        .env("XDB_SPILL_THRESHOLD_BYTES", (1 << 20).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xdb sync");
    let pid = child.id();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = {
        let peak = peak.clone();
        std::thread::spawn(move || {
            // VmHWM only grows; the last reading before exit is the peak.
            while let Some(kib) = peak_rss_kib(pid) {
                peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let out = child.wait_with_output().expect("wait for xdb sync");
    watcher.join().unwrap();
    (out, peak.load(std::sync::atomic::Ordering::Relaxed))
}

async fn source_version(major: u32) {
    let started = Instant::now();
    let pg = OwnPostgres::start_from(&bindir(major));
    let c = support::pg_connect(&pg.url()).await;
    let version: String = c.query_one("SHOW server_version", &[]).await.unwrap().get(0);
    assert!(version.starts_with(&format!("{major}.")), "PostgreSQL {major} expected, the server is {version}");
    c.batch_execute(SHOP).await.unwrap();
    c.batch_execute(&fill(1, 2000)).await.unwrap();
    let target = Target::Mysql(MyDb::create(&format!("xdb_pg{major}")).await);
    let plan = PlanFile::new(&format!(
        "name: pg{major}\nsource:\n  url: {}\n  slot: xdb_pg{major}\n  publication: xdb_pg{major}\n  \
         heartbeat_interval_secs: 1\ntarget:\n  url: {}\ntables: [orders]\n",
        pg.url(),
        target.url()
    ));

    let check = xdb(&plan, &["check"]);
    let text = support::text(&check);
    assert!(check.status.success(), "check on PostgreSQL {major}: {text}");
    assert!(text.contains(&format!("PostgreSQL {version}")), "check states the version {version}: {text}");

    ok(&xdb(&plan, &["snapshot"]));
    c.batch_execute(&fill(2001, 3000)).await.unwrap();
    c.batch_execute(
        "UPDATE orders SET amount = amount * 2, note = 'changed', doc = doc || '{\"u\": true}' WHERE id % 10 = 3;
         DELETE FROM orders WHERE id % 50 = 7;",
    )
    .await
    .unwrap();
    if major < 14 {
        // No protocol streaming below 14: the whole transaction arrives at
        // its commit and the assembler must spill it (invariant *bounded
        // memory*).
        c.batch_execute(&fill(100_001, 200_000)).await.unwrap();
        let (out, peak_kib) = sync_measured(&plan);
        ok(&out);
        eprintln!("PostgreSQL {major}: xdb sync peak RSS {} MiB over a 100k-row transaction", peak_kib / 1024);
        assert!(peak_kib > 0, "the peak memory of xdb sync was not measured");
        assert!(
            peak_kib < 96 * 1024,
            "xdb sync held {} MiB at its peak for a 100k-row transaction: it is not spilled",
            peak_kib / 1024
        );
    } else {
        ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    }
    let src: i64 = c.query_one("SELECT count(*) FROM orders", &[]).await.unwrap().get(0);
    assert_eq!(target.count("orders").await, src, "PostgreSQL {major}: every row exactly once");
    // The generated column is the target's own (and compared by validate).
    assert_eq!(target.rows("SELECT qty_twice FROM orders WHERE id = 2003").await, vec![vec!["2".to_string()]]);
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate on PostgreSQL {major}: {}", support::text(&v));
    // Idle source: only the heartbeat's transaction (empty below 14) can
    // move the slot (invariant *idle slots*).
    let confirmed = || async {
        let row = c
            .query_one(
                "SELECT (confirmed_flush_lsn - '0/0')::int8 FROM pg_replication_slots WHERE slot_name = $1",
                &[&format!("xdb_pg{major}")],
            )
            .await
            .unwrap();
        row.get::<_, Option<i64>>(0).unwrap_or(0)
    };
    let before = confirmed().await;
    let mut idle = spawn(&plan, &["sync"]);
    wait_until("a heartbeat to move the idle slot", Duration::from_secs(20), || async { confirmed().await > before })
        .await;
    let _ = Command::new("kill").args(["-TERM", &idle.id().to_string()]).status();
    assert!(idle.wait().unwrap().success(), "xdb sync ends cleanly on SIGTERM");
    // With the slot in place, check and status read its state (columns that
    // differ between versions: wal_status 13+, failover 17+).
    let again = xdb(&plan, &["check"]);
    let text = support::text(&again);
    assert!(again.status.success(), "check with the slot on PostgreSQL {major}: {text}");
    assert!(text.contains("streaming continues where the target stopped"), "{text}");
    assert_eq!(text.contains("not a failover slot"), major >= 17, "failover is reported from 17 on: {text}");
    ok(&xdb(&plan, &["status"]));
    drop(c);
    drop(pg);
    eprintln!("PostgreSQL {major}: {:?}", started.elapsed());
}

/// Below 12, `check` refuses and says which versions work.
#[tokio::test]
async fn postgres_11_is_refused_by_check() {
    let pg = OwnPostgres::start_from(&bindir(11));
    let c = support::pg_connect(&pg.url()).await;
    let version: String = c.query_one("SHOW server_version", &[]).await.unwrap().get(0);
    // 11 has no generated columns.
    let shop = SHOP.replace(",\n        qty_twice int GENERATED ALWAYS AS (qty * 2) STORED", "");
    c.batch_execute(&shop).await.unwrap();
    let target = Target::sqlite("xdb_pg11");
    let plan = PlanFile::new(&format!(
        "name: pg11\nsource:\n  url: {}\n  slot: xdb_pg11\n  publication: xdb_pg11\n\
         target:\n  url: {}\ntables: [orders]\n",
        pg.url(),
        target.url()
    ));
    let check = xdb(&plan, &["check"]);
    let text = support::text(&check);
    assert!(!check.status.success(), "check passed on PostgreSQL {version}: {text}");
    assert!(
        text.contains(&format!("PostgreSQL {version}: xdb supports sources from PostgreSQL 12 through 18")),
        "{text}"
    );
}

#[tokio::test]
async fn postgres_12() {
    source_version(12).await;
}

#[tokio::test]
async fn postgres_13() {
    source_version(13).await;
}

#[tokio::test]
async fn postgres_14() {
    source_version(14).await;
}

#[tokio::test]
async fn postgres_16() {
    source_version(16).await;
}

#[tokio::test]
async fn postgres_17() {
    source_version(17).await;
}

#[tokio::test]
async fn postgres_18() {
    source_version(18).await;
}

/// PostgreSQL 18 can publish stored generated columns; xdb's targets
/// compute them, so a publication made by hand that sends them is refused
/// before anything is created, with the statement that fixes it.
#[tokio::test]
async fn postgres_18_publication_publishing_generated_columns_is_refused() {
    let pg = OwnPostgres::start_from(&bindir(18));
    let c = support::pg_connect(&pg.url()).await;
    c.batch_execute(SHOP).await.unwrap();
    c.batch_execute(&fill(1, 100)).await.unwrap();
    c.batch_execute("CREATE PUBLICATION gen18 FOR TABLE orders WITH (publish_generated_columns = stored)")
        .await
        .unwrap();
    let target = Target::sqlite("xdb_pg18_gen");
    let plan = PlanFile::new(&format!(
        "name: pg18gen\nsource:\n  url: {}\n  slot: xdb_pg18_gen\n  publication: gen18\n\
         target:\n  url: {}\ntables: [orders]\n",
        pg.url(),
        target.url()
    ));
    let out = xdb(&plan, &["snapshot"]);
    let text = support::text(&out);
    assert!(!out.status.success(), "{text}");
    let fix = "ALTER PUBLICATION gen18 SET (publish_generated_columns = none)";
    assert!(text.contains(fix), "{text}");
    let slots: i64 = c.query_one("SELECT count(*) FROM pg_replication_slots", &[]).await.unwrap().get(0);
    assert_eq!(slots, 0, "no slot left behind");
    c.batch_execute(fix).await.unwrap();
    ok(&xdb(&plan, &["snapshot"]));
    c.batch_execute("UPDATE orders SET qty = 3 WHERE id = 5").await.unwrap();
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    assert_eq!(target.rows("SELECT qty_twice FROM orders WHERE id = 5").await, vec![vec!["6".to_string()]]);
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate: {}", support::text(&v));
}

//! Commit-to-apply latency probe (issue 18), run by `benches/latency.sh`:
//! not part of the default suite (`#[ignore]`, timings asserted nowhere).
//!
//! For each target: `xdb sync` streams a source; a row with a unique key is
//! inserted (autocommit) and each target polled about every millisecond until the row is
//! there; the time from the INSERT's commit returning to the row being
//! visible is one sample. N samples on an idle source, then N while pgbench
//! runs single-row INSERT + UPDATE transactions on 2 clients. Prints p50 /
//! p99 / max per target and phase, and xdb's own commit-to-apply histogram
//! (`/metrics`, every transaction it applied in the phase) as bucket bounds.
//!
//! The source sessions (the probes and pgbench) commit with
//! `synchronous_commit = on`: the dev servers run with it off, and then a
//! commit's WAL reaches the walsender only when the WAL writer flushes it
//! (up to `wal_writer_delay`, 200 ms), which is what both xdb and native
//! logical replication would be measured waiting for.
//!
//! XDB_LATENCY_BIN: the xdb binary to measure (default: this build's);
//! XDB_LATENCY_TARGETS (default "sqlite mysql postgres"); XDB_LATENCY_N
//! (default 200); XDB_LATENCY_RATE: pgbench `-R` TPS cap (default none);
//! XDB_LATENCY_LOG=<file>: xdb's debug log to `<file>.<target>`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::support::{ok, plan, wait_until, MyDb, PgDb, Target};

/// A persistent connection to the target that asks whether a row is there
/// (a new connection per poll would cost more than what is measured).
enum Poller {
    Sqlite(rusqlite::Connection),
    Mysql(mysql_async::Conn),
    Postgres(tokio_postgres::Client),
}

impl Poller {
    async fn connect(target: &Target) -> Poller {
        match target {
            Target::Sqlite(p) => Poller::Sqlite(rusqlite::Connection::open(p).unwrap()),
            Target::Mysql(db) => Poller::Mysql(mysql_async::Conn::from_url(db.url()).await.unwrap()),
            Target::Postgres(db) => Poller::Postgres(db.super_client().await),
        }
    }

    /// Whether row `id` of `probe` is visible; a busy or missing table is "not yet".
    async fn has(&mut self, id: i64) -> bool {
        match self {
            Poller::Sqlite(c) => c
                .query_row("SELECT COUNT(*) FROM probe WHERE id = ?1", [id], |r| r.get::<_, i64>(0))
                .map(|n| n == 1)
                .unwrap_or(false),
            Poller::Mysql(c) => c
                .exec_first::<i64, _, _>("SELECT COUNT(*) FROM probe WHERE id = ?", (id,))
                .await
                .ok()
                .flatten()
                .is_some_and(|n| n == 1),
            Poller::Postgres(c) => c
                .query_one("SELECT COUNT(*) FROM probe WHERE id = $1", &[&id])
                .await
                .map(|r| r.get::<_, i64>(0) == 1)
                .unwrap_or(false),
        }
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

/// `n` probes with keys from `first`: for each poller, milliseconds from
/// commit to visible, sorted.
async fn probe(source: &tokio_postgres::Client, pollers: &mut [Poller], first: i64, n: usize) -> Vec<Vec<f64>> {
    let mut ms = vec![Vec::with_capacity(n); pollers.len()];
    for id in first..first + n as i64 {
        // Spread the probes so that each starts on a stream in its steady
        // state, not right behind the previous probe's batch.
        tokio::time::sleep(Duration::from_millis(20 + (id as u64 * 7919) % 30)).await;
        source.execute("INSERT INTO probe VALUES ($1, $2)", &[&id, &format!("probe {id}")]).await.unwrap();
        let start = Instant::now();
        // Each target polled on its own, about every millisecond (the
        // timer's resolution): one target's answer does not delay the
        // other's next look.
        let seen = futures_util::future::join_all(pollers.iter_mut().map(|p| async move {
            loop {
                assert!(start.elapsed() < Duration::from_secs(60), "probe {id} never reached the target");
                if p.has(id).await {
                    return start.elapsed().as_secs_f64() * 1000.0;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }))
        .await;
        for (k, t) in seen.into_iter().enumerate() {
            ms[k].push(t);
        }
    }
    for m in &mut ms {
        m.sort_by(|a, b| a.total_cmp(b));
    }
    ms
}

async fn count(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT COUNT(*) FROM load_ins", &[]).await.unwrap().get(0)
}

fn summary(ms: &[f64]) -> String {
    format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={})", pct(ms, 50.0), pct(ms, 99.0), pct(ms, 100.0), ms.len())
}

/// xdb's `xdb_commit_to_apply_seconds` histogram from its `/metrics`:
/// (upper bound in seconds, cumulative count) per bucket.
fn histogram(addr: &str) -> Vec<(f64, u64)> {
    use std::io::{Read, Write};
    let get = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(addr)?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    };
    // The endpoint starts with `sync`; a read may come before it listens.
    let mut tries = 0;
    let text = loop {
        match get() {
            Ok(t) => break t,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("metrics endpoint {addr}: {e}; again");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("xdb's metrics endpoint {addr}: {e}"),
        }
    };
    text.lines()
        .filter(|l| l.starts_with("xdb_commit_to_apply_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// p50 / p99 of the observations between two histogram reads, as the
/// bucket bounds holding them (`≤ 5 ms`).
fn histogram_summary(before: &[(f64, u64)], after: &[(f64, u64)]) -> String {
    let diff: Vec<(f64, u64)> = after.iter().zip(before).map(|((le, a), (_, b))| (*le, a.saturating_sub(*b))).collect();
    let total = diff.last().map(|d| d.1).unwrap_or(0);
    if total == 0 {
        return "no observations".into();
    }
    let q = |p: f64| {
        let want = (p * total as f64).ceil() as u64;
        diff.iter().find(|d| d.1 >= want).map(|d| format!("≤ {} ms", d.0 * 1000.0)).unwrap_or_default()
    };
    format!("p50 {}, p99 {} (n={total})", q(0.5), q(0.99))
}

/// A child process that does not outlive a failed measurement.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pgbench(db: &PgDb, dir: &std::path::Path) -> Child {
    let script = dir.join("load.sql");
    std::fs::write(
        &script,
        "\\set id random(1, 10000)\nBEGIN;\nINSERT INTO load_ins (v) VALUES ('bench');\n\
         UPDATE load SET n = n + 1 WHERE id = :id;\nCOMMIT;\n",
    )
    .unwrap();
    let mut args: Vec<String> = ["-n", "-c", "2", "-j", "2", "-T", "3600", "-f"].map(String::from).to_vec();
    args.push(script.display().to_string());
    if let Ok(rate) = std::env::var("XDB_LATENCY_RATE") {
        args.extend(["-R".to_string(), rate]);
    }
    args.push(db.super_url());
    Command::new("pgbench")
        .env("PGOPTIONS", "-c synchronous_commit=on")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run pgbench")
}

const TABLES: &str = "CREATE TABLE probe (id bigint PRIMARY KEY, marker text NOT NULL);
    CREATE TABLE load (id bigint PRIMARY KEY, n bigint NOT NULL);
    CREATE TABLE load_ins (id bigserial PRIMARY KEY, v text NOT NULL);";

/// xdb to `target`, and PostgreSQL's own logical replication (a
/// subscription in another database) from the same source for the same
/// probes: the floor the source itself sets (walsender decoding; on a
/// shared server, everyone else's WAL too), so that what xdb adds shows
/// however busy the server is.
async fn measure(target: Target, label: &str) -> String {
    let n: usize = std::env::var("XDB_LATENCY_N").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let bin = std::env::var("XDB_LATENCY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_xdb").to_string());
    let db = PgDb::create("xdb_lat").await;
    db.exec(&format!(
        "{TABLES}
         INSERT INTO load SELECT g, 0 FROM generate_series(1, 10000) g;
         ALTER TABLE probe OWNER TO xdb_repl; ALTER TABLE load OWNER TO xdb_repl; ALTER TABLE load_ins OWNER TO xdb_repl;"
    ))
    .await;
    let plan = plan(&db, &target, "probe, load, load_ins", "");
    let source = db.super_client().await;
    // See the module doc: without it the WAL writer's delay is measured.
    source.batch_execute("SET synchronous_commit = on").await.unwrap();
    ok(&crate::support::xdb(&plan, &["snapshot"]));
    let metrics_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    // XDB_LATENCY_LOG=<file>: xdb's debug log (each batch's size and
    // apply time) goes there, to see where a slow sample's time went.
    let log = std::env::var("XDB_LATENCY_LOG").ok();
    let (level, stderr) = match &log {
        Some(path) => (
            "xdb=debug",
            Stdio::from(std::fs::File::create(format!("{path}.{}", label.rsplit(' ').next().unwrap())).unwrap()),
        ),
        None => ("warn", Stdio::null()),
    };
    let mut child = KillOnDrop(
        Command::new(&bin)
            .args(["sync", "--plan", plan.path.to_str().unwrap(), "--log", level, "--metrics-addr", &metrics_addr])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn xdb"),
    );
    let native = Target::Postgres(PgDb::create("xdb_lat_nat").await);
    let Target::Postgres(ndb) = &native else { unreachable!() };
    ndb.exec(TABLES).await;
    db.exec("CREATE PUBLICATION lat_pub FOR TABLE probe, load, load_ins").await;
    // Same cluster: the slot is made first, or CREATE SUBSCRIPTION would wait on itself.
    let slot = format!("{}_native", db.name);
    source.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", &[&slot]).await.unwrap();
    ndb.exec(&format!(
        "CREATE SUBSCRIPTION lat_sub CONNECTION '{}' PUBLICATION lat_pub WITH (create_slot = false, slot_name = '{slot}')",
        db.super_url()
    ))
    .await;

    source.execute("INSERT INTO probe VALUES (0, 'warm-up')", &[]).await.unwrap();
    let mut pollers = [Poller::connect(&target).await, Poller::connect(&native).await];
    for t in [&target, &native] {
        wait_until("replication to stream", Duration::from_secs(60), || async { t.count("probe").await == 1 }).await;
    }
    let h0 = histogram(&metrics_addr);
    let idle = probe(&source, &mut pollers, 1, n).await;
    let h1 = histogram(&metrics_addr);

    let bench = KillOnDrop(pgbench(&db, &plan.dir));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (c0, t0) = (count(&source).await, Instant::now());
    let loaded = probe(&source, &mut pollers, 1_000_000, n).await;
    let tps = (count(&source).await - c0) as f64 / t0.elapsed().as_secs_f64();
    let h2 = histogram(&metrics_addr);
    drop(bench);
    let _ = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status();
    let _ = child.0.wait();
    for sql in [
        "ALTER SUBSCRIPTION lat_sub DISABLE",
        "ALTER SUBSCRIPTION lat_sub SET (slot_name = NONE)",
        "DROP SUBSCRIPTION lat_sub",
    ] {
        ndb.exec(sql).await;
    }
    // The walsender lets go of the slot a moment after the subscription is disabled.
    wait_until("the native slot to be dropped", Duration::from_secs(30), || async {
        source.execute("SELECT pg_drop_replication_slot($1)", &[&slot]).await.is_ok()
    })
    .await;
    let [xdb, _] = pollers;
    if let Poller::Mysql(c) = xdb {
        // Its connection would hold the drop of the database.
        let _ = c.disconnect().await;
    }
    format!(
        "{label}: idle {} (native, same probes: {}; xdb's histogram: {}); under load (~{tps:.0} TPS) {} (native: \
         {}; xdb's histogram: {})",
        summary(&idle[0]),
        summary(&idle[1]),
        histogram_summary(&h0, &h1),
        summary(&loaded[0]),
        summary(&loaded[1]),
        histogram_summary(&h1, &h2)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by benches/latency.sh"]
async fn commit_to_apply_latency() {
    let targets = std::env::var("XDB_LATENCY_TARGETS").unwrap_or_else(|_| "sqlite mysql postgres".into());
    let mut lines = Vec::new();
    for t in targets.split_whitespace() {
        let line = match t {
            "sqlite" => measure(Target::sqlite("xdb_lat"), "xdb → SQLite").await,
            "mysql" => measure(Target::Mysql(MyDb::create("xdb_lat_my").await), "xdb → MariaDB").await,
            "postgres" => measure(Target::Postgres(PgDb::create("xdb_lat_pgt").await), "xdb → PostgreSQL").await,
            other => panic!("unknown target {other}"),
        };
        println!("LATENCY {line}");
        lines.push(line);
    }
    println!(
        "\n== commit-to-apply latency ({})",
        std::env::var("XDB_LATENCY_BIN").unwrap_or_else(|_| "this build".into())
    );
    for l in lines {
        println!("{l}");
    }
}

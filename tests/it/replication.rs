//! The walsender connection against the real PostgreSQL: replication
//! commands, snapshots, streaming with confirmed positions, authentication.

use std::time::Duration;

use xdb::model::Lsn;
use xdb::plan::SecretUrl;
use xdb::source::postgres::replication::{
    ReplicationClient, ReplicationConfig, ReplicationError, ReplicationEvent, ReplicationStream, SnapshotAction,
    StartReplicationOptions,
};

use crate::support::{env, pg_connect, unique, PgDb};

async fn repl(db: &PgDb) -> ReplicationClient {
    ReplicationClient::connect_url(&SecretUrl::new(db.repl_url()), "xdb_it_repl")
        .await
        .unwrap_or_else(|e| panic!("replication connect: {e}"))
}

fn url_for(user: &str, password: Option<&str>, db: &str) -> String {
    let host = env("XDB_PG_HOST");
    let port = env("XDB_PG_PORT");
    match password {
        Some(pw) => format!("postgres://{user}:{pw}@{host}:{port}/{db}"),
        None => format!("postgres://{user}@{host}:{port}/{db}"),
    }
}

async fn scalar(c: &tokio_postgres::Client, sql: &str) -> Option<String> {
    let rows = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
        _ => None,
    })?
}

/// Waits (bounded) for the next XLogData, answering whatever else arrives.
async fn next_data(stream: &mut ReplicationStream) -> (Lsn, bytes::Bytes) {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("XLogData within 20 s")
            .expect("stream")
            .expect("stream still open");
        if let ReplicationEvent::XLogData { wal_start, data, .. } = ev {
            return (wal_start, data);
        }
    }
}

/// Reads one transaction: the pgoutput message types and the end LSN of its Commit.
async fn next_transaction(stream: &mut ReplicationStream) -> (String, Lsn, Lsn) {
    let mut kinds = String::new();
    loop {
        let (_, data) = next_data(stream).await;
        let kind = *data.first().expect("non-empty pgoutput message") as char;
        kinds.push(kind);
        if kind == 'C' {
            // Commit: flags u8, commit LSN u64, end LSN u64, time i64.
            let commit = Lsn(u64::from_be_bytes(data[2..10].try_into().unwrap()));
            let end = Lsn(u64::from_be_bytes(data[10..18].try_into().unwrap()));
            return (kinds, commit, end);
        }
    }
}

#[tokio::test]
async fn identify_system_and_session_settings() {
    let db = PgDb::create("xdb_repl_ident").await;
    let mut c = repl(&db).await;
    assert!(c.server_major_version().is_some_and(|v| v >= 10), "{:?}", c.server_version());
    let id = c.identify_system().await.unwrap();
    assert!(id.timeline >= 1 && id.xlogpos > Lsn::ZERO && !id.systemid.is_empty(), "{id:?}");
    assert_eq!(id.dbname.as_deref(), Some(db.name.as_str()));
    // pgoutput prints values under these settings; the value decoder relies on them.
    for (name, want) in [("TimeZone", "UTC"), ("DateStyle", "ISO, MDY"), ("IntervalStyle", "postgres")] {
        let rows = c.simple_query(&format!("SHOW {name}")).await.unwrap();
        assert_eq!(rows, vec![vec![Some(want.to_string())]], "{name}");
    }
    let rows = c.simple_query("SELECT current_setting('extra_float_digits'), NULL::text, 'a''b'").await.unwrap();
    assert_eq!(rows, vec![vec![Some("3".into()), None, Some("a'b".into())]]);
    // A failing statement gives the server's error and leaves the connection usable.
    let e = c.simple_query("SELECT * FROM no_such_table").await.unwrap_err();
    assert_eq!(e.sqlstate(), Some("42P01"), "{e}");
    assert_eq!(c.simple_query("SELECT 1").await.unwrap(), vec![vec![Some("1".into())]]);
    c.close().await;
}

#[tokio::test]
async fn slots_and_snapshots() {
    let db = PgDb::create("xdb_repl_slots").await;
    let sql = pg_connect(&db.repl_url()).await;
    sql.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)").await.unwrap();
    let mut c = repl(&db).await;

    // Export: another session imports the snapshot while the replication connection stays idle.
    let temp = unique("xdb_tmp");
    let slot = c.create_replication_slot(&temp, true, SnapshotAction::Export).await.unwrap();
    assert_eq!(slot.slot_name, temp);
    assert_eq!(slot.output_plugin.as_deref(), Some("pgoutput"));
    assert!(slot.consistent_point > Lsn::ZERO);
    let snap = slot.snapshot_name.clone().expect("exported snapshot name");
    sql.batch_execute("INSERT INTO t VALUES (2)").await.unwrap();
    let reader = pg_connect(&db.repl_url()).await;
    reader
        .batch_execute(&format!("BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{snap}'"))
        .await
        .unwrap_or_else(|e| panic!("import snapshot: {e:?}"));
    assert_eq!(scalar(&reader, "SELECT count(*) FROM t").await.as_deref(), Some("1"), "snapshot excludes row 2");
    reader.batch_execute("COMMIT").await.unwrap();

    // NoExport, permanent; creating it again is 42710.
    let perm = unique("xdb_perm");
    let p = c.create_replication_slot(&perm, false, SnapshotAction::NoExport).await.unwrap();
    assert_eq!(p.snapshot_name, None);
    let e = c.create_replication_slot(&perm, false, SnapshotAction::NoExport).await.unwrap_err();
    assert_eq!(e.sqlstate(), Some("42710"), "{e}");
    assert!(matches!(e, ReplicationError::Server { .. }) && !e.is_retryable());

    // Use: the slot's snapshot becomes this connection's transaction snapshot.
    let used = unique("xdb_use");
    c.simple_query("BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
    let u = c.create_replication_slot(&used, true, SnapshotAction::Use).await.unwrap();
    assert_eq!(u.snapshot_name, None);
    sql.batch_execute("INSERT INTO t VALUES (3)").await.unwrap();
    assert_eq!(c.simple_query("SELECT count(*) FROM t").await.unwrap(), vec![vec![Some("2".into())]]);
    c.simple_query("COMMIT").await.unwrap();

    // A slot held by a stream is busy (55006) for others; dropping with WAIT works after the stream stops.
    c.drop_replication_slot(&perm, false).await.unwrap();
    let e = c.drop_replication_slot(&perm, false).await.unwrap_err();
    assert_eq!(e.sqlstate(), Some("42704"), "{e}");
    c.close().await;
    let left = scalar(
        &sql,
        &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name IN ('{temp}', '{perm}', '{used}')"),
    )
    .await;
    // Temporary slots go with their connection; give the walsender a moment to exit.
    let mut left = left;
    for _ in 0..50 {
        if left.as_deref() == Some("0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = scalar(
            &sql,
            &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name IN ('{temp}', '{perm}', '{used}')"),
        )
        .await;
    }
    assert_eq!(left.as_deref(), Some("0"));
}

#[tokio::test]
async fn streams_confirms_and_resumes() {
    let db = PgDb::create("xdb_repl_stream").await;
    let sql = pg_connect(&db.repl_url()).await;
    sql.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION p FOR TABLE t").await.unwrap();
    let slot = unique("xdb_stream");
    let mut c = repl(&db).await;
    c.create_replication_slot(&slot, false, SnapshotAction::NoExport).await.unwrap();
    let options = StartReplicationOptions {
        proto_version: 2,
        publication_names: vec!["p".into()],
        status_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let mut stream = c.start_replication(&slot, Lsn::ZERO, &options).await.unwrap();

    // A second stream on the same slot is refused with 55006 (retryable).
    let busy = repl(&db).await.start_replication(&slot, Lsn::ZERO, &options).await.unwrap_err();
    assert_eq!(busy.sqlstate(), Some("55006"), "{busy}");
    assert!(busy.is_retryable());

    // Idle: periodic status updates reach the server, reporting nothing the caller did not set.
    // (The walsender sends a keepalive at once because nothing is confirmed: keep polling.)
    let idle_until = tokio::time::Instant::now() + Duration::from_millis(700);
    while let Ok(ev) = tokio::time::timeout_at(idle_until, stream.next()).await {
        assert!(matches!(ev, Ok(Some(ReplicationEvent::Keepalive { .. }))), "{ev:?}");
    }
    let stat = format!(
        "SELECT (now() - reply_time < interval '1 second')::text || ' ' || coalesce(flush_lsn::text, 'none') \
         FROM pg_stat_replication WHERE application_name = 'xdb_it_repl' AND pid = \
         (SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{slot}')"
    );
    // pg_stat_replication hides the details from non-superusers.
    let admin = db.super_client().await;
    assert_eq!(scalar(&admin, &stat).await.as_deref(), Some("true none"));

    sql.batch_execute("BEGIN; INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c'); COMMIT").await.unwrap();
    sql.batch_execute("INSERT INTO t VALUES (4, 'd')").await.unwrap();
    let (kinds1, _, end1) = next_transaction(&mut stream).await;
    assert_eq!(kinds1, "BRIIIC");
    let (kinds2, commit2, end2) = next_transaction(&mut stream).await;
    assert_eq!(kinds2, "BIC");
    assert!(end2 > end1 && stream.server_wal_end() >= end1);

    // Confirm only the first transaction, ask for a reply: a keepalive comes back.
    stream.set_positions(end1, end1, end1);
    stream.send_status_update(true).await.unwrap();
    let got_keepalive = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(ReplicationEvent::Keepalive { .. }) = stream.next().await.unwrap() {
                return;
            }
        }
    })
    .await;
    assert!(got_keepalive.is_ok(), "no keepalive after a status update asking for a reply");
    stream.set_positions(Lsn::ZERO, Lsn::ZERO, Lsn::ZERO); // ignored: positions never move back
    assert_eq!(stream.positions(), (end1, end1, end1));
    stream.stop().await.unwrap();
    let confirmed = format!("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{slot}'");
    assert_eq!(scalar(&sql, &confirmed).await, Some(end1.to_string()));

    // Resume: the first transaction is not delivered again, the second is.
    let mut stream = loop {
        // The previous walsender may still be exiting (55006).
        match repl(&db).await.start_replication(&slot, end1, &options).await {
            Ok(s) => break s,
            Err(e) if e.sqlstate() == Some("55006") => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("restart: {e}"),
        }
    };
    let (first_start, first) = next_data(&mut stream).await;
    assert_eq!(first[0], b'B');
    let final_lsn = Lsn(u64::from_be_bytes(first[1..9].try_into().unwrap()));
    assert_eq!(final_lsn, commit2, "resumed at the second transaction (wal_start {first_start})");
    stream.stop().await.unwrap();

    let mut c = repl(&db).await;
    c.drop_replication_slot(&slot, true).await.unwrap();
    c.close().await;
}

#[tokio::test]
async fn authenticates_with_every_method() {
    let db = PgDb::create("xdb_repl_auth").await;
    // Shared roles: created idempotently, never dropped (other tests may use them at the same time).
    db.exec(
        "DO $$ BEGIN
           CREATE ROLE xdb_md5 LOGIN REPLICATION;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         DO $$ BEGIN
           CREATE ROLE xdb_clear LOGIN REPLICATION;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         DO $$ BEGIN
           CREATE ROLE xdb_trust LOGIN REPLICATION;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         SET password_encryption = 'md5';
         ALTER ROLE xdb_md5 LOGIN REPLICATION PASSWORD 'xdb md5/pw@1';
         SET password_encryption = 'scram-sha-256';
         ALTER ROLE xdb_clear LOGIN REPLICATION PASSWORD 'xdb-clear-pw';
         ALTER ROLE xdb_trust LOGIN REPLICATION",
    )
    .await;
    let cases = [
        url_for("xdb_md5", Some("xdb%20md5%2Fpw%401"), &db.name),
        url_for("xdb_clear", Some("xdb-clear-pw"), &db.name),
        url_for("xdb_trust", None, &db.name),
        db.repl_url(), // SCRAM-SHA-256
    ];
    for url in &cases {
        let url = SecretUrl::new(url.clone());
        let mut c = ReplicationClient::connect_url(&url, "xdb_it_auth").await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let id = c.identify_system().await.unwrap();
        assert_eq!(id.dbname.as_deref(), Some(db.name.as_str()), "{url}");
        c.close().await;
    }

    // Wrong passwords: 28P01, and the password is nowhere in the error.
    for (user, pw) in [("xdb_repl", "wrong-secret-1"), ("xdb_md5", "wrong-secret-2"), ("xdb_clear", "wrong-secret-3")] {
        let e =
            ReplicationClient::connect_url(&SecretUrl::new(url_for(user, Some(pw), &db.name)), "x").await.unwrap_err();
        assert_eq!(e.sqlstate(), Some("28P01"), "{user}: {e}");
        assert!(!e.is_retryable());
        let text = format!("{e} {e:?}");
        assert!(!text.contains(pw), "{text}");
    }
    // A role that needs a password but got none.
    let e =
        ReplicationClient::connect_url(&SecretUrl::new(url_for("xdb_repl", None, &db.name)), "x").await.unwrap_err();
    assert!(matches!(e, ReplicationError::Auth(_)), "{e}");

    // The config's Debug hides the password.
    let cfg = ReplicationConfig::from_url(&SecretUrl::new(db.repl_url())).unwrap();
    let pw = env("XDB_PG_REPL_PASSWORD");
    assert!(!format!("{cfg:?}").contains(&pw));
}

#[tokio::test]
async fn connection_failures_are_clear() {
    let e = ReplicationClient::connect_url(&SecretUrl::new("postgres://u:secret-pw@127.0.0.1:1/db"), "x")
        .await
        .unwrap_err();
    assert!(matches!(e, ReplicationError::Io { .. }), "{e:?}");
    assert!(e.is_retryable());
    let text = e.to_string();
    assert!(text.contains("127.0.0.1:1") && !text.contains("secret-pw"), "{text}");

    for mode in ["require", "verify-ca", "verify-full"] {
        let url = format!("{}?sslmode={mode}", url_for("xdb_repl", Some("pw"), "postgres"));
        let e = ReplicationClient::connect_url(&SecretUrl::new(url), "x").await.unwrap_err();
        // The dev server runs without TLS; verify-* without sslrootcert fails before connecting (tests/it/tls.rs).
        assert!(matches!(e, ReplicationError::Tls(_)), "{e:?}");
        let expected = if mode == "require" { "does not support TLS but sslmode=require" } else { "sslrootcert" };
        assert!(e.to_string().contains(expected), "{e}");
    }
    // prefer and disable fall back to / use plaintext.
    let pw = env("XDB_PG_REPL_PASSWORD");
    for mode in ["prefer", "disable", "allow"] {
        let url = format!("{}?sslmode={mode}&connect_timeout=5", url_for("xdb_repl", Some(&pw), "postgres"));
        let c = ReplicationClient::connect_url(&SecretUrl::new(url), "x").await.unwrap_or_else(|e| panic!("{e}"));
        c.close().await;
    }
}

#[tokio::test]
async fn answers_keepalives_that_request_a_reply() {
    let db = PgDb::create("xdb_repl_keepalive").await;
    let sql = pg_connect(&db.repl_url()).await;
    sql.batch_execute("CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t").await.unwrap();
    // A walsender that asks for a reply after 0.5 s of silence and hangs up after 1 s without one;
    // the timer-driven updates are pushed far out so that only the answers keep it alive.
    let url = format!("{}?options=-c%20wal_sender_timeout%3D1000", db.repl_url());
    let mut c = ReplicationClient::connect_url(&SecretUrl::new(url), "xdb_it_keepalive").await.unwrap();
    let slot = unique("xdb_ka");
    c.create_replication_slot(&slot, true, SnapshotAction::NoExport).await.unwrap();
    let options = StartReplicationOptions {
        publication_names: vec!["p".into()],
        status_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let mut stream = c.start_replication(&slot, Lsn::ZERO, &options).await.unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut requested = 0;
    while let Ok(ev) = tokio::time::timeout_at(until, stream.next()).await {
        match ev {
            Ok(Some(ReplicationEvent::Keepalive { reply_requested: true, .. })) => requested += 1,
            Ok(Some(_)) => {}
            other => panic!("stream ended while keepalives were answered: {other:?}"),
        }
    }
    assert!(requested >= 3, "only {requested} keepalives requested a reply in 4 s");
    stream.stop().await.unwrap();
}

/// End-to-end rate from the real server (bounded by the walsender's decoding):
/// `cargo test --test it replication::stream_rate -- --ignored --nocapture`
#[tokio::test]
#[ignore = "throughput measurement"]
async fn stream_rate_from_postgres() {
    let db = PgDb::create("xdb_repl_rate").await;
    let sql = pg_connect(&db.repl_url()).await;
    sql.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION p FOR TABLE t").await.unwrap();
    let slot = unique("xdb_rate");
    let mut c = repl(&db).await;
    c.create_replication_slot(&slot, true, SnapshotAction::NoExport).await.unwrap();
    let rows = 300_000;
    sql.batch_execute(&format!("INSERT INTO t SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, {rows}) g"))
        .await
        .unwrap();
    let options = StartReplicationOptions { publication_names: vec!["p".into()], ..Default::default() };
    let mut stream = c.start_replication(&slot, Lsn::ZERO, &options).await.unwrap();
    let started = std::time::Instant::now();
    let (mut bytes, mut inserts) = (0u64, 0);
    while inserts < rows {
        let (_, data) = next_data(&mut stream).await;
        bytes += data.len() as u64;
        inserts += usize::from(data.first() == Some(&b'I'));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{inserts} inserts, {:.1} MB in {secs:.2} s: {:.0} MB/s, {:.0} msgs/s",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        inserts as f64 / secs
    );
    stream.stop().await.unwrap();
}

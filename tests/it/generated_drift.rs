//! Generated columns added on the source while `sync` runs (issue 16,
//! invariant *no omitted column*): pgoutput never sends them, and the
//! Relation message after the ALTER looks like the one before it, so xdb
//! asks the catalog. A translatable expression becomes a generated column
//! of the target (the target computes every row, old and new); any other
//! stops `sync` naming the table, the column and the way to continue.

use std::time::Duration;

use crate::support::{self, kill9, ok, plan, spawn, wait_until, xdb, MyDb, PgDb, Target};

const T: &str = "CREATE TABLE t (id int PRIMARY KEY, a int, s text);
     INSERT INTO t SELECT g, g, 's' || g FROM generate_series(1, 20) g;
     ALTER TABLE t OWNER TO xdb_repl;";

/// Waits until the target's row 1 has `a = want` (the stream is applied).
async fn applied(target: &Target, want: &str) {
    wait_until("the stream to reach the target", Duration::from_secs(60), || async {
        let rows = target.rows("SELECT a FROM t WHERE id = 1").await;
        rows.first().is_some_and(|r| r[0] == want)
    })
    .await;
}

async fn added_while_streaming(target: Target, prefix: &str) {
    let db = PgDb::create(prefix).await;
    db.exec(T).await;
    let plan = plan(&db, &target, "t", "");
    ok(&xdb(&plan, &["snapshot"]));
    let mut sync = spawn(&plan, &["sync"]);
    db.exec("UPDATE t SET a = 100 WHERE id = 1").await;
    applied(&target, "100").await;
    db.exec(
        "ALTER TABLE t ADD COLUMN b int GENERATED ALWAYS AS (a * 2) STORED;
         UPDATE t SET a = 0 WHERE id = 1; INSERT INTO t (id, a, s) VALUES (21, 21, 'new');",
    )
    .await;
    applied(&target, "0").await;
    kill9(&mut sync);
    let got = target.rows("SELECT id, b FROM t WHERE id IN (1, 2, 21) ORDER BY id").await;
    let want: Vec<Vec<String>> =
        [["1", "0"], ["2", "4"], ["21", "42"]].iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect();
    assert_eq!(got, want, "the target computes b for old and new rows");

    // Added while `sync` is stopped: found when it starts.
    db.exec("ALTER TABLE t ADD COLUMN c text GENERATED ALWAYS AS (s || '!') STORED; UPDATE t SET a = 5 WHERE id = 1;")
        .await;
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    let got = target.rows("SELECT c FROM t WHERE id = 3").await;
    assert_eq!(got, vec![vec!["s3!".to_string()]]);
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate: {}", support::text(&v));
}

#[tokio::test]
async fn generated_column_added_while_streaming_is_added_on_sqlite() {
    added_while_streaming(Target::sqlite("xdb_gendrift"), "xdb_gendrift").await;
}

#[tokio::test]
async fn generated_column_added_while_streaming_is_added_on_mariadb() {
    added_while_streaming(Target::Mysql(MyDb::create("xdb_gendrift_my").await), "xdb_gendrift_my").await;
}

#[tokio::test]
async fn generated_column_added_while_streaming_is_added_on_postgres() {
    added_while_streaming(Target::Postgres(PgDb::create("xdb_gendrift_pgt").await), "xdb_gendrift_pg").await;
}

/// An expression the target cannot compute the same way stops `sync` with
/// the table, the column and what to run; nothing after it is applied.
/// Once the column is dropped on the source, `sync` continues and the
/// target is exact.
#[tokio::test]
async fn untranslatable_generated_column_added_while_streaming_stops_sync() {
    let db = PgDb::create("xdb_gendrift_stop").await;
    db.exec(T).await;
    let target = Target::sqlite("xdb_gendrift_stop");
    let plan = plan(&db, &target, "t", "");
    ok(&xdb(&plan, &["snapshot"]));
    let mut sync = spawn(&plan, &["sync"]);
    db.exec("UPDATE t SET a = 100 WHERE id = 1").await;
    applied(&target, "100").await;
    db.exec(
        "ALTER TABLE t ADD COLUMN h numeric(6,2) GENERATED ALWAYS AS (round(a / 60.0, 2)) STORED;
         UPDATE t SET a = 7 WHERE id = 1;",
    )
    .await;
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = sync.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(60) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let Some(status) = status else {
        kill9(&mut sync);
        panic!("sync did not stop on an untranslatable generated column");
    };
    let mut err = String::new();
    std::io::Read::read_to_string(sync.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("public.t") && err.contains("generated column h") && err.contains("round"), "{err}");
    assert!(err.contains("ALTER TABLE public.t DROP COLUMN h") && err.contains("xdb sync"), "{err}");
    assert_eq!(target.rows("SELECT a FROM t WHERE id = 1").await, vec![vec!["100".to_string()]], "nothing after");

    // The way out it printed.
    db.exec("ALTER TABLE t DROP COLUMN h").await;
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    assert_eq!(target.rows("SELECT a FROM t WHERE id = 1").await, vec![vec!["7".to_string()]]);
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate: {}", support::text(&v));
}

/// A column added in the same source transaction as rows inserted before
/// the ALTER: those rows get the source's values too (invariant *schema
/// drift*). The Relation for the new shape arrives in the middle of the
/// transaction, before its earlier INSERTs are applied: the fill then runs
/// again inside the target transaction that applies it.
#[tokio::test]
async fn column_added_in_the_transaction_of_earlier_inserts_gets_their_source_values() {
    let db = PgDb::create("xdb_drift_sametx").await;
    db.exec(T).await;
    let target = Target::sqlite("xdb_drift_sametx");
    let plan = plan(&db, &target, "t", "");
    ok(&xdb(&plan, &["snapshot"]));
    // One transaction (a multi-statement string is one).
    db.exec(
        "INSERT INTO t (id, a, s) VALUES (21, 21, 'new');
         ALTER TABLE t ADD COLUMN n bigserial;
         UPDATE t SET a = 0 WHERE id = 1;",
    )
    .await;
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate: {}", support::text(&v));
}

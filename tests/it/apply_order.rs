//! Issue 14, "no silent loss": the apply path keeps commit order where a
//! target's unique index could see it, and never skips a change silently.
//!
//! - Swaps, rotations and move-then-reinsert of values under a secondary
//!   UNIQUE index, inside one source transaction and across several small
//!   ones that land in one target batch, apply on every target kind and
//!   `xdb validate` finds the copies equal.
//! - An UPDATE or DELETE whose row the target no longer has stops `sync`
//!   with the table and key named, and nothing of that batch is applied.
//! - REPLICA IDENTITY FULL with a primary key is matched on the key (a
//!   `json` column cannot be compared on a PostgreSQL target).

use crate::support::{self, plan, xdb, MyDb, PgDb, Target};

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "xdb failed: {}", support::text(out));
}

fn table(t: &Target, name: &str) -> String {
    match t {
        Target::Postgres(_) => format!("public.{name}"),
        _ => name.to_string(),
    }
}

async fn target_li(t: &Target) -> Vec<Vec<String>> {
    let cast = |c: &str| match t {
        Target::Mysql(_) => format!("CAST({c} AS CHAR)"),
        Target::Sqlite(_) => format!("CAST({c} AS TEXT)"),
        Target::Postgres(_) => format!("{c}::text"),
    };
    t.rows(&format!(
        "SELECT {}, {}, {} FROM {} AS x ORDER BY x.id",
        cast("id"),
        cast("list"),
        cast("pos"),
        table(t, "li")
    ))
    .await
}

async fn source_li(db: &PgDb) -> Vec<Vec<String>> {
    crate::support::pg_rows(&db.super_client().await, "SELECT id::text, list::text, pos::text FROM li ORDER BY li.id")
        .await
}

/// Every reordering hazard under UNIQUE (list, pos), each list on its own.
async fn unique_swaps_apply(target: Target) {
    let db = PgDb::create("xdb_order").await;
    db.exec(
        "CREATE TABLE li (id int PRIMARY KEY, list int NOT NULL, pos int NOT NULL, note text, UNIQUE (list, pos));
         ALTER TABLE li OWNER TO xdb_repl;
         INSERT INTO li VALUES (1, 1, 1, 'a'), (2, 1, 2, 'b'),
                               (3, 2, 1, 'c'), (4, 2, 2, 'd'), (5, 2, 3, 'e'),
                               (10, 3, 1, 'f'), (13, 3, 2, 'g'),
                               (20, 4, 1, 'h'), (21, 4, 2, 'i'),
                               (30, 5, 1, 'j'), (31, 5, 2, 'k'), (32, 5, 3, 'l'),
                               (40, 6, 1, 'm'), (43, 6, 2, 'n');",
    )
    .await;
    // A batch waits long enough for every transaction below: they land in
    // one target transaction.
    let plan = plan(&db, &target, "li", "apply:\n  max_batch_delay_ms: 3000\n");
    ok(&xdb(&plan, &["snapshot"]));

    // One source transaction each (one simple-query string is one transaction).
    // A swap: row 1 parks at 3, row 2 takes 1, row 1 takes 2.
    db.exec(
        "UPDATE li SET pos = 3 WHERE id = 1; UPDATE li SET pos = 1 WHERE id = 2; UPDATE li SET pos = 2 WHERE id = 1;",
    )
    .await;
    // A 3-way rotation through a parking value.
    db.exec(
        "UPDATE li SET pos = 0 WHERE id = 3; UPDATE li SET pos = 1 WHERE id = 5;
         UPDATE li SET pos = 3 WHERE id = 4; UPDATE li SET pos = 2 WHERE id = 3;",
    )
    .await;
    // Move-then-reinsert: delete the holder of (3,1) and insert another row
    // with it; update a row away from (3,2), insert a row with it, and update
    // the first row again.
    db.exec(
        "DELETE FROM li WHERE id = 10; INSERT INTO li VALUES (11, 3, 1, 'f2');
         UPDATE li SET pos = 9 WHERE id = 13; INSERT INTO li VALUES (12, 3, 2, 'g2');
         UPDATE li SET pos = 8, note = 'g3' WHERE id = 13;",
    )
    .await;
    // The same hazards, each step its own transaction: many small
    // transactions grouped into one target transaction.
    for sql in [
        "UPDATE li SET pos = 3 WHERE id = 20",
        "UPDATE li SET pos = 1 WHERE id = 21",
        "UPDATE li SET pos = 2 WHERE id = 20",
        "UPDATE li SET pos = 0 WHERE id = 30",
        "UPDATE li SET pos = 1 WHERE id = 32",
        "UPDATE li SET pos = 3 WHERE id = 31",
        "UPDATE li SET pos = 2 WHERE id = 30",
        "DELETE FROM li WHERE id = 40",
        "INSERT INTO li VALUES (41, 6, 1, 'm2')",
        "UPDATE li SET pos = 9 WHERE id = 43",
        "INSERT INTO li VALUES (42, 6, 2, 'n2')",
        "UPDATE li SET pos = 8, note = 'n3' WHERE id = 43",
    ] {
        db.exec(sql).await;
    }
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    assert_eq!(target_li(&target).await, source_li(&db).await);
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate: {}", support::text(&v));
}

#[tokio::test]
async fn unique_swaps_apply_on_sqlite() {
    unique_swaps_apply(Target::sqlite("xdb_order")).await;
}

#[tokio::test]
async fn unique_swaps_apply_on_mariadb() {
    unique_swaps_apply(Target::Mysql(MyDb::create("xdb_order_my").await)).await;
}

#[tokio::test]
async fn unique_swaps_apply_on_postgres() {
    unique_swaps_apply(Target::Postgres(PgDb::create("xdb_order_pgt").await)).await;
}

/// A row deleted on the target behind xdb's back, then updated (or
/// deleted) on the source: `sync` stops naming the table and the key, and
/// applies nothing of that batch. An UPDATE that sets the values the row
/// already has is not "no row" (MySQL counts it as unchanged).
async fn lost_row_stops_sync(target: Target) {
    let db = PgDb::create("xdb_lost").await;
    let big: String = (0..30_000).map(|i| char::from(b'a' + ((i * 31) % 26) as u8)).collect();
    db.exec(&format!(
        "CREATE TABLE orders (id int PRIMARY KEY, v text, body text);
         ALTER TABLE orders OWNER TO xdb_repl;
         INSERT INTO orders SELECT g, 'v' || g, CASE WHEN g = 7 THEN '{big}' END FROM generate_series(1, 50) g;
         CREATE TABLE k (a int, b text); ALTER TABLE k REPLICA IDENTITY FULL; ALTER TABLE k OWNER TO xdb_repl;
         INSERT INTO k VALUES (1, 'x'), (2, 'y');"
    ))
    .await;
    let plan = plan(&db, &target, "orders, k", "");
    ok(&xdb(&plan, &["snapshot"]));
    // Same values again, with an unchanged TOASTed column: an UPDATE by key
    // whose row is found but not changed.
    db.exec("UPDATE orders SET v = v WHERE id = 7").await;
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));

    let orders = table(&target, "orders");
    target.rows(&format!("DELETE FROM {orders} WHERE id = 42")).await;
    // One source transaction: a batch is applied as soon as nothing more
    // is queued, so two transactions need not share one.
    db.exec(
        "BEGIN; INSERT INTO orders VALUES (1000, 'new', NULL); UPDATE orders SET v = 'changed' WHERE id = 42; COMMIT;",
    )
    .await;
    let out = xdb(&plan, &["sync", "--until-caught-up"]);
    let text = support::text(&out);
    assert!(!out.status.success(), "sync must stop: {text}");
    assert!(
        text.contains("public.orders") && text.contains("UPDATE matched no row") && text.contains("id=42"),
        "{text}"
    );
    assert!(text.contains("--repair"), "says what to do: {text}");
    assert_eq!(target.count(&orders).await, 49, "nothing of the failing batch applied (no row 1000)");
    // Every restart stops at the same place: nothing is skipped.
    let again = xdb(&plan, &["sync", "--until-caught-up"]);
    assert!(!again.status.success() && support::text(&again).contains("id=42"), "{}", support::text(&again));

    // The row put back, the stream goes on.
    target.rows(&format!("INSERT INTO {orders} (id, v) VALUES (42, 'v42')")).await;
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));

    // A DELETE that finds nothing, in a multi-row delete.
    target.rows(&format!("DELETE FROM {orders} WHERE id = 43")).await;
    db.exec("DELETE FROM orders WHERE id IN (41, 43, 44)").await;
    let out = xdb(&plan, &["sync", "--until-caught-up"]);
    let text = support::text(&out);
    assert!(!out.status.success(), "sync must stop: {text}");
    assert!(
        text.contains("public.orders") && text.contains("DELETE matched no row") && text.contains("id=43"),
        "{text}"
    );
    assert_eq!(target.count(&orders).await, 50, "rows 41 and 44 are still there (50 + row 1000 - row 43)");
    target.rows(&format!("INSERT INTO {orders} (id, v) VALUES (43, 'v43')")).await;
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));

    // A keyless table matched on the whole row.
    let k = table(&target, "k");
    target.rows(&format!("DELETE FROM {k} WHERE a = 2")).await;
    db.exec("UPDATE k SET b = 'z' WHERE a = 2").await;
    let out = xdb(&plan, &["sync", "--until-caught-up"]);
    let text = support::text(&out);
    assert!(!out.status.success(), "sync must stop: {text}");
    assert!(text.contains("public.k") && text.contains("UPDATE matched no row"), "{text}");
}

#[tokio::test]
async fn lost_row_stops_sync_on_sqlite() {
    lost_row_stops_sync(Target::sqlite("xdb_lost")).await;
}

#[tokio::test]
async fn lost_row_stops_sync_on_mariadb() {
    lost_row_stops_sync(Target::Mysql(MyDb::create("xdb_lost_my").await)).await;
}

#[tokio::test]
async fn lost_row_stops_sync_on_postgres() {
    lost_row_stops_sync(Target::Postgres(PgDb::create("xdb_lost_pgt").await)).await;
}

/// REPLICA IDENTITY FULL on a table with a primary key and a `json`
/// column: matched on the key, so a PostgreSQL target (where `json` has no
/// equality operator) applies updates and deletes.
#[tokio::test]
async fn full_identity_with_key_matches_on_the_key() {
    let db = PgDb::create("xdb_rifull").await;
    db.exec(
        "CREATE TABLE j (id int PRIMARY KEY, doc json, n int);
         ALTER TABLE j REPLICA IDENTITY FULL; ALTER TABLE j OWNER TO xdb_repl;
         INSERT INTO j SELECT g, json_build_object('g', g), g FROM generate_series(1, 10) g;",
    )
    .await;
    let target = Target::Postgres(PgDb::create("xdb_rifull_t").await);
    let plan = plan(&db, &target, "j", "");
    ok(&xdb(&plan, &["snapshot"]));
    db.exec("UPDATE j SET n = n + 100 WHERE id <= 3").await;
    db.exec("UPDATE j SET id = 30, doc = '{\"moved\": true}' WHERE id = 4").await;
    db.exec("DELETE FROM j WHERE id = 5").await;
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    let rows = target.rows("SELECT id, n FROM public.j ORDER BY id").await;
    assert_eq!(rows.len(), 9, "{rows:?}");
    assert_eq!(rows[0], vec!["1".to_string(), "101".to_string()]);
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate: {}", support::text(&v));
}

/// Issue 18: on a MySQL target, where each statement is a round trip, a
/// group whose transactions each touch several tables is applied table by
/// table (a few multi-row statements instead of one per change) — but only
/// when nothing on the target could see the order between the tables. A
/// trigger that logs every write into one audit table sees it: with
/// triggers, the audit must list the writes in source commit order; a
/// foreign key between the tables also keeps commit order; without either,
/// the group goes table by table. Every phase ends with `xdb validate`.
#[tokio::test]
async fn mariadb_applies_table_by_table_only_when_no_trigger_or_foreign_key_can_see_it() {
    let db = PgDb::create("xdb_bytable").await;
    db.exec(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance numeric(12,2) NOT NULL, owner text);
         CREATE TABLE entries (account_id int NOT NULL, n int NOT NULL, amount numeric(12,2) NOT NULL,
                               note text, PRIMARY KEY (account_id, n));
         ALTER TABLE accounts OWNER TO xdb_repl; ALTER TABLE entries OWNER TO xdb_repl;
         INSERT INTO accounts SELECT g, 0, 'owner ' || g FROM generate_series(1, 40) g;",
    )
    .await;
    let my = MyDb::create("xdb_bytable_my").await;
    let target = Target::Mysql(my);
    let plan = plan(&db, &target, "accounts, entries", "apply:\n  max_batch_delay_ms: 3000\n");
    ok(&xdb(&plan, &["snapshot"]));
    // A first run creates the slot; what follows is a backlog read at once.
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));

    let sync_log = |plan: &support::PlanFile| {
        let out = xdb(plan, &["sync", "--until-caught-up", "--log", "xdb=debug"]);
        ok(&out);
        let v = xdb(plan, &["validate"]);
        assert!(v.status.success(), "validate: {}", support::text(&v));
        support::text(&out)
    };

    // Phase 1: triggers log every write in the order the target sees it.
    for sql in [
        "CREATE TABLE audit (seq int AUTO_INCREMENT PRIMARY KEY, tbl varchar(20), k int)",
        "CREATE TRIGGER a_upd AFTER UPDATE ON accounts FOR EACH ROW INSERT INTO audit (tbl, k) VALUES ('accounts', NEW.id)",
        "CREATE TRIGGER e_ins AFTER INSERT ON entries FOR EACH ROW INSERT INTO audit (tbl, k) VALUES ('entries', NEW.account_id)",
    ] {
        target.rows(sql).await;
    }
    burst(&db, 1).await;
    let log = sync_log(&plan);
    let expected: Vec<String> = (1..=40).flat_map(|a| [format!("entries {a}"), format!("accounts {a}")]).collect();
    let audit: Vec<String> = target
        .rows("SELECT tbl, CAST(k AS CHAR) FROM audit ORDER BY seq")
        .await
        .into_iter()
        .map(|r| r.join(" "))
        .collect();
    assert_eq!(audit, expected, "the triggers saw the writes out of commit order");
    assert!(!log.contains("table by table"), "a trigger sees the order, yet the group went table by table:\n{log}");

    // Phase 2: no trigger, a foreign key from entries to accounts.
    for sql in ["DROP TRIGGER a_upd", "DROP TRIGGER e_ins"] {
        target.rows(sql).await;
    }
    target
        .rows("ALTER TABLE entries ADD CONSTRAINT entries_account FOREIGN KEY (account_id) REFERENCES accounts (id)")
        .await;
    burst(&db, 2).await;
    let log = sync_log(&plan);
    assert!(
        !log.contains("table by table"),
        "a foreign key relates the tables, yet the group went table by table:\n{log}"
    );

    // Phase 3: nothing relates them: table by table, same result.
    target.rows("ALTER TABLE entries DROP FOREIGN KEY entries_account").await;
    burst(&db, 3).await;
    let log = sync_log(&plan);
    assert!(log.contains("applying the group table by table"), "the group kept one statement per change:\n{log}");
    assert!(!log.contains("row by row"), "the table-by-table group was refused and run again:\n{log}");

    // Phase 4: a row lost on the target, in a table-by-table group whose
    // check of the 40 updated rows is one statement padded to 64 keys by
    // repeating the last one — the lost row. The check still counts 39 of
    // 40 rows: the sync stops, naming it, and applies nothing of the group.
    target.rows("DELETE FROM accounts WHERE id = 40").await;
    burst(&db, 4).await;
    let out = xdb(&plan, &["sync", "--until-caught-up"]);
    let text = support::text(&out);
    assert!(!out.status.success(), "a lost row was not noticed: {text}");
    assert!(text.contains("UPDATE matched no row") && text.contains("id=40"), "{text}");
    assert_eq!(
        target.rows("SELECT count(*) FROM entries WHERE n = 4").await,
        vec![vec!["0".to_string()]],
        "part of the failing group was applied"
    );
    // Put back as the source had it before round 4, the stream goes on.
    target.rows("INSERT INTO accounts VALUES (40, 7.50, 'owner 40')").await;
    let log = sync_log(&plan);
    assert!(log.contains("applying the group table by table"), "{log}");
}

/// 40 source transactions, each an entry and its account's new balance.
async fn burst(db: &PgDb, round: i32) {
    let c = db.super_client().await;
    for a in 1..=40 {
        c.batch_execute(&format!(
            "BEGIN; INSERT INTO entries VALUES ({a}, {round}, {round}.50, 'round {round}');
             UPDATE accounts SET balance = balance + {round}.50 WHERE id = {a}; COMMIT;"
        ))
        .await
        .unwrap();
    }
}

//! `xdb sync --reverse` and `xdb check --reverse` (the way back after the
//! switch) against the real servers: forward copy and stream into MariaDB,
//! the switch point, then writes on MariaDB streamed back to the original
//! PostgreSQL source through kill -9s, ending with `xdb validate`.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::support::{self, kill9, plan, spawn, xdb, MyDb, PgDb, PlanFile, Target};

const TABLES: &str = "
CREATE TABLE orders (
  region text NOT NULL, id int NOT NULL,
  amount numeric(12,2), total numeric, note text, placed_at timestamptz,
  payload bytea, doc json, tags jsonb, flag boolean, qty smallint,
  PRIMARY KEY (region, id));
CREATE TABLE events (id bigint PRIMARY KEY, at timestamp, day date, label varchar(40));
ALTER TABLE orders OWNER TO xdb_repl; ALTER TABLE events OWNER TO xdb_repl;
";

fn out(o: &std::process::Output) -> String {
    support::text(o)
}

/// The forward copy and stream, caught up, then the way back's start
/// recorded at that point (the forward sync stopped).
fn forward_then_start_here(plan: &PlanFile) {
    let o = xdb(plan, &["sync", "--until-caught-up"]);
    assert!(o.status.success(), "{}", out(&o));
    let o = xdb(plan, &["sync", "--reverse", "--set-start-here"]);
    assert!(o.status.success(), "{}", out(&o));
}

/// `sync --reverse` stops naming `needle`, and `query` still reads `want`
/// on the original source: nothing of the refused transaction was applied.
async fn refused_with_nothing_applied(
    plan: &PlanFile,
    src: &tokio_postgres::Client,
    needle: &str,
    query: &str,
    want: &str,
) {
    let o = xdb(plan, &["sync", "--reverse", "--until-caught-up"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains(needle), "{}", out(&o));
    let got: String = src.query_one(query, &[]).await.unwrap().get(0);
    assert_eq!(got, want, "nothing of the refused transaction was applied");
}

async fn my(db: &MyDb) -> mysql_async::Conn {
    let mut c = mysql_async::Conn::from_url(db.url()).await.expect("connect MariaDB");
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    c
}

/// A new source database `name` made by `ddl`, and a new MariaDB target
/// (`<name>_my`) for `table` with the plan's `extra` YAML.
async fn source_and_mariadb(name: &str, ddl: &str, table: &str, extra: &str) -> (PgDb, Target, PlanFile) {
    let db = PgDb::create(name).await;
    db.exec(ddl).await;
    let target = Target::Mysql(MyDb::create(&format!("{name}_my")).await);
    let plan = plan(&db, &target, table, extra);
    (db, target, plan)
}

fn mariadb(target: &Target) -> &MyDb {
    let Target::Mysql(mydb) = target else { unreachable!("a MariaDB target") };
    mydb
}

/// `sync --reverse --until-caught-up` succeeds.
fn way_back(plan: &PlanFile) {
    let o = xdb(plan, &["sync", "--reverse", "--until-caught-up"]);
    assert!(o.status.success(), "the way back: {}", out(&o));
}

/// `xdb validate` finds every column of every row equal.
fn validates(plan: &PlanFile) {
    let v = xdb(plan, &["validate"]);
    assert!(v.status.success(), "validate: {}", out(&v));
}

/// Every column of the one row `sql` reads, as text.
async fn row_texts(src: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let row = src.query_one(sql, &[]).await.unwrap();
    (0..row.len()).map(|i| row.get(i)).collect()
}

/// A login `role` that may replicate but not set
/// `session_replication_role` (granted later by the test).
async fn login_without_replica_role(admin: &tokio_postgres::Client, role: &str, password: &str) {
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
               CREATE ROLE {role} LOGIN REPLICATION PASSWORD '{password}'; END IF; END $$;
             REVOKE SET ON PARAMETER session_replication_role FROM {role};"
        ))
        .await
        .unwrap();
}

/// The plan for `tables` with `role` as the source's login.
fn plan_as(db: &PgDb, target: &Target, role: &str, password: &str, tables: &str) -> PlanFile {
    let repl = db.repl_url();
    let (scheme, rest) = repl.split_once("://").unwrap();
    let host = rest.split_once('@').unwrap().1;
    PlanFile::new(&format!(
        "name: sync\nsource:\n  url: {scheme}://{role}:{password}@{host}\n  slot: {name}_slot\n  publication: {name}_pub\n\
         target:\n  url: {}\ntables: [{tables}]\n",
        target.url(),
        name = db.name
    ))
}

/// The write load on the target after the switch: inserts, updates (also
/// of the primary key), deletes, a rolled-back transaction and one large
/// transaction of 50,000 rows.
async fn target_load(url: String) {
    let mut c = mysql_async::Conn::from_url(url).await.unwrap();
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    for round in 0..40 {
        let id = 1000 + round;
        c.query_drop(format!(
            "INSERT INTO orders (region, id, amount, total, note, placed_at, payload, doc, tags, flag, qty) VALUES \
             ('eu', {id}, 12.50, 3.25, 'grüße ✓ {round}', '2026-01-02 03:04:05.123456', x'00ff10', '{{\"a\": {round}}}', '[1, 2]', 1, 7), \
             ('us', {id}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        ))
        .await
        .unwrap();
        c.query_drop(format!(
            "UPDATE orders SET note = CONCAT(note, ' ü'), amount = amount + 1 WHERE region = 'eu' AND id = {id}"
        ))
        .await
        .unwrap();
        // A primary-key change.
        c.query_drop(format!("UPDATE orders SET id = {} WHERE region = 'us' AND id = {id}", id + 100_000))
            .await
            .unwrap();
        if round % 3 == 0 {
            c.query_drop(format!("DELETE FROM orders WHERE region = 'eu' AND id = {}", id - 1)).await.unwrap();
        }
        // Rolled back: must never reach the source.
        c.query_drop("START TRANSACTION").await.unwrap();
        c.query_drop(format!("INSERT INTO events (id, label) VALUES ({}, 'rolled back')", 900_000 + round))
            .await
            .unwrap();
        c.query_drop("ROLLBACK").await.unwrap();
        if round == 20 {
            c.query_drop("START TRANSACTION").await.unwrap();
            for chunk in 0..50 {
                let values: Vec<String> = (0..1000)
                    .map(|i| {
                        let id = 100_000 + chunk * 1000 + i;
                        format!("({id}, '2026-05-06 07:08:09.5', '2026-05-06', 'bulk ✓ {id}')")
                    })
                    .collect();
                c.query_drop(format!("INSERT INTO events (id, at, day, label) VALUES {}", values.join(",")))
                    .await
                    .unwrap();
            }
            c.query_drop("COMMIT").await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.query_drop("UPDATE events SET label = 'touched', at = NULL WHERE id % 7 = 0").await.unwrap();
    c.query_drop("DELETE FROM events WHERE id % 11 = 0").await.unwrap();
    let _ = c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_on_mariadb_flow_back_through_kills_and_validate() {
    let db = PgDb::create("xdb_rev_src").await;
    db.exec(TABLES).await;
    db.exec(
        "INSERT INTO orders SELECT CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g, g * 1.25, g / 3.0, 'zeile ' || g || ' €', \
         '2025-12-31 23:59:59.999999+02'::timestamptz + g * interval '1 minute', decode('00ff', 'hex'), \
         '{\"k\": \"värde\"}', '{\"b\": [1, 2]}', g % 2 = 0, g FROM generate_series(1, 500) g;
         INSERT INTO events SELECT g, '2024-02-29 12:00:00'::timestamp + g * interval '1 second', '2024-02-29'::date + g, 'e' || g \
         FROM generate_series(1, 500) g;",
    )
    .await;
    let target = Target::Mysql(MyDb::create("xdb_rev_my").await);
    let mydb = mariadb(&target);
    let runbook = "cutover:\n  steps:\n    - name: Freeze\n      stop_source_writes: { database: true }\n      rollback: resume_source_writes\n    - name: Drain\n      wait_for_catchup: { timeout: 60s }\n    - name: The way back starts here\n      start_reverse: {}\n";
    let plan = plan(&db, &target, "public.orders, public.events", runbook);

    // Forward: copy and stream, then stop (the forward stream must be stopped).
    let o = xdb(&plan, &["sync", "--until-caught-up"]);
    assert!(o.status.success(), "{}", out(&o));
    db.exec("UPDATE orders SET note = 'after copy ☃' WHERE id = 7; DELETE FROM events WHERE id = 3").await;
    let o = xdb(&plan, &["sync", "--until-caught-up"]);
    assert!(o.status.success(), "{}", out(&o));

    // Without the switch point, the way back refuses and says how.
    let o = xdb(&plan, &["sync", "--reverse", "--until-caught-up"]);
    assert!(!o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("--set-start-here") && out(&o).contains("start_reverse"), "{}", out(&o));

    let o = xdb(&plan, &["check", "--reverse"]);
    assert!(o.status.success(), "{}", out(&o));
    // The switch point: the cutover freezes the source, drains, records it.
    db.exec("UPDATE orders SET note = 'just before the switch' WHERE id = 8").await;
    let o = xdb(&plan, &["sync", "--cutover", "--yes"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("sync --reverse will start at binlog."), "{}", out(&o));

    // The switch: the application writes to MariaDB now.
    let load = tokio::spawn(target_load(mydb.url()));
    let mut kills = 0;
    while !load.is_finished() || kills < 5 {
        let mut child = spawn(&plan, &["sync", "--reverse"]);
        tokio::time::sleep(Duration::from_millis(700 + 300 * kills)).await;
        kill9(&mut child);
        kills += 1;
    }
    load.await.unwrap();
    assert!(kills >= 5);
    // One reverse stream at a time: a second one would apply twice.
    let mut running = spawn(&plan, &["sync", "--reverse"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let o = xdb(&plan, &["sync", "--reverse", "--until-caught-up"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("another `xdb sync --reverse`"), "{}", out(&o));
    kill9(&mut running);
    // The killed runs made progress of their own (positions were stored).
    let src = db.super_client().await;
    let stored = src.query_opt("SELECT applied_lsn FROM xdb.state WHERE slot LIKE '%.reverse'", &[]).await.unwrap();
    assert!(stored.is_some(), "no reverse position was stored before the last run");

    way_back(&plan);
    let rolled_back: i64 =
        src.query_one("SELECT count(*) FROM events WHERE label = 'rolled back'", &[]).await.unwrap().get(0);
    assert_eq!(rolled_back, 0);
    let bulk: i64 = src.query_one("SELECT count(*) FROM events WHERE id >= 100000", &[]).await.unwrap().get(0);
    assert_eq!(bulk, 50_000 - 50_000 / 11 - 1, "the large transaction came back whole");
    let moved: i64 = src.query_one("SELECT count(*) FROM orders WHERE id > 100000", &[]).await.unwrap().get(0);
    assert_eq!(moved, 40);
    let mut c = my(mydb).await;
    let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM orders").await.unwrap();
    let m: i64 = src.query_one("SELECT count(*) FROM orders", &[]).await.unwrap().get(0);
    assert_eq!(n, Some(m));
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate after the way back: {}", out(&v));
    let st = xdb(&plan, &["status", "--reverse"]);
    assert!(st.status.success(), "{}", out(&st));
    // (The binlog is the server's: other databases' writes may follow the
    // last applied one, so the lag is not asserted to be 0 here.)
    assert!(out(&st).contains("lag:"), "{}", out(&st));
    assert!(out(&st).contains("(GTID 0-"), "{}", out(&st));

    // Cleanup removes what the way back keeps on the source, never while it runs.
    let mut running = spawn(&plan, &["sync", "--reverse"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let o = xdb(&plan, &["cleanup", "--yes"]);
    assert!(!o.status.success() && out(&o).contains("sync --reverse"), "{}", out(&o));
    kill9(&mut running);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let o = xdb(&plan, &["cleanup", "--dry-run"]);
    assert!(out(&o).contains("delete the way back's state"), "{}", out(&o));
    let o = xdb(&plan, &["cleanup", "--yes"]);
    assert!(o.status.success(), "{}", out(&o));
    let left: i64 = src
        .query_one(
            "SELECT (SELECT count(*) FROM xdb.reverse_start) + (SELECT count(*) FROM xdb.state WHERE slot LIKE '%.reverse') \
             + (SELECT count(*) FROM xdb.reverse_position)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the way back's state is gone from the source");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reverse_names_missing_privileges_and_sqlite_has_no_way_back() {
    let db = PgDb::create("xdb_rev_chk").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY); GRANT ALL ON t TO xdb_repl;").await;
    let mydb = MyDb::create("xdb_rev_chk_my").await;
    let user = support::unique("xdb_rev_np");
    let mut admin = my(&mydb).await;
    admin
        .query_drop(format!(
            "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'; GRANT ALL ON `{}`.* TO '{user}'@'127.0.0.1'",
            mydb.name
        ))
        .await
        .unwrap();
    let url = mydb.url();
    let (scheme_user, rest) = url.split_once('@').unwrap();
    let (scheme, _) = scheme_user.split_once("://").unwrap();
    let limited = format!("{scheme}://{user}:pw@{rest}");
    let plan = support::PlanFile::new(&format!(
        "name: rev\nsource:\n  url: {}\n  slot: {}_slot\n  publication: {}_pub\ntarget:\n  url: {limited}\ntables: [public.t]\n",
        db.repl_url(),
        db.name,
        db.name
    ));
    let o = support::xdb_args(&["check", "--reverse", "--plan", plan.path.to_str().unwrap()]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("GRANT REPLICATION SLAVE ON *.* TO '{user}'@'127.0.0.1';")), "{text}");
    assert!(text.contains("binlog_row_image = FULL"), "{text}");
    admin.query_drop(format!("DROP USER '{user}'@'127.0.0.1'")).await.unwrap();

    let sqlite = Target::sqlite("xdb_rev_sqlite");
    let plan = crate::support::plan(&db, &sqlite, "public.t", "");
    let o = xdb(&plan, &["check", "--reverse"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("SQLite file has no change log"), "{}", out(&o));
    let o = xdb(&plan, &["sync", "--reverse"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("no way back from a SQLite target"), "{}", out(&o));

    let pg_target = Target::Postgres(PgDb::create("xdb_rev_chk_pg").await);
    let plan = crate::support::plan(&db, &pg_target, "public.t", "");
    let o = xdb(&plan, &["check", "--reverse"]);
    assert!(out(&o).contains("the target has wal_level = logical"), "{}", out(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn values_and_schema_changes_that_cannot_go_back_are_reported() {
    let (db, target, plan) = source_and_mariadb(
        "xdb_rev_rep",
        "CREATE TABLE flags (id int PRIMARY KEY, flag boolean, note text); ALTER TABLE flags OWNER TO xdb_repl;
         INSERT INTO flags VALUES (1, true, 'a'), (2, false, 'b');",
        "public.flags",
        "",
    )
    .await;
    let mydb = mariadb(&target);
    forward_then_start_here(&plan);

    // TINYINT(1) holds 5; a boolean does not: reported, never guessed.
    let mut c = my(mydb).await;
    c.query_drop("UPDATE flags SET flag = 5, note = 'x' WHERE id = 2").await.unwrap();
    let o = xdb(&plan, &["sync", "--reverse", "--until-caught-up"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("table public.flags, column flag, key (2): 5 is not a boolean"), "{}", out(&o));
    let src = db.super_client().await;
    let note: String = src.query_one("SELECT note FROM flags WHERE id = 2", &[]).await.unwrap().get(0);
    assert_eq!(note, "b", "nothing of the refused transaction was applied");

    // A schema change on the target stops the way back with the statement.
    c.query_drop("UPDATE flags SET flag = 0 WHERE id = 2").await.unwrap();
    let o = xdb(&plan, &["sync", "--reverse", "--set-start-here"]);
    assert!(o.status.success(), "{}", out(&o));
    // While streaming: the statement comes through the binlog.
    let child = spawn(&plan, &["sync", "--reverse"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.query_drop("ALTER TABLE flags ADD COLUMN added INT").await.unwrap();
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("ALTER TABLE flags ADD COLUMN added INT"), "{}", out(&o));
    assert!(out(&o).contains("run the equivalent statement on the original PostgreSQL source"), "{}", out(&o));
    assert!(
        out(&o).contains("table flags (source public.flags): column added (int(11)) was added; on the original source run: ALTER TABLE public.flags ADD COLUMN added integer;"),
        "{}",
        out(&o)
    );
    // Restarted after the change, it refuses before reading anything.
    let o = xdb(&plan, &["sync", "--reverse", "--until-caught-up"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("column added of target table flags is not on the original source"), "{}", out(&o));
    // Once the original has it too, the way back continues past the statement.
    db.exec("ALTER TABLE flags ADD COLUMN added int").await;
    c.query_drop("UPDATE flags SET added = 42, note = 'after the change' WHERE id = 1").await.unwrap();
    way_back(&plan);
    let added: i32 = src.query_one("SELECT added FROM flags WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(added, 42);
}

/// A table shaped like the film table of the pagila sample database comes
/// back: a text[] (`special_features`) and an int[] that went forward as
/// JSON arrays, a tsvector, an enum and a domain, written on MariaDB by the
/// application (including a two-dimensional array and NULL elements), then
/// the way back, then `xdb validate` over every column.
#[tokio::test(flavor = "multi_thread")]
async fn arrays_and_text_search_vectors_come_back() {
    let (db, target, plan) = source_and_mariadb(
        "xdb_rev_arr",
        "CREATE TYPE mpaa_rating AS ENUM ('G', 'PG', 'PG-13', 'R', 'NC-17');
         CREATE DOMAIN year AS integer CHECK (VALUE >= 1901 AND VALUE <= 2155);
         CREATE TABLE film (film_id int PRIMARY KEY, title text NOT NULL, release_year year,
           rating mpaa_rating DEFAULT 'G', special_features text[], scores int[], fulltext tsvector NOT NULL);
         ALTER TABLE film OWNER TO xdb_repl;
         INSERT INTO film VALUES
           (1, 'ACADEMY DINOSAUR', 2006, 'PG', '{\"Deleted Scenes\",\"Behind the Scenes\"}', '{1,2,3}',
            to_tsvector('english', 'academy dinosaur epic drama')),
           (2, 'ACE GOLDFINGER', 2006, 'G', '{Trailers}', NULL, to_tsvector('english', 'ace goldfinger'));",
        "public.film",
        "",
    )
    .await;
    let mydb = mariadb(&target);
    forward_then_start_here(&plan);

    let mut c = my(mydb).await;
    c.query_drop(
        r#"UPDATE film SET special_features = '["Trailers", "Commentaries", null, "a \\"quoted\\" {one}"]',
           scores = '[[1, 2], [3, null]]', `fulltext` = '''ace'':1 ''goldfing'':2 ''new'':3' WHERE film_id = 2"#,
    )
    .await
    .unwrap();
    c.query_drop(
        "INSERT INTO film VALUES (3, 'ADAPTATION HOLES', 2006, 'NC-17', '[]', '[7]', '''adapt'':1 ''hole'':2')",
    )
    .await
    .unwrap();
    c.query_drop("UPDATE film SET rating = 'R', special_features = NULL WHERE film_id = 1").await.unwrap();
    way_back(&plan);
    let src = db.super_client().await;
    let got =
        row_texts(&src, "SELECT special_features::text, scores::text, fulltext::text FROM film WHERE film_id = 2")
            .await;
    assert_eq!(
        got,
        [r#"{Trailers,Commentaries,NULL,"a \"quoted\" {one}"}"#, "{{1,2},{3,NULL}}", "'ace':1 'goldfing':2 'new':3"]
    );
    validates(&plan);

    // A JSON array PostgreSQL has no array for: reported, nothing applied.
    c.query_drop("UPDATE film SET scores = '[[1], [2, 3]]', title = 'RAGGED' WHERE film_id = 3").await.unwrap();
    refused_with_nothing_applied(
        &plan,
        &src,
        "table public.film, column scores, key (3)",
        "SELECT title FROM film WHERE film_id = 3",
        "ADAPTATION HOLES",
    )
    .await;
}

/// Network addresses, intervals and bit strings (an application's sessions
/// table: who logged in from where, for how long, with which flags) come
/// back from MariaDB, where the forward mapping wrote their text: values
/// that went forward and values the application wrote there, then
/// `xdb validate` over every column. A text the source type cannot hold is
/// refused naming table, column and key, with nothing applied.
#[tokio::test(flavor = "multi_thread")]
async fn addresses_intervals_and_bit_strings_come_back() {
    let (db, target, plan) = source_and_mariadb(
        "xdb_rev_net",
        "CREATE TABLE sessions (id int PRIMARY KEY, ip inet, net cidr, mac macaddr, mac8 macaddr8,
           took interval, flags bit(4), tags varbit(8), note text);
         ALTER TABLE sessions OWNER TO xdb_repl;
         INSERT INTO sessions VALUES
           (1, '192.168.0.10/24', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05',
            '1 year 2 mons -3 days 04:05:06.5', B'1010', B'101', 'first'),
           (2, '2001:db8::1', '2001:db8::/32', NULL, NULL, '-00:00:01', B'0000', B'', 'second');",
        "public.sessions",
        "",
    )
    .await;
    let mydb = mariadb(&target);
    forward_then_start_here(&plan);

    let mut c = my(mydb).await;
    c.query_drop(
        "INSERT INTO sessions VALUES (3, '10.1.2.3', '172.16.0.0/12', '08-00-2B-AA-BB-CC', '0800.2baa.bbcc.ddee',
           'P1DT2H', '0110', '11111111', 'written on MariaDB')",
    )
    .await
    .unwrap();
    c.query_drop("UPDATE sessions SET took = '3 days 00:00:01', flags = '1111', note = 'back' WHERE id = 1")
        .await
        .unwrap();
    way_back(&plan);
    let src = db.super_client().await;
    let got = row_texts(&src, "SELECT ip::text, net::text, mac::text, mac8::text, took::text, flags::text, tags::text FROM sessions WHERE id = 3").await;
    assert_eq!(
        got,
        [
            "10.1.2.3/32",
            "172.16.0.0/12",
            "08:00:2b:aa:bb:cc",
            "08:00:2b:aa:bb:cc:dd:ee",
            "1 day 02:00:00",
            "0110",
            "11111111"
        ]
    );
    let took: String = src.query_one("SELECT took::text FROM sessions WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(took, "3 days 00:00:01");
    validates(&plan);

    // Text the source's type cannot hold: refused, nothing applied.
    c.query_drop("UPDATE sessions SET flags = '10', note = 'SHORT' WHERE id = 2").await.unwrap();
    refused_with_nothing_applied(
        &plan,
        &src,
        "table public.sessions, column flags, key (2)",
        "SELECT note FROM sessions WHERE id = 2",
        "second",
    )
    .await;
}

/// Arrays of dates, timestamps, intervals and floats (a booking's nights,
/// a sensor's readings) went forward as JSON arrays of ISO strings and
/// numbers, and come back as the source's arrays: values that went forward
/// and values the application wrote there (an offset, a NaN), then
/// `xdb validate`. A numeric(10,2) element with three fraction digits
/// (PostgreSQL would round it) is refused, nothing applied.
#[tokio::test(flavor = "multi_thread")]
async fn arrays_of_dates_times_and_floats_come_back() {
    let (db, target, plan) = source_and_mariadb(
        "xdb_rev_arr2",
        "CREATE TABLE stays (id int PRIMARY KEY, nights date[], seen timestamptz[], gaps interval[],
           readings float8[], coarse real[], prices numeric(10,2)[], amounts numeric[], note text);
         ALTER TABLE stays OWNER TO xdb_repl;
         INSERT INTO stays VALUES (1, '{2024-01-02,2024-01-03}', '{\"2024-03-05 10:11:12.5+00\"}', '{\"1 day 02:00:00\"}',
           '{0.1,-2.5e100,NaN}', '{0.5,Infinity}', '{1.50,2.25}', '{1.000,-0.5,NaN}', 'first');",
        "public.stays",
        "",
    )
    .await;
    let mydb = mariadb(&target);
    forward_then_start_here(&plan);
    let mut c = my(mydb).await;
    c.query_drop(
        r#"INSERT INTO stays VALUES (2, '["2025-02-28", null, "2025-03-01"]', '["2025-01-01 12:00:00+02:00"]',
           '["P1M2DT3H"]', '[1.5, "NaN", 3]', '[0.25]', '[3.5, 4]', '[12345678901234567890.123456789]',
           'written on MariaDB')"#,
    )
    .await
    .unwrap();
    c.query_drop("UPDATE stays SET readings = '[[1, 2], [3, 4]]', note = 'back' WHERE id = 1").await.unwrap();
    way_back(&plan);
    let src = db.super_client().await;
    src.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();
    let got = row_texts(
        &src,
        "SELECT nights::text, seen::text, gaps::text, readings::text, coarse::text, prices::text, amounts::text \
             FROM stays WHERE id = 2",
    )
    .await;
    assert_eq!(
        got,
        [
            "{2025-02-28,NULL,2025-03-01}",
            "{\"2025-01-01 10:00:00+00\"}",
            "{\"1 mon 2 days 03:00:00\"}",
            "{1.5,NaN,3}",
            "{0.25}",
            "{3.50,4.00}",
            "{12345678901234567890.123456789}"
        ]
    );
    let r1: String = src.query_one("SELECT readings::text FROM stays WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(r1, "{{1,2},{3,4}}");
    validates(&plan);

    c.query_drop("UPDATE stays SET prices = '[1.555]', note = 'ROUNDED' WHERE id = 2").await.unwrap();
    refused_with_nothing_applied(
        &plan,
        &src,
        "table public.stays, column prices, key (2)",
        "SELECT note FROM stays WHERE id = 2",
        "written on MariaDB",
    )
    .await;
}

/// `TRUNCATE TABLE` on the target is a statement in the binlog, not row
/// events: the way back skipped it, and the original source kept every
/// row the target had emptied (silently, until `validate`). It comes back
/// as the emptying of that table, in its place in commit order; a table
/// outside the plan is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_truncate_on_the_target_comes_back() {
    let (db, target, plan) = source_and_mariadb(
        "xdb_rev_trunc",
        "CREATE TABLE carts (id int PRIMARY KEY, note text); ALTER TABLE carts OWNER TO xdb_repl;
         INSERT INTO carts SELECT g, 'cart ' || g FROM generate_series(1, 50) g;",
        "public.carts",
        "",
    )
    .await;
    let mydb = mariadb(&target);
    forward_then_start_here(&plan);
    let mut c = my(mydb).await;
    c.query_drop("CREATE TABLE scratch (id int PRIMARY KEY); INSERT INTO scratch VALUES (1); TRUNCATE TABLE scratch")
        .await
        .unwrap();
    c.query_drop("UPDATE carts SET note = 'before' WHERE id = 1").await.unwrap();
    c.query_drop(format!("TRUNCATE TABLE `{}`.`carts`", mydb.name)).await.unwrap();
    c.query_drop("INSERT INTO carts VALUES (7, 'after the truncate')").await.unwrap();
    way_back(&plan);
    let src = db.super_client().await;
    let rows: Vec<(i32, String)> = src
        .query("SELECT id, note FROM carts ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, vec![(7, "after the truncate".to_string())]);
    validates(&plan);
}

/// The original source's foreign keys with actions (pagila's `ON UPDATE
/// CASCADE`, `ON DELETE SET NULL`) must not act again on the way back: the
/// target has no foreign keys (xdb creates none), so what the application
/// did there is exactly the rows that come back; a cascade on the source
/// would change rows the target kept. Applied as PostgreSQL's own
/// replication applies (session_replication_role = replica), then `xdb
/// validate` finds every row as the target has it.
#[tokio::test(flavor = "multi_thread")]
async fn the_sources_foreign_key_actions_do_not_act_on_the_way_back() {
    let admin = support::pg_connect(&support::pg_super_url("postgres")).await;
    let role = "xdb_rev_fk_login";
    login_without_replica_role(&admin, role, "pw-fk").await;
    let db = PgDb::create("xdb_rev_fk").await;
    db.exec(&format!(
        "GRANT ALL ON DATABASE {name} TO {role};
         CREATE TABLE rental (rental_id int PRIMARY KEY, note text);
         CREATE TABLE payment (payment_id int PRIMARY KEY,
           rental_id int REFERENCES rental ON UPDATE CASCADE ON DELETE SET NULL, amount numeric(5,2));
         CREATE TABLE line (line_id int PRIMARY KEY, rental_id int NOT NULL REFERENCES rental ON DELETE CASCADE);
         ALTER TABLE rental OWNER TO {role}; ALTER TABLE payment OWNER TO {role}; ALTER TABLE line OWNER TO {role};
         INSERT INTO rental SELECT g, 'rental ' || g FROM generate_series(1, 5) g;
         INSERT INTO payment SELECT g, 1 + g % 5, g FROM generate_series(1, 20) g;
         INSERT INTO line SELECT g, 1 + g % 5 FROM generate_series(1, 20) g;",
        name = db.name
    ))
    .await;
    let target = Target::Mysql(MyDb::create("xdb_rev_fk_my").await);
    let mydb = mariadb(&target);
    let plan = plan_as(&db, &target, role, "pw-fk", "public.rental, public.payment, public.line");
    forward_then_start_here(&plan);
    let mut c = my(mydb).await;
    // The application on the target: a rental deleted and one renumbered
    // (no foreign key there: its payments and lines stay as they were).
    c.query_drop("DELETE FROM rental WHERE rental_id = 1; UPDATE rental SET rental_id = 200 WHERE rental_id = 2")
        .await
        .unwrap();
    let src = db.super_client().await;
    let count = |sql: &'static str| {
        let src = &src;
        async move { src.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };

    // Without the privilege: refused, naming the cascades, nothing applied.
    let o = xdb(&plan, &["sync", "--reverse", "--until-caught-up"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("foreign key line_rental_id_fkey ON DELETE CASCADE"), "{}", out(&o));
    assert!(out(&o).contains(&format!("GRANT SET ON PARAMETER session_replication_role TO {role}")), "{}", out(&o));
    assert_eq!(count("SELECT count(*) FROM rental").await, 5, "nothing applied");

    admin.batch_execute(&format!("GRANT SET ON PARAMETER session_replication_role TO {role}")).await.unwrap();
    way_back(&plan);
    assert_eq!(
        count("SELECT count(*) FROM payment WHERE rental_id IN (1, 2)").await,
        8,
        "payments keep their rental ids"
    );
    assert_eq!(count("SELECT count(*) FROM line WHERE rental_id = 1").await, 4, "no cascade deleted the lines");
    validates(&plan);
}

/// Values of extension and composite types (citext, hstore, a range, a
/// composite) moved as their text (the plan's LONGTEXT overrides) come
/// back as that text, which PostgreSQL reads as it would the same INSERT;
/// a type whose forward mapping changed the value (timetz, normalised to
/// UTC) cannot, and `check --reverse` names it before the switch instead
/// of the way back stopping on the first change of the table.
#[tokio::test(flavor = "multi_thread")]
async fn extension_types_come_back_as_text_and_check_names_what_cannot() {
    let overrides = "mapping:\n  columns:\n    public.kunden.mail: LONGTEXT\n    public.kunden.props: LONGTEXT\n    public.kunden.during: LONGTEXT\n    public.kunden.home: LONGTEXT\n";
    let (db, target, plan) = source_and_mariadb(
        "xdb_rev_ext",
        "CREATE EXTENSION IF NOT EXISTS citext; CREATE EXTENSION IF NOT EXISTS hstore;
         CREATE TYPE addr AS (street text, zip int);
         CREATE DOMAIN email AS citext CHECK (VALUE ~ '@');
         CREATE TABLE kunden (id int PRIMARY KEY, mail email, props hstore, during tstzrange, home addr, note text);
         ALTER TABLE kunden OWNER TO xdb_repl;
         INSERT INTO kunden VALUES (1, 'A@b.de', 'a=>1, b=>NULL', '[2024-01-01,2024-02-01)', ROW('Hauptstr. 1', 12345), 'first');",
        "public.kunden",
        overrides,
    )
    .await;
    let mydb = mariadb(&target);
    let o = xdb(&plan, &["sync", "--until-caught-up"]);
    assert!(o.status.success(), "{}", out(&o));
    let o = xdb(&plan, &["check", "--reverse"]);
    assert!(o.status.success(), "{}", out(&o));
    let o = xdb(&plan, &["sync", "--reverse", "--set-start-here"]);
    assert!(o.status.success(), "{}", out(&o));
    let mut c = my(mydb).await;
    c.query_drop(
        "UPDATE kunden SET mail = 'X@Y.org', props = '\"c\"=>\"x y\"', during = '[\"2025-01-01 00:00:00+00\",)', home = '(\"a\"\"b\",)', note = 'back' WHERE id = 1",
    )
    .await
    .unwrap();
    c.query_drop("INSERT INTO kunden VALUES (2, 'n@m.de', NULL, 'empty', NULL, 'new')").await.unwrap();
    way_back(&plan);
    let src = db.super_client().await;
    let got =
        row_texts(&src, "SELECT mail::text, props::text, during::text, home::text, note FROM kunden WHERE id = 1")
            .await;
    assert_eq!(got, ["X@Y.org", "\"c\"=>\"x y\"", "[\"2025-01-01 00:00:00+00\",)", "(\"a\"\"b\",)", "back"]);
    validates(&plan);

    // timetz went forward normalised to UTC: named by check --reverse.
    db.exec("ALTER TABLE kunden ADD COLUMN opens timetz").await;
    let o = xdb(&plan, &["check", "--reverse"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("public.kunden.opens (time with time zone)"), "{}", out(&o));
}

/// The original source's own triggers (pagila's `last_updated`, which sets
/// `last_update = now()` on every UPDATE, and an audit trigger) must not
/// fire again on the way back: the target's rows already carry their
/// effects, and firing them would change the values that come back. When
/// xdb's login may not set `session_replication_role` the way back refuses
/// before applying anything, naming the table, the trigger and the fix;
/// once granted, it applies as PostgreSQL's own replication does (replica
/// role: ordinary triggers do not fire) and `xdb validate` finds every
/// value as the target has it.
#[tokio::test(flavor = "multi_thread")]
async fn the_sources_triggers_do_not_fire_on_the_way_back() {
    let admin = support::pg_connect(&support::pg_super_url("postgres")).await;
    let role = "xdb_rev_trg_login";
    login_without_replica_role(&admin, role, "pw-trg").await;
    let db = PgDb::create("xdb_rev_trg").await;
    db.exec(&format!("GRANT ALL ON DATABASE {} TO {role}", db.name)).await;
    db.exec(&format!(
        "{}
         INSERT INTO film VALUES (1, 'ACADEMY DINOSAUR', '2022-02-15 09:46:20'), (2, 'ACE GOLDFINGER', '2022-02-15 09:46:20');
         TRUNCATE audit;
         ALTER TABLE film OWNER TO {role}; ALTER TABLE audit OWNER TO {role}; ALTER SEQUENCE audit_n_seq OWNER TO {role};",
        support::FILM_WITH_TRIGGERS
    ))
    .await;
    let target = Target::Mysql(MyDb::create("xdb_rev_trg_my").await);
    let mydb = mariadb(&target);
    let plan = plan_as(&db, &target, role, "pw-trg", "public.film");
    forward_then_start_here(&plan);

    let mut c = my(mydb).await;
    c.query_drop("UPDATE film SET title = 'ACE GOLDFINGER II', last_update = '2026-12-01 10:00:00' WHERE film_id = 2")
        .await
        .unwrap();
    c.query_drop("INSERT INTO film VALUES (3, 'ADAPTATION HOLES', '2026-12-02 11:00:00')").await.unwrap();
    let src = db.super_client().await;
    let title = |id: i32| {
        let src = &src;
        async move { src.query_one("SELECT title FROM film WHERE film_id = $1", &[&id]).await.unwrap().get::<_, String>(0) }
    };

    // Without the privilege: refused before anything is applied.
    let o = xdb(&plan, &["sync", "--reverse", "--until-caught-up"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let text = out(&o);
    assert!(text.contains("public.film") && text.contains("last_updated") && text.contains("audit_film"), "{text}");
    assert!(text.contains(&format!("GRANT SET ON PARAMETER session_replication_role TO {role}")), "{text}");
    assert_eq!(title(2).await, "ACE GOLDFINGER", "nothing was applied");
    let o = xdb(&plan, &["check", "--reverse"]);
    assert_eq!(o.status.code(), Some(1), "check --reverse says it first: {}", out(&o));
    assert!(out(&o).contains(&format!("GRANT SET ON PARAMETER session_replication_role TO {role}")), "{}", out(&o));

    // With it: applied as the target has it, no trigger fired.
    admin.batch_execute(&format!("GRANT SET ON PARAMETER session_replication_role TO {role}")).await.unwrap();
    let o = xdb(&plan, &["check", "--reverse"]);
    assert!(out(&o).contains("will not fire on the way back"), "{}", out(&o));
    way_back(&plan);
    assert_eq!(title(2).await, "ACE GOLDFINGER II");
    let at: String = src.query_one("SELECT last_update::text FROM film WHERE film_id = 2", &[]).await.unwrap().get(0);
    assert_eq!(at, "2026-12-01 10:00:00", "the source's last_updated trigger fired on the way back");
    let audited: i64 = src.query_one("SELECT count(*) FROM audit", &[]).await.unwrap().get(0);
    assert_eq!(audited, 0, "the source's audit trigger fired on the way back");
    validates(&plan);
    drop(db);
    admin.batch_execute(&format!("REVOKE SET ON PARAMETER session_replication_role FROM {role}")).await.unwrap();
}

/// A table with a stored generated column comes back: PostgreSQL computes
/// the column itself, so the way back writes every other column and the
/// generated one ends equal to what the target holds — whether the target
/// has it as a generated column (the default) or as a plain column fed by
/// the stream (`mapping.generated: source`).
async fn generated_columns_come_back(generated_yaml: &str, tag: &str) {
    let db = PgDb::create(&format!("xdb_rev_gen_{tag}")).await;
    db.exec(
        "CREATE TABLE order_lines (id int PRIMARY KEY, qty int NOT NULL, price numeric(10,2) NOT NULL,
                             total int GENERATED ALWAYS AS (qty * 3 + 1) STORED, note text);
         ALTER TABLE order_lines OWNER TO xdb_repl;
         INSERT INTO order_lines (id, qty, price, note) SELECT g, g % 5, g * 1.5, 'n' || g FROM generate_series(1, 50) g;",
    )
    .await;
    let target = Target::Mysql(MyDb::create(&format!("xdb_rev_gen_my_{tag}")).await);
    let mydb = mariadb(&target);
    let extra = format!(
        "{generated_yaml}cutover:\n  steps:\n    - name: Freeze\n      stop_source_writes: {{ database: true }}\n      rollback: resume_source_writes\n    - name: Drain\n      wait_for_catchup: {{ timeout: 60s }}\n    - name: Back\n      start_reverse: {{}}\n"
    );
    let plan = plan(&db, &target, "public.order_lines", &extra);
    let o = xdb(&plan, &["sync", "--until-caught-up"]);
    assert!(o.status.success(), "{}", out(&o));
    let o = xdb(&plan, &["sync", "--cutover", "--yes"]);
    assert!(o.status.success(), "{}", out(&o));
    let mut c = my(mydb).await;
    // The application on MariaDB writes only the plain columns.
    c.query_drop("INSERT INTO order_lines (id, qty, price, note) VALUES (100, 3, 2.50, 'new')").await.unwrap();
    c.query_drop("UPDATE order_lines SET qty = qty + 1 WHERE id <= 10").await.unwrap();
    c.query_drop("UPDATE order_lines SET note = 'only the note' WHERE id = 20").await.unwrap();
    c.query_drop("DELETE FROM order_lines WHERE id = 30").await.unwrap();
    if generated_yaml.is_empty() {
        // A generated column on MariaDB: it recomputes it too.
    } else {
        // A plain column on MariaDB: the application keeps it right.
        c.query_drop("UPDATE order_lines SET total = qty * 3 + 1 WHERE id <= 10 OR id = 100").await.unwrap();
    }
    way_back(&plan);
    let src = db.super_client().await;
    let row = src.query_one("SELECT qty, total::text FROM order_lines WHERE id = 100", &[]).await.unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, String>(1)), (3, "10".to_string()));
    let row = src.query_one("SELECT total::text FROM order_lines WHERE id = 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "10", "qty 3 × 3 + 1, computed by PostgreSQL");
    let gone: i64 = src.query_one("SELECT count(*) FROM order_lines WHERE id = 30", &[]).await.unwrap().get(0);
    assert_eq!(gone, 0);
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate after the way back: {}", out(&v));
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_columns_come_back_when_the_target_computes_them() {
    generated_columns_come_back("", "tgt").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_columns_come_back_when_the_stream_carried_them() {
    generated_columns_come_back("mapping:\n  generated: source\n", "src").await;
}

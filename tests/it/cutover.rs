//! `xdb cutover` against real servers: a PostgreSQL source with an
//! application role, MariaDB / SQLite / PostgreSQL targets. Proves the
//! freeze stops the application's writes and the inverse restores exactly
//! what was there; failed steps roll back newest first; `--resume` never
//! runs a completed step twice (also after `kill -9`); `--dry-run` changes
//! nothing and shows no password; bad runbooks are refused with a location.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{env, text, unique, MyDb, PgDb, PlanFile};

const APP_PASSWORD: &str = "app_pw_7f3k";

/// A runbook whose one step is resuming source writes.
const RESUME_STEP: &str = "  steps:\n    - name: Resume\n      resume_source_writes: {}\n";

/// A runbook whose one step freezes `role`'s writes (rolled back by resuming them).
fn freeze_step(role: &str) -> String {
    format!(
        "  steps:\n    - name: Freeze\n      stop_source_writes: {{ roles: [{role}] }}\n      rollback: resume_source_writes\n"
    )
}

/// A fresh directory under the system's temp dir.
fn scratch_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The URL of a SQLite target file in `dir`.
fn sqlite_in(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("t.db").display())
}

/// A login role for "the application", dropped (with its settings) on drop.
struct AppRole {
    name: String,
}

impl AppRole {
    async fn create(db: &PgDb) -> AppRole {
        let name = unique("app");
        db.exec(&format!("CREATE ROLE {name} LOGIN PASSWORD '{APP_PASSWORD}'")).await;
        db.exec(&format!(
            "GRANT ALL ON ALL TABLES IN SCHEMA public TO {name}; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {name}"
        ))
        .await;
        AppRole { name }
    }

    fn url(&self, db: &PgDb) -> String {
        format!("postgres://{}:{APP_PASSWORD}@127.0.0.1:{}/{}", self.name, env("XDB_PG_PORT"), db.name)
    }
}

impl Drop for AppRole {
    fn drop(&mut self) {
        let name = self.name.clone();
        let url = crate::support::pg_super_url("postgres");
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let c = crate::support::pg_connect(&url).await;
                let _ = c
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                        &[&name],
                    )
                    .await;
                // Privileges live in the (dropped-later) database; drop them there first.
                let dbs = c
                    .query(
                        "SELECT d.datname::text FROM pg_database d WHERE has_database_privilege($1, d.datname, 'CONNECT') AND d.datallowconn",
                        &[&name],
                    )
                    .await
                    .unwrap_or_default();
                for row in dbs {
                    let db: String = row.get(0);
                    if let Ok((dc, conn)) = tokio_postgres::connect(&crate::support::pg_super_url(&db), tokio_postgres::NoTls).await {
                        tokio::spawn(conn);
                        let _ = dc.batch_execute(&format!("DROP OWNED BY {name}")).await;
                    }
                }
                let _ = c.batch_execute(&format!("DROP ROLE IF EXISTS {name}")).await;
            });
        })
        .join();
    }
}

/// Tries one write as the application; Err carries the server's message.
async fn app_write(db: &PgDb, app: &AppRole) -> Result<(), String> {
    let (c, conn) = tokio_postgres::connect(&app.url(db), tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    c.batch_execute("INSERT INTO orders (v) VALUES ('from the app')")
        .await
        .map_err(|e| e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()))
}

/// The application role's own settings for this database.
async fn app_settings(db: &PgDb, app: &AppRole) -> Vec<String> {
    let c = db.super_client().await;
    let rows = c
        .query(
            "SELECT unnest(s.setconfig) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole \
             JOIN pg_database d ON d.oid = s.setdatabase WHERE r.rolname = $1 AND d.datname = current_database()",
            &[&app.name],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// A source with `orders` (5 rows, sequence moved to 100) and an app role.
async fn source() -> (PgDb, AppRole) {
    let db = PgDb::create("xdb_cut_src").await;
    db.exec(
        "CREATE TABLE orders (id bigserial PRIMARY KEY, v text);
         INSERT INTO orders (v) SELECT 'row ' || g FROM generate_series(1, 5) g;
         SELECT setval('orders_id_seq', 100);
         CREATE TABLE rb_log (n serial PRIMARY KEY, what text);",
    )
    .await;
    let app = AppRole::create(&db).await;
    (db, app)
}

fn plan_yaml(source_url: &str, target_url: &str, cutover: &str) -> String {
    format!(
        "name: cutover_test\nsource:\n  url: {source_url}\n  slot: {}\ntarget:\n  url: {target_url}\ntables: [public.orders]\ncutover:\n{cutover}",
        unique("xdb_cut_slot")
    )
}

/// `xdb cutover` with its state directory in the plan's (temporary) directory.
fn run(plan: &Path, extra: &[&str]) -> Output {
    crate::support::output_within(cutover_cmd(plan).args(extra), std::time::Duration::from_secs(900))
}

fn cutover_cmd(plan: &Path) -> Command {
    let mut c = crate::support::xdb_command();
    c.args(["cutover", "--plan", plan.to_str().unwrap()]).env("XDB_STATE_DIR", state_dir(plan));
    c
}

fn state_dir(plan: &Path) -> PathBuf {
    plan.with_file_name("state")
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The plan's journal in its state directory (the only one, when any).
fn journal_path(plan: &Path) -> Option<PathBuf> {
    let found: Vec<PathBuf> =
        files_under(&state_dir(plan)).into_iter().filter(|p| p.extension().is_some_and(|x| x == "jsonl")).collect();
    assert!(found.len() <= 1, "one journal per plan and source: {found:?}");
    found.into_iter().next()
}

fn journal(plan: &Path) -> PathBuf {
    journal_path(plan).unwrap_or_else(|| panic!("no journal under {}", state_dir(plan).display()))
}

fn journal_text(plan: &Path) -> String {
    journal_path(plan).and_then(|j| std::fs::read_to_string(j).ok()).unwrap_or_default()
}

fn psql() -> String {
    let p = format!("{}/psql", env("XDB_PG_BINDIR"));
    if Path::new(&p).exists() {
        p
    } else {
        "psql".into()
    }
}

async fn mysql_scalar(url: &str, sql: &str) -> Option<String> {
    use mysql_async::prelude::Queryable;
    let mut c = mysql_async::Conn::from_url(url).await.unwrap();
    let v: Option<String> = c.query_first(sql).await.unwrap();
    let _ = c.disconnect().await;
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_cutover_freezes_the_app_proves_and_syncs_sequences_then_resume_restores_exactly() {
    let (db, app) = source().await;
    // A pre-existing setting must come back exactly as it was (not RESET).
    db.exec(&format!("ALTER ROLE {} IN DATABASE {} SET default_transaction_read_only = off", app.name, db.name)).await;
    let my = MyDb::create("xdb_cut_my").await;
    {
        use mysql_async::prelude::Queryable;
        let mut c = mysql_async::Conn::from_url(my.url()).await.unwrap();
        c.query_drop("CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, v TEXT)").await.unwrap();
        c.query_drop("INSERT INTO orders (id, v) VALUES (1,'row 1'),(2,'row 2'),(3,'row 3'),(4,'row 4'),(5,'row 5')")
            .await
            .unwrap();
        let _ = c.disconnect().await;
    }
    // An application session open before the freeze must be ended.
    let (held, held_conn) = tokio_postgres::connect(&app.url(&db), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(held_conn);

    let cutover = format!(
        r#"  steps:
    - name: Stop writes
      stop_source_writes: {{ roles: [{app}] }}
      rollback: resume_source_writes
    - name: Prove the app cannot write
      command:
        run: '{psql} "$APP_URL" -c "INSERT INTO orders (v) VALUES (1)" 2>&1 | grep -q "read-only transaction"'
        env: {{ APP_URL: "{app_url}" }}
    - name: Same row count on both sides
      compare: {{ source_sql: "SELECT COUNT(*) FROM orders", target_sql: "SELECT COUNT(*) FROM orders" }}
    - name: Validate
      validate: {{}}
    - name: Sync sequences
      sync_sequences: {{}}
      verify: {{ sql: "SELECT COUNT(*) FROM orders", on: target, expect: 5 }}
"#,
        app = app.name,
        psql = psql(),
        app_url = app.url(&db)
    );
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &my.url(), &cutover));
    let t0 = Instant::now();
    let out = run(&plan.path, &[]);
    let o = text(&out);
    assert!(out.status.success(), "{o}");
    for n in 1..=5 {
        assert!(o.contains(&format!("[{n}/5]")), "step {n} printed:\n{o}");
    }
    assert!(o.contains("cutover complete") && o.contains("writes stopped on the source for"), "{o}");
    assert!(o.contains("1 table(s) equal (row counts and checksums)"), "{o}");
    let super_pw =
        crate::support::env("XDB_PG_SUPER_URL").split(':').nth(2).unwrap().split('@').next().unwrap().to_string();
    assert!(!o.contains(&super_pw) && !o.contains(APP_PASSWORD), "no password in the output:\n{o}");
    assert!(t0.elapsed() < Duration::from_secs(30), "the cutover took {:?}", t0.elapsed());

    // The held session is gone, and new app sessions cannot write.
    assert!(held.batch_execute("SELECT 1").await.is_err(), "the app's open session was ended");
    let e = app_write(&db, &app).await.unwrap_err();
    assert!(e.contains("read-only transaction"), "{e}");
    assert_eq!(app_settings(&db, &app).await, vec!["default_transaction_read_only=on".to_string()]);

    // The target hands out ids past the source's (next was 101).
    {
        use mysql_async::prelude::Queryable;
        let mut c = mysql_async::Conn::from_url(my.url()).await.unwrap();
        c.query_drop("INSERT INTO orders (v) VALUES ('on the target')").await.unwrap();
        let id: Option<i64> = c.query_first("SELECT MAX(id) FROM orders").await.unwrap();
        assert_eq!(id, Some(101));
        let _ = c.disconnect().await;
    }

    // Resume writes with a second runbook sharing the journal (the freeze
    // record lives there): the previous `off` comes back, the app writes.
    let resume = PlanFile::new(&plan_yaml(
        &db.super_url(),
        &my.url(),
        "  steps:\n    - name: Resume writes\n      resume_source_writes: {}\n",
    ));
    let j = journal(&plan.path);
    let out = run(&resume.path, &["--journal", j.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(app_settings(&db, &app).await, vec!["default_transaction_read_only=off".to_string()]);
    app_write(&db, &app).await.expect("the app writes again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_verify_rolls_back_newest_first_and_the_source_is_writable_again() {
    let (db, app) = source().await;
    let dir = scratch_dir("xdb_cut_sqlite");
    let sqlite = dir.join("t.db");
    let log =
        |n: &str| format!("{{ sql: {{ on: source, statements: \"INSERT INTO rb_log (what) VALUES ('{n}')\" }} }}");
    let cutover = format!(
        r#"  steps:
    - name: Stop writes
      stop_source_writes: {{ roles: [{app}] }}
      rollback: resume_source_writes
    - name: Two
      sql: {{ on: target, statements: ["CREATE TABLE two (x INTEGER)"] }}
      rollback: [{l2}, {{ sql: {{ on: target, statements: "DROP TABLE two" }} }}]
    - name: Three
      sleep: 10ms
      rollback: {l3}
    - name: Four checks the impossible
      sql: {{ on: source, statements: "SELECT 1" }}
      verify: {{ sql: "SELECT COUNT(*) FROM orders", on: source, expect: 42 }}
      rollback: {l4}
    - name: Never reached
      sql: {{ on: source, statements: "INSERT INTO rb_log (what) VALUES ('five ran')" }}
"#,
        app = app.name,
        l2 = log("two"),
        l3 = log("three"),
        l4 = log("four"),
    );
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &format!("sqlite://{}", sqlite.display()), &cutover));
    let out = run(&plan.path, &[]);
    let o = text(&out);
    assert_eq!(out.status.code(), Some(1), "{o}");
    assert!(o.contains("step 4 (\"Four checks the impossible\") failed") && o.contains("expected 42"), "{o}");
    let c = db.super_client().await;
    let order: Vec<String> =
        c.query("SELECT what FROM rb_log ORDER BY n", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(order, vec!["four", "three", "two"], "rollbacks newest first, the failed step's own first");
    // Step 1's rollback ran last: the app writes again, its settings are as before.
    app_write(&db, &app).await.expect("writes resumed after the rollback");
    assert!(app_settings(&db, &app).await.is_empty());
    let tables: i64 = rusqlite::Connection::open(&sqlite)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'two'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 0, "step two's rollback dropped its table");
    assert!(o.contains("source writes: not stopped by xdb"), "{o}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_continues_at_the_failed_step_and_runs_nothing_twice() {
    let (db, _app) = source().await;
    db.exec("CREATE TABLE flag (x int)").await;
    let dir = scratch_dir("xdb_cut_sqlite");
    let sqlite = dir.join("t.db");
    let ins = |n: &str| format!("sql: {{ on: source, statements: \"INSERT INTO rb_log (what) VALUES ('{n}')\" }}");
    let cutover = format!(
        r#"  steps:
    - name: One
      {s1}
    - name: Two
      {s2}
    - name: Needs the flag
      {s3}
      verify: {{ sql: "SELECT COUNT(*) FROM flag", on: source, expect: 1 }}
    - name: Four
      {s4}
"#,
        s1 = ins("one"),
        s2 = ins("two"),
        s3 = ins("three"),
        s4 = ins("four"),
    );
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &format!("sqlite://{}", sqlite.display()), &cutover));
    let out = run(&plan.path, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    db.exec("INSERT INTO flag VALUES (1)").await;
    let out = run(&plan.path, &["--resume"]);
    let o = text(&out);
    assert!(out.status.success(), "{o}");
    assert!(o.contains("resuming at step 3"), "{o}");
    let c = db.super_client().await;
    let ran: Vec<String> =
        c.query("SELECT what FROM rb_log ORDER BY n", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    // Step three ran in both runs (it failed its verification the first time).
    assert_eq!(ran, vec!["one", "two", "three", "three", "four"]);
    // Everything is done: another --resume runs nothing.
    let out = run(&plan.path, &["--resume"]);
    assert!(out.status.success(), "{}", text(&out));
    let n: i64 = c.query_one("SELECT COUNT(*) FROM rb_log", &[]).await.unwrap().get(0);
    assert_eq!(n, 5);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_runbook_then_resume_completes_without_repeating_a_step() {
    let (db, app) = source().await;
    let dir = scratch_dir("xdb_cut_kill");
    let flag = dir.join("go");
    let cutover = format!(
        r#"  steps:
    - name: Stop writes
      stop_source_writes: {{ roles: [{app}] }}
      rollback: resume_source_writes
    - name: Log one
      sql: {{ on: source, statements: "INSERT INTO rb_log (what) VALUES ('one')" }}
    - name: Wait for the flag
      command: 'while [ ! -f "{flag}" ]; do sleep 0.1; done'
    - name: Resume writes
      resume_source_writes: {{}}
"#,
        app = app.name,
        flag = flag.display()
    );
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &sqlite_in(&dir), &cutover));
    let mut child = cutover_cmd(&plan.path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let at_step_3 =
        |text: String| text.lines().any(|l| l.contains("\"event\":\"step_started\"") && l.contains("\"step\":2,"));
    while !at_step_3(journal_text(&plan.path)) {
        assert!(Instant::now() < deadline, "the cutover never reached step 3");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    assert!(app_write(&db, &app).await.is_err(), "writes stay stopped after the crash");

    // Without --resume the half-done cutover is refused.
    let out = run(&plan.path, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--resume"), "{}", text(&out));

    std::fs::write(&flag, b"").unwrap();
    let out = run(&plan.path, &["--resume"]);
    let o = text(&out);
    assert!(out.status.success(), "{o}");
    assert!(o.contains("resuming at step 3"), "{o}");
    let c = db.super_client().await;
    let n: i64 = c.query_one("SELECT COUNT(*) FROM rb_log", &[]).await.unwrap().get(0);
    assert_eq!(n, 1, "step two ran once");
    app_write(&db, &app).await.expect("resumed writes restore the app");
    assert!(app_settings(&db, &app).await.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_changes_nothing_and_prints_no_password() {
    let (db, app) = source().await;
    let my = MyDb::create("xdb_cut_dry").await;
    let cutover = format!(
        r#"  steps:
    - name: Stop writes
      stop_source_writes: {{ roles: [{app}] }}
      rollback: resume_source_writes
    - name: Drop it all
      sql: {{ on: source, statements: ["DROP TABLE orders"] }}
      confirm: true
    - name: Target too
      sql: {{ on: target, statements: "CREATE TABLE dry (x INT)" }}
    - name: Sequences
      sync_sequences: {{ margin: 10 }}
    - name: Switch
      command: ./switch.sh "$TARGET_URL"
"#,
        app = app.name
    );
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &my.url(), &cutover));
    let out = run(&plan.path, &["--dry-run"]);
    let o = text(&out);
    assert!(out.status.success(), "{o}");
    assert!(o.contains(&format!("ALTER ROLE \"{}\" IN DATABASE", app.name)) && o.contains("DROP TABLE orders"), "{o}");
    assert!(o.contains("CREATE TABLE dry") && o.contains("AUTO_INCREMENT") && o.contains("TARGET_URL=mysql://"), "{o}");
    let pg_pw = env("XDB_PG_SUPER_URL").split(':').nth(2).unwrap().split('@').next().unwrap().to_string();
    let my_pw = env("XDB_MYSQL_URL").split(':').nth(2).unwrap().split('@').next().unwrap().to_string();
    assert!(!o.contains(&pg_pw) && !o.contains(&my_pw), "no password:\n{o}");
    assert!(journal_path(&plan.path).is_none(), "a dry run writes no journal");
    let c = db.super_client().await;
    let n: i64 = c.query_one("SELECT COUNT(*) FROM orders", &[]).await.unwrap().get(0);
    assert_eq!(n, 5);
    assert!(app_settings(&db, &app).await.is_empty());
    app_write(&db, &app).await.expect("still writable");
    assert_eq!(
        mysql_scalar(&my.url(), "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()").await,
        Some("0".into())
    );
}

#[test]
fn invalid_runbooks_are_refused_with_step_and_location() {
    let cases = [
        ("    - name: Freeze\n      stop_source_write: {}\n", "did you mean `stop_source_writes`", "plan.yaml:12:7"),
        ("    - name: A\n      sleep: 1s\n      retrys: 3\n", "did you mean `retries`", "plan.yaml:13:7"),
        ("    - name: Drain\n      wait_for_catchup: {}\n", "needs a timeout", "plan.yaml:12:7"),
        (
            "    - name: B\n      sleep: 1s\n      rollback: resume_writes\n",
            "rollback names no action",
            "plan.yaml:13:7",
        ),
        ("    - name: C\n      command: x\n      sleep: 1s\n", "exactly one action", ""),
    ];
    for (steps, want, at) in cases {
        let yaml = format!(
            "name: bad\nsource:\n  url: postgres://u:secretpw@127.0.0.1:1/db\ntarget:\n  url: sqlite://x.db\ntables: [t]\ncutover:\n  steps:\n    - name: Fine\n      sleep: 1ms\n{steps}"
        );
        let plan = PlanFile::new(&yaml);
        let out = run(&plan.path, &[]);
        let o = text(&out);
        assert_eq!(out.status.code(), Some(2), "{o}");
        assert!(o.contains(want) && o.contains("cutover step 2"), "{want}: {o}");
        if !at.is_empty() {
            assert!(o.contains(&format!("{}/{}", plan.dir.display(), at)), "{at}: {o}");
        }
        assert!(!o.contains("secretpw"), "{o}");
        assert!(journal_path(&plan.path).is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_sequences_on_sqlite_and_postgres_targets() {
    let (db, _app) = source().await;
    // SQLite: an AUTOINCREMENT table gets its sqlite_sequence row.
    let dir = scratch_dir("xdb_cut_seq");
    let sqlite = dir.join("t.db");
    {
        let c = rusqlite::Connection::open(&sqlite).unwrap();
        c.execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT); INSERT INTO orders (id, v) VALUES (5, 'row 5');",
        )
        .unwrap();
    }
    let steps = "  steps:\n    - name: Sequences\n      sync_sequences: { margin: 10 }\n";
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &format!("sqlite://{}", sqlite.display()), steps));
    let out = run(&plan.path, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let c = rusqlite::Connection::open(&sqlite).unwrap();
    c.execute("INSERT INTO orders (v) VALUES ('new')", []).unwrap();
    assert_eq!(c.last_insert_rowid(), 111, "source next 101 + margin 10");

    // PostgreSQL: setval on the target's own sequence.
    let target = PgDb::create("xdb_cut_seq_pg").await;
    target.exec("CREATE TABLE orders (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text)").await;
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &target.super_url(), steps));
    let out = run(&plan.path, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let id: i64 = target
        .super_client()
        .await
        .query_one("INSERT INTO orders (v) VALUES ('new') RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 111);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_for_catchup_and_lag_follow_the_applied_position_on_the_target() {
    let (db, _app) = source().await;
    let dir = scratch_dir("xdb_cut_lag");
    let sqlite = dir.join("t.db");
    let target_url = format!("sqlite://{}", sqlite.display());
    let yaml = plan_yaml(
        &db.super_url(),
        &target_url,
        "  steps:\n    - name: Lag\n      wait_for_lag: { max_bytes: 100000000, max_seconds: 5, timeout: 20s }\n    - name: Drain\n      wait_for_catchup: { timeout: 20s }\n",
    );
    let plan = PlanFile::new(&yaml);
    let loaded = xdb::plan::Plan::load(&plan.path).unwrap();

    // No sync has recorded anything yet: the wait fails, naming the cause.
    let short = PlanFile::new(&yaml.replace("timeout: 20s }\n    - name: Drain", "timeout: 1s }\n    - name: Drain"));
    let out = run(&short.path, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is `xdb sync` running"), "{}", text(&out));

    // Play the part of `xdb sync`: record the source's position as applied.
    let slot = loaded.source.slot.clone();
    let source_url = db.super_url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let stop = stop.clone();
        let url = loaded.target.url.clone();
        tokio::spawn(async move {
            let mut t = xdb::sink::TargetConn::connect(&url).await.unwrap();
            t.ensure_state_tables().await.unwrap();
            let c = crate::support::pg_connect(&source_url).await;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let lsn: String = c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap().get(0);
                let lsn: xdb::model::Lsn = lsn.parse().unwrap();
                t.record_position(&slot, lsn, xdb::model::Lsn(1)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let path = plan.path.clone();
    let out = tokio::task::spawn_blocking(move || run(&path, &[])).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = feeder.await;
    let o = text(&out);
    assert!(out.status.success(), "{o}");
    assert!(o.contains("marker") && o.contains("applied") && o.contains("lag at the switch"), "{o}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_database_freeze_spares_xdbs_own_role_and_resumes_exactly() {
    let (db, app) = source().await;
    let dir = scratch_dir("xdb_cut_db");
    let target = sqlite_in(&dir);
    let steps = "  steps:\n    - name: Freeze everything\n      stop_source_writes: { database: true }\n      rollback: resume_source_writes\n    - name: xdb still writes\n      sql: { on: source, statements: \"INSERT INTO rb_log (what) VALUES ('xdb')\" }\n";
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &target, steps));
    let out = run(&plan.path, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let e = app_write(&db, &app).await.unwrap_err();
    assert!(e.contains("read-only transaction"), "{e}");

    let resume = PlanFile::new(&plan_yaml(&db.super_url(), &target, RESUME_STEP));
    let j = journal(&plan.path);
    let out = run(&resume.path, &["--journal", j.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    app_write(&db, &app).await.expect("writable again");
    let c = db.super_client().await;
    let left: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "every setting xdb made is gone");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_breached_post_check_rolls_back_and_counts_the_writes_the_target_took_after_the_switch() {
    let (db, app) = source().await;
    let dir = scratch_dir("xdb_cut_post");
    let sqlite = dir.join("t.db");
    rusqlite::Connection::open(&sqlite)
        .unwrap()
        .execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO orders (v) VALUES ('a'), ('b');",
        )
        .unwrap();
    let cutover = format!(
        r#"  steps:
    - name: Stop writes
      stop_source_writes: {{ roles: [{app}] }}
      rollback: resume_source_writes
    - name: Switch
      switch: true
      command: "true"
      rollback: {{ command: "true" }}
    - name: The application writes to the target
      sql: {{ on: target, statements: ["INSERT INTO orders (v) VALUES ('c'), ('d'), ('e')"] }}
  post_checks:
    duration: 2s
    interval: 200ms
    checks:
      - {{ sql: "SELECT COUNT(*) FROM orders", on: target, expect: 2 }}
"#,
        app = app.name
    );
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &format!("sqlite://{}", sqlite.display()), &cutover));
    let out = run(&plan.path, &[]);
    let o = text(&out);
    assert_eq!(out.status.code(), Some(1), "{o}");
    assert!(o.contains("post-check breached") && o.contains("post_checks"), "{o}");
    assert!(
        o.contains("writes it accepted since the switch are NOT on the source: +3 rows")
            && o.contains("public.orders +3"),
        "{o}"
    );
    app_write(&db, &app).await.expect("writes resumed after the breach");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The whole story with `xdb sync` streaming and the application writing
/// all along: every write the source acknowledged before the freeze is on
/// the target, the marker proves the drain, and the freeze is short.
#[tokio::test(flavor = "multi_thread")]
async fn end_to_end_with_sync_streaming_and_the_application_writing() {
    let (db, app) = source().await;
    db.exec("ALTER TABLE orders OWNER TO xdb_repl").await;
    let dir = scratch_dir("xdb_cut_e2e");
    let target = sqlite_in(&dir);
    let slot = unique("xdb_cut_e2e");
    let common = |url: &str, cutover: &str| {
        format!(
            "name: e2e\nsource:\n  url: {url}\n  slot: {slot}\n  publication: {slot}\n  heartbeat_interval_secs: 1\n\
             target:\n  url: {target}\ntables: [public.orders]\n{cutover}"
        )
    };
    let sync_plan = PlanFile::new(&common(&db.repl_url(), ""));
    let cutover_plan = PlanFile::new(&common(
        &db.super_url(),
        &format!(
            r#"cutover:
  steps:
    - name: Lag is small
      wait_for_lag: {{ max_seconds: 5, timeout: 60s }}
    - name: Stop the application
      stop_source_writes: {{ roles: [{app}] }}
      rollback: resume_source_writes
    - name: Drain
      wait_for_catchup: {{ timeout: 30s }}
    - name: Validate
      validate: {{}}
    - name: Sequences
      sync_sequences: {{}}
"#,
            app = app.name
        ),
    ));
    let mut sync = crate::support::xdb_command()
        .args(["sync", "--plan", sync_plan.path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // The application: inserts as fast as it can, remembering every id the
    // source acknowledged; reconnects when its session is ended.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let url = app.url(&db);
        tokio::spawn(async move {
            let mut acked: Vec<i64> = Vec::new();
            let mut refused = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                tokio::spawn(conn);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match c.query_one("INSERT INTO orders (v) VALUES ('live') RETURNING id", &[]).await {
                        Ok(r) => acked.push(r.get(0)),
                        Err(_) => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            break;
                        }
                    }
                }
            }
            (acked, refused)
        })
    };
    // Let the copy finish and the stream run under load.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = rusqlite::Connection::open(dir.join("t.db"))
            .ok()
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM orders", [], |r| r.get::<_, i64>(0)).ok())
            .unwrap_or(0);
        if n > 50 {
            break;
        }
        assert!(Instant::now() < deadline, "sync never streamed the application's writes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let path = cutover_plan.path.clone();
    let out = tokio::task::spawn_blocking(move || run(&path, &[])).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, refused) = writer.await.unwrap();
    let _ = Command::new("kill").args(["-TERM", &sync.id().to_string()]).status();
    let _ = sync.wait();
    let o = text(&out);
    assert!(out.status.success(), "{o}");
    assert!(refused > 0, "the application was refused after the freeze");
    let c = rusqlite::Connection::open(dir.join("t.db")).unwrap();
    let on_target: std::collections::HashSet<i64> = {
        let mut st = c.prepare("SELECT id FROM orders").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    };
    let missing: Vec<&i64> = acked.iter().filter(|id| !on_target.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes missing on the target, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let freeze_line =
        o.lines().find(|l| l.contains("writes stopped on the source for")).unwrap_or_default().to_string();
    assert!(freeze_line.contains(" s ") || freeze_line.contains(" ms "), "the freeze lasted seconds: {freeze_line}");
    eprintln!("{} acknowledged writes, all on the target; {freeze_line}", acked.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_step_aborts_and_runs_the_rollbacks() {
    let (db, app) = source().await;
    let dir = scratch_dir("xdb_cut_term");
    let cutover = format!(
        "  steps:\n    - name: Stop writes\n      stop_source_writes: {{ roles: [{}] }}\n      rollback: resume_source_writes\n    - name: Long\n      command: sleep 30\n",
        app.name
    );
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &sqlite_in(&dir), &cutover));
    let child = cutover_cmd(&plan.path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !journal_text(&plan.path).contains("\"step\":1,") {
        assert!(Instant::now() < deadline, "the cutover never reached step 2");
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let out = child.wait_with_output().unwrap();
    let o = text(&out);
    assert_eq!(out.status.code(), Some(1), "{o}");
    assert!(t0.elapsed() < Duration::from_secs(15), "stopped promptly");
    assert!(o.contains("interrupted by SIGINT/SIGTERM") && o.contains("rolled back"), "{o}");
    app_write(&db, &app).await.expect("writes resumed by the rollback");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 17: a failed step rolled the freeze back, the application wrote
/// while nothing was frozen; `--resume` must freeze again *and* validate
/// again — the validation done before the rollback proves nothing now.
#[tokio::test(flavor = "multi_thread")]
async fn resume_after_a_rollback_validates_again_and_does_not_switch_on_stale_proof() {
    let (db, app) = source().await;
    db.exec("CREATE TABLE flag (x int)").await;
    let my = MyDb::create("xdb_cut_rb").await;
    {
        use mysql_async::prelude::Queryable;
        let mut c = mysql_async::Conn::from_url(my.url()).await.unwrap();
        c.query_drop("CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, v TEXT)").await.unwrap();
        c.query_drop("INSERT INTO orders (id, v) VALUES (1,'row 1'),(2,'row 2'),(3,'row 3'),(4,'row 4'),(5,'row 5')")
            .await
            .unwrap();
        let _ = c.disconnect().await;
    }
    let cutover = format!(
        r#"  steps:
    - name: Stop writes
      stop_source_writes: {{ roles: [{app}] }}
      rollback: resume_source_writes
    - name: Validate
      validate: {{}}
    - name: Needs the flag
      sql: {{ on: source, statements: "SELECT 1" }}
      verify: {{ sql: "SELECT COUNT(*) FROM flag", on: source, expect: 1 }}
    - name: Switch
      sql: {{ on: source, statements: "INSERT INTO rb_log (what) VALUES ('switched')" }}
"#,
        app = app.name
    );
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &my.url(), &cutover));
    let out = run(&plan.path, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // The rollback unfroze the source: the application writes a row the
    // target never sees (no sync runs in this test).
    app_write(&db, &app).await.expect("writes resumed by the rollback");
    db.exec("INSERT INTO flag VALUES (1)").await;

    let out = run(&plan.path, &["--resume"]);
    let o = text(&out);
    assert_eq!(out.status.code(), Some(1), "the resumed run must find the difference:\n{o}");
    assert!(!o.contains("Validate — already done"), "{o}");
    assert!(o.contains("step 2 (\"Validate\") failed") && o.contains("validation found differences"), "{o}");
    let c = db.super_client().await;
    let switched: i64 = c.query_one("SELECT COUNT(*) FROM rb_log WHERE what = 'switched'", &[]).await.unwrap().get(0);
    assert_eq!(switched, 0, "no switch on a stale validation");
    app_write(&db, &app).await.expect("the failed resume rolled its freeze back");
}

/// Issue 17: the journal is a file anyone with the account can edit; a
/// value read back from it is never pasted into SQL unchecked.
#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_journal_value_is_refused_not_executed() {
    let (db, app) = source().await;
    let dir = scratch_dir("xdb_cut_inj");
    let target = sqlite_in(&dir);
    let steps = freeze_step(&app.name);
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &target, &steps));
    let out = run(&plan.path, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let j = journal(&plan.path);
    let tampered = std::fs::read_to_string(&j)
        .unwrap()
        .replace("\"previous\":null", "\"previous\":\"off; CREATE TABLE injected (x int)\"");
    assert!(tampered.contains("injected"), "the journal records the previous value: {tampered}");
    std::fs::write(&j, tampered).unwrap();

    let resume = PlanFile::new(&plan_yaml(&db.super_url(), &target, RESUME_STEP));
    let out = run(&resume.path, &["--journal", j.to_str().unwrap()]);
    let o = text(&out);
    assert_eq!(out.status.code(), Some(1), "{o}");
    assert!(o.contains("not a boolean"), "{o}");
    let c = db.super_client().await;
    let n: i64 = c.query_one("SELECT COUNT(*) FROM pg_tables WHERE tablename = 'injected'", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "the journal's text was executed:\n{o}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 17: a journal beside the plan was committed with it, and a fresh
/// clone's dry run reported another machine's freeze. Journals live in the
/// state directory, one per plan name and source identity; nothing is
/// written beside the plan; a finished run is not re-armed by `--resume`; a
/// freeze record is honoured only for the source it was made on.
#[tokio::test(flavor = "multi_thread")]
async fn journals_live_in_the_state_directory_per_source_and_never_beside_the_plan() {
    let (db, app) = source().await;
    let dir = scratch_dir("xdb_cut_state");
    let target = sqlite_in(&dir);
    let steps = format!(
        "  steps:\n    - name: Freeze\n      stop_source_writes: {{ roles: [{}] }}\n      rollback: resume_source_writes\n    - name: Resume\n      resume_source_writes: {{}}\n",
        app.name
    );
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &target, &steps));
    let xdg = dir.join("xdg");
    let with_xdg = |extra: &[&str]| {
        crate::support::xdb_command()
            .args(["cutover", "--plan", plan.path.to_str().unwrap()])
            .args(extra)
            .env_remove("XDB_STATE_DIR")
            .env("XDG_STATE_HOME", &xdg)
            .output()
            .unwrap()
    };
    let out = with_xdg(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(files_under(&plan.dir), vec![plan.path.clone()], "nothing is written beside the plan");

    let sysid: String = db
        .super_client()
        .await
        .query_one("SELECT system_identifier::text FROM pg_control_system()", &[])
        .await
        .unwrap()
        .get(0);
    let j = xdg.join("xdb/cutover/cutover_test").join(format!("{sysid}-{}.jsonl", db.name));
    assert_eq!(files_under(&xdg), vec![j.clone()], "one journal, keyed by plan name and source identity");

    // Finished: --resume has nothing to do (the freeze is not re-run).
    let out = with_xdg(&["--resume"]);
    let o = text(&out);
    assert!(out.status.success() && o.contains("nothing to resume") && !o.contains("[1/2]"), "{o}");
    // The dry run finds the journal and reports no freeze: it was released.
    let out = with_xdg(&["--dry-run"]);
    assert!(out.status.success() && !text(&out).contains("recorded as stopped"), "{}", text(&out));

    // A freeze record written for another source is not honoured here.
    let freeze_only = PlanFile::new(&plan_yaml(&db.super_url(), &target, &freeze_step(&app.name)));
    let other = dir.join("other.jsonl");
    let out = run(&freeze_only.path, &["--journal", other.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let moved = std::fs::read_to_string(&other).unwrap().replace(&sysid, "1234567890");
    std::fs::write(&other, moved).unwrap();
    let resume = PlanFile::new(&plan_yaml(&db.super_url(), &target, RESUME_STEP));
    let out = run(&resume.path, &["--journal", other.to_str().unwrap()]);
    let o = text(&out);
    assert_eq!(out.status.code(), Some(1), "{o}");
    assert!(o.contains("not for this source") && o.contains("ignored"), "{o}");
    assert!(app_write(&db, &app).await.is_err(), "the settings were left alone");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 17: a login that does not own the database fails on its first
/// `ALTER DATABASE` (42501) and changes nothing; the report must say what
/// the settings read back as, not that writes are "STILL STOPPED".
#[tokio::test(flavor = "multi_thread")]
async fn a_freeze_that_changed_nothing_is_not_reported_as_one() {
    let (db, app) = source().await;
    let dir = scratch_dir("xdb_cut_noown");
    let target = sqlite_in(&dir);
    let steps =
        "  steps:\n    - name: Freeze\n      stop_source_writes: { database: true }\n      rollback: resume_source_writes\n";
    // The application's own login as the plan's source: not the owner.
    let plan = PlanFile::new(&plan_yaml(&app.url(&db), &target, steps));
    let out = run(&plan.path, &[]);
    let o = text(&out);
    assert_eq!(out.status.code(), Some(1), "{o}");
    assert!(o.contains("42501"), "{o}");
    assert!(!o.contains("STILL STOPPED"), "nothing was frozen:\n{o}");
    assert!(o.contains("source writes: not stopped"), "{o}");
    assert!(!o.contains("rollback(s) FAILED"), "there was nothing to roll back:\n{o}");
    app_write(&db, &app).await.expect("the source stays writable");
    // The journal holds no active freeze: a resume has nothing to restore.
    let j = std::fs::read_to_string(journal(&plan.path)).unwrap();
    assert!(j.contains("\"event\":\"freeze_released\""), "{j}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 17: a plan whose target is its own source is refused before any
/// step runs (the validation would compare the source with itself).
#[tokio::test(flavor = "multi_thread")]
async fn a_cutover_whose_target_is_the_source_is_refused() {
    let (db, app) = source().await;
    let steps = freeze_step(&app.name);
    // Same database, another login: the URL text differs, the database does not.
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &db.repl_url(), &steps));
    let out = run(&plan.path, &[]);
    let o = text(&out);
    assert_eq!(out.status.code(), Some(2), "{o}");
    assert!(o.contains("the target is the source"), "{o}");
    app_write(&db, &app).await.expect("nothing was frozen");
    assert!(journal_path(&plan.path).is_none(), "nothing ran, no journal");
}

/// Issue 17: `kill -9` right after the freeze leaves the source frozen with
/// no one to say so. The next `xdb status`, `xdb sync` and `xdb cutover`
/// say it first, with the exact commands; `--rollback` undoes the freeze.
#[tokio::test(flavor = "multi_thread")]
async fn after_kill_9_past_the_freeze_status_sync_and_cutover_say_the_source_is_frozen() {
    let (db, app) = source().await;
    let dir = scratch_dir("xdb_cut_k9f");
    let sqlite = dir.join("t.db");
    // A target table xdb did not fill: `sync` stops at once after its notice.
    rusqlite::Connection::open(&sqlite)
        .unwrap()
        .execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO orders VALUES (1, 'x');")
        .unwrap();
    let cutover = format!(
        "  steps:\n    - name: Stop writes\n      stop_source_writes: {{ roles: [{}] }}\n      rollback: resume_source_writes\n    - name: Hang\n      command: sleep 60\n",
        app.name
    );
    let plan = PlanFile::new(&plan_yaml(&db.super_url(), &format!("sqlite://{}", sqlite.display()), &cutover));
    let mut child = cutover_cmd(&plan.path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !journal_text(&plan.path).contains("\"event\":\"step_done\"") {
        assert!(Instant::now() < deadline, "the freeze never completed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL, right after the freeze step
    let _ = child.wait();
    assert!(app_write(&db, &app).await.is_err(), "frozen");

    let p = plan.path.to_str().unwrap();
    let resume = format!("xdb cutover --plan {p} --resume");
    let rollback = format!("xdb cutover --plan {p} --rollback");
    let said_first = |o: &str, what: &str| {
        let first = o.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
        assert!(first.contains("FROZEN"), "{what}: the first line must say the source is frozen:\n{o}");
        assert!(o.contains(&resume) && o.contains(&rollback), "{what}: the exact commands:\n{o}");
    };
    for cmd in ["status", "sync"] {
        let out = crate::support::xdb_command()
            .args([cmd, "--plan", p])
            .env("XDB_STATE_DIR", state_dir(&plan.path))
            .output()
            .unwrap();
        said_first(&text(&out), cmd);
    }
    let out = run(&plan.path, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    said_first(&text(&out), "cutover");

    let out = run(&plan.path, &["--rollback"]);
    let o = text(&out);
    assert!(out.status.success(), "{o}");
    app_write(&db, &app).await.expect("--rollback resumed the writes");
    assert!(app_settings(&db, &app).await.is_empty());
    let out = crate::support::xdb_command()
        .args(["status", "--plan", p])
        .env("XDB_STATE_DIR", state_dir(&plan.path))
        .output()
        .unwrap();
    assert!(!text(&out).contains("FROZEN"), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

//! `xdb check` against the real servers: a healthy setup passes; each
//! blocker produces its ✘ line with a fix and exit code 1.

use crate::support::{self, MyDb, PgDb, PlanFile};

fn plan_yaml(source_url: &str, target_url: &str, tables: &str) -> String {
    format!("name: checktest\nsource:\n  url: {source_url}\ntarget:\n  url: {target_url}\ntables: [{tables}]\n")
}

fn run_check(yaml: &str) -> (i32, String) {
    let f = PlanFile::new(yaml);
    let out = support::xdb_args(&["check", "--plan", f.path.to_str().unwrap()]);
    (out.status.code().unwrap_or(-1), support::text(&out))
}

async fn shop_source(db: &PgDb) {
    db.exec(
        "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric(12,2), placed_at timestamptz, doc jsonb);
         CREATE TABLE customers (id serial PRIMARY KEY, email text);
         CREATE TABLE events (at timestamptz, payload text);
         CREATE TABLE audit (at timestamptz, payload text);
         ALTER TABLE audit REPLICA IDENTITY FULL;
         ALTER TABLE orders OWNER TO xdb_repl; ALTER TABLE customers OWNER TO xdb_repl;
         ALTER TABLE events OWNER TO xdb_repl; ALTER TABLE audit OWNER TO xdb_repl;",
    )
    .await;
}

#[tokio::test]
async fn healthy_setup_passes_for_every_target_kind() {
    let src = PgDb::create("xdb_check_ok").await;
    shop_source(&src).await;
    src.exec(&format!("GRANT CREATE ON DATABASE {} TO xdb_repl", src.name)).await;
    let my = MyDb::create("xdb_check_ok").await;
    let tgt_pg = PgDb::create("xdb_check_tgt").await;
    let sqlite_dir = std::env::temp_dir().join(support::unique("xdb_check_sqlite"));
    std::fs::create_dir_all(&sqlite_dir).unwrap();
    let sqlite = format!("sqlite://{}/t.db", sqlite_dir.display());
    for target in [my.url(), sqlite.clone(), tgt_pg.super_url()] {
        let (code, out) = run_check(&plan_yaml(&src.repl_url(), &target, "public.orders, customers, audit"));
        assert_eq!(code, 0, "target {target}:\n{out}");
        assert!(out.contains("✔ wal_level = logical"), "{out}");
        assert!(out.contains("✔ public.orders: 4 columns, primary key (id)"), "{out}");
        assert!(out.contains("✔ public.audit: 2 columns, REPLICA IDENTITY FULL"), "{out}");
        assert!(out.contains("publication xdb_checktest: absent, will be created"), "{out}");
        assert!(out.contains("nothing blocks the migration"), "{out}");
        assert!(!out.contains(&support::env("XDB_PG_REPL_PASSWORD")), "password printed:\n{out}");
        assert!(!out.contains(&support::env("XDB_MYSQL_PASSWORD")), "password printed:\n{out}");
    }
    let (_, out) = run_check(&plan_yaml(&src.repl_url(), &my.url(), "orders"));
    assert!(out.contains("MariaDB"), "flavour not detected:\n{out}");
    assert!(out.contains("local_infile = ON"), "{out}");
    // check changes nothing: no slot, no publication were created.
    let c = src.super_client().await;
    let n: i64 = c
        .query_one("SELECT (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_replication_slots WHERE database = current_database())", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "xdb check created a publication or slot");
    assert!(!sqlite_dir.join("t.db").exists(), "xdb check created the SQLite file");
    let _ = std::fs::remove_dir_all(&sqlite_dir);
}

#[tokio::test]
async fn missing_table_and_missing_key_are_blockers() {
    let src = PgDb::create("xdb_check_bad").await;
    shop_source(&src).await;
    let (code, out) =
        run_check(&plan_yaml(&src.repl_url(), "sqlite:///tmp/xdb-check-unused.db", "orders, events, public.ordrs"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("✘ public.events: no primary key and REPLICA IDENTITY is not FULL"), "{out}");
    assert!(out.contains("ALTER TABLE \"public\".\"events\" REPLICA IDENTITY FULL;"), "{out}");
    assert!(out.contains("✘ public.ordrs: table does not exist"), "{out}");
    assert!(out.contains("did you mean public.orders?"), "{out}");
}

#[tokio::test]
async fn role_without_replication_is_a_blocker() {
    let src = PgDb::create("xdb_check_norepl").await;
    shop_source(&src).await;
    let role = support::unique("xdb_norepl");
    src.exec(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'norepl-pw-123'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
    ))
    .await;
    let url = support::pg_super_url(&src.name).replacen("postgres:", &format!("{role}:"), 2).replacen(
        &support::env("XDB_PG_SUPER_PASSWORD"),
        "norepl-pw-123",
        1,
    );
    let url = url.replacen(&format!("{role}://"), "postgres://", 1);
    let (code, out) = run_check(&plan_yaml(&url, "sqlite:///tmp/xdb-check-unused.db", "orders"));
    src.exec(&format!("DROP OWNED BY {role}; DROP ROLE {role}")).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("✘ role {role} has neither REPLICATION nor SUPERUSER")), "{out}");
    assert!(out.contains(&format!("ALTER ROLE {role} WITH REPLICATION;")), "{out}");
    assert!(!out.contains("norepl-pw-123"), "password printed:\n{out}");
}

#[tokio::test]
async fn unreachable_target_and_source_are_blockers() {
    let src = PgDb::create("xdb_check_unreach").await;
    shop_source(&src).await;
    let dead_mysql = "mysql://xdb:dead-pw-456@127.0.0.1:1/shop";
    let (code, out) = run_check(&plan_yaml(&src.repl_url(), dead_mysql, "orders"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("✘ target unreachable at 127.0.0.1:1"), "{out}");
    assert!(!out.contains("dead-pw-456"), "password printed:\n{out}");
    let (code, out) =
        run_check(&plan_yaml("postgres://xdb:dead-pw-789@127.0.0.1:1/shop", "sqlite:///tmp/x.db", "orders"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("✘ source unreachable"), "{out}");
    assert!(out.contains("127.0.0.1:1"), "{out}");
    assert!(!out.contains("dead-pw-789"), "password printed:\n{out}");
}

#[tokio::test]
async fn wrong_mysql_password_is_reported_without_echo() {
    let src = PgDb::create("xdb_check_mypw").await;
    shop_source(&src).await;
    let port = support::env("XDB_MYSQL_PORT");
    let (code, out) =
        run_check(&plan_yaml(&src.repl_url(), &format!("mysql://xdb:wrong-pw-999@127.0.0.1:{port}/mysql"), "orders"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Access denied"), "{out}");
    assert!(!out.contains("wrong-pw-999"), "password printed:\n{out}");
}

#[tokio::test]
async fn a_type_without_mapping_is_a_blocker_naming_the_override() {
    let src = PgDb::create("xdb_check_type").await;
    src.exec(
        "CREATE TYPE pair AS (a int, b text);
         CREATE TABLE things (id int PRIMARY KEY, p pair, span int4range, ok text);
         ALTER TABLE things OWNER TO xdb_repl;",
    )
    .await;
    let my = MyDb::create("xdb_check_type").await;
    let (code, out) = run_check(&plan_yaml(&src.repl_url(), &my.url(), "things"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Type mapping"), "{out}");
    assert!(out.contains("✘ public.things.p: type `pair` has no mapping rule"), "{out}");
    assert!(out.contains("public.things.p:"), "the fix names the override key:\n{out}");
    // Every column without a rule at once, not one per run.
    assert!(out.contains("✘ public.things.span: type `int4range` has no mapping rule"), "{out}");
    // With the override in the plan, the same table passes.
    let yaml = format!(
        "{}mapping:\n  columns:\n    public.things.p: LONGTEXT\n    public.things.span: LONGTEXT\n",
        plan_yaml(&src.repl_url(), &my.url(), "things")
    );
    let (code, out) = run_check(&yaml);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("p pair → LONGTEXT"), "{out}");
}

/// Issue 17: a target that is the source itself (same server and
/// database, whatever the URL says) passed `check`, and `snapshot` then
/// created a slot, a publication and the `xdb` schema in the source.
#[tokio::test]
async fn a_target_that_is_the_source_is_refused_before_anything_is_created() {
    let src = PgDb::create("xdb_check_self").await;
    shop_source(&src).await;
    src.exec(&format!("GRANT CREATE ON DATABASE {} TO xdb_repl", src.name)).await;
    // The same database, spelt differently: another login.
    let (code, out) = run_check(&plan_yaml(&src.repl_url(), &src.super_url(), "public.orders"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("✘") && out.contains("the target is the source"), "{out}");

    let slot = support::unique("xdb_self_slot");
    let yaml = format!(
        "name: selftest\nsource:\n  url: {}\n  slot: {slot}\n  publication: {slot}\ntarget:\n  url: {}\ntables: [public.orders]\n",
        src.repl_url(),
        src.super_url()
    );
    let plan = PlanFile::new(&yaml);
    for cmd in ["snapshot", "sync"] {
        let out = support::xdb_args(&[cmd, "--plan", plan.path.to_str().unwrap()]);
        let o = support::text(&out);
        assert!(!out.status.success(), "{cmd}: {o}");
        assert!(o.contains("the target is the source"), "{cmd}: {o}");
    }
    let c = src.super_client().await;
    let created: i64 = c
        .query_one(
            "SELECT (SELECT COUNT(*) FROM pg_replication_slots WHERE slot_name = $1)
                  + (SELECT COUNT(*) FROM pg_publication WHERE pubname = $1)
                  + (SELECT COUNT(*) FROM pg_namespace WHERE nspname = 'xdb')",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(created, 0, "nothing may be created in the source");
}

/// The cutover runbook is checked before the window: a runbook that does
/// not parse, and a `stop_source_writes` the login may not run (the
/// database is not its own; roles it may not alter), are blockers naming
/// the statement that grants it — the cutover would fail at its first step.
#[tokio::test]
async fn the_runbooks_freeze_is_checked_against_the_logins_privileges() {
    let src = PgDb::create("xdb_check_runbook").await;
    shop_source(&src).await;
    let target = format!("sqlite://{}", std::env::temp_dir().join(format!("{}.db", src.name)).display());
    let base = plan_yaml(&src.repl_url(), &target, "orders");
    let with = |steps: &str| format!("{base}cutover:\n  steps:\n{steps}");
    let freeze_db =
        "    - name: Freeze\n      stop_source_writes: { database: true }\n      rollback: resume_source_writes\n";

    let (code, out) = run_check(&with(freeze_db));
    assert_eq!(code, 0, "xdb_repl owns its database: {out}");
    assert!(out.contains("✔ stop_source_writes { database: true }: xdb_repl may set database"), "{out}");

    src.exec(&format!("ALTER DATABASE {} OWNER TO postgres", src.name)).await;
    let (code, out) = run_check(&with(freeze_db));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("xdb_repl does not own database"), "{out}");
    assert!(out.contains(&format!("ALTER DATABASE \"{}\" OWNER TO \"xdb_repl\"", src.name)), "{out}");

    src.exec(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'xdb_app_rw') THEN
           CREATE ROLE xdb_app_rw LOGIN; END IF; END $$",
    )
    .await;
    let (code, out) = run_check(&with("    - name: Freeze app\n      stop_source_writes: { roles: [xdb_app_rw] }\n"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("xdb_repl may not set the defaults of role xdb_app_rw"), "{out}");
    assert!(out.contains("CREATEROLE"), "{out}");

    let (code, out) = run_check(&with("    - name: Typo\n      stop_source_write: { database: true }\n"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cutover step 1 (\"Typo\")"), "{out}");
    assert!(out.contains("stop_source_writes"), "the suggestion: {out}");
}

/// A table keyed by a unique index (REPLICA IDENTITY USING INDEX, no
/// primary key) streams and validates (`log`, `sync` tests); check called
/// it keyless and blocked the migration.
#[tokio::test]
async fn a_table_keyed_by_its_replica_identity_index_passes() {
    let src = PgDb::create("xdb_check_ri").await;
    src.exec(
        "CREATE TABLE ri (a int NOT NULL, b text NOT NULL, c text, UNIQUE (a, b));
         ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_a_b_key; ALTER TABLE ri OWNER TO xdb_repl;",
    )
    .await;
    let target = format!("sqlite://{}", std::env::temp_dir().join(format!("{}.db", src.name)).display());
    let (code, out) = run_check(&plan_yaml(&src.repl_url(), &target, "ri"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("✔ public.ri: 3 columns, replica identity index (a, b)"), "{out}");
}

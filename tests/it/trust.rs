//! Issue 17 ("the cutover can be trusted with production"): relative paths
//! in a plan mean "beside the plan file", `${VAR}` works in every string of
//! the runbook, and no password reaches any output channel (errors, command
//! output, journal, dry run, status, logs) in any of its forms.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{env, text, unique, PgDb};

/// A password with every character that needs percent-encoding in a URL.
const TRICKY_PW: &str = "p@ss:w/rd#T7q";
const TRICKY_PW_ENCODED: &str = "p%40ss%3Aw%2Frd%23T7q";

/// A login role with [`TRICKY_PW`], dropped on drop.
struct TrickyRole {
    name: String,
}

impl TrickyRole {
    async fn create(db: &PgDb) -> TrickyRole {
        let name = unique("xdb_trust_role");
        db.exec(&format!("CREATE ROLE {name} LOGIN PASSWORD '{TRICKY_PW}'; GRANT ALL ON ALL TABLES IN SCHEMA public TO {name}; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {name}")).await;
        TrickyRole { name }
    }
}

impl Drop for TrickyRole {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let c = crate::support::pg_connect(&crate::support::pg_super_url("postgres")).await;
                let dbs = c.query("SELECT datname FROM pg_database WHERE datname LIKE 'xdb_trust%'", &[]).await;
                for row in dbs.into_iter().flatten() {
                    let db: String = row.get(0);
                    if let Ok((dc, conn)) =
                        tokio_postgres::connect(&crate::support::pg_super_url(&db), tokio_postgres::NoTls).await
                    {
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

/// A directory holding the plan (and whatever it names relatively), and
/// another one xdb is started from.
struct Dirs {
    root: PathBuf,
    plan_dir: PathBuf,
    cwd: PathBuf,
}

impl Dirs {
    fn new() -> Dirs {
        let root = std::env::temp_dir().join(unique("xdb_trust"));
        let plan_dir = root.join("plans");
        let cwd = root.join("elsewhere");
        std::fs::create_dir_all(&plan_dir).unwrap();
        std::fs::create_dir_all(&cwd).unwrap();
        Dirs { root, plan_dir, cwd }
    }

    /// `xdb <args>` started in `cwd`, with the plan named relatively
    /// (`../plans/plan.yaml`) and the state directory under `root`.
    fn xdb(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut c = crate::support::xdb_command();
        c.args(args).current_dir(&self.cwd).env("XDB_STATE_DIR", self.root.join("state"));
        for (k, v) in vars {
            c.env(k, v);
        }
        c.output().expect("run xdb")
    }

    fn write_plan(&self, yaml: &str) {
        std::fs::write(self.plan_dir.join("plan.yaml"), yaml).unwrap();
    }

    /// Every file under the state directory, concatenated.
    fn state_text(&self) -> String {
        fn walk(d: &Path, out: &mut String) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), out);
                } else {
                    out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        let mut s = String::new();
        walk(&self.root.join("state"), &mut s);
        s
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

const PLAN: &str = "../plans/plan.yaml";

fn source_url(db: &PgDb, role: &TrickyRole) -> String {
    format!("postgres://{}:${{XDB_TRUST_PASSWORD}}@127.0.0.1:{}/{}", role.name, env("XDB_PG_PORT"), db.name)
}

/// The password in none of its forms.
fn assert_no_password(what: &str, s: &str) {
    for form in [TRICKY_PW, TRICKY_PW_ENCODED, &TRICKY_PW_ENCODED.to_lowercase()] {
        assert!(!s.contains(form), "{what} shows the password ({form}):\n{s}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn relative_paths_resolve_beside_the_plan_and_variables_work_in_every_runbook_string() {
    let db = PgDb::create("xdb_trust_paths").await;
    db.exec("CREATE TABLE orders (id bigserial PRIMARY KEY, v text); CREATE TABLE rb_log (n serial PRIMARY KEY, what text);")
        .await;
    let role = TrickyRole::create(&db).await;
    let d = Dirs::new();
    // A script beside the plan, named relatively as a runbook would.
    std::fs::write(
        d.plan_dir.join("hook.sh"),
        "#!/bin/sh\nenv | grep -E '^(SOURCE_URL|TARGET_URL|XDB_PLAN)=' | sort > \"$1\"\npwd >> \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(d.plan_dir.join("hook.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    d.write_plan(&format!(
        r#"name: trust_paths
source:
  url: {src}
  slot: {slot}
target:
  url: sqlite://${{XDB_TRUST_DB:-t.db}}
tables: [public.orders]
cutover:
  steps:
    - name: A variable in sql
      sql: {{ on: source, statements: "INSERT INTO rb_log (what) VALUES ('${{XDB_TRUST_WORD}}')" }}
      verify: {{ sql: "SELECT COUNT(*) FROM rb_log WHERE what = '${{XDB_TRUST_WORD}}'", on: source, expect: 1 }}
    - name: A relative script
      command: ./hook.sh ${{XDB_TRUST_OUT:-seen.txt}}
      verify: {{ command: "test -s ${{XDB_TRUST_OUT:-seen.txt}}" }}
    - name: The target is the file beside the plan
      sql: {{ on: target, statements: "CREATE TABLE marker (x INTEGER)" }}
"#,
        src = source_url(&db, &role),
        slot = unique("xdb_trust_slot"),
    ));
    let out = d.xdb(
        &["cutover", "--plan", PLAN, "--yes"],
        &[("XDB_TRUST_PASSWORD", TRICKY_PW_ENCODED), ("XDB_TRUST_WORD", "word-from-env")],
    );
    let o = text(&out);
    assert!(out.status.success(), "{o}");
    assert_no_password("cutover output", &o);
    let c = db.super_client().await;
    let n: i64 = c.query_one("SELECT COUNT(*) FROM rb_log WHERE what = 'word-from-env'", &[]).await.unwrap().get(0);
    assert_eq!(n, 1, "${{VAR}} in sql was expanded");
    // The script ran in the plan's directory and got absolute paths.
    let seen = std::fs::read_to_string(d.plan_dir.join("seen.txt")).expect("hook.sh wrote beside the plan");
    let plan_dir = d.plan_dir.display().to_string();
    assert!(seen.contains(&format!("TARGET_URL=sqlite://{plan_dir}/t.db")), "{seen}");
    assert!(seen.contains(&format!("XDB_PLAN={plan_dir}/plan.yaml")), "{seen}");
    assert!(seen.lines().last() == Some(plan_dir.as_str()), "commands run in the plan's directory: {seen}");
    assert!(d.plan_dir.join("t.db").exists() && !d.cwd.join("t.db").exists(), "sqlite://t.db is beside the plan");
    let marker: i64 = rusqlite::Connection::open(d.plan_dir.join("t.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'marker'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(marker, 1);

    // A variable that is not set: refused before anything runs, naming the
    // variable and the step, as for a URL.
    d.write_plan(&format!(
        "name: trust_paths\nsource:\n  url: {}\ntarget:\n  url: sqlite://t.db\ntables: [public.orders]\ncutover:\n  steps:\n    - name: Uses an unset variable\n      command: echo ${{XDB_TRUST_NOT_SET}}\n",
        source_url(&db, &role)
    ));
    let out = d.xdb(&["cutover", "--plan", PLAN, "--dry-run"], &[("XDB_TRUST_PASSWORD", TRICKY_PW_ENCODED)]);
    let o = text(&out);
    assert_eq!(out.status.code(), Some(2), "{o}");
    assert!(o.contains("XDB_TRUST_NOT_SET is not set") && o.contains("Uses an unset variable"), "{o}");
    assert!(o.contains("plan.yaml:"), "the error points into the plan: {o}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_in_errors_command_output_journal_dry_run_or_status() {
    let db = PgDb::create("xdb_trust_secrets").await;
    db.exec("CREATE TABLE orders (id bigserial PRIMARY KEY, v text);").await;
    let role = TrickyRole::create(&db).await;
    let d = Dirs::new();
    // The same password three ways: percent-encoded user-info, `password=`
    // parameter, and an environment variable pasted into runbook strings.
    let plan = |src: &str| {
        format!(
            r#"name: trust_secrets
source:
  url: {src}
  slot: {slot}
target:
  url: sqlite://t.db
tables: [public.orders]
cutover:
  steps:
    - name: Talks too much
      command: "echo url=$SOURCE_URL; echo raw=${{XDB_TRUST_PASSWORD}}; echo 'conn password={pw_enc}'; echo pq host=h password=$XDB_TRUST_PASSWORD; exit 3"
      rollback: {{ sql: {{ on: source, statements: "SELECT '${{XDB_TRUST_PASSWORD}}' WHERE false" }} }}
"#,
            slot = unique("xdb_trust_slot"),
            pw_enc = TRICKY_PW_ENCODED,
        )
    };
    let port = env("XDB_PG_PORT");
    for src in [
        format!("postgres://{}:{TRICKY_PW_ENCODED}@127.0.0.1:{port}/{}", role.name, db.name),
        format!("postgres://127.0.0.1:{port}/{}?user={}&password={TRICKY_PW_ENCODED}", db.name, role.name),
    ] {
        d.write_plan(&plan(&src));
        let vars = [("XDB_TRUST_PASSWORD", TRICKY_PW)];
        // Dry run: the command and the rollback with the variable filled in.
        let out = d.xdb(&["cutover", "--plan", PLAN, "--dry-run"], &vars);
        let o = text(&out);
        assert!(out.status.success(), "{o}");
        assert!(o.contains("echo raw=***"), "the dry run shows the command, masked: {o}");
        assert_no_password("dry run", &o);
        // A real run: the command prints the password four ways and fails;
        // its output, the error and the journal are scrubbed.
        let out = d.xdb(&["cutover", "--plan", PLAN, "--yes", "--log", "debug"], &vars);
        let o = text(&out);
        assert_eq!(out.status.code(), Some(1), "{o}");
        assert!(o.contains("raw=***"), "the command output is shown, masked: {o}");
        assert_no_password("cutover output and logs", &o);
        let journal = d.state_text();
        assert!(journal.contains("exit status 3"), "the failure is journaled: {journal}");
        assert_no_password("journal", &journal);
        // status: the target's state tables do not exist (no sync ran).
        let out = d.xdb(&["status", "--plan", PLAN, "--log", "debug"], &vars);
        assert_no_password("status", &text(&out));
        let _ = std::fs::remove_dir_all(d.root.join("state"));
    }
    // A driver error: a wrong password given percent-encoded.
    let wrong = format!("postgres://{}:{}x@127.0.0.1:{port}/{}", role.name, TRICKY_PW_ENCODED, db.name);
    d.write_plan(&plan(&wrong));
    let out = d.xdb(&["check", "--plan", PLAN, "--log", "debug"], &[("XDB_TRUST_PASSWORD", TRICKY_PW)]);
    let o = text(&out);
    assert!(!out.status.success(), "{o}");
    assert_no_password("check with a wrong password", &o);
}

#[test]
fn a_password_with_url_characters_unencoded_is_refused_with_the_fix() {
    let d = Dirs::new();
    d.write_plan(
        "name: trust_pw\nsource:\n  url: postgres://u:${XDB_TRUST_PASSWORD}@127.0.0.1:1/db\ntarget:\n  url: sqlite://t.db\ntables: [public.orders]\n",
    );
    let out = d.xdb(&["check", "--plan", PLAN], &[("XDB_TRUST_PASSWORD", TRICKY_PW)]);
    let o = text(&out);
    assert_eq!(out.status.code(), Some(2), "{o}");
    assert!(o.contains("percent-encode") && o.contains("%40") && o.contains("%2F") && o.contains("%23"), "{o}");
    assert!(!o.contains("firewall") && !o.contains("unreachable"), "{o}");
    assert_no_password("the refusal", &o);
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_against_a_missing_sqlite_file_says_so_and_creates_nothing() {
    let db = PgDb::create("xdb_trust_val").await;
    db.exec("CREATE TABLE orders (id bigserial PRIMARY KEY, v text); INSERT INTO orders (v) VALUES ('a');").await;
    let d = Dirs::new();
    d.write_plan(&format!(
        "name: trust_val\nsource:\n  url: {}\n  slot: {}\ntarget:\n  url: sqlite://missing.db\ntables: [public.orders]\n",
        db.super_url(),
        unique("xdb_trust_slot")
    ));
    let out = d.xdb(&["validate", "--plan", PLAN], &[]);
    let o = text(&out);
    assert!(!out.status.success(), "{o}");
    assert!(o.contains("missing.db does not exist"), "{o}");
    assert!(!d.plan_dir.join("missing.db").exists() && !d.cwd.join("missing.db").exists(), "no empty file: {o}");
}

/// `xdb validate` lists keys as the source writes them (a line pasted after
/// WHERE finds the row), in the key type's order, at most 20 per kind in
/// text with the total, and every one with `--format json`.
#[tokio::test(flavor = "multi_thread")]
async fn validate_lists_keys_pasteable_in_type_order_and_capped() {
    use crate::support::{plan, xdb, Target};
    let db = PgDb::create("xdb_trust_keys").await;
    db.exec(
        "CREATE TABLE nums (id bigint PRIMARY KEY, v int); ALTER TABLE nums OWNER TO xdb_repl;
         INSERT INTO nums SELECT g, g FROM generate_series(1, 2000) g;
         CREATE TABLE pay (paid_at timestamptz PRIMARY KEY, v int); ALTER TABLE pay OWNER TO xdb_repl;
         INSERT INTO pay SELECT timestamptz '2023-06-15 12:00:22.5+00' + g * interval '1 hour 1.25 second', g
           FROM generate_series(1, 30) g;",
    )
    .await;
    let target = Target::sqlite("xdb_trust_keys");
    let plan = plan(&db, &target, "public.nums, public.pay", "");
    let out = xdb(&plan, &["snapshot"]);
    assert!(out.status.success(), "snapshot: {}", text(&out));
    // The copy summary gives the size written to SQLite too (not 0.0 MB).
    let summary = text(&out);
    let total = summary
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("total"))
        .unwrap_or_else(|| panic!("no copy summary: {summary}"));
    let size: f64 = total.split_whitespace().nth(1).and_then(|m| m.parse().ok()).unwrap_or(0.0);
    assert!(size > 0.0 && total.contains("kB"), "{summary}");
    let Target::Sqlite(path) = &target else { unreachable!() };
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "DELETE FROM nums WHERE id IN (9, 10, 100, 1000, 1100) OR id BETWEEN 1500 AND 1524;
         DELETE FROM pay WHERE v = 7;",
    )
    .unwrap();
    drop(c);
    let out = xdb(&plan, &["validate"]);
    let human = text(&out);
    assert_eq!(out.status.code(), Some(1), "{human}");
    assert!(human.contains("missing on the target (30, first 20 by key; --format json lists all):"), "{human}");
    let listed: Vec<&str> = human.lines().filter(|l| l.trim_start().starts_with("id=")).map(str::trim).collect();
    assert_eq!(listed.len(), 20, "{human}");
    assert_eq!(&listed[..6], ["id=9", "id=10", "id=100", "id=1000", "id=1100", "id=1500"], "{human}");
    let line = human
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("paid_at="))
        .unwrap_or_else(|| panic!("no paid_at key: {human}"));
    assert_eq!(line, "paid_at='2023-06-15 19:00:31.25+00'", "{human}");
    // Pasted after WHERE on the source, the line finds the row.
    let src = db.super_client().await;
    let n: i64 = src.query_one(&format!("SELECT count(*) FROM pay WHERE {line}"), &[]).await.unwrap().get(0);
    assert_eq!(n, 1, "{line}");
    let out = xdb(&plan, &["validate", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nums = json["tables"].as_array().unwrap().iter().find(|t| t["table"] == "public.nums").unwrap();
    assert_eq!(nums["missing"].as_array().unwrap().len(), 30, "json lists every key");
    assert_eq!(nums["missing_total"], 30);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A value a `null` policy changed (NaN, which SQLite cannot hold) counts as
/// equal, and the report says how many such values there were.
#[tokio::test(flavor = "multi_thread")]
async fn validate_counts_values_changed_by_the_lossy_policy() {
    use crate::support::{plan, xdb, Target};
    let db = PgDb::create("xdb_trust_policy").await;
    db.exec(
        "CREATE TABLE m (id int PRIMARY KEY, r float8); ALTER TABLE m OWNER TO xdb_repl;
         INSERT INTO m VALUES (1, 1.5), (2, 'NaN'), (3, 'NaN'), (4, NULL);",
    )
    .await;
    let target = Target::sqlite("xdb_trust_policy");
    let plan = plan(&db, &target, "public.m", "mapping:\n  policy: 'null'\n");
    let out = xdb(&plan, &["snapshot"]);
    assert!(out.status.success(), "snapshot: {}", text(&out));
    let out = xdb(&plan, &["validate"]);
    let human = text(&out);
    assert_eq!(out.status.code(), Some(0), "{human}");
    assert!(human.contains("public.m: 2 source value(s) differ from the target by the plan's lossy policy"), "{human}");
    let out = xdb(&plan, &["validate", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["tables"][0]["policy_altered"], 2, "{}", text(&out));
    let Target::Sqlite(path) = &target else { unreachable!() };
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// After a snapshot (no streamed change yet) `status` shows the position
/// without a 1970 commit time, and says why there is none.
#[tokio::test(flavor = "multi_thread")]
async fn status_after_a_snapshot_shows_no_1970_commit_time() {
    use crate::support::{plan, xdb, Target};
    let db = PgDb::create("xdb_trust_status").await;
    db.exec("CREATE TABLE s (id int PRIMARY KEY); ALTER TABLE s OWNER TO xdb_repl; INSERT INTO s VALUES (1);").await;
    let target = Target::sqlite("xdb_trust_status");
    let plan = plan(&db, &target, "public.s", "");
    let out = xdb(&plan, &["snapshot"]);
    assert!(out.status.success(), "snapshot: {}", text(&out));
    let out = xdb(&plan, &["status"]);
    let o = text(&out);
    assert!(!o.contains("1970"), "{o}");
    assert!(o.contains("snapshot; no streamed commit applied yet"), "{o}");
    let Target::Sqlite(path) = &target else { unreachable!() };
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A table never ANALYZEd (no row estimate, relpages 0) is still split
/// among the copy workers that `copy.parallelism` asks for.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_never_analyzed_is_still_split_per_parallelism() {
    use crate::support::{plan, xdb, Target};
    let db = PgDb::create("xdb_trust_noanalyze").await;
    db.exec(
        "CREATE TABLE big (id bigint PRIMARY KEY, v text) WITH (autovacuum_enabled = false);
         ALTER TABLE big OWNER TO xdb_repl;
         INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;",
    )
    .await;
    let c = db.super_client().await;
    let (tuples, pages): (f32, i32) = c
        .query_one("SELECT reltuples, relpages FROM pg_class WHERE relname = 'big'", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(tuples < 0.0 && pages == 0, "the table must not have been analyzed ({tuples}, {pages})");
    // PostgreSQL target: SQLite copies with one writer whatever is asked.
    let target = Target::Postgres(PgDb::create("xdb_trust_noanalyze_tgt").await);
    let plan = plan(&db, &target, "public.big", "copy:\n  parallelism: 4\n");
    let out = xdb(&plan, &["snapshot", "--log", "info"]);
    let o = text(&out);
    assert!(out.status.success(), "{o}");
    assert!(o.contains("workers=4"), "four ranges, four workers: {o}");
    let out = xdb(&plan, &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// `check` on an existing publication that lacks planned tables: the fix
/// names only the tables that exist (ADD TABLE on a missing one would fail
/// the whole statement).
#[tokio::test(flavor = "multi_thread")]
async fn check_publication_fix_names_only_existing_tables() {
    let db = PgDb::create("xdb_trust_pub").await;
    db.exec(
        "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY);
         ALTER TABLE a OWNER TO xdb_repl; ALTER TABLE b OWNER TO xdb_repl;
         CREATE PUBLICATION xdb_trust_pub_p FOR TABLE a;",
    )
    .await;
    let d = Dirs::new();
    d.write_plan(&format!(
        "name: trust_pub\nsource:\n  url: {}\n  publication: xdb_trust_pub_p\ntarget:\n  url: sqlite://t.db\ntables: [public.a, public.b, public.ghost]\n",
        db.repl_url()
    ));
    let out = d.xdb(&["check", "--plan", PLAN], &[]);
    let o = text(&out);
    assert_eq!(out.status.code(), Some(1), "{o}");
    let fix = o.lines().find(|l| l.contains("ALTER PUBLICATION")).unwrap_or_else(|| panic!("no fix: {o}"));
    assert!(fix.contains("ADD TABLE \"public\".\"b\";"), "{fix}");
    assert!(!fix.contains("ghost"), "the fix names a table that does not exist: {fix}\n{o}");
    assert!(o.contains("ghost"), "the missing table is reported: {o}");
}

/// Several values the target cannot take: the copy names every one of them
/// (with the total), not only the first — also several in one row — on
/// SQLite and MariaDB alike.
#[tokio::test(flavor = "multi_thread")]
async fn the_copy_reports_every_value_the_target_refuses() {
    use crate::support::{plan, xdb, Target};
    for target in
        [Target::sqlite("xdb_trust_loaderr"), Target::Mysql(crate::support::MyDb::create("xdb_trust_loaderr").await)]
    {
        let db = PgDb::create("xdb_trust_loaderr").await;
        db.exec(
            "CREATE TABLE m (id int PRIMARY KEY, r float8, s float8); ALTER TABLE m OWNER TO xdb_repl;
             INSERT INTO m SELECT g, CASE WHEN g IN (3, 17, 40) THEN 'NaN'::float8 ELSE g END,
               CASE WHEN g = 17 THEN 'NaN'::float8 ELSE 0 END FROM generate_series(1, 50) g;",
        )
        .await;
        let plan = plan(&db, &target, "public.m", "");
        let out = xdb(&plan, &["snapshot"]);
        let o = text(&out);
        assert!(!out.status.success(), "{o}");
        assert!(o.contains("4 values cannot be written"), "{o}");
        for key in
            ["public.m.r (key id=3)", "public.m.r (key id=17)", "public.m.s (key id=17)", "public.m.r (key id=40)"]
        {
            assert!(o.contains(key), "{key} is named: {o}");
        }
        if let Target::Sqlite(path) = &target {
            let _ = std::fs::remove_dir_all(path.parent().unwrap());
        }
    }
}

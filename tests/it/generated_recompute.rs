//! `mapping.generated: source` before PostgreSQL 18 (issue 16): PostgreSQL
//! 12–17 do not publish generated columns, so the copy reads the stored
//! values and the stream recomputes them on the source from each change's
//! own values (`source::postgres::generated_recompute`). The expression
//! here (`round(length / 60.0, 2)`, `md5(…)`) translates to no SQLite or
//! MariaDB generated column; `md5` reads a TOASTed `note`, so an UPDATE of
//! another column (the note "unchanged TOAST", not in the change) needs the
//! note's value from the target. Ends with `xdb validate` (every column).

use crate::support::{self, ok, xdb, xdb_command, MyDb, OwnPostgres, PgDb, PlanFile, Target};
use crate::versions::bindir;

const TRIPS: &str = "
    CREATE TABLE trips (id int PRIMARY KEY, length int NOT NULL, note text, pic bytea,
        length_hours numeric(6,2) GENERATED ALWAYS AS (round(length / 60.0, 2)) STORED,
        note_md5 text GENERATED ALWAYS AS (md5(coalesce(note, '') || length::text || coalesce(md5(pic), '')))
            STORED);
    ALTER TABLE trips ALTER COLUMN note SET STORAGE EXTERNAL, ALTER COLUMN pic SET STORAGE EXTERNAL;
    INSERT INTO trips (id, length, note, pic)
        SELECT g, g * 7, CASE WHEN g <= 5 THEN repeat(md5(g::text), 300) ELSE 'n' || g END,
            CASE WHEN g <= 5 THEN decode(repeat(md5(g::text), 200), 'hex') END
        FROM generate_series(1, 200) g;
    CREATE TABLE events (kind text, body text, n int,
        shout text GENERATED ALWAYS AS (upper(kind) || length(body)::text || n::text) STORED);
    ALTER TABLE events ALTER COLUMN body SET STORAGE EXTERNAL;
    ALTER TABLE events REPLICA IDENTITY FULL;
    INSERT INTO events SELECT 'k' || g, repeat(md5(g::text), 100 * (g % 2)), g FROM generate_series(1, 20) g;";

fn plan(source_url: &str, slot: &str, target: &Target, extra: &str) -> PlanFile {
    PlanFile::new(&format!(
        "name: genre\nsource:\n  url: {source_url}\n  slot: {slot}\n  publication: {slot}\n  \
         heartbeat_interval_secs: 1\ntarget:\n  url: {}\ntables: [trips, events]\n{extra}",
        target.url()
    ))
}

/// Copy, then a stream of INSERT/UPDATE/DELETE (with TOAST-unchanged
/// updates, one after an update of the note in the same batch, one after a
/// key change), then `validate`.
async fn copy_and_stream(source_url: &str, slot: &str, c: &tokio_postgres::Client, target: &Target, owner: &str) {
    c.batch_execute(TRIPS).await.unwrap();
    if !owner.is_empty() {
        c.batch_execute(&format!("ALTER TABLE trips OWNER TO {owner}; ALTER TABLE events OWNER TO {owner}"))
            .await
            .unwrap();
    }

    let refused = xdb(&plan(source_url, slot, target, ""), &["check"]);
    let text = support::text(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("generated: source"), "{text}");

    let plan = plan(source_url, slot, target, "mapping:\n  generated: source\n");
    let check = xdb(&plan, &["check"]);
    let text = support::text(&check);
    assert!(check.status.success(), "{text}");
    assert!(
        text.contains("note_md5: generated column on the source") && text.contains("recomputed on the source"),
        "{text}"
    );
    let schema = support::text(&xdb(&plan, &["schema"]));
    assert!(schema.contains("length_hours") && schema.contains("recomputed on the source"), "{schema}");

    ok(&xdb(&plan, &["snapshot"]));
    for sql in [
        // TOAST-unchanged note, referenced by note_md5.
        "UPDATE trips SET length = 500 WHERE id = 1",
        // A new note, then (same batch) an update that leaves it unchanged.
        "UPDATE trips SET note = note || 'x' WHERE id = 2",
        "UPDATE trips SET length = 9 WHERE id = 2",
        "INSERT INTO trips (id, length, note) VALUES (201, 90, repeat('abc', 3000))",
        "UPDATE trips SET length = 7 WHERE id = 201",
        "UPDATE trips SET length = length + 1 WHERE id BETWEEN 10 AND 60",
        "DELETE FROM trips WHERE id = 3",
        // Key change: the unchanged note is under the old key on the target.
        "UPDATE trips SET id = 1004, length = 11 WHERE id = 4",
        "UPDATE trips SET note = NULL WHERE id = 5",
        "INSERT INTO trips (id, length) VALUES (202, 61)",
        // Keyless, REPLICA IDENTITY FULL: the old row carries the TOASTed body.
        "UPDATE events SET n = n + 100 WHERE n <= 4",
        "DELETE FROM events WHERE n = 5",
        "UPDATE events SET kind = 'é' || kind WHERE n = 7",
        // A generated column added while streaming.
        "ALTER TABLE trips ADD COLUMN triple int GENERATED ALWAYS AS (length * 3) STORED",
        "UPDATE trips SET length = 120 WHERE id = 6",
        // One transaction with changes of both shapes.
        "UPDATE trips SET length = 1 WHERE id = 7; \
         ALTER TABLE trips ADD COLUMN quad int GENERATED ALWAYS AS (length * 4) STORED; \
         UPDATE trips SET length = 2 WHERE id = 8",
    ] {
        c.batch_execute(sql).await.unwrap();
    }
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    // A second run: the TOASTed note now comes from the committed target,
    // in a transaction large enough to be spilled (read back in chunks,
    // applied in one target transaction).
    c.batch_execute("UPDATE trips SET length = 33 WHERE id IN (1, 2, 201, 1004) OR id BETWEEN 100 AND 150")
        .await
        .unwrap();
    let spilled = xdb_command()
        .env("XDB_SPILL_THRESHOLD_BYTES", "2000")
        .args(["sync", "--plan", plan.path.to_str().unwrap(), "--until-caught-up"])
        .output()
        .unwrap();
    ok(&spilled);

    let q = "SELECT id::text, length_hours::text, note_md5, triple::text, quad::text FROM trips WHERE id IN (1, 2, 5, 6, 7, 8, 10, 201, 202, 1004) \
             ORDER BY trips.id";
    let want: Vec<Vec<String>> = c
        .query(q, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (0..5).map(|i| r.get::<_, Option<String>>(i).unwrap_or_else(|| "NULL".into())).collect())
        .collect();
    let got = target
        .rows(
            "SELECT id, length_hours, note_md5, triple, quad FROM trips \
             WHERE id IN (1, 2, 5, 6, 7, 8, 10, 201, 202, 1004) ORDER BY id",
        )
        .await;
    assert_eq!(got, want);
    let q = "SELECT n::text, shout FROM events ORDER BY events.n";
    let want: Vec<Vec<String>> =
        c.query(q, &[]).await.unwrap().iter().map(|r| vec![r.get::<_, String>(0), r.get(1)]).collect();
    assert_eq!(target.rows("SELECT n, shout FROM events ORDER BY n").await, want);
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate: {}", support::text(&v));
}

#[tokio::test]
async fn generated_columns_are_recomputed_on_postgres_13_into_sqlite() {
    let pg = OwnPostgres::start_from(&bindir(13));
    let c = support::pg_connect(&pg.url()).await;
    let target = Target::sqlite("xdb_genre13");
    copy_and_stream(&pg.url(), "xdb_genre13", &c, &target, "").await;
}

#[tokio::test]
async fn generated_columns_are_recomputed_on_postgres_13_into_mariadb() {
    let pg = OwnPostgres::start_from(&bindir(13));
    let c = support::pg_connect(&pg.url()).await;
    let target = Target::Mysql(MyDb::create("xdb_genre13m").await);
    copy_and_stream(&pg.url(), "xdb_genre13m", &c, &target, "").await;
}

#[tokio::test]
async fn generated_columns_are_recomputed_on_the_default_postgres_into_mariadb() {
    let db = PgDb::create("xdb_genre").await;
    let c = db.super_client().await;
    let target = Target::Mysql(MyDb::create("xdb_genre").await);
    copy_and_stream(&db.repl_url(), &format!("{}_slot", db.name), &c, &target, "xdb_repl").await;
}

/// An input xdb cannot read back from the target (an array) on a table
/// without REPLICA IDENTITY FULL is refused by `check` before anything is
/// created, with the fix; with the fix it passes.
#[tokio::test]
async fn recomputed_input_that_cannot_be_read_back_is_refused_with_the_fix() {
    let db = PgDb::create("xdb_genre_arr").await;
    db.exec(
        "CREATE TABLE docs (id int PRIMARY KEY, tags text[], \
           n_tags int GENERATED ALWAYS AS (cardinality(tags)) STORED); ALTER TABLE docs OWNER TO xdb_repl",
    )
    .await;
    let target = Target::sqlite("xdb_genre_arr");
    let plan = PlanFile::new(&format!(
        "name: genre\nsource:\n  url: {}\n  slot: {}_slot\n  publication: {}_pub\ntarget:\n  url: {}\n\
         tables: [docs]\nmapping:\n  generated: source\n",
        db.repl_url(),
        db.name,
        db.name,
        target.url()
    ));
    for cmd in ["check", "snapshot"] {
        let out = xdb(&plan, &[cmd]);
        let text = support::text(&out);
        assert!(!out.status.success(), "{cmd}: {text}");
        assert!(text.contains("reads tags (text[])") && text.contains("REPLICA IDENTITY FULL"), "{cmd}: {text}");
    }
    db.exec("ALTER TABLE docs REPLICA IDENTITY FULL").await;
    let check = xdb(&plan, &["check"]);
    assert!(check.status.success(), "{}", support::text(&check));
}

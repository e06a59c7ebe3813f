//! `mapping.generated: source` on PostgreSQL 18 (issue 16): a stored
//! generated column whose expression no target but PostgreSQL computes the
//! same way moves as a plain column that xdb keeps current — PostgreSQL 18
//! publishes stored generated columns, the copy reads them. Without the
//! setting the table is refused (with the setting named); before 18 the stream
//! recomputes the values (`generated_recompute.rs`). A virtual column (18) stays a generated column of the
//! target. Ends with `xdb validate`.

use crate::support::{self, ok, xdb, OwnPostgres, PlanFile, Target};
use crate::versions::bindir;

const TRIPS: &str = "
    CREATE TABLE trips (id int PRIMARY KEY, length int NOT NULL,
        length_hours numeric(6,2) GENERATED ALWAYS AS (round(length / 60.0, 2)) STORED,
        twice int GENERATED ALWAYS AS (length * 2) STORED,
        plus_one int GENERATED ALWAYS AS (length + 1) VIRTUAL);
    INSERT INTO trips (id, length) SELECT g, g * 7 FROM generate_series(1, 200) g;";

fn plan(pg: &OwnPostgres, target: &Target, extra: &str) -> PlanFile {
    PlanFile::new(&format!(
        "name: gensrc\nsource:\n  url: {}\n  slot: xdb_gensrc\n  publication: xdb_gensrc\n  \
         heartbeat_interval_secs: 1\ntarget:\n  url: {}\ntables: [trips]\n{extra}",
        pg.url(),
        target.url()
    ))
}

#[tokio::test]
async fn stored_generated_columns_come_from_the_source_on_postgres_18() {
    let pg = OwnPostgres::start_from(&bindir(18));
    let c = support::pg_connect(&pg.url()).await;
    c.batch_execute(TRIPS).await.unwrap();
    let target = Target::sqlite("xdb_gensrc");

    let refused = xdb(&plan(&pg, &target, ""), &["check"]);
    let text = support::text(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("generated column length_hours") && text.contains("generated: source"), "{text}");

    let plan = plan(&pg, &target, "mapping:\n  generated: source\n");
    let check = xdb(&plan, &["check"]);
    let text = support::text(&check);
    assert!(check.status.success(), "{text}");
    assert!(text.contains("length_hours: generated column on the source") && text.contains("kept current"), "{text}");
    let schema = support::text(&xdb(&plan, &["schema"]));
    assert!(schema.contains("plain") && schema.contains("plus_one"), "{schema}");

    ok(&xdb(&plan, &["snapshot"]));
    // One transaction each (a multi-statement string is one transaction).
    for sql in [
        "UPDATE trips SET length = 61 WHERE id = 1",
        "INSERT INTO trips (id, length) VALUES (201, 90)",
        "DELETE FROM trips WHERE id = 2",
        "ALTER TABLE trips ADD COLUMN triple int GENERATED ALWAYS AS (length * 3) STORED",
        "UPDATE trips SET length = 120 WHERE id = 3",
    ] {
        c.batch_execute(sql).await.unwrap();
    }
    ok(&xdb(&plan, &["sync", "--until-caught-up"]));
    let got = target
        .rows("SELECT id, length_hours, twice, plus_one, triple FROM trips WHERE id IN (1, 3, 4, 201) ORDER BY id")
        .await;
    let want = [
        ["1", "1.02", "122", "62", "183"],
        ["3", "2.00", "240", "121", "360"],
        ["4", "0.47", "56", "29", "84"],
        ["201", "1.50", "180", "91", "270"],
    ];
    let want: Vec<Vec<String>> = want.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect();
    assert_eq!(got, want);
    let v = xdb(&plan, &["validate"]);
    assert!(v.status.success(), "validate: {}", support::text(&v));
}

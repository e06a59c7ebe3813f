//! The copy into MariaDB with array binding (`sink/mysql/bulk_load.rs`):
//! a key the target sees twice stops the copy naming the table and the key,
//! and nothing of the range is kept (it commits with its `copy_ranges` row
//! or not at all). Value-for-value equality with LOAD DATA is in
//! `mapping_roundtrip::mariadb_round_trips_every_type_through_params_and_load_data`;
//! a killed copy resumed in `sync::kill_during_copy_then_resume_loses_and_doubles_nothing`.

use mysql_async::prelude::Queryable;

use crate::support::{self, plan, xdb, MyDb, PgDb, Target};

#[tokio::test]
async fn a_duplicate_key_on_mariadb_stops_the_copy_naming_table_and_key() {
    let db = PgDb::create("xdb_bulk_dup").await;
    // 'k0500' and 'K0500' are two keys on the source; the target table was
    // made case-insensitive on purpose (mapping.insensitive_keys), so there
    // they are one.
    db.exec(
        "CREATE TABLE acc (code text PRIMARY KEY, v text NOT NULL); \
         INSERT INTO acc SELECT 'k' || lpad(g::text, 4, '0'), 'v' || g FROM generate_series(1, 3000) g; \
         INSERT INTO acc VALUES ('K0500', 'upper'); ALTER TABLE acc OWNER TO xdb_repl;",
    )
    .await;
    let my = MyDb::create("xdb_bulk_dup_my").await;
    let mut c = mysql_async::Conn::from_url(my.url()).await.expect("connect MariaDB");
    c.query_drop(
        "CREATE TABLE acc (code VARCHAR(768) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL PRIMARY KEY, \
         v LONGTEXT NOT NULL) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    let _ = c.disconnect().await;
    let target = Target::Mysql(my);
    let plan =
        plan(&db, &target, "public.acc", "mapping:\n  insensitive_keys: [public.acc.code]\ncopy:\n  parallelism: 1\n");
    let out = xdb(&plan, &["snapshot"]);
    let text = support::text(&out);
    assert!(!out.status.success(), "the copy must fail: {text}");
    assert!(text.contains("public.acc"), "names the table: {text}");
    assert!(text.contains("Duplicate entry") && text.to_lowercase().contains("k0500"), "names the key: {text}");
    assert_eq!(target.count("acc").await, 0, "nothing of the range is kept");
}

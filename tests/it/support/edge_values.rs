//! Edge values of every common type in one table `v`: the copy path and
//! the stream path must land them identically (tests `sync::copy_and_stream_agree_*`
//! and `log::edge_values_through_the_log_*`).

use super::{PgDb, Target};

/// Creates `v` (owned by the replication role) with row 1 committed in
/// New York's time zone.
pub async fn create(db: &PgDb) {
    db.exec(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TABLE v (id int PRIMARY KEY, ts timestamptz, t timestamp(3), n numeric(30,10), big numeric,
                         f float8, j jsonb, js json, d date, u uuid, b bytea, a int[], iv interval,
                         tx text, bo bool, i2 int2, i8 int8, f4 real, tm time, ip inet, e mood, ta text[],
                         vc varchar(10), ch char(3));
         ALTER TABLE v OWNER TO xdb_repl;",
    )
    .await;
    insert(db, 1, "America/New_York").await;
}

/// The same values as row `id`, committed in time zone `zone`.
pub async fn insert(db: &PgDb, id: i32, zone: &str) {
    db.exec(&format!("SET TimeZone = '{zone}'; {}", insert_sql(id))).await;
}

/// The INSERT of row `id` (for a transaction of the caller's).
pub fn insert_sql(id: i32) -> String {
    let values = "'2024-03-31 01:59:59.999999+01', '1999-12-31 23:59:59.123', 12345678901234567890.0123456789,
                  -0.000000000000000000001, 1.0000000000000002, '{\"b\": [1, 2.50, \"x\"], \"a\": null}',
                  '{\"b\" : 1,  \"a\":2}', '2000-02-29', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10',
                  '{1,NULL,3}', '1 year 2 mons 3 days 04:05:06.789',
                  'emoji 🦀 and \"quotes\" and tab\t end ', true, -32768, 9223372036854775807, 3.25,
                  '23:59:59.999999', '192.168.0.1/24', 'happy', '{\"a,b\",NULL,\"c\"}', 'ten chars!', 'ab'";
    format!("INSERT INTO v VALUES ({id}, {values})")
}

/// Rows 1 and 2 as the target stores them, byte for byte where the
/// target can show bytes.
pub async fn rows_on(target: &Target) -> Vec<Vec<String>> {
    let cols = "ts, t, n, big, f, j, js, d, u, b, a, iv, tx, bo, i2, i8, f4, tm, ip, e, ta, vc, ch";
    let (table, cast): (&str, fn(&str) -> String) = match target {
        Target::Postgres(_) => ("public.v", |c| format!("{c}::text")),
        Target::Mysql(_) => ("v", |c| format!("HEX(CAST({c} AS BINARY))")),
        Target::Sqlite(_) => ("v", |c| format!("quote({c})")),
    };
    let list: Vec<String> = cols.split(", ").map(cast).collect();
    target.rows(&format!("SELECT {} FROM {table} ORDER BY id", list.join(", "))).await
}

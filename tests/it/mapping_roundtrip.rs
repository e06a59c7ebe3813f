//! Type mapping against the real targets: a table with every mapped type
//! and awkward values is created with `create_table_ddl`, written through
//! each write path (bound parameters; MySQL `LOAD DATA LOCAL INFILE` and
//! PostgreSQL `COPY` for the bulk path), read back, and every cell's
//! canonical form must equal the source value's. Also: lossy policies end to
//! end, utf8mb4 key equality on MariaDB, and the unknown-type error.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mysql_async::prelude::Queryable;

use xdb::mapping::{
    canonical, canonical_from_mysql, canonical_from_pg_text, canonical_from_sqlite, create_index_ddl, create_table_ddl,
    map_table, CanonicalValue, IndexDef, MappedTable, MappingOverrides, MappingRules, TargetKind,
};
use xdb::model::{
    Column, DateValue, NumericValue, PgType, ReplicaIdentity, Row, TableName, TableSchema, TimestampValue, Value,
};
use xdb::plan::{LossyPolicy, Mapping};

use crate::support::{self, MyDb, PgDb};

fn col(name: &str, ty: PgType) -> Column {
    Column::new(name, ty)
}

fn days(y: i64, m: u32, d: u32) -> i32 {
    // 1970-01-01 based day count through chrono (independent of xdb's own calendar code).
    let date = chrono::NaiveDate::from_ymd_opt(y as i32, m, d).unwrap();
    (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

fn micros(y: i64, m: u32, d: u32, h: i64, mi: i64, s: i64, us: i64) -> i64 {
    days(y, m, d) as i64 * 86_400_000_000 + ((h * 60 + mi) * 60 + s) * 1_000_000 + us
}

fn mood() -> PgType {
    PgType::Enum { name: "xdb_rt.mood".into(), labels: vec!["ok".into(), "it's".into(), "😀".into()] }
}

/// Every mapped type, one column each.
fn all_types_table(schema: &str, name: &str) -> TableSchema {
    let mut id = col("id", PgType::Int8);
    id.nullable = false;
    id.is_key = true;
    TableSchema {
        oid: 1,
        name: TableName::new(schema, name),
        columns: vec![
            id,
            col("b", PgType::Bool),
            col("i2", PgType::Int2),
            col("i4", PgType::Int4),
            col("f4", PgType::Float4),
            col("f8", PgType::Float8),
            col("n", PgType::Numeric { precision: None, scale: None }),
            col("n2", PgType::Numeric { precision: Some(12), scale: Some(2) }),
            col("t", PgType::Text),
            col("vc", PgType::Varchar(Some(20))),
            col("c", PgType::Char(Some(5))),
            col("by", PgType::Bytea),
            col("d", PgType::Date),
            col("tm", PgType::Time(None)),
            col("ttz", PgType::TimeTz(None)),
            col("ts", PgType::Timestamp(None)),
            col("tstz", PgType::TimestampTz(None)),
            col("iv", PgType::Interval),
            col("u", PgType::Uuid),
            col("j", PgType::Json),
            col("jb", PgType::Jsonb),
            col("arr", PgType::Array(Box::new(PgType::Text))),
            col("arri", PgType::Array(Box::new(PgType::Int4))),
            col("e", mood()),
            col("ip", PgType::Inet),
        ],
        replica_identity: ReplicaIdentity::Default,
        primary_key: vec![0],
        generated: Vec::new(),
    }
}

fn fin(s: &str) -> Value {
    Value::Numeric(NumericValue::Finite(s.into()))
}

/// Rows with NULLs, empty values, extremes and characters every text
/// format must escape.
fn nasty_rows() -> Vec<Row> {
    let n = all_types_table("public", "x").columns.len();
    let mut null_row = vec![Value::Null; n];
    null_row[0] = Value::Int8(1);
    let empty = vec![
        Value::Int8(2),
        Value::Bool(false),
        Value::Int2(i16::MIN),
        Value::Int4(i32::MIN),
        Value::Float4(0.1),
        Value::Float8(1e300),
        fin("0.000"),
        fin("-0.01"),
        Value::Text(String::new()),
        Value::Text(String::new()),
        Value::Text("a    ".into()),
        Value::Bytes(vec![]),
        Value::Date(DateValue::Days(days(1000, 1, 1))),
        Value::Time(0),
        Value::TimeTz { micros: 0, offset_seconds: 0 },
        Value::Timestamp(TimestampValue::Micros(micros(1000, 1, 1, 0, 0, 0, 0))),
        Value::TimestampTz(TimestampValue::Micros(micros(9999, 12, 31, 23, 59, 59, 999_999))),
        Value::Interval { months: 0, days: 0, micros: 0 },
        Value::Uuid(uuid::Uuid::nil()),
        Value::Json("{}".into()),
        Value::Json("[]".into()),
        Value::Array(vec![]),
        Value::Array(vec![]),
        Value::Text("ok".into()),
        Value::Text("::1".into()),
    ];
    let nasty_text = "quote' dq\" back\\slash tab\t nl\n cr\r \\N emoji 😀 ünïcödé 中文 NULL";
    let nasty = vec![
        Value::Int8(i64::MAX),
        Value::Bool(true),
        Value::Int2(i16::MAX),
        Value::Int4(i32::MAX),
        Value::Float4(-1.5e-30),
        Value::Float8(-2.225_073_858_507_201_4e-308),
        fin("-12345678901234567890123456789012345.123456789012345678901234567890"),
        fin("9999999999.99"),
        Value::Text(nasty_text.into()),
        Value::Text("😀😀\\\t'\"".into()),
        Value::Text("ab   ".into()),
        Value::Bytes(vec![0, 1, 2, 255, b'\\', b'\t', b'\n', b'\'', 0x80]),
        Value::Date(DateValue::Days(days(2024, 2, 29))),
        Value::Time(micros(1970, 1, 1, 23, 59, 59, 999_999)),
        Value::TimeTz { micros: micros(1970, 1, 1, 10, 0, 0, 1), offset_seconds: -(5 * 3600 + 30 * 60) },
        Value::Timestamp(TimestampValue::Micros(micros(2023, 11, 14, 22, 13, 20, 123_456))),
        Value::TimestampTz(TimestampValue::Micros(micros(1969, 12, 31, 23, 59, 59, 1))),
        Value::Interval { months: 14, days: -3, micros: -14_706_500_001 },
        Value::Uuid(uuid::Uuid::parse_str("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11").unwrap()),
        Value::Json(r#"{"z": 1, "a": {"y": [1, 2.5, "x\"y\\"], "b": null}, "e": "😀"}"#.into()),
        Value::Json(r#"{"a": {"b": null, "y": [1, 2.5, "x\"y\\"]}, "e": "😀", "z": 1}"#.into()),
        Value::Array(vec![
            Value::Text("a\"b".into()),
            Value::Text("c\\d".into()),
            Value::Text(String::new()),
            Value::Null,
            Value::Text("with,comma {brace} NULL".into()),
            Value::Text(nasty_text.into()),
        ]),
        Value::Array(vec![Value::Int4(1), Value::Null, Value::Int4(-3)]),
        Value::Text("it's".into()),
        Value::Text("192.168.0.1/24".into()),
    ];
    vec![null_row, empty, nasty]
}

fn mapped(kind: &TargetKind, schema: &str, name: &str, overrides: &MappingOverrides) -> MappedTable {
    map_table(&MappingRules::builtin(kind), &all_types_table(schema, name), overrides).expect("maps")
}

/// Compares every cell read back with the source row.
fn assert_same(t: &MappedTable, rows: &[Row], got: &[Vec<CanonicalValue>], path: &str) {
    assert_eq!(got.len(), rows.len(), "{path}: row count");
    for (r, (src, back)) in rows.iter().zip(got).enumerate() {
        for (i, c) in t.columns.iter().enumerate() {
            assert_eq!(back[i], canonical(&src[i]), "{path}: row {r} column {} ({})", c.name, c.target_type);
        }
    }
}

fn cols(t: &MappedTable) -> Vec<usize> {
    (0..t.columns.len()).collect()
}

fn select_sql(t: &MappedTable) -> String {
    let d = t.kind.dialect();
    let names: Vec<String> = t.columns.iter().map(|c| d.ident(&c.name)).collect();
    format!("SELECT {} FROM {} ORDER BY {}", names.join(", "), t.target_ident, d.ident("id"))
}

async fn my_conn(db: &MyDb) -> mysql_async::Conn {
    mysql_async::Conn::from_url(db.url()).await.expect("connect MariaDB")
}

async fn my_kind(c: &mut mysql_async::Conn) -> TargetKind {
    let v: String = c.query_first("SELECT VERSION()").await.unwrap().unwrap();
    TargetKind::mysql_from_version_string(&v)
}

async fn my_create(c: &mut mysql_async::Conn, t: &MappedTable) {
    for sql in create_table_ddl(t, &t.kind) {
        c.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

async fn my_insert(c: &mut mysql_async::Conn, t: &MappedTable, rows: &[Row]) -> Result<(), String> {
    let d = t.kind.dialect();
    let names: Vec<String> = t.columns.iter().map(|c| d.ident(&c.name)).collect();
    let sql =
        format!("INSERT INTO {} ({}) VALUES ({})", t.target_ident, names.join(", "), vec!["?"; names.len()].join(", "));
    for row in rows {
        let params = t.mysql_params(row, &cols(t)).map_err(|e| e.to_string())?;
        c.exec_drop(&sql, mysql_async::Params::Positional(params)).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn my_load(c: &mut mysql_async::Conn, t: &MappedTable, rows: &[Row]) {
    let mut data = Vec::new();
    for row in rows {
        t.append_load_data_row(row, &mut data).unwrap();
    }
    c.set_infile_handler(async move {
        Ok(futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from(data))]).boxed())
    });
    // The character set the copy uses on the tables it creates (utf8mb4
    // throughout: the bytes are taken as they are); the converting one
    // (`utf8mb4`) is app_schema::an_existing_latin1_column_….
    let sql = t.load_data_sql("xdb-mapping-test", "binary");
    c.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let warnings: Vec<mysql_async::Row> = c.query("SHOW WARNINGS").await.unwrap();
    assert!(warnings.is_empty(), "LOAD DATA warnings: {warnings:?}");
}

/// Reads back through both protocols: binary (exec) and text (query).
async fn my_read(c: &mut mysql_async::Conn, t: &MappedTable) -> [Vec<Vec<CanonicalValue>>; 2] {
    let sql = select_sql(t);
    let conv = |rows: Vec<mysql_async::Row>| -> Vec<Vec<CanonicalValue>> {
        rows.into_iter()
            .map(|r| r.unwrap().iter().zip(&t.columns).map(|(v, col)| canonical_from_mysql(v, col)).collect())
            .collect()
    };
    let bin: Vec<mysql_async::Row> = c.exec(&sql, ()).await.unwrap();
    let txt: Vec<mysql_async::Row> = c.query(&sql).await.unwrap();
    [conv(bin), conv(txt)]
}

#[tokio::test]
async fn mariadb_round_trips_every_type_through_params_and_load_data() {
    let db = MyDb::create("xdb_map_rt").await;
    let mut c = my_conn(&db).await;
    let kind = my_kind(&mut c).await;
    let rows = nasty_rows();
    let o = MappingOverrides::default();

    let params = mapped(&kind, "public", "rt_params", &o);
    my_create(&mut c, &params).await;
    my_insert(&mut c, &params, &rows).await.unwrap();
    for (p, got) in ["params/binary", "params/text"].iter().zip(my_read(&mut c, &params).await) {
        assert_same(&params, &rows, &got, p);
        // The comparison has teeth: a one-character difference is seen.
        let mut other = rows[2][8].clone();
        if let Value::Text(s) = &mut other {
            s.pop();
        }
        assert_ne!(got[2][8], canonical(&other));
    }

    let load = mapped(&kind, "xdb_rt", "rt_load", &o);
    assert_eq!(load.target_name, "xdb_rt__rt_load");
    my_create(&mut c, &load).await;
    my_load(&mut c, &load, &rows).await;
    for (p, got) in ["load/binary", "load/text"].iter().zip(my_read(&mut c, &load).await) {
        assert_same(&load, &rows, &got, p);
    }
    let _ = c.disconnect().await;
}

#[tokio::test]
async fn mariadb_keys_compare_like_postgres() {
    let db = MyDb::create("xdb_map_keys").await;
    let mut c = my_conn(&db).await;
    let kind = my_kind(&mut c).await;
    let mut k = col("k", PgType::Text);
    k.nullable = false;
    let table = TableSchema {
        oid: 1,
        name: TableName::new("public", "keys"),
        columns: vec![k, col("v", PgType::Varchar(Some(10)))],
        replica_identity: ReplicaIdentity::Default,
        primary_key: vec![0],
        generated: Vec::new(),
    };
    let t = map_table(&MappingRules::builtin(&kind), &table, &MappingOverrides::default()).unwrap();
    my_create(&mut c, &t).await;
    for sql in
        create_index_ddl(&t, &[IndexDef { name: "keys_v".into(), columns: vec!["v".into()], unique: true }], &kind)
    {
        c.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let rows: Vec<Row> =
        ["a", "A", "a ", "ä"].iter().map(|s| vec![Value::Text(s.to_string()), Value::Text(s.to_string())]).collect();
    my_insert(&mut c, &t, &rows).await.expect("'a', 'A', 'a ' and 'ä' are four keys");
    let n: u64 = c.query_first("SELECT COUNT(*) FROM `keys` WHERE k = 'a'").await.unwrap().unwrap();
    assert_eq!(n, 1, "'a' matches only itself");
    // A real duplicate is still refused.
    assert!(my_insert(&mut c, &t, &rows[..1]).await.unwrap_err().contains("Duplicate"));
    let _ = c.disconnect().await;
}

#[tokio::test]
async fn mariadb_lossy_values_follow_the_policy() {
    let db = MyDb::create("xdb_map_lossy").await;
    let mut c = my_conn(&db).await;
    let kind = my_kind(&mut c).await;
    let mut id = col("id", PgType::Int8);
    id.nullable = false;
    let table = TableSchema {
        oid: 1,
        name: TableName::new("public", "lossy"),
        columns: vec![
            id,
            col("ts", PgType::TimestampTz(None)),
            col("d", PgType::Date),
            col("n", PgType::Numeric { precision: Some(5), scale: Some(2) }),
            col("f", PgType::Float8),
        ],
        replica_identity: ReplicaIdentity::Default,
        primary_key: vec![0],
        generated: Vec::new(),
    };
    let row: Row = vec![
        Value::Int8(42),
        Value::TimestampTz(TimestampValue::Micros(micros(1, 1, 1, 0, 0, 0, 0))),
        Value::Date(DateValue::PosInfinity),
        fin("-1234.5"),
        Value::Float8(f64::NEG_INFINITY),
    ];
    let with = |policy: Option<LossyPolicy>| {
        let m = Mapping { policy, ..Default::default() };
        map_table(&MappingRules::builtin(&kind), &table, &MappingOverrides::from_plan(&m)).unwrap()
    };

    // error (the default): names table, column, key, value and the fix; nothing written.
    let t = with(None);
    my_create(&mut c, &t).await;
    let e = my_insert(&mut c, &t, std::slice::from_ref(&row)).await.unwrap_err();
    assert!(e.contains("public.lossy.ts (key id=42): cannot write 0001-01-01 00:00:00.000000+00 to MariaDB"), "{e}");
    assert!(e.contains("policies: { public.lossy.ts: null }"), "{e}");
    let mut buf = Vec::new();
    assert!(t.append_load_data_row(&row, &mut buf).is_err());

    // null
    let t = with(Some(LossyPolicy::Null));
    my_insert(&mut c, &t, std::slice::from_ref(&row)).await.unwrap();
    let [got, _] = my_read(&mut c, &t).await;
    assert_eq!(got[0][1..], vec![CanonicalValue(None); 4][..]);
    c.query_drop("DELETE FROM lossy").await.unwrap();

    // clamp: the nearest value each column holds, through both write paths.
    let t = with(Some(LossyPolicy::Clamp));
    my_insert(&mut c, &t, std::slice::from_ref(&row)).await.unwrap();
    let expect = vec![
        canonical(&Value::Int8(42)),
        canonical(&Value::TimestampTz(TimestampValue::Micros(micros(1000, 1, 1, 0, 0, 0, 0)))),
        canonical(&Value::Date(DateValue::Days(days(9999, 12, 31)))),
        canonical(&fin("-999.99")),
        canonical(&Value::Float8(f64::MIN)),
    ];
    let [got, _] = my_read(&mut c, &t).await;
    assert_eq!(got, vec![expect.clone()]);
    c.query_drop("DELETE FROM lossy").await.unwrap();
    my_load(&mut c, &t, std::slice::from_ref(&row)).await;
    let [got, _] = my_read(&mut c, &t).await;
    assert_eq!(got, vec![expect]);

    // NaN has no nearest value: clamp refuses it.
    let mut nan = row.clone();
    nan[4] = Value::Float8(f64::NAN);
    let e = t.mysql_params(&nan, &[4]).unwrap_err().to_string();
    assert!(e.contains("no nearest representable value"), "{e}");
    let _ = c.disconnect().await;
}

fn sqlite_path() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(support::unique("xdb_map_sqlite"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("t.db")
}

#[test]
fn sqlite_round_trips_every_type() {
    let path = sqlite_path();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let kind = TargetKind::Sqlite;
    let t = mapped(&kind, "xdb_rt", "rt", &MappingOverrides::default());
    for sql in create_table_ddl(&t, &kind) {
        conn.execute_batch(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let rows = nasty_rows();
    let names: Vec<String> = t.columns.iter().map(|c| kind.dialect().ident(&c.name)).collect();
    let sql =
        format!("INSERT INTO {} ({}) VALUES ({})", t.target_ident, names.join(", "), vec!["?"; names.len()].join(", "));
    for row in &rows {
        let p = t.sqlite_params(row, &cols(&t)).unwrap();
        conn.execute(&sql, rusqlite::params_from_iter(p)).unwrap();
    }
    let mut st = conn.prepare(&select_sql(&t)).unwrap();
    let got: Vec<Vec<CanonicalValue>> = st
        .query_map([], |r| {
            Ok(t.columns
                .iter()
                .enumerate()
                .map(|(i, c)| canonical_from_sqlite(&r.get::<_, rusqlite::types::Value>(i).unwrap(), c))
                .collect())
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_same(&t, &rows, &got, "sqlite");

    // The enum CHECK keeps the labels; NaN would be stored as NULL, so it follows the policy.
    let mut bad = rows[1].clone();
    bad[23] = Value::Text("nope".into());
    assert!(conn.execute(&sql, rusqlite::params_from_iter(t.sqlite_params(&bad, &cols(&t)).unwrap())).is_err());
    bad[23] = Value::Text("ok".into());
    bad[5] = Value::Float8(f64::NAN);
    let e = t.sqlite_params(&bad, &cols(&t)).unwrap_err().to_string();
    assert!(e.contains("xdb_rt.rt.f8 (key id=2): cannot write NaN to SQLite: SQLite stores NaN as NULL"), "{e}");
    drop(st);
    drop(conn);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

async fn pg_read(c: &tokio_postgres::Client, t: &MappedTable) -> Vec<Vec<CanonicalValue>> {
    let msgs = c.simple_query(&select_sql(t)).await.unwrap();
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some(t.columns.iter().enumerate().map(|(i, col)| canonical_from_pg_text(r.get(i), col)).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn postgres_round_trips_every_type_through_params_and_copy() {
    let db = PgDb::create("xdb_map_rt").await;
    let c = db.super_client().await;
    // Default IntervalStyle (postgres); a time zone far from UTC proves timestamptz handling.
    c.batch_execute("SET TimeZone = 'Asia/Kolkata'").await.unwrap();
    let kind = TargetKind::Postgres;
    let rows = nasty_rows();
    let o = MappingOverrides::default();

    let t = mapped(&kind, "xdb_rt", "rt_params", &o);
    for sql in create_table_ddl(&t, &kind) {
        c.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let names: Vec<String> = t.columns.iter().map(|c| kind.dialect().ident(&c.name)).collect();
    let phs: Vec<String> = (0..names.len()).map(|i| t.pg_placeholder(i + 1, i)).collect();
    let sql = format!("INSERT INTO {} ({}) VALUES ({})", t.target_ident, names.join(", "), phs.join(", "));
    for row in &rows {
        let p = t.pg_params(row, &cols(&t)).unwrap();
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            p.iter().map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        c.execute(&sql, &refs).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    assert_same(&t, &rows, &pg_read(&c, &t).await, "pg params");

    // Same schema and enum type again: the DDL is idempotent.
    let copy = mapped(&kind, "xdb_rt", "rt_copy", &o);
    for sql in create_table_ddl(&copy, &kind) {
        c.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let mut data = Vec::new();
    for row in &rows {
        copy.append_pg_copy_row(row, &mut data).unwrap();
    }
    let sink = c.copy_in::<_, Bytes>(&copy.pg_copy_sql()).await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(data)).await.unwrap();
    sink.finish().await.unwrap();
    assert_same(&copy, &rows, &pg_read(&c, &copy).await, "pg copy");
}

#[test]
fn unknown_type_is_reported_with_the_override_to_add() {
    let mut t = all_types_table("public", "geo");
    t.columns.push(col("shape", PgType::Other { name: "public.geometry".into() }));
    let kind = TargetKind::mysql_from_version_string("8.4.3");
    let e = map_table(&MappingRules::builtin(&kind), &t, &MappingOverrides::default()).unwrap_err().to_string();
    assert!(e.contains("public.geo.shape: type `public.geometry` has no mapping rule for MySQL 8.4.3"), "{e}");
    assert!(e.contains("columns:\n      public.geo.shape: LONGTEXT"), "{e}");
}

#[tokio::test]
async fn mariadb_wide_varchar_rows_still_create() {
    let db = MyDb::create("xdb_map_wide").await;
    let mut c = my_conn(&db).await;
    let kind = my_kind(&mut c).await;
    let mut columns = vec![col("id", PgType::Int4)];
    columns[0].nullable = false;
    columns.extend((0..30).map(|i| col(&format!("v{i}"), PgType::Varchar(Some(1000)))));
    let table = TableSchema {
        oid: 1,
        name: TableName::new("public", "wide"),
        columns,
        replica_identity: ReplicaIdentity::Default,
        primary_key: vec![0],
        generated: Vec::new(),
    };
    let t = map_table(&MappingRules::builtin(&kind), &table, &MappingOverrides::default()).unwrap();
    assert!(t.warnings.iter().any(|w| w.contains("65535-byte limit")), "{:?}", t.warnings);
    my_create(&mut c, &t).await;
    let mut row: Row = vec![Value::Int4(1)];
    row.extend((0..30).map(|_| Value::Text("é".repeat(1000))));
    my_insert(&mut c, &t, &[row.clone()]).await.unwrap();
    let [got, _] = my_read(&mut c, &t).await;
    assert_same(&t, &[row], &got, "wide");
    let _ = c.disconnect().await;
}

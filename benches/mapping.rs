//! Bulk-load encoding throughput: a realistic 10-column row → MySQL
//! `LOAD DATA` text (`append_load_data_row`), and → PostgreSQL COPY text.
//! Target: ≥ 1 M rows/s/core for LOAD DATA.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use xdb::mapping::{map_table, MappingOverrides, MappingRules, TargetKind};
use xdb::model::{Column, NumericValue, PgType, ReplicaIdentity, Row, TableName, TableSchema, TimestampValue, Value};

fn col(name: &str, ty: PgType) -> Column {
    Column::new(name, ty)
}

fn table() -> TableSchema {
    TableSchema {
        oid: 1,
        name: TableName::new("public", "orders"),
        columns: vec![
            col("id", PgType::Int8),
            col("customer", PgType::Text),
            col("total", PgType::Numeric { precision: Some(12), scale: Some(2) }),
            col("placed_at", PgType::TimestampTz(None)),
            col("doc", PgType::Jsonb),
            col("paid", PgType::Bool),
            col("ref", PgType::Uuid),
            col("qty", PgType::Int4),
            col("note", PgType::Varchar(Some(200))),
            col("ship_on", PgType::Date),
        ],
        replica_identity: ReplicaIdentity::Default,
        primary_key: vec![0],
        generated: Vec::new(),
    }
}

fn rows() -> Vec<Row> {
    (0..1024i64)
        .map(|i| {
            vec![
                Value::Int8(1_000_000 + i),
                Value::Text(format!("customer-{i}@example.com")),
                Value::Numeric(NumericValue::Finite(format!("{}.{:02}", i * 37 % 100_000, i % 100))),
                Value::TimestampTz(TimestampValue::Micros(1_700_000_000_000_000 + i * 1_234_567)),
                Value::Json(format!(r#"{{"items": [{{"sku": "A-{i}", "qty": 2}}], "gift": false}}"#)),
                Value::Bool(i % 3 == 0),
                Value::Uuid(uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef ^ i as u128)),
                Value::Int4((i % 17) as i32),
                Value::Text(if i % 5 == 0 { "leave at the door\tplease".into() } else { "standard".into() }),
                Value::Date(xdb::model::DateValue::Days(19_000 + (i % 400) as i32)),
            ]
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rows = rows();
    let mut g = c.benchmark_group("mapping");
    g.throughput(Throughput::Elements(rows.len() as u64));
    let kind = TargetKind::mysql_from_version_string("10.11.6-MariaDB");
    let my = map_table(&MappingRules::builtin(&kind), &table(), &MappingOverrides::default()).unwrap();
    let mut out = Vec::with_capacity(1 << 20);
    g.bench_function("append_load_data_row", |b| {
        b.iter(|| {
            out.clear();
            for r in &rows {
                my.append_load_data_row(black_box(r), &mut out).unwrap();
            }
            black_box(out.len())
        })
    });
    let pg = map_table(&MappingRules::builtin(&TargetKind::Postgres), &table(), &MappingOverrides::default()).unwrap();
    g.bench_function("append_pg_copy_row", |b| {
        b.iter(|| {
            out.clear();
            for r in &rows {
                pg.append_pg_copy_row(black_box(r), &mut out).unwrap();
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

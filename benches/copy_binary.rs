//! CopyBinaryReader throughput on a typical 10-column row (bigint key, text,
//! numeric, timestamptz, bool, double, uuid, date, jsonb, int), fed in 64 KiB
//! chunks as a COPY stream arrives.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xdb::model::PgType;
use xdb::source::postgres::codec::copy_binary::CopyBinaryReader;

const ROWS: usize = 100_000;

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn stream() -> Vec<u8> {
    let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
    out.extend_from_slice(&[0; 8]);
    for i in 0..ROWS as i64 {
        out.extend_from_slice(&10i16.to_be_bytes());
        field(&mut out, &i.to_be_bytes());
        field(&mut out, format!("customer-{i}@example.com").as_bytes());
        // numeric 1234.50: ndigits 2, weight 0, sign +, dscale 2, digits 1234 5000
        let num: Vec<u8> = [2i16, 0, 0, 2, 1234, 5000].iter().flat_map(|d| d.to_be_bytes()).collect();
        field(&mut out, &num);
        field(&mut out, &(i * 1_000_000).to_be_bytes());
        field(&mut out, &[1]);
        field(&mut out, &(i as f64 * 0.5).to_be_bytes());
        field(&mut out, &(i as u128).to_be_bytes());
        field(&mut out, &((i % 10_000) as i32).to_be_bytes());
        field(&mut out, format!("\x01{{\"id\": {i}, \"tags\": [\"a\", \"b\"], \"ok\": true}}").as_bytes());
        field(&mut out, &(i as i32).to_be_bytes());
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

fn types() -> Vec<PgType> {
    vec![
        PgType::Int8,
        PgType::Text,
        PgType::Numeric { precision: Some(12), scale: Some(2) },
        PgType::TimestampTz(None),
        PgType::Bool,
        PgType::Float8,
        PgType::Uuid,
        PgType::Date,
        PgType::Jsonb,
        PgType::Int4,
    ]
}

fn bench(c: &mut Criterion) {
    let chunks: Vec<Bytes> = stream().chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
    let mut g = c.benchmark_group("copy_binary");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    g.bench_function("10 columns", |b| {
        b.iter(|| {
            let mut r = CopyBinaryReader::new(types());
            let mut n = 0usize;
            for chunk in &chunks {
                r.feed(chunk.clone());
                while let Some(row) = r.next_row().unwrap() {
                    n += row.len();
                }
            }
            r.finish().unwrap();
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

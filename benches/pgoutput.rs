//! Decoding throughput of a realistic pgoutput stream: Begin, 1000 Inserts
//! of a 10-column row (int8, text, numeric, timestamptz, bool, uuid, jsonb,
//! int4, float8, varchar), Commit. Reports messages per second.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use xdb::model::Lsn;
use xdb::source::postgres::assembler::{
    AssemblerConfig, AssemblerEvent, BuiltinTypes, TransactionAssembler, ValueDecoders,
};
use xdb::source::postgres::codec::pgoutput::{
    decode, encode, PgoutputMessage, RelationBody, RelationColumn, TupleDatum,
};

const ROWS: usize = 1000;

fn stream() -> Vec<Bytes> {
    let cols = [
        ("id", 20),
        ("name", 25),
        ("amount", 1700),
        ("created_at", 1184),
        ("active", 16),
        ("ref", 2950),
        ("doc", 3802),
        ("qty", 23),
        ("ratio", 701),
        ("code", 1043),
    ];
    let mut msgs = vec![encode(
        &PgoutputMessage::Begin { final_lsn: Lsn(0x1_0000), commit_time_micros: 1_700_000_000_000_000, xid: 42 },
        false,
    )];
    msgs.push(encode(
        &PgoutputMessage::Relation(RelationBody {
            xid: None,
            oid: 16384,
            namespace: "public".into(),
            name: "orders".into(),
            replica_identity: b'd',
            columns: cols
                .iter()
                .enumerate()
                .map(|(i, (name, oid))| RelationColumn {
                    flags: u8::from(i == 0),
                    name: name.to_string(),
                    type_oid: *oid,
                    typmod: -1,
                })
                .collect(),
        }),
        false,
    ));
    for i in 0..ROWS {
        let values = [
            format!("{}", 1_000_000 + i),
            format!("customer number {i}"),
            format!("{}.{:02}", i * 37, i % 100),
            format!("2024-05-06 07:08:{:02}.123456+00", i % 60),
            if i % 2 == 0 { "t".into() } else { "f".into() },
            format!("6f1c2a3b-4d5e-4f60-8a7b-{:012x}", i),
            format!("{{\"a\": {i}, \"tags\": [\"x\", \"y\"], \"nested\": {{\"ok\": true}}}}"),
            format!("{}", i % 1000),
            format!("{}", i as f64 / 7.0),
            format!("CODE-{i:06}"),
        ];
        let new = values.iter().map(|v| TupleDatum::Text(Bytes::copy_from_slice(v.as_bytes()))).collect();
        msgs.push(encode(&PgoutputMessage::Insert { xid: None, relation_oid: 16384, new }, false));
    }
    msgs.push(encode(
        &PgoutputMessage::Commit {
            flags: 0,
            commit_lsn: Lsn(0x1_0000),
            end_lsn: Lsn(0x1_0030),
            commit_time_micros: 1_700_000_000_000_000,
        },
        false,
    ));
    msgs
}

fn bench(c: &mut Criterion) {
    let msgs = stream();
    let mut g = c.benchmark_group("pgoutput");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.bench_function("decode_begin_1000_inserts_commit", |b| {
        b.iter(|| {
            for m in &msgs {
                black_box(decode(black_box(m), false).expect("valid"));
            }
        })
    });
    // The whole path to a Transaction, with the raw (text-keeping) value decoders.
    g.bench_function("assemble_raw_values", |b| {
        b.iter(|| {
            let mut a =
                TransactionAssembler::new(AssemblerConfig::default(), ValueDecoders::raw(), Arc::new(BuiltinTypes));
            let mut n = 0;
            for (i, m) in msgs.iter().enumerate() {
                for e in a.feed(Lsn(i as u64), m).expect("valid") {
                    if let AssemblerEvent::Transaction(t) = e {
                        n += t.changes.len();
                    }
                }
            }
            assert_eq!(n, ROWS);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The pgoutput decoder and transaction assembler against real PostgreSQL
//! output: raw messages read from a logical slot with
//! `pg_logical_slot_peek_binary_changes` (protocol 2 with streaming and
//! messages, and protocol 1) are fed to the assembler as the walsender would
//! deliver them.

use std::sync::Arc;

use bytes::Bytes;
use xdb::model::{Change, Lsn, Transaction, Value};
use xdb::source::postgres::assembler::{
    AssemblerConfig, AssemblerEvent, BuiltinTypes, SpilledTransaction, TransactionAssembler, ValueDecoders,
};
use xdb::source::postgres::codec::pgoutput::{self, PgoutputMessage};

use crate::support::{unique, PgDb};

/// A database with a publication for all tables and a pgoutput slot.
struct Source {
    db: PgDb,
    client: tokio_postgres::Client,
    slot: String,
}

impl Source {
    async fn create(setup: &str) -> Source {
        let db = PgDb::create("xdb_pgoutput").await;
        let client = db.super_client().await;
        // The dev server runs with synchronous_commit off; decoding reads only flushed WAL.
        client.batch_execute("SET synchronous_commit = on").await.expect("synchronous_commit");
        client.batch_execute(setup).await.expect("setup");
        client.batch_execute("CREATE PUBLICATION pub FOR ALL TABLES").await.expect("publication");
        let slot = unique("xdb_pgo_slot");
        client.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", &[&slot]).await.expect("slot");
        Source { db, client, slot }
    }

    /// Runs each `;`-separated statement on its own (one simple query with
    /// several statements would be one transaction).
    async fn exec(&self, sql: &str) {
        for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            self.client.batch_execute(stmt).await.unwrap_or_else(|e| panic!("{stmt}: {e:?}"));
        }
    }

    /// The raw messages so far, without consuming them.
    async fn peek(&self, proto: &str) -> Vec<(Lsn, Bytes)> {
        let options = if proto == "1" {
            "'proto_version', '1', 'publication_names', 'pub'".to_string()
        } else {
            format!("'proto_version', '{proto}', 'publication_names', 'pub', 'streaming', 'on', 'messages', 'true'")
        };
        let sql = format!("SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, {options})");
        let rows = self.client.query(&sql, &[&self.slot]).await.expect("peek changes");
        rows.iter()
            .map(|r| (r.get::<_, String>(0).parse().expect("lsn"), Bytes::from(r.get::<_, Vec<u8>>(1))))
            .collect()
    }

    /// Consumes everything so far (the next scenario starts clean).
    async fn consume(&self) {
        self.client
            .execute(
                "SELECT count(*) FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', 'pub')",
                &[&self.slot],
            )
            .await
            .expect("consume changes");
    }

    async fn drop_slot(self) {
        self.client.execute("SELECT pg_drop_replication_slot($1)", &[&self.slot]).await.expect("drop slot");
        drop(self.db);
    }
}

fn assemble(msgs: &[(Lsn, Bytes)], threshold: usize) -> (Vec<AssemblerEvent>, TransactionAssembler) {
    let config = AssemblerConfig { spill_threshold_bytes: threshold, ..AssemblerConfig::default() };
    let mut a = TransactionAssembler::new(config, ValueDecoders::raw(), Arc::new(BuiltinTypes));
    let mut events = Vec::new();
    for (lsn, data) in msgs {
        events.extend(a.feed(*lsn, data).unwrap_or_else(|e| panic!("feed {lsn}: {e}")));
    }
    assert_eq!(a.open_transactions(), 0, "every transaction completed");
    (events, a)
}

fn transactions(events: &[AssemblerEvent]) -> Vec<&Transaction> {
    events
        .iter()
        .filter_map(|e| match e {
            AssemblerEvent::Transaction(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::Unknown { text, .. } => Some(text),
        Value::Null => None,
        v => panic!("raw decoders give Unknown or Null, got {v:?}"),
    }
}

fn texts(row: &[Value]) -> Vec<Option<&str>> {
    row.iter().map(text).collect()
}

fn read_all(mut s: SpilledTransaction) -> Vec<Change> {
    let mut all = Vec::new();
    loop {
        let batch = s.next_changes(1000).expect("read back spilled changes");
        if batch.is_empty() {
            break;
        }
        all.extend(batch);
    }
    assert_eq!(all.len() as u64, s.change_count);
    all
}

fn inserted_ids(changes: &[Change]) -> Vec<i64> {
    changes
        .iter()
        .map(|c| match c {
            Change::Insert { new, .. } => text(&new[0]).unwrap().parse().unwrap(),
            c => panic!("expected inserts only: {c:?}"),
        })
        .collect()
}

#[tokio::test]
async fn row_changes_toast_keys_truncate_and_messages() {
    let src = Source::create(
        "CREATE TABLE t (id int PRIMARY KEY, n int, big text);
         CREATE TABLE f (id int, v text); ALTER TABLE f REPLICA IDENTITY FULL;
         CREATE TABLE tr (id serial PRIMARY KEY);",
    )
    .await;
    src.exec(
        "INSERT INTO t SELECT 1, 1, string_agg(md5(random()::text), '') FROM generate_series(1, 400);
         INSERT INTO t VALUES (2, 2, 'small');
         UPDATE t SET n = 10 WHERE id = 1;
         UPDATE t SET id = 3 WHERE id = 2;
         INSERT INTO f VALUES (1, 'a');
         DELETE FROM f;
         DELETE FROM t WHERE id = 3;
         TRUNCATE tr RESTART IDENTITY;
         BEGIN; INSERT INTO tr DEFAULT VALUES; SELECT pg_logical_emit_message(true, 'xdb', 'hello'); COMMIT;
         SELECT pg_logical_emit_message(false, 'hb', 'beat');
         SELECT pg_logical_emit_message(true, 'xdb', 'only');",
    )
    .await;
    let msgs = src.peek("2").await;
    let (events, a) = assemble(&msgs, usize::MAX);
    let txns = transactions(&events);
    assert_eq!(txns.len(), 10, "{txns:#?}");
    for w in txns.windows(2) {
        assert!(w[0].end_lsn <= w[1].commit_lsn, "commit order");
    }

    // Inserts, with the TOASTed value in full.
    let Change::Insert { table, new } = &txns[0].changes[0] else { panic!("{:?}", txns[0]) };
    assert_eq!(table.name.to_string(), "public.t");
    assert_eq!(table.primary_key, vec![0]);
    assert_eq!(text(&new[2]).unwrap().len(), 12800);
    let Change::Insert { new, .. } = &txns[1].changes[0] else { panic!() };
    assert_eq!(texts(new), [Some("2"), Some("2"), Some("small")]);

    // An update that leaves the TOASTed column alone does not send it.
    let Change::Update { old, new, unchanged_toast, .. } = &txns[2].changes[0] else { panic!("{:?}", txns[2]) };
    assert_eq!(old, &None);
    assert_eq!(texts(new), [Some("1"), Some("10"), None]);
    assert_eq!(unchanged_toast, &vec![2]);

    // A key-changing update carries the old key.
    let Change::Update { old, new, unchanged_toast, .. } = &txns[3].changes[0] else { panic!("{:?}", txns[3]) };
    assert_eq!(texts(old.as_ref().unwrap()), [Some("2"), None, None]);
    assert_eq!(texts(new), [Some("3"), Some("2"), Some("small")]);
    assert!(unchanged_toast.is_empty());

    // REPLICA IDENTITY FULL: the whole old row.
    let Change::Delete { table, old } = &txns[5].changes[0] else { panic!("{:?}", txns[5]) };
    assert!(table.primary_key.is_empty());
    assert_eq!(texts(old), [Some("1"), Some("a")]);
    let Change::Delete { old, .. } = &txns[6].changes[0] else { panic!("{:?}", txns[6]) };
    assert_eq!(texts(old), [Some("3"), None, None]);

    let Change::Truncate { tables, cascade, restart_identity } = &txns[7].changes[0] else { panic!("{:?}", txns[7]) };
    assert_eq!(tables[0].name.to_string(), "public.tr");
    assert!(!cascade && *restart_identity);

    // Transactional messages come right before their transaction, even alone.
    let pos =
        |xid: u32| events.iter().position(|e| matches!(e, AssemblerEvent::Transaction(t) if t.xid == xid)).unwrap();
    for (txn, expected, changes) in [(txns[8], "hello", 1), (txns[9], "only", 0)] {
        let AssemblerEvent::Message { xid, transactional, prefix, content, .. } = &events[pos(txn.xid) - 1] else {
            panic!("{:?}", events[pos(txn.xid) - 1])
        };
        assert_eq!(
            (*xid, *transactional, prefix.as_str(), &content[..]),
            (Some(txn.xid), true, "xdb", expected.as_bytes())
        );
        assert_eq!(txn.changes.len(), changes);
    }
    assert!(events.iter().any(|e| matches!(e, AssemblerEvent::Message { transactional: false, prefix, content, .. }
        if prefix == "hb" && &content[..] == b"beat")));
    assert!(a.relation(txns[0].changes[0].tables()[0].oid).is_some());
    src.drop_slot().await;
}

#[tokio::test]
async fn streamed_transactions_commit_whole_and_aborts_vanish() {
    let src = Source::create("CREATE TABLE s (id int PRIMARY KEY, v text)").await;
    // A streamed transaction with an ordinary one committing in its middle.
    let other = src.db.super_client().await;
    other.batch_execute("SET synchronous_commit = on").await.unwrap();
    src.exec("BEGIN; INSERT INTO s SELECT g, 'row ' || g FROM generate_series(1, 10000) g").await;
    other.batch_execute("INSERT INTO s VALUES (-1, 'between')").await.unwrap();
    src.exec("INSERT INTO s SELECT g, 'row ' || g FROM generate_series(10001, 20000) g; COMMIT").await;
    let msgs = src.peek("2").await;
    assert!(msgs.iter().filter(|(_, m)| m.first() == Some(&b'S')).count() > 1, "the big transaction was streamed");
    let expected: Vec<i64> = (1..=20000).collect();

    for threshold in [64 << 10, usize::MAX] {
        let (events, _) = assemble(&msgs, threshold);
        let mut big = None;
        let mut small = Vec::new();
        for e in events {
            match e {
                AssemblerEvent::Spilled(s) => {
                    assert!(threshold < usize::MAX);
                    big = Some(read_all(s));
                }
                AssemblerEvent::Transaction(t) if t.changes.len() > 1 => {
                    assert_eq!(threshold, usize::MAX);
                    big = Some(t.changes);
                }
                AssemblerEvent::Transaction(t) => small.push(t),
                _ => {}
            }
        }
        assert_eq!(inserted_ids(&big.expect("the big transaction")), expected, "threshold {threshold}");
        assert_eq!(small.len(), 1);
        assert_eq!(inserted_ids(&small[0].changes), [-1]);
    }
    src.consume().await;

    // Rolled back after streaming: nothing. A rolled-back savepoint: only its rows go.
    src.exec(
        "BEGIN; INSERT INTO s SELECT g, 'gone' FROM generate_series(100001, 120000) g; ROLLBACK;
         BEGIN; INSERT INTO s SELECT g, 'kept' FROM generate_series(200001, 210000) g;
         SAVEPOINT a; INSERT INTO s SELECT g, 'gone' FROM generate_series(300001, 310000) g; ROLLBACK TO SAVEPOINT a;
         SAVEPOINT b; INSERT INTO s SELECT g, 'kept' FROM generate_series(210001, 215000) g; RELEASE SAVEPOINT b;
         INSERT INTO s VALUES (215001, 'last'); COMMIT;",
    )
    .await;
    let msgs = src.peek("2").await;
    let aborts: Vec<_> = msgs
        .iter()
        .filter(|(_, m)| m.first() == Some(&b'A'))
        .map(|(_, m)| match pgoutput::decode(m, false) {
            Ok(PgoutputMessage::StreamAbort { xid, subxid, .. }) => xid == subxid,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(aborts.contains(&true) && aborts.contains(&false), "whole and sub-transaction Stream Aborts: {aborts:?}");
    let expected: Vec<i64> = (200001..=215001).collect();
    for threshold in [64 << 10, usize::MAX] {
        let (events, _) = assemble(&msgs, threshold);
        let mut committed = Vec::new();
        for e in events {
            match e {
                AssemblerEvent::Spilled(s) => committed.push(read_all(s)),
                AssemblerEvent::Transaction(t) => committed.push(t.changes),
                _ => {}
            }
        }
        assert_eq!(committed.len(), 1, "only the committed transaction");
        assert_eq!(inserted_ids(&committed[0]), expected, "threshold {threshold}");
    }
    src.drop_slot().await;
}

#[tokio::test]
async fn protocol_version_1_decodes() {
    let src = Source::create("CREATE TABLE p (id bigint PRIMARY KEY, v numeric(10,2), at timestamptz)").await;
    src.exec(
        "INSERT INTO p VALUES (1, 1.50, '2024-01-02 03:04:05+00');
         UPDATE p SET v = 2 WHERE id = 1;
         DELETE FROM p WHERE id = 1;
         INSERT INTO p SELECT g, g, now() FROM generate_series(2, 20001) g;",
    )
    .await;
    let msgs = src.peek("1").await;
    assert!(!msgs.iter().any(|(_, m)| m.first() == Some(&b'S')), "protocol 1 does not stream");
    let (events, _) = assemble(&msgs, usize::MAX);
    let txns = transactions(&events);
    assert_eq!(txns.len(), 4);
    let Change::Insert { table, new } = &txns[0].changes[0] else { panic!() };
    assert_eq!(table.columns[1].pg_type.sql_name(), "numeric(10,2)");
    assert_eq!(texts(new), [Some("1"), Some("1.50"), Some("2024-01-02 03:04:05+00")]);
    assert!(matches!(&txns[1].changes[0], Change::Update { new, .. } if text(&new[1]) == Some("2.00")));
    assert!(matches!(&txns[2].changes[0], Change::Delete { old, .. } if texts(old) == [Some("1"), None, None]));
    assert_eq!(inserted_ids(&txns[3].changes), (2..=20001).collect::<Vec<i64>>());
    assert!(txns[3].commit_time_micros > 1_700_000_000_000_000, "µs since 1970");

    // The same large ordinary transaction spills beyond the threshold.
    let (events, _) = assemble(&msgs, 1 << 20);
    let spilled: Vec<_> = events
        .into_iter()
        .filter_map(|e| match e {
            AssemblerEvent::Spilled(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(spilled.len(), 1);
    assert_eq!(inserted_ids(&read_all(spilled.into_iter().next().unwrap())), (2..=20001).collect::<Vec<i64>>());
    src.drop_slot().await;
}

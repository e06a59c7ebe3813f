//! `xdb sync` into a replicated log (NATS JetStream): the initial copy as
//! Debezium `op: r` events, then every committed source transaction as
//! BEGIN, its change events, END — exactly once.
//!
//! Invariant *log exactly once* (docs/architecture.md): each message has a
//! deterministic id (copy: snapshot position, table, key; stream: commit
//! LSN and position in the transaction) and is published with the
//! sequence the stream must be at, so the stream is always a gap-free
//! prefix of the publish order; the slot is confirmed only up to the end
//! of a transaction whose END (or a heartbeat past it) JetStream has
//! acknowledged. After a crash the stream's last message says where to go
//! on: within a transaction (publish its rest), after one (stream from its
//! end), or in the copy (copy again from a fresh snapshot: consumers see
//! `snap-start` on `<prefix>.xdb` and start over). Invariants *snapshot
//! handoff* and *slot continuity* hold as for a database target.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::backoff::reconnecting;
use super::log_schema::{ShapeError, Shapes};
use super::sync::{SyncOptions, CATCH_UP_PREFIX};
use crate::copy::ranges::CopyRange;
use crate::copy::source_reader::SnapshotReader;
use crate::copy::CopyError;
use crate::debezium::{self, At, Connector, Op, Snapshot};
use crate::model::{Change, ChunkedTransaction, Lsn, Row, TableName, TableSchema, Transaction};
use crate::nats::{msg_id, Log, LogError, NatsTarget, Publisher, Tail};
use crate::pg_conn::client;
use crate::plan::Plan;
use crate::sink::ChangeSink;
use crate::source::postgres::catalog::{load_table, CatalogError, TypeCache};
use crate::source::postgres::change_stream::{ChangeStream, ChangeStreamError};
use crate::source::postgres::replication::{ReplicationClient, SnapshotAction};
use crate::source::postgres::{publication, streamable};
use crate::source::{ChangeSource, ShapeChange, SourceEvent};

/// Why `sync` into the log stopped.
#[derive(Debug, thiserror::Error)]
pub enum ToLogError {
    #[error("{0}")]
    Log(#[from] LogError),
    #[error("source: {0}")]
    Stream(#[from] ChangeStreamError),
    #[error("initial copy: {0}")]
    Copy(#[from] CopyError),
    #[error("source: {0}")]
    SourceConnect(#[from] client::ConnectError),
    #[error("source: {0}")]
    Catalog(#[from] CatalogError),
    #[error("source: {what}: {}", crate::error_policy::pg_error_text(.source))]
    Sql {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("source: {0}")]
    Marker(#[from] crate::source::postgres::change_stream::MarkerError),
    #[error("source: {0}")]
    Publication(#[from] publication::PublicationError),
    #[error("{0}")]
    Unstreamable(#[from] streamable::UnstreamableTables),
    #[error("replication connection: {0}")]
    Replication(#[from] crate::source::postgres::replication::ReplicationError),
    #[error("table {0} does not exist on the source")]
    MissingTable(String),
    #[error("{0}")]
    Config(String),
    #[error(
        "{tables} rewritten on the source (TRUNCATE or a rewriting ALTER TABLE) while the copy started: it \
         starts again from a fresh snapshot"
    )]
    Rewritten { tables: String },
    #[error("the source ended the replication stream (server shutting down or restarting)")]
    StreamEnded,
    #[error("publishing a table's new shape: {0}")]
    Shape(#[from] ShapeError),
    #[error("reading a spilled source transaction back: {0}")]
    Spill(#[source] crate::model::ChunkError),
    /// The log is written from a PostgreSQL slot, which hands over whole
    /// transactions and Relation messages only.
    #[error("a log is written from a PostgreSQL slot; a source handing over {0} cannot feed it")]
    NotFromSlot(&'static str),
}

impl ToLogError {
    fn is_retryable(&self) -> bool {
        match self {
            ToLogError::Log(e) => e.is_retryable(),
            ToLogError::Stream(e) => e.is_retryable(),
            ToLogError::Copy(e) => e.is_retryable(),
            ToLogError::SourceConnect(e) => e.retryable,
            ToLogError::Catalog(CatalogError::Query { source, .. }) | ToLogError::Sql { source, .. } => {
                crate::error_policy::postgres(source).is_transient()
            }
            ToLogError::Marker(e) => e.is_retryable(),
            ToLogError::Replication(e) => e.is_retryable(),
            ToLogError::Rewritten { .. } | ToLogError::StreamEnded => true,
            ToLogError::Shape(ShapeError::Log(e)) => e.is_retryable(),
            ToLogError::Shape(ShapeError::Connect(e)) => e.retryable,
            ToLogError::Shape(ShapeError::Catalog(CatalogError::Query { source, .. })) => {
                crate::error_policy::postgres(source).is_transient()
            }
            _ => false,
        }
    }
}

/// Runs until a signal, a permanent error, or (`until_caught_up`) until
/// the log holds everything the source had committed at the start.
pub async fn run(plan: &Plan, target: &NatsTarget, options: &SyncOptions) -> Result<(), ToLogError> {
    reconnecting(options.max_retries, ToLogError::is_retryable, || session(plan, target, options)).await
}

/// The source's tables as the catalog has them now, with their subjects.
struct Tables {
    schemas: HashMap<TableName, Arc<TableSchema>>,
}

async fn session(plan: &Plan, target: &NatsTarget, options: &SyncOptions) -> Result<(), ToLogError> {
    let log = Log::connect(target).await?;
    log.ensure_stream().await?;
    let (last_seq, last_id) = log.settled_tail().await?;
    let tail = msg_id::tail(last_id.as_deref());
    tracing::info!(stream = %target.stream, last_seq, ?tail, "log tail");

    let catalog = client::connect(&plan.source.url, "xdb sync").await?;
    let db: String = catalog
        .query_one("SELECT current_database()", &[])
        .await
        .map_err(|source| ToLogError::Sql { what: "reading the database name", source })?
        .get(0);
    let connector = Connector { name: target.prefix.clone(), db, schemas: target.schemas };
    let mut types = TypeCache::new();
    let mut tables = Tables { schemas: HashMap::new() };
    for t in &plan.tables {
        target.table_subject(&t.schema, &t.name).map_err(ToLogError::Config)?;
        let s = load_table(&catalog, &mut types, t, plan.mapping.generated)
            .await?
            .ok_or_else(|| ToLogError::MissingTable(t.to_string()))?;
        // Before 18 only `sync` into a database recomputes them
        // (`pipeline::generated_fill`): never a log without them.
        if let Some(c) = s.columns.iter().find(|c| c.carried.as_ref().is_some_and(|g| g.recomputed)) {
            return Err(ToLogError::Config(format!(
                "{t}.{} is a stored generated column and the source (before PostgreSQL 18) does not publish it: \
                 a log target cannot carry it with mapping.generated: source. Sync into a database, or remove \
                 mapping.generated: source (the column then needs an expression the target can compute)",
                c.name
            )));
        }
        // Keyed as its change events are (a Relation message's key): the
        // copy's CREATE event then names the key a consumer matches on.
        tables.schemas.insert(t.clone(), Arc::new(s.keyed_by_identity_index()));
    }
    let mut publisher = Publisher::new(&log, last_seq, Lsn::ZERO);
    let r = publish(plan, &log, catalog, &tables, &connector, tail, options, &mut publisher).await;
    if r.is_err() {
        // Every message this session sent is stored or refused before the
        // next session reads the tail: one landing after that read would
        // shift the next session's sequence chain (invariant *exactly once
        // through the log*).
        publisher.settle().await;
        // And nothing still in the client's buffer is sent later (after a
        // reconnect) by a client this session no longer watches.
        let _ = tokio::time::timeout(Duration::from_secs(10), log.client.flush()).await;
    }
    r
}

/// The copy when the log needs one, then the change stream into the log.
#[allow(clippy::too_many_arguments)]
async fn publish(
    plan: &Plan,
    log: &Log,
    catalog: tokio_postgres::Client,
    tables: &Tables,
    connector: &Connector,
    tail: Tail,
    options: &SyncOptions,
    publisher: &mut Publisher,
) -> Result<(), ToLogError> {
    let target = &log.target;
    let (start, resume, shapes) = copy_or_resume(plan, log, &catalog, tables, connector, tail, publisher).await?;
    let config = super::sync::stream_config(plan, start, options);
    let stream = ChangeStream::open(&plan.source.url, catalog, &config).await?;
    tracing::info!(slot = %plan.source.slot, from = %start, stream = %target.stream, "streaming changes into the log");
    let marker = if options.until_caught_up { Some(stream.emit_marker(CATCH_UP_PREFIX).await?) } else { None };
    let mut s = Streamer { log, connector, publisher, resume, floor: start, last_heartbeat: Instant::now(), shapes };
    pump(stream, &mut s, marker).await
}

/// Where the stream starts: after a copy when the log needs one (with the
/// copy's shapes), else at the log's tail — inside a transaction, the
/// events of it already stored are not published again.
async fn copy_or_resume(
    plan: &Plan,
    log: &Log,
    catalog: &tokio_postgres::Client,
    tables: &Tables,
    connector: &Connector,
    tail: Tail,
    publisher: &mut Publisher,
) -> Result<(Lsn, Option<(Lsn, u64)>, Shapes), ToLogError> {
    if tail != Tail::NeedsCopy {
        refuse_tables_not_copied(log, plan).await?;
    }
    Ok(match tail {
        Tail::NeedsCopy => {
            let shapes = Shapes::for_copy(&tables.schemas, &plan.source.url, plan.mapping.generated);
            let at = copy(plan, log, catalog, tables, connector, publisher, &shapes).await?;
            (at, None, shapes)
        }
        Tail::At(l) => {
            (l, None, Shapes::from_log(log, &tables.schemas, &plan.source.url, plan.mapping.generated).await?)
        }
        Tail::Within { commit, index } => (
            commit,
            Some((commit, index)),
            Shapes::from_log(log, &tables.schemas, &plan.source.url, plan.mapping.generated).await?,
        ),
    })
}

/// The change source into the log sink, confirming the source as the log
/// acknowledges, until a permanent error or (`marker`) the catch-up point.
async fn pump<S: ChangeSource>(mut stream: S, s: &mut Streamer<'_>, marker: Option<Lsn>) -> Result<(), ToLogError>
where
    ToLogError: From<S::Error>,
{
    let mut status = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            biased;
            r = s.publisher.ack_one(), if s.publisher.has_inflight() => {
                r?;
                stream.confirm(s.publisher.acked());
            }
            _ = status.tick() => {
                tracing::info!(published = s.publisher.published, confirmed = %s.publisher.acked(), "log status");
            }
            ev = stream.next_event() => {
                let ev = ev?.ok_or(ToLogError::StreamEnded)?;
                let end = match ev {
                    SourceEvent::Transaction(mut tx) => {
                        let end = tx.end_lsn;
                        s.apply(std::slice::from_mut(&mut tx)).await?;
                        end
                    }
                    SourceEvent::Large(mut large) => {
                        let end = large.header().end_lsn;
                        s.apply_large(&mut large).await?;
                        end
                    }
                    SourceEvent::Relation(schema) => {
                        s.relation_changed(schema).await?;
                        continue;
                    }
                    SourceEvent::CaughtUp => continue,
                    SourceEvent::Part(_) => return Err(ToLogError::NotFromSlot("parts of a transaction")),
                    SourceEvent::Shape(_) => return Err(ToLogError::NotFromSlot("recorded shape changes")),
                    SourceEvent::CopyDone(_) => return Err(ToLogError::NotFromSlot("its own copy")),
                };
                stream.confirm(s.applied());
                if marker.is_some_and(|m| end >= m) {
                    s.heartbeat(end, true).await?;
                    stream.confirm(s.publisher.flush().await?);
                    stream.close().await?;
                    tracing::info!(published = s.publisher.published, "the log holds everything the source had committed");
                    return Ok(());
                }
            }
        }
    }
}

/// The log as a sink (`sink::ChangeSink`): a transaction is "applied" once
/// its messages are sent; [`ChangeSink::applied`] is the end of the last
/// transaction whose END the log acknowledged, the only position the slot
/// may be confirmed to (invariant *log exactly once*). Another transport
/// (Kafka) would be another such sink over the same envelope.
impl ChangeSink for Streamer<'_> {
    type Error = ToLogError;

    async fn apply(&mut self, txs: &mut [Transaction]) -> Result<(), ToLogError> {
        for tx in txs.iter() {
            self.transaction(tx, Parts::Whole(&tx.changes)).await?;
        }
        Ok(())
    }

    async fn apply_large(&mut self, tx: &mut dyn ChunkedTransaction) -> Result<(), ToLogError> {
        let head = tx.header();
        self.transaction(&head, Parts::Chunked(tx)).await
    }

    /// Nothing yet: the new shape is published just before the first
    /// change event written with it (invariant *schema drift through the
    /// log*), so a shape no change uses never reaches the log.
    async fn relation_changed(&mut self, _schema: Arc<TableSchema>) -> Result<(), ToLogError> {
        Ok(())
    }

    async fn apply_part(&mut self, _: Transaction) -> Result<(), ToLogError> {
        Err(ToLogError::NotFromSlot("parts of a transaction"))
    }

    async fn commit_parts(&mut self, _: Transaction) -> Result<(), ToLogError> {
        Err(ToLogError::NotFromSlot("parts of a transaction"))
    }

    async fn abort_parts(&mut self) {}

    async fn shape_changed(&mut self, _: ShapeChange) -> Result<(), ToLogError> {
        Err(ToLogError::NotFromSlot("recorded shape changes"))
    }

    async fn copy_done(&mut self, _: Lsn) -> Result<(), ToLogError> {
        Err(ToLogError::NotFromSlot("its own copy"))
    }

    fn applied(&self) -> Lsn {
        self.publisher.acked()
    }
}

/// The stream side: one source transaction at a time into messages.
struct Streamer<'a> {
    log: &'a Log,
    connector: &'a Connector,
    publisher: &'a mut Publisher,
    /// The transaction the stream's tail is inside, and the last event of
    /// it already stored: those are not published again.
    resume: Option<(Lsn, u64)>,
    /// Transactions committed below this are in the stream already.
    floor: Lsn,
    last_heartbeat: Instant,
    /// The last table shapes the log holds (invariant *schema drift through the log*).
    shapes: Shapes,
}

/// Changes read back from a spilled transaction at a time.
const SPILL_PART: usize = 2000;

/// A transaction's changes: in memory, or read back in chunks (spilled).
enum Parts<'a> {
    Whole(&'a [Change]),
    Chunked(&'a mut dyn ChunkedTransaction),
}

/// Heartbeats for transactions without planned changes, at most this often.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

impl Streamer<'_> {
    /// Already in the stream (the transaction the tail is inside).
    fn skipped(&self, commit: Lsn, index: u64) -> bool {
        self.resume.is_some_and(|(c, last)| commit == c && index <= last)
    }

    async fn publish(
        &mut self,
        commit: Lsn,
        index: u64,
        subject: String,
        id: String,
        payload: impl FnOnce() -> Vec<u8>,
        confirm: Option<Lsn>,
    ) -> Result<(), LogError> {
        if self.skipped(commit, index) {
            return Ok(());
        }
        self.publisher.publish(subject, id, payload(), confirm).await
    }

    /// BEGIN, the events, END; or a heartbeat for an empty transaction.
    async fn transaction(&mut self, tx: &Transaction, mut parts: Parts<'_>) -> Result<(), ToLogError> {
        let empty = match &parts {
            Parts::Whole(c) => c.is_empty(),
            Parts::Chunked(s) => s.change_count() == 0,
        };
        // Not sent again by the server (it starts at `floor`); a guard, since
        // a repeat would break the stream's sequence chain.
        if empty || tx.commit_lsn < self.floor {
            return Ok(self.heartbeat(tx.end_lsn, false).await?);
        }
        let t = &self.log.target;
        let c = self.connector;
        let id = debezium::transaction_id(tx.xid, tx.commit_lsn);
        let ts_ms = tx.commit_time_micros.div_euclid(1000);
        let begin = {
            let id = id.clone();
            move || debezium::transaction_event(c, &id, ts_ms, None)
        };
        self.publish(tx.commit_lsn, 0, t.transaction_subject(), msg_id::event(tx.commit_lsn, 0), begin, None).await?;
        let mut index = 0u64;
        let mut per_table: Vec<(String, u64)> = Vec::new();
        let mut whole_done = false;
        loop {
            // A spilled transaction is read back in parts (invariant
            // *bounded memory*), never held whole.
            let part: Vec<Change>;
            let changes: &[Change] = match &mut parts {
                Parts::Whole(c) if !whole_done => {
                    whole_done = true;
                    c
                }
                Parts::Whole(_) => break,
                Parts::Chunked(sp) => match sp.next_chunk(SPILL_PART).map_err(ToLogError::Spill)? {
                    Some(chunk) if !chunk.changes.is_empty() => {
                        part = chunk.changes;
                        &part
                    }
                    _ => break,
                },
            };
            for ev in changes.iter().flat_map(events) {
                index += 1;
                let n = count_event(&mut per_table, ev.0.name.to_string());
                self.change_event(tx, ts_ms, index, n, ev).await?;
            }
        }
        let end = move || debezium::transaction_event(c, &id, ts_ms, Some(&per_table));
        self.publish(
            tx.commit_lsn,
            index + 1,
            t.transaction_subject(),
            msg_id::end(tx.commit_lsn, tx.end_lsn),
            end,
            Some(tx.end_lsn),
        )
        .await?;
        self.resume = None;
        self.last_heartbeat = Instant::now();
        Ok(())
    }

    /// One change event, the `index`th of its transaction and the `n`th of
    /// its table there; its table's new shape first when it has one.
    async fn change_event(
        &mut self,
        tx: &Transaction,
        ts_ms: i64,
        index: u64,
        n: u64,
        (table, op, before, after, unavailable): Event<'_>,
    ) -> Result<(), ToLogError> {
        let t = &self.log.target;
        let c = self.connector;
        let subject = t.table_subject(&table.name.schema, &table.name.name).map_err(ToLogError::Config)?;
        // A new shape goes first, in order with the data (invariant
        // *schema drift through the log*); a TRUNCATE carries no row.
        if op != Op::Truncate && !self.skipped(tx.commit_lsn, index) {
            let source = || shape_source(c, &table.name, Some(tx.xid), tx.commit_lsn, ts_ms, false);
            if let Some(ev) = self.shapes.changed(t, &c.db, table, source).await? {
                let id = msg_id::schema(tx.commit_lsn, index);
                self.publisher.publish(ev.subject, id, ev.payload, None).await?;
            }
        }
        let at = At { snapshot: Snapshot::No, tx_id: Some(tx.xid), lsn: tx.commit_lsn, ts_ms, order: Some((index, n)) };
        let payload = || debezium::change_event(c, table, op, before, after, unavailable, &at);
        self.publish(tx.commit_lsn, index, subject, msg_id::event(tx.commit_lsn, index), payload, None).await?;
        Ok(())
    }

    /// Moves the log's position (and so the slot) past transactions that
    /// touch no planned table (invariant *idle slots*).
    async fn heartbeat(&mut self, at: Lsn, now: bool) -> Result<(), LogError> {
        if !now && self.last_heartbeat.elapsed() < HEARTBEAT_EVERY {
            return Ok(());
        }
        // Never behind what the stream already holds: the last message
        // must keep saying where to go on.
        if at <= self.publisher.acked() || at <= self.floor {
            return Ok(());
        }
        self.last_heartbeat = Instant::now();
        let body = serde_json::to_vec(&serde_json::json!({"heartbeat": at.to_string()})).unwrap_or_default();
        self.publisher.publish(self.log.target.heartbeat_subject(), msg_id::heartbeat(at), body, Some(at)).await
    }
}

type Event<'c> =
    (&'c TableSchema, Op, Option<&'c [crate::model::Value]>, Option<&'c [crate::model::Value]>, &'c [usize]);

/// The `source` block of a schema-change event (as a change event's).
fn shape_source(
    c: &Connector,
    table: &TableName,
    tx: Option<u32>,
    lsn: Lsn,
    ts_ms: i64,
    snapshot: bool,
) -> serde_json::Value {
    serde_json::json!({
        "version": concat!("xdb-", env!("CARGO_PKG_VERSION")),
        "connector": "postgresql",
        "name": c.name,
        "ts_ms": ts_ms,
        "snapshot": if snapshot { "true" } else { "false" },
        "db": c.db,
        "schema": table.schema,
        "table": table.name,
        "txId": tx,
        "lsn": lsn.0,
    })
}

/// Counts an event of `table` in the transaction's per-table tally (its
/// END lists them); returns the table's count so far.
fn count_event(per_table: &mut Vec<(String, u64)>, table: String) -> u64 {
    match per_table.iter_mut().find(|(t, _)| *t == table) {
        Some((_, n)) => {
            *n += 1;
            *n
        }
        None => {
            per_table.push((table, 1));
            1
        }
    }
}

/// The Debezium events of one change: one, or one per table of a TRUNCATE.
fn events(change: &Change) -> Vec<Event<'_>> {
    match change {
        Change::Insert { table, new } => vec![(table, Op::Create, None, Some(new), &[])],
        Change::Update { table, old, new, unchanged_toast } => {
            vec![(table, Op::Update, old.as_deref(), Some(new), unchanged_toast.as_slice())]
        }
        Change::Delete { table, old } => vec![(table, Op::Delete, Some(old), None, &[])],
        Change::Truncate { tables, .. } => {
            tables.iter().map(|t| (t.as_ref(), Op::Truncate, None, None, &[][..])).collect()
        }
    }
}

/// The initial copy: a fresh slot with an exported snapshot (an old slot
/// goes: its copy never finished), `snap-start`, each table's shape, every
/// row as `op: r`, `snap-end`. Returns the snapshot's consistent point.
async fn copy(
    plan: &Plan,
    log: &Log,
    catalog: &tokio_postgres::Client,
    tables: &Tables,
    c: &Connector,
    publisher: &mut Publisher,
    shapes: &Shapes,
) -> Result<Lsn, ToLogError> {
    let (repl, lsn, reader) = snapshot_slot(plan, catalog, tables).await?;
    let t = &log.target;
    let names: Vec<String> = plan.tables.iter().map(|t| t.to_string()).collect();
    let start = serde_json::to_vec(&serde_json::json!({"snapshot": "start", "lsn": lsn.to_string(), "tables": names}))
        .unwrap_or_default();
    publisher.publish(t.control_subject(), msg_id::snapshot_start(lsn), start, None).await?;
    let ts_ms = debezium::now_ms();
    // Each table's shape first: a consumer reads the copy's rows with it.
    for name in &plan.tables {
        let table = &tables.schemas[name];
        let ev = shapes.create_event(t, &c.db, table, shape_source(c, name, None, lsn, ts_ms, true))?;
        publisher.publish(ev.subject, msg_id::snapshot_schema(lsn, &name.to_string()), ev.payload, None).await?;
    }
    let started = Instant::now();
    let mut out = CopyRows { publisher, t, c, lsn, ts_ms, rows: 0, held: None };
    for name in &plan.tables {
        copy_table(plan, &reader, &tables.schemas[name], &mut out).await?;
    }
    let rows = out.finish().await?;
    let end = serde_json::to_vec(
        &serde_json::json!({"snapshot": "end", "lsn": lsn.to_string(), "rows": rows, "tables": names}),
    )
    .unwrap_or_default();
    publisher.publish(t.control_subject(), msg_id::snapshot_end(lsn), end, Some(lsn)).await?;
    publisher.flush().await?;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        rows,
        seconds = secs,
        rows_per_sec = (rows as f64 / secs.max(0.001)) as u64,
        "copy into the log done"
    );
    drop(reader);
    repl.close().await;
    Ok(lsn)
}

/// A fresh slot with an exported snapshot, and a reader in that snapshot
/// holding the planned tables (invariant *snapshot handoff*).
async fn snapshot_slot(
    plan: &Plan,
    catalog: &tokio_postgres::Client,
    tables: &Tables,
) -> Result<(ReplicationClient, Lsn, SnapshotReader), ToLogError> {
    let slot = &plan.source.slot;
    streamable::check(catalog, &plan.tables, &plan.only_tables).await??;
    if publication::ensure(catalog, &plan.source.publication, &plan.tables, &plan.only_tables, plan.mapping.generated)
        .await?
    {
        tracing::info!(publication = %plan.source.publication, "created publication");
    }
    drop_unfinished_slot(catalog, slot).await?;
    let mut repl = ReplicationClient::connect_url(&plan.source.url, "xdb copy").await?;
    let created = repl.create_replication_slot(slot, false, SnapshotAction::Export).await?;
    let lsn = created.consistent_point;
    let snapshot = created
        .snapshot_name
        .clone()
        .ok_or_else(|| ToLogError::Config(format!("the source created slot {slot} but exported no snapshot")))?;
    tracing::info!(slot = %slot, at = %lsn, "created replication slot; copying into the log");
    let reader = SnapshotReader::open(&plan.source.url, &snapshot).await?;
    // Invariant *snapshot handoff*: held before anything is read.
    let rewritten = reader.hold_tables(&plan.tables, &plan.only_tables).await?;
    if !rewritten.is_empty() {
        let list: Vec<String> = rewritten.iter().map(|t| t.to_string()).collect();
        return Err(ToLogError::Rewritten { tables: list.join(", ") });
    }
    // The columns were read before the snapshot existed: an ALTER committed
    // in between (one the slot's creation waited for) would publish the
    // copy's rows and CREATE events without it. Retryable: the next session
    // reads the columns again.
    let schemas: Vec<Arc<TableSchema>> = tables.schemas.values().cloned().collect();
    crate::copy::same_shape_at_snapshot(&reader, &schemas, &plan.tables, plan.mapping.generated).await?;
    Ok((repl, lsn, reader))
}

/// One table's rows read from the snapshot while they are published.
async fn copy_table(
    plan: &Plan,
    reader: &SnapshotReader,
    table: &Arc<TableSchema>,
    out: &mut CopyRows<'_>,
) -> Result<(), ToLogError> {
    let (tx, rx) = mpsc::channel::<Vec<Row>>(4);
    let from = plan.read_from(&table.name);
    let read = async move {
        let r = reader.read_range(table, &from, &CopyRange::Whole, &tx).await;
        drop(tx);
        r
    };
    let publish = async {
        // Owned by this future: when publishing fails, the channel closes
        // with it and the reader stops at its next send instead of waiting
        // forever on a full channel (a hang once seen when a restarted
        // producer's first publish met the killed one's last messages).
        let mut rx = rx;
        let mut ordinal = 0u64;
        while let Some(batch) = rx.recv().await {
            for row in batch {
                ordinal += 1;
                out.push(table, row, ordinal).await?;
            }
        }
        Ok::<(), ToLogError>(())
    };
    let (r, p) = tokio::join!(read, publish);
    // The publisher's error first: the reader's is then only "closed".
    p?;
    r?;
    Ok(())
}

/// The copy's `op: r` events, one row held back so that the last one can
/// say `snapshot: last`.
struct CopyRows<'a> {
    publisher: &'a mut Publisher,
    t: &'a NatsTarget,
    c: &'a Connector,
    lsn: Lsn,
    ts_ms: i64,
    rows: u64,
    held: Option<(Arc<TableSchema>, Row, u64)>,
}

impl CopyRows<'_> {
    async fn push(&mut self, table: &Arc<TableSchema>, row: Row, ordinal: u64) -> Result<(), LogError> {
        if let Some((ht, hr, ho)) = self.held.replace((table.clone(), row, ordinal)) {
            let flag = if self.rows == 0 { Snapshot::First } else { Snapshot::Yes };
            self.publish(&ht, &hr, ho, flag).await?;
        }
        Ok(())
    }

    /// Publishes the held row as the last; returns how many were published.
    async fn finish(&mut self) -> Result<u64, LogError> {
        if let Some((ht, hr, ho)) = self.held.take() {
            let flag = if self.rows == 0 { Snapshot::First } else { Snapshot::Last };
            self.publish(&ht, &hr, ho, flag).await?;
        }
        Ok(self.rows)
    }

    async fn publish(
        &mut self,
        table: &TableSchema,
        row: &Row,
        ordinal: u64,
        snapshot: Snapshot,
    ) -> Result<(), LogError> {
        let subject = self.t.table_subject(&table.name.schema, &table.name.name).map_err(LogError::Config)?;
        let key = if table.primary_key.is_empty() {
            format!("#{ordinal}")
        } else {
            let parts: Vec<String> = table
                .primary_key
                .iter()
                .map(|&i| debezium::encode(&table.columns[i].pg_type, &row[i]).to_string())
                .collect();
            parts.join(",")
        };
        let id = msg_id::copy_row(self.lsn, &table.name.to_string(), &key);
        let at = At { snapshot, tx_id: None, lsn: self.lsn, ts_ms: self.ts_ms, order: None };
        let payload = debezium::change_event(self.c, table, Op::Read, None, Some(row), &[], &at);
        self.publisher.publish(subject, id, payload, None).await?;
        self.rows += 1;
        Ok(())
    }
}

/// A planned table the log's copy did not include would reach consumers
/// as changes only, its existing rows never: refused, with the way out.
async fn refuse_tables_not_copied(log: &Log, plan: &Plan) -> Result<(), ToLogError> {
    let t = &log.target;
    let stream = log.js.get_stream(&t.stream).await.map_err(|e| ToLogError::Config(e.to_string()))?;
    let m = stream
        .get_last_raw_message_by_subject(&t.control_subject())
        .await
        .map_err(|e| ToLogError::Config(format!("stream {}: reading the last snapshot marker: {e}", t.stream)))?;
    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
    let copied: Vec<&str> =
        v["tables"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
    let missing: Vec<String> =
        plan.tables.iter().map(|t| t.to_string()).filter(|n| !copied.contains(&n.as_str())).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ToLogError::Config(format!(
        "{} {} in the plan but not in the copy stream {} holds (tables: {}): a table cannot be added to a log \
         that is already streaming. Write a new stream (another stream= and subject_prefix=, with a new slot: \
         source.slot) to copy every table again, or leave the table out of this plan",
        missing.join(", "),
        if missing.len() == 1 { "is" } else { "are" },
        t.stream,
        copied.join(", ")
    )))
}

/// A slot left by a copy that did not finish: its snapshot is gone with
/// the connection that exported it, so it goes and a new one is made.
async fn drop_unfinished_slot(catalog: &tokio_postgres::Client, slot: &str) -> Result<(), ToLogError> {
    let sql = |what| move |source| ToLogError::Sql { what, source };
    let row = catalog
        .query_opt("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .map_err(sql("reading pg_replication_slots"))?;
    let Some(row) = row else { return Ok(()) };
    if let Some(pid) = row.get::<_, Option<i32>>(0) {
        if let Some(pid) = crate::source::postgres::change_stream::wait_until_slot_free(catalog, slot, pid)
            .await
            .map_err(sql("reading pg_replication_slots"))?
        {
            return Err(ToLogError::Copy(CopyError::SlotInUse { slot: slot.to_string(), pid }));
        }
    }
    tracing::info!(slot, "dropping the slot of an unfinished copy into the log; copying again from a fresh snapshot");
    catalog
        .execute("SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .map_err(sql("dropping the replication slot"))?;
    Ok(())
}

//! The one way changes reach a target, whatever their source: a reader
//! task takes events from a [`ChangeSource`] and hands them over a channel
//! bounded by items and by rows held in memory (invariant *bounded
//! memory*: a slow or absent target holds the source back instead of
//! buffering it); an applier batches whole transactions
//! ([`super::batcher`]) and applies each batch with its end position in
//! one target transaction through a [`ChangeSink`] (invariants *commit
//! order*, *exactly once*), then confirms that position to the reader,
//! which releases it on the source. Shape changes are applied between
//! batches, before any change that has them (invariant *schema drift*);
//! a large transaction's parts go into one target transaction.
//!
//! `sync` from PostgreSQL ([`super::sync`]), from a replicated log
//! ([`super::from_log`]) and the way back ([`super::reverse`]) each open
//! their source and sink and run [`run`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::batcher::{next_batch_items, BatchPolicy};
use super::sync::SharedMetrics;
use crate::model::{Change, ChunkError, ChunkedTransaction, Lsn, TableName, Transaction};
use crate::sink::ChangeSink;
use crate::source::{ChangeSource, SourceEvent};

/// The source ended the stream on its own (a server shutting down): the
/// caller reconnects.
#[derive(Debug, thiserror::Error)]
#[error("the source ended the replication stream (server shutting down or restarting)")]
pub struct StreamEnded;

/// What a run is told besides its source and sink.
pub(crate) struct RunSettings {
    pub policy: BatchPolicy,
    /// With `--until-caught-up` on a source that cannot tell it itself
    /// ([`SourceEvent::CaughtUp`]): done once the target applied this.
    pub marker: Option<Lsn>,
    /// Items waiting for the applier, at most.
    pub queued_items: usize,
    /// Changes held in memory between reader and applier, at most (a
    /// large transaction read back from disk counts as one).
    pub queued_rows: usize,
}

/// A transaction committed on the source longer ago than this is "behind":
/// its batch lingers for the next ones (`batcher`). Well above the usual
/// commit-to-apply time under load (p50 ~3 ms), so a stream that keeps up
/// never lingers; source and xdb clocks a few ms apart change nothing.
const BEHIND_AFTER_MICROS: i64 = 20_000;

/// How long a batch that is behind waits for each next transaction, and
/// at most in all (a lingering batch delays its first transaction).
pub(crate) const CATCH_UP_LINGER: Duration = Duration::from_millis(2);
pub(crate) const CATCH_UP_MAX_LINGER: Duration = Duration::from_millis(10);

/// How often a reader blocked on a full queue keeps the source alive.
const STATUS_WHILE_BLOCKED: Duration = Duration::from_secs(10);

/// One event on its way to the applier, with the room it takes.
type Queued<L> = (SourceEvent<L>, OwnedSemaphorePermit);

/// Row changes in an event, for the batch bound.
fn event_rows<L: ChunkedTransaction>(event: &SourceEvent<L>) -> usize {
    match event {
        SourceEvent::Transaction(t) | SourceEvent::Part(t) => t.changes.len(),
        SourceEvent::Large(l) => l.change_count() as usize,
        _ => 0,
    }
}

/// Row changes an event holds in memory (a large transaction is on disk).
fn rows_in_memory<L>(event: &SourceEvent<L>) -> usize {
    match event {
        SourceEvent::Transaction(t) | SourceEvent::Part(t) => t.changes.len(),
        _ => 0,
    }
}

/// Whether `event` is a transaction the stream hands over late.
fn behind<L>(event: &SourceEvent<L>) -> bool {
    match event {
        SourceEvent::Transaction(t) => {
            chrono::Utc::now().timestamp_micros() - t.commit_time_micros > BEHIND_AFTER_MICROS
        }
        _ => false,
    }
}

/// Reads `source` into `sink` until a stop (`Ok(false)`), the source's
/// end of a catch-up (`Ok(true)`) or an error. Whatever ends it, the
/// source is told what the target committed, and a large transaction
/// whose parts were applied but not committed is rolled back whole.
pub(crate) async fn run<S, K, E>(
    source: S,
    sink: K,
    settings: RunSettings,
    metrics: &SharedMetrics,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<bool, E>
where
    S: ChangeSource,
    K: ChangeSink,
    E: From<S::Error> + From<K::Error> + From<StreamEnded>,
{
    let (item_tx, item_rx) = mpsc::channel(settings.queued_items.max(1));
    let (confirm_tx, confirm_rx) = watch::channel(sink.applied());
    let (wal_tx, wal_rx) = watch::channel(Lsn::ZERO);
    let pending = source.pending_signal();
    let room = Arc::new(Semaphore::new(settings.queued_rows.max(1)));
    let reader = read::<S, E>(source, item_tx, confirm_rx, wal_tx, room, settings.queued_rows.max(1));
    let channels = ApplierChannels { items: item_rx, pending, confirm: confirm_tx, wal: wal_rx };
    let mut applier = Applier { sink, in_parts: false, parts_rows: TableRows::default() };
    let applied = applier.run::<_, E>(channels, settings.policy, settings.marker, metrics, stop);
    let (r, a) = tokio::join!(reader, applied);
    let caught_up = a?;
    r?;
    Ok(caught_up)
}

/// The reader: events in, queued items out; confirmations in from the
/// applier. Whatever ends it, the source is told what the target committed.
async fn read<S, E>(
    mut source: S,
    item_tx: mpsc::Sender<Queued<S::Large>>,
    mut confirm_rx: watch::Receiver<Lsn>,
    wal_tx: watch::Sender<Lsn>,
    room: Arc<Semaphore>,
    max_room: usize,
) -> Result<(), E>
where
    S: ChangeSource,
    E: From<S::Error> + From<StreamEnded>,
{
    let result: Result<(), E> = async {
        loop {
            tokio::select! {
                changed = confirm_rx.changed() => {
                    if changed.is_err() { return Ok(()); }
                    let lsn = *confirm_rx.borrow_and_update();
                    source.confirm(lsn);
                }
                ev = source.next_event() => {
                    let _ = wal_tx.send(source.source_end());
                    // Only xdb ends the stream on purpose, and not here:
                    // the server went away (shutdown, restart).
                    let Some(event) = ev? else { return Err(StreamEnded.into()) };
                    let rows = rows_in_memory(&event).clamp(1, max_room) as u32;
                    // While the applier is behind (queue full), keep
                    // telling the source we are alive, or (PostgreSQL)
                    // wal_sender_timeout ends the connection.
                    let slot = loop {
                        let wait = async {
                            let permit = room.clone().acquire_many_owned(rows).await.ok()?;
                            Some((item_tx.reserve().await.ok()?, permit))
                        };
                        tokio::select! {
                            p = wait => break p,
                            _ = tokio::time::sleep(STATUS_WHILE_BLOCKED) => {
                                let lsn = *confirm_rx.borrow_and_update();
                                source.confirm(lsn);
                                source.keep_alive().await?;
                            }
                        }
                    };
                    let Some((slot, permit)) = slot else { return Ok(()) };
                    slot.send((event, permit));
                }
            }
        }
    }
    .await;
    let last = *confirm_rx.borrow();
    source.confirm(last);
    let _ = source.close().await;
    result
}

/// What the applier reads from and reports to the reader.
struct ApplierChannels<L> {
    items: mpsc::Receiver<Queued<L>>,
    /// Whether the reader holds more of the stream than it has queued.
    pending: watch::Receiver<bool>,
    confirm: watch::Sender<Lsn>,
    wal: watch::Receiver<Lsn>,
}

/// The applying side: the sink, and whether a large transaction's parts
/// are open on it.
struct Applier<K> {
    sink: K,
    in_parts: bool,
    /// Row changes of the parts applied so far, for the metrics.
    parts_rows: TableRows,
}

impl<K: ChangeSink> Applier<K> {
    /// Batches of events applied with their position, each confirmed to
    /// the reader once committed. `Ok(true)` once caught up, `Ok(false)` on
    /// a stop or when the reader ended.
    async fn run<L: ChunkedTransaction, E: From<K::Error>>(
        &mut self,
        mut ch: ApplierChannels<L>,
        policy: BatchPolicy,
        marker: Option<Lsn>,
        metrics: &SharedMetrics,
        stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<bool, E> {
        let r = self.batches(&mut ch, policy, marker, metrics, stop).await;
        // Parts applied but not committed (an error, a stop, the reader
        // gone): rolled back whole; the next run reads them again.
        if self.in_parts {
            self.sink.abort_parts().await;
            self.in_parts = false;
            self.parts_rows = TableRows::default();
        }
        r
    }

    async fn batches<L: ChunkedTransaction, E: From<K::Error>>(
        &mut self,
        ch: &mut ApplierChannels<L>,
        policy: BatchPolicy,
        marker: Option<Lsn>,
        metrics: &SharedMetrics,
        stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<bool, E> {
        loop {
            let batch = tokio::select! {
                // Applied as soon as nothing more is queued or on its way
                // (the reader is waiting for the source): batching costs no
                // latency on a quiet source, and under load the next batch
                // piles up while this one is applied.
                b = next_batch_items(
                    &mut ch.items,
                    policy,
                    &mut ch.pending,
                    |(e, _)| event_rows(e),
                    |(e, _)| matches!(e, SourceEvent::Transaction(_)),
                    |(e, _)| behind(e),
                ) => b,
                _ = &mut *stop => {
                    tracing::info!("stopping on signal: the batch in flight was committed or abandoned whole");
                    return Ok(false);
                }
            };
            let Some(batch) = batch else { return Ok(false) };
            // A signal also ends a batch that is waiting for the target
            // to come back: its target transaction was never committed,
            // so it is rolled back with the connection, whole.
            let caught_up = tokio::select! {
                r = self.apply(batch, metrics) => r?,
                _ = &mut *stop => {
                    tracing::info!("stopping on signal: the batch in flight was abandoned whole (not committed)");
                    return Ok(false);
                }
            };
            let applied = self.sink.applied();
            if let Ok(mut m) = metrics.lock() {
                // Also after a batch of no whole transaction (a large one,
                // the end of parts, a shape change).
                m.applied_lsn = applied.0;
                m.source_wal_lsn = m.source_wal_lsn.max(ch.wal.borrow().0).max(m.applied_lsn);
            }
            let _ = ch.confirm.send(applied);
            if caught_up || marker.is_some_and(|m| applied >= m) {
                tracing::info!(applied = %applied, "caught up with the source");
                return Ok(true);
            }
        }
    }

    /// One batch: whole transactions together, everything else in its
    /// place between them. `Ok(true)` when the source said it is caught up.
    async fn apply<L: ChunkedTransaction>(
        &mut self,
        batch: Vec<Queued<L>>,
        metrics: &SharedMetrics,
    ) -> Result<bool, K::Error> {
        let mut txs: Vec<Transaction> = Vec::new();
        let mut caught_up = false;
        for (event, _room) in batch {
            if !matches!(event, SourceEvent::Transaction(_)) || self.in_parts {
                self.apply_whole(std::mem::take(&mut txs), metrics).await?;
            }
            match event {
                SourceEvent::Transaction(tx) if self.in_parts => {
                    self.in_parts = false;
                    let mut rows = std::mem::take(&mut self.parts_rows);
                    rows.add(&tx.changes);
                    let time = tx.commit_time_micros;
                    self.sink.commit_parts(tx).await?;
                    self.observe(metrics, 1, rows, &[time]);
                }
                SourceEvent::Transaction(tx) => txs.push(tx),
                SourceEvent::Large(mut large) => {
                    let time = large.header().commit_time_micros;
                    let mut counted = Counted { inner: &mut large, rows: TableRows::default() };
                    self.sink.apply_large(&mut counted).await?;
                    let rows = counted.rows;
                    // Nothing read: the target held it already.
                    if rows.total() > 0 {
                        self.observe(metrics, 1, rows, &[time]);
                    }
                }
                SourceEvent::Relation(schema) => self.sink.relation_changed(schema).await?,
                SourceEvent::Part(part) => {
                    self.in_parts = true;
                    self.parts_rows.add(&part.changes);
                    self.sink.apply_part(part).await?;
                }
                SourceEvent::Shape(change) => self.sink.shape_changed(change).await?,
                SourceEvent::CopyDone(at) => self.sink.copy_done(at).await?,
                SourceEvent::CaughtUp => caught_up = true,
            }
        }
        self.apply_whole(txs, metrics).await?;
        Ok(caught_up)
    }

    /// Whole transactions in one target transaction, observed in the
    /// metrics once committed.
    async fn apply_whole(&mut self, mut txs: Vec<Transaction>, metrics: &SharedMetrics) -> Result<(), K::Error> {
        if txs.is_empty() {
            return Ok(());
        }
        let mut rows = TableRows::default();
        for t in &txs {
            rows.add(&t.changes);
        }
        let started = std::time::Instant::now();
        let waited = txs.first().map(|t| (chrono::Utc::now().timestamp_micros() - t.commit_time_micros) as f64 / 1e3);
        self.sink.apply(&mut txs).await?;
        tracing::debug!(
            transactions = txs.len(),
            rows = rows.total(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            waited,
            "applied a batch"
        );
        let times: Vec<i64> = txs.iter().map(|t| t.commit_time_micros).collect();
        self.observe(metrics, txs.len() as u64, rows, &times);
        Ok(())
    }

    /// `transactions` committed on the target with `rows`; `commit_times`
    /// are their source commit times, in commit order.
    fn observe(&self, metrics: &SharedMetrics, transactions: u64, rows: TableRows, commit_times: &[i64]) {
        let Ok(mut m) = metrics.lock() else { return };
        m.applied_lsn = self.sink.applied().0;
        m.applied_transactions += transactions;
        m.applied_rows += rows.total();
        for (table, n) in rows.0 {
            *m.rows_by_table.entry(table.to_string()).or_default() += n;
        }
        if let Some(&t) = commit_times.last() {
            m.applied_commit_time_us = t;
        }
        // Commit-to-apply latency, one observation per source transaction:
        // its commit time to now, just after the target committed it (a
        // copy marker has no commit time).
        let now = chrono::Utc::now().timestamp_micros();
        for &t in commit_times.iter().filter(|&&t| t > 0) {
            m.latency.observe((now - t).max(0) as f64 / 1e6);
        }
    }
}

/// Row changes per table, for the metrics (a few tables per batch: a
/// linear search, no allocation per change).
#[derive(Default)]
struct TableRows(Vec<(TableName, u64)>);

impl TableRows {
    fn add(&mut self, changes: &[Change]) {
        for c in changes {
            match c {
                Change::Insert { table, .. } | Change::Update { table, .. } | Change::Delete { table, .. } => {
                    self.count(&table.name)
                }
                Change::Truncate { tables, .. } => tables.iter().for_each(|t| self.count(&t.name)),
            }
        }
    }

    fn count(&mut self, table: &TableName) {
        match self.0.iter_mut().find(|(t, _)| t == table) {
            Some((_, n)) => *n += 1,
            None => self.0.push((table.clone(), 1)),
        }
    }

    fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }
}

/// A large transaction as the sink reads it, its changes counted by table
/// on the way.
struct Counted<'a, L> {
    inner: &'a mut L,
    rows: TableRows,
}

impl<L: ChunkedTransaction> ChunkedTransaction for Counted<'_, L> {
    fn header(&self) -> Transaction {
        self.inner.header()
    }

    fn change_count(&self) -> u64 {
        self.inner.change_count()
    }

    fn next_chunk(&mut self, max: usize) -> Result<Option<Transaction>, ChunkError> {
        let chunk = self.inner.next_chunk(max)?;
        if let Some(c) = &chunk {
            self.rows.add(&c.changes);
        }
        Ok(chunk)
    }
}

//! What every change source offers the pipeline: committed transactions in
//! commit order, each with its end position, and a way to be told what
//! the target has made durable. Implemented by the PostgreSQL slot reader
//! ([`crate::source::postgres::change_stream::ChangeStream`]), the
//! replicated log's reader ([`crate::source::nats::LogReader`]) and the
//! MySQL/MariaDB binlog
//! ([`crate::source::mysql::binlog_source::BinlogSource`]); the pipeline's
//! reader ([`crate::pipeline::stream`]) is written against this trait
//! only, so the source-specific parts (pgoutput, keepalives, catalog keys,
//! the log's envelope, binlog positions) stay in the source's folder.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use crate::model::{ChunkedTransaction, Lsn, TableSchema, Transaction};

/// One unit of a change stream, in commit order.
pub enum SourceEvent<L> {
    /// A committed transaction held in memory; its end position is `end_lsn`.
    Transaction(Transaction),
    /// A committed transaction too large to hold, read back in chunks.
    Large(L),
    /// A table's shape as of this point of the stream: every later change
    /// to the table has this shape (invariant *schema drift*).
    Relation(Arc<TableSchema>),
    /// The first changes of a transaction too large to hold whose end is
    /// still to come, from a source that cannot read it back later (a
    /// replicated log, a binlog; invariant *bounded memory*). The sink
    /// applies every part and the closing [`SourceEvent::Transaction`] in
    /// one target transaction (invariant *commit order*); the source hands
    /// on nothing else in between.
    Part(Transaction),
    /// A table's new shape with what the source's catalog confirmed when
    /// it was read (a log: the catalog may no longer tell when it is
    /// applied). Followed as a [`SourceEvent::Relation`] is.
    Shape(ShapeChange),
    /// The source's own copy is complete at this position (a log carries
    /// its initial copy as ordinary changes; its start empties the tables
    /// as a transaction of its own).
    CopyDone(Lsn),
    /// Everything the source held when the run was asked to end once
    /// caught up (`--until-caught-up`) has been handed on: the applier
    /// commits what it holds and the run ends.
    CaughtUp,
}

/// A table's shape as a source that records shape changes describes it.
#[derive(Debug, Clone)]
pub struct ShapeChange {
    pub table: Arc<TableSchema>,
    /// (old, new) names of columns the source's catalog confirmed renamed.
    pub renamed: Vec<(String, String)>,
    /// Added columns whose NOT NULL and default the source's catalog no
    /// longer had (renamed or dropped again before they were read).
    pub catalog_unknown: Vec<String>,
}

/// The large-transaction type of a source that never reads one back (it
/// hands large transactions over as [`SourceEvent::Part`]s): no value.
pub enum NoLarge {}

impl ChunkedTransaction for NoLarge {
    fn header(&self) -> Transaction {
        match *self {}
    }

    fn change_count(&self) -> u64 {
        match *self {}
    }

    fn next_chunk(&mut self, _: usize) -> Result<Option<Transaction>, crate::model::ChunkError> {
        match *self {}
    }
}

/// A source of committed transactions (invariants *commit order*, *exactly
/// once*: positions only move forward, and a position is released only
/// through [`ChangeSource::confirm`], after the target committed it).
pub trait ChangeSource: Send {
    /// A transaction too large for memory.
    type Large: ChunkedTransaction + 'static;
    type Error: std::error::Error + Send + Sync + 'static;

    /// The next event; `None` when the source ended the stream (a server
    /// shutting down: the caller reconnects). Cancel-safe between events.
    fn next_event(&mut self) -> impl Future<Output = Result<Option<SourceEvent<Self::Large>>, Self::Error>> + Send;

    /// Everything up to `applied` is durable on the target: the source may
    /// release it (for PostgreSQL: the slot's confirmed position).
    fn confirm(&mut self, applied: Lsn);

    /// Called while the reader cannot hand anything on (the target is
    /// behind): keeps the source's connection alive.
    fn keep_alive(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The source's own end of the stream as last reported (for lag).
    fn source_end(&self) -> Lsn;

    /// `true` while the source holds data it has not handed on, `false`
    /// while it waits for more: a batcher closes its batch when nothing is
    /// queued and this is `false`.
    fn pending_signal(&self) -> watch::Receiver<bool>;

    /// Reports the last confirmed position and ends the stream cleanly.
    fn close(self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

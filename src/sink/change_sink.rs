//! What every change sink offers the pipeline: a batch of whole source
//! transactions applied together with their end position in one target
//! transaction (invariant *exactly once*), large transactions applied from
//! chunks in one target transaction (invariant *commit order*), and schema
//! changes applied before the changes that need them (invariant *schema
//! drift*). [`SinkWriter`] implements it for every SQL target; the
//! pipeline's applier ([`crate::pipeline::stream`]) is written against
//! this trait only.

use std::future::Future;
use std::sync::Arc;

use super::writer::{SinkError, SinkWriter};
use crate::model::{ChunkedTransaction, Lsn, TableSchema, Transaction};
use crate::source::ShapeChange;

/// The futures are not `Send`: the SQLite connection is not `Sync`, and an
/// applier runs in the task that owns its sink.
pub trait ChangeSink {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies `txs` (commit order) and the end position of the last one in
    /// one target transaction, retrying what the error policy calls
    /// transient. A sink may complete the changes in place first (values
    /// the source did not send, such as recomputed generated columns).
    fn apply(&mut self, txs: &mut [Transaction]) -> impl Future<Output = Result<(), Self::Error>>;

    /// Applies one large transaction, all its chunks in one target transaction.
    fn apply_large(&mut self, tx: &mut dyn ChunkedTransaction) -> impl Future<Output = Result<(), Self::Error>>;

    /// A table's new shape, before any change that has it.
    fn relation_changed(&mut self, schema: Arc<TableSchema>) -> impl Future<Output = Result<(), Self::Error>>;

    /// One part of a large transaction whose end is still to come
    /// ([`SourceEvent::Part`](crate::source::SourceEvent)): the first
    /// opens the target transaction the other parts join.
    fn apply_part(&mut self, part: Transaction) -> impl Future<Output = Result<(), Self::Error>>;

    /// The closing transaction of the parts: its changes and its end
    /// position, committed with the parts.
    fn commit_parts(&mut self, last: Transaction) -> impl Future<Output = Result<(), Self::Error>>;

    /// Rolls back the parts applied so far (an error or a stop inside a
    /// large transaction: the next run reads it again from the stored
    /// position, a transaction boundary).
    fn abort_parts(&mut self) -> impl Future<Output = ()>;

    /// A shape change from a source that records them, before any change
    /// that has it.
    fn shape_changed(&mut self, change: ShapeChange) -> impl Future<Output = Result<(), Self::Error>>;

    /// The source's own copy is complete at `at`.
    fn copy_done(&mut self, at: Lsn) -> impl Future<Output = Result<(), Self::Error>>;

    /// The end position of the last committed source transaction.
    fn applied(&self) -> Lsn;
}

impl ChangeSink for SinkWriter {
    type Error = SinkError;

    async fn apply(&mut self, txs: &mut [Transaction]) -> Result<(), SinkError> {
        self.apply_with_retry(txs).await
    }

    async fn apply_large(&mut self, tx: &mut dyn ChunkedTransaction) -> Result<(), SinkError> {
        self.apply_spilled(tx).await
    }

    async fn relation_changed(&mut self, schema: Arc<TableSchema>) -> Result<(), SinkError> {
        let name = schema.name.clone();
        SinkWriter::relation_changed(self, schema).await?;
        self.follow_generated(&name, None).await
    }

    async fn apply_part(&mut self, part: Transaction) -> Result<(), SinkError> {
        SinkWriter::apply_part(self, &part).await
    }

    async fn commit_parts(&mut self, last: Transaction) -> Result<(), SinkError> {
        if !last.changes.is_empty() {
            SinkWriter::apply_part(self, &last).await?;
        }
        SinkWriter::commit_parts(self, last.end_lsn, last.commit_time_micros).await
    }

    async fn abort_parts(&mut self) {
        SinkWriter::abort_parts(self).await
    }

    async fn shape_changed(&mut self, change: ShapeChange) -> Result<(), SinkError> {
        SinkWriter::shape_changed(self, change).await
    }

    async fn copy_done(&mut self, at: Lsn) -> Result<(), SinkError> {
        SinkWriter::copy_done(self, at).await
    }

    fn applied(&self) -> Lsn {
        SinkWriter::applied(self)
    }
}

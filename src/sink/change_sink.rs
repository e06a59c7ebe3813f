//! What every change sink offers the pipeline: a batch of whole source
//! transactions applied together with their end position in one target
//! transaction (invariant *exactly once*), large transactions applied from
//! chunks in one target transaction (invariant *commit order*), and schema
//! changes applied before the changes that need them (invariant *schema
//! drift*). [`SinkWriter`] implements it for every SQL target; `sync`'s
//! applier ([`crate::pipeline::sync`]) is written against this trait only.

use std::future::Future;
use std::sync::Arc;

use super::writer::{SinkError, SinkWriter};
use crate::model::{ChunkedTransaction, Lsn, TableSchema, Transaction};

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

    fn applied(&self) -> Lsn {
        SinkWriter::applied(self)
    }
}

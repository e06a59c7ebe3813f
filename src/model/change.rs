use std::sync::Arc;

use super::{Lsn, Row, TableSchema};

/// One row-level change of a committed source transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Insert {
        table: Arc<TableSchema>,
        new: Row,
    },
    Update {
        table: Arc<TableSchema>,
        /// The old key (replica identity default/index, only when the key
        /// changed) or the whole old row (REPLICA IDENTITY FULL). Columns
        /// not sent are `Value::Null`.
        old: Option<Row>,
        new: Row,
        /// Positions of columns whose value did not change and was not sent
        /// (unchanged TOASTed values): the target must keep what it has.
        /// Their slots in `new` (and `old`) hold `Value::Null`.
        unchanged_toast: Vec<usize>,
    },
    Delete {
        table: Arc<TableSchema>,
        /// The old key, or the whole old row for REPLICA IDENTITY FULL.
        old: Row,
    },
    Truncate {
        tables: Vec<Arc<TableSchema>>,
        cascade: bool,
        restart_identity: bool,
    },
}

impl Change {
    /// The tables this change touches.
    pub fn tables(&self) -> Vec<&Arc<TableSchema>> {
        match self {
            Change::Insert { table, .. } | Change::Update { table, .. } | Change::Delete { table, .. } => {
                vec![table]
            }
            Change::Truncate { tables, .. } => tables.iter().collect(),
        }
    }
}

/// A committed source transaction, whole: the unit of apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub xid: u32,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// End of the commit record: the position to confirm once applied.
    pub end_lsn: Lsn,
    /// Commit time, microseconds since 1970-01-01 UTC.
    pub commit_time_micros: i64,
    pub changes: Vec<Change>,
}

/// Reading a transaction back in chunks failed (a spill file).
pub type ChunkError = Box<dyn std::error::Error + Send + Sync>;

/// A committed transaction too large to hold in memory, read back in
/// chunks: each chunk is a [`Transaction`] with the commit's header and the
/// next changes in commit order. A sink applies all chunks in one target
/// transaction (invariant *commit order*: a source transaction is never
/// split), so a source hands its
/// large transactions over without the sink knowing where they are kept.
pub trait ChunkedTransaction: Send {
    /// The commit's header, with no changes.
    fn header(&self) -> Transaction;

    /// How many changes it holds (for batch and memory bounds).
    fn change_count(&self) -> u64;

    /// The next up to `max` changes as a chunk; `None` once all were read.
    fn next_chunk(&mut self, max: usize) -> Result<Option<Transaction>, ChunkError>;
}

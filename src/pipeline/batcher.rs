//! Groups whole source transactions into target transactions.
//!
//! A batch closes on rows (`max_batch_rows`), on time (`max_batch_delay`
//! after its first transaction arrived) or when the stream has nothing more
//! ready; a transaction is never split, so a batch may exceed the row limit
//! by one transaction (invariant 3).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::model::Transaction;

/// When a batch closes.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_rows: usize,
    pub max_delay: Duration,
}

/// Waits for the next batch. `None` when the channel is closed and empty.
pub async fn next_batch(rx: &mut mpsc::Receiver<Transaction>, policy: BatchPolicy) -> Option<Vec<Transaction>> {
    let first = rx.recv().await?;
    let deadline = Instant::now() + policy.max_delay;
    let mut rows = first.changes.len();
    let mut batch = vec![first];
    while rows < policy.max_rows {
        // Take what is ready at once; wait (until the deadline) only when
        // nothing is, so a busy stream fills batches and a quiet one is not held.
        let tx = match rx.try_recv() {
            Ok(tx) => tx,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(tx)) => tx,
                Ok(None) | Err(_) => break,
            },
        };
        rows += tx.changes.len();
        batch.push(tx);
    }
    Some(batch)
}

/// Like [`next_batch`] for any item: `rows` sizes an item, and an item that
/// is not `batchable` (a schema change, a spilled transaction) closes the
/// batch it lands in, so it is handled between whole groups.
pub async fn next_batch_items<T>(
    rx: &mut mpsc::Receiver<T>,
    policy: BatchPolicy,
    rows: impl Fn(&T) -> usize,
    batchable: impl Fn(&T) -> bool,
) -> Option<Vec<T>> {
    let first = rx.recv().await?;
    let deadline = Instant::now() + policy.max_delay;
    let mut n = rows(&first);
    let mut open = batchable(&first);
    let mut batch = vec![first];
    while open && n < policy.max_rows {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => item,
                Ok(None) | Err(_) => break,
            },
        };
        n += rows(&item);
        open = batchable(&item);
        batch.push(item);
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Lsn;

    fn tx(n: u64, rows: usize) -> Transaction {
        let t = std::sync::Arc::new(crate::model::TableSchema {
            oid: 1,
            name: crate::model::TableName::new("public", "t"),
            columns: vec![],
            replica_identity: crate::model::ReplicaIdentity::Default,
            primary_key: vec![],
        });
        Transaction {
            xid: n as u32,
            commit_lsn: Lsn(n),
            end_lsn: Lsn(n + 1),
            commit_time_micros: 0,
            changes: (0..rows).map(|_| crate::model::Change::Insert { table: t.clone(), new: vec![] }).collect(),
        }
    }

    #[tokio::test]
    async fn closes_on_rows_without_splitting_transactions() {
        let (tx_s, mut rx) = mpsc::channel(16);
        for i in 0..5 {
            tx_s.send(tx(i, 3)).await.unwrap();
        }
        drop(tx_s);
        let policy = BatchPolicy { max_rows: 7, max_delay: Duration::from_secs(5) };
        let b1 = next_batch(&mut rx, policy).await.unwrap();
        assert_eq!(b1.len(), 3, "3+3 < 7, the third transaction closes the batch at 9 rows");
        let b2 = next_batch(&mut rx, policy).await.unwrap();
        assert_eq!(b2.len(), 2);
        assert!(next_batch(&mut rx, policy).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn closes_on_time_when_the_stream_is_quiet() {
        let (tx_s, mut rx) = mpsc::channel(16);
        tx_s.send(tx(1, 1)).await.unwrap();
        let policy = BatchPolicy { max_rows: 100, max_delay: Duration::from_millis(100) };
        let start = Instant::now();
        let b = next_batch(&mut rx, policy).await.unwrap();
        assert_eq!(b.len(), 1);
        assert!(start.elapsed() >= Duration::from_millis(100));
        drop(tx_s);
    }
}

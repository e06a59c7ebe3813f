//! Groups whole source transactions into target transactions.
//!
//! Batching must not cost latency when nothing is waiting: a batch closes as
//! soon as the channel is empty *and* the producer (the stream reader) holds
//! nothing more it could hand over without waiting on the network. What has
//! piled up meanwhile (while the previous batch was being applied) is taken
//! whole, up to `max_batch_rows`, so throughput under load comes from the
//! backlog, not from waiting. Only while the reader is still handing over
//! data it already holds does a batch wait for it, and then at most
//! `max_batch_delay` after its first item: the delay is an upper bound, not a
//! pause. A transaction is never split, so a batch may exceed the row limit
//! by one transaction (invariant *commit order*).
//!
//! One exception to "close when nothing is queued": while the stream is
//! behind (its first item committed on the source well before now), a
//! batch lingers for the next item even with the reader idle, a short
//! while each time (`linger`, at most `max_linger` in all). Behind a burst the
//! reader hands transactions over one at a time, just as the applier takes
//! them, and one target transaction each costs the target more than the
//! wait does: without it, xdb was seen applying single transactions in
//! lockstep for ~0.4 s while ~390 ms behind.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

#[cfg(test)]
use crate::model::Transaction;

/// When a batch closes.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_rows: usize,
    /// The longest a batch waits, after its first item, for items the
    /// producer still holds (see [`ProducerPending`]). Never waited when the
    /// producer holds nothing.
    pub max_delay: Duration,
    /// While the first item is late, how long the batch waits for each
    /// further item even when the producer holds none ...
    pub linger: Duration,
    /// ... and for how long after the first item at most (never past
    /// `max_delay` either): lingering must not add more latency than it
    /// saves.
    pub max_linger: Duration,
}

/// Whether the producer of a channel holds items it has not sent yet and
/// will send without waiting for its own input (for the stream reader:
/// decoded events or bytes read off the socket). `true` means "more is on
/// its way right now"; `false` means the producer is waiting for input, so
/// a batch waiting for more would only add latency.
///
/// A `watch` so that a batch waiting on a busy producer is woken the moment
/// it goes idle. A producer that never says anything (no sender, or the
/// sender dropped) counts as idle.
pub type ProducerPending = watch::Receiver<bool>;

/// A [`ProducerPending`] that is always idle: batches close as soon as the
/// channel is empty.
#[cfg(test)]
pub fn never_pending() -> ProducerPending {
    watch::channel(false).1
}

/// Waits for the next batch of transactions (see [`next_batch_items`]).
/// `None` when the channel is closed and empty.
#[cfg(test)]
pub async fn next_batch(
    rx: &mut mpsc::Receiver<Transaction>,
    policy: BatchPolicy,
    pending: &mut ProducerPending,
) -> Option<Vec<Transaction>> {
    next_batch_items(rx, policy, pending, |t| t.changes.len(), |_| true, |_| false).await
}

/// Waits for the first item, then takes what is already queued, up to
/// `policy.max_rows`: `rows` sizes an item, and an item that is not
/// `batchable` (a schema change, a spilled transaction) closes the batch it
/// lands in, so it is handled between whole groups. When the queue is empty
/// the batch closes at once unless `pending` says the producer is about to
/// send more; then it waits for that, until `policy.max_delay` after the
/// first item at most, or (the first item `late`: the stream is behind)
/// `policy.linger` for each further item. `None` when the channel is
/// closed and empty.
///
/// Items are returned in the order received (invariant *commit order*); the
/// channel stays bounded (invariant *bounded memory*): nothing here reads
/// ahead of what the batch takes.
pub async fn next_batch_items<T>(
    rx: &mut mpsc::Receiver<T>,
    policy: BatchPolicy,
    pending: &mut ProducerPending,
    rows: impl Fn(&T) -> usize,
    batchable: impl Fn(&T) -> bool,
    late: impl Fn(&T) -> bool,
) -> Option<Vec<T>> {
    let first = rx.recv().await?;
    let start = Instant::now();
    let deadline = start + policy.max_delay;
    let linger_until = deadline.min(start + policy.max_linger);
    let behind = late(&first);
    let mut n = rows(&first);
    let mut open = batchable(&first);
    let mut batch = vec![first];
    while open && n < policy.max_rows {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => match wait_for_more(rx, pending, deadline).await {
                Some(item) => item,
                None if behind => match linger(rx, policy.linger, linger_until).await {
                    Some(item) => item,
                    None => break,
                },
                None => break,
            },
        };
        n += rows(&item);
        open = batchable(&item);
        batch.push(item);
    }
    Some(batch)
}

/// The next item if one arrives within `linger` (and before `deadline`).
async fn linger<T>(rx: &mut mpsc::Receiver<T>, linger: Duration, deadline: Instant) -> Option<T> {
    let until = deadline.min(Instant::now() + linger);
    tokio::select! {
        biased;
        item = rx.recv() => item,
        _ = tokio::time::sleep_until(until) => None,
    }
}

/// The next item when the producer still holds some, `None` as soon as it
/// holds none (or at `deadline`, or when the channel closes).
async fn wait_for_more<T>(rx: &mut mpsc::Receiver<T>, pending: &mut ProducerPending, deadline: Instant) -> Option<T> {
    loop {
        // Read before the last look at the queue: a producer that sends its
        // last item and then goes idle is seen either with the item queued
        // or still busy, never idle with the item missed.
        let busy = *pending.borrow_and_update();
        match rx.try_recv() {
            Ok(item) => return Some(item),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) if !busy => return None,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        tokio::select! {
            biased;
            item = rx.recv() => return item,
            changed = pending.changed() => {
                // A dropped sender cannot announce more: idle from now on.
                if changed.is_err() {
                    return rx.try_recv().ok();
                }
            }
            _ = tokio::time::sleep_until(deadline) => return None,
        }
    }
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
            generated: Vec::new(),
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
        let policy = BatchPolicy {
            max_rows: 7,
            max_delay: Duration::from_secs(5),
            linger: Duration::ZERO,
            max_linger: Duration::ZERO,
        };
        let mut idle = never_pending();
        let b1 = next_batch(&mut rx, policy, &mut idle).await.unwrap();
        assert_eq!(b1.len(), 3, "3+3 < 7, the third transaction closes the batch at 9 rows");
        let b2 = next_batch(&mut rx, policy, &mut idle).await.unwrap();
        assert_eq!(b2.len(), 2);
        assert!(next_batch(&mut rx, policy, &mut idle).await.is_none());
    }

    /// The latency rule: nothing else queued and the producer idle, so the
    /// batch is applied at once, however long `max_delay` is. (Paused time
    /// jumps straight to any timer the batcher waits on, so a wait would
    /// show as elapsed time.)
    #[tokio::test(start_paused = true)]
    async fn an_item_arriving_alone_is_returned_at_once() {
        let (tx_s, mut rx) = mpsc::channel(16);
        let (_pending_tx, mut pending) = watch::channel(false);
        tx_s.send(tx(1, 1)).await.unwrap();
        let policy = BatchPolicy {
            max_rows: 100,
            max_delay: Duration::from_secs(5),
            linger: Duration::ZERO,
            max_linger: Duration::ZERO,
        };
        let start = Instant::now();
        let b = next_batch(&mut rx, policy, &mut pending).await.unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(start.elapsed(), Duration::ZERO, "the batch waited for the delay");
        drop(tx_s);
    }

    #[tokio::test(start_paused = true)]
    async fn items_already_queued_are_grouped_up_to_the_limit() {
        let (tx_s, mut rx) = mpsc::channel(16);
        for i in 0..10 {
            tx_s.send(tx(i, 1)).await.unwrap();
        }
        let policy = BatchPolicy {
            max_rows: 4,
            max_delay: Duration::from_secs(5),
            linger: Duration::ZERO,
            max_linger: Duration::ZERO,
        };
        let mut idle = never_pending();
        let start = Instant::now();
        let sizes: Vec<Vec<u64>> = [
            next_batch(&mut rx, policy, &mut idle).await.unwrap(),
            next_batch(&mut rx, policy, &mut idle).await.unwrap(),
            next_batch(&mut rx, policy, &mut idle).await.unwrap(),
        ]
        .iter()
        .map(|b| b.iter().map(|t| t.commit_lsn.0).collect())
        .collect();
        assert_eq!(sizes, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]], "in order, up to the limit");
        assert_eq!(start.elapsed(), Duration::ZERO);
        drop(tx_s);
    }

    /// While the producer says it holds more, the batch waits for it; the
    /// moment it goes idle, the batch closes (not at the delay).
    #[tokio::test(start_paused = true)]
    async fn waits_for_a_busy_producer_only_until_it_goes_idle() {
        let (tx_s, mut rx) = mpsc::channel(16);
        let (pending_tx, mut pending) = watch::channel(true);
        tx_s.send(tx(1, 1)).await.unwrap();
        let producer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx_s.send(tx(2, 1)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            pending_tx.send_replace(false);
            // Keep both ends open: only the idle signal may close the batch.
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop((tx_s, pending_tx));
        });
        let policy = BatchPolicy {
            max_rows: 100,
            max_delay: Duration::from_secs(5),
            linger: Duration::ZERO,
            max_linger: Duration::ZERO,
        };
        let start = Instant::now();
        let b = next_batch(&mut rx, policy, &mut pending).await.unwrap();
        assert_eq!(b.iter().map(|t| t.commit_lsn.0).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(start.elapsed(), Duration::from_millis(20), "closed when the producer went idle");
        producer.abort();
    }

    /// `max_delay` bounds the wait for a producer that stays busy.
    #[tokio::test(start_paused = true)]
    async fn the_delay_bounds_the_wait_for_a_busy_producer() {
        let (tx_s, mut rx) = mpsc::channel(16);
        let (_pending_tx, mut pending) = watch::channel(true);
        tx_s.send(tx(1, 1)).await.unwrap();
        let policy = BatchPolicy {
            max_rows: 100,
            max_delay: Duration::from_millis(100),
            linger: Duration::ZERO,
            max_linger: Duration::ZERO,
        };
        let start = Instant::now();
        let b = next_batch(&mut rx, policy, &mut pending).await.unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        drop(tx_s);
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_that_is_not_batchable_closes_the_batch() {
        let (tx_s, mut rx) = mpsc::channel(16);
        for i in [1, 2, 0, 3] {
            tx_s.send(i).await.unwrap();
        }
        let policy = BatchPolicy {
            max_rows: 100,
            max_delay: Duration::from_secs(5),
            linger: Duration::ZERO,
            max_linger: Duration::ZERO,
        };
        let mut idle = never_pending();
        let b = next_batch_items(&mut rx, policy, &mut idle, |_| 1, |i| *i != 0, |_| false).await.unwrap();
        assert_eq!(b, vec![1, 2, 0]);
        let b = next_batch_items(&mut rx, policy, &mut idle, |_| 1, |i| *i != 0, |_| false).await.unwrap();
        assert_eq!(b, vec![3]);
        drop(tx_s);
    }

    /// Behind (the first item late), with the producer idle, the batch
    /// waits `linger` for each next item: items trickling in one at a time
    /// are grouped; it closes once none comes within `linger`. Not behind,
    /// the same trickle makes batches of one.
    #[tokio::test(start_paused = true)]
    async fn a_late_batch_lingers_for_items_trickling_in() {
        for (late, want) in [(true, vec![vec![0, 1, 2], vec![3]]), (false, vec![vec![0], vec![1]])] {
            let (tx_s, mut rx) = mpsc::channel(16);
            let mut idle = never_pending();
            let producer = tokio::spawn(async move {
                for (i, gap) in [(0, 0), (1, 1), (2, 1), (3, 5)] {
                    tokio::time::sleep(Duration::from_millis(gap)).await;
                    tx_s.send(i).await.unwrap();
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
            let policy = BatchPolicy {
                max_rows: 100,
                max_delay: Duration::from_millis(100),
                linger: Duration::from_millis(2),
                max_linger: Duration::from_millis(50),
            };
            let mut got = Vec::new();
            for _ in 0..2 {
                got.push(next_batch_items(&mut rx, policy, &mut idle, |_| 1, |_| true, |_| late).await.unwrap());
            }
            assert_eq!(got, want, "late: {late}");
            producer.abort();
        }
    }

    /// Lingering never passes `max_linger` (nor `max_delay`) after the
    /// first item.
    #[tokio::test(start_paused = true)]
    async fn lingering_is_bounded_by_the_delay() {
        let (tx_s, mut rx) = mpsc::channel(64);
        let mut idle = never_pending();
        let producer = tokio::spawn(async move {
            for i in 0..50 {
                tx_s.send(i).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        for (max_delay, max_linger) in [(10, 100), (100, 10)] {
            let policy = BatchPolicy {
                max_rows: 100,
                max_delay: Duration::from_millis(max_delay),
                linger: Duration::from_millis(2),
                max_linger: Duration::from_millis(max_linger),
            };
            let start = Instant::now();
            let b = next_batch_items(&mut rx, policy, &mut idle, |_| 1, |_| true, |_| true).await.unwrap();
            assert!(start.elapsed() <= Duration::from_millis(10), "{:?}", start.elapsed());
            assert!((9..=11).contains(&b.len()), "{b:?}");
        }
        producer.abort();
    }
}

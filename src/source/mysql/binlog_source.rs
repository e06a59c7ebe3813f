//! The binlog as a [`ChangeSource`]: the reader (`binlog_stream.rs`) runs
//! in a task of its own, one item ahead, so that the pipeline's reader may
//! drop a wait for the next event at any time (a confirmation arriving)
//! without losing an event half read; a large transaction comes as parts
//! (invariant *bounded memory*). A transaction's position is its binlog
//! position's ordered form; the position itself (file, offset, GTID
//! state), which the way back records on the original source, is kept in
//! [`Positions`] for the sink.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::binlog_stream::{BinlogItem, BinlogReader};
use super::error::BinlogError;
use super::position::BinlogPosition;
use crate::model::{Lsn, Transaction};
use crate::source::{ChangeSource, NoLarge, SourceEvent};

/// The binlog position of each transaction handed on and not yet taken
/// by the sink, in binlog order.
#[derive(Clone, Default)]
pub struct Positions(Arc<Mutex<VecDeque<(Lsn, BinlogPosition)>>>);

impl Positions {
    /// The position of the last transaction ending at or before `end`;
    /// the ones before it are forgotten.
    pub fn take_through(&self, end: Lsn) -> Option<BinlogPosition> {
        let mut q = self.0.lock().ok()?;
        let mut last = None;
        while q.front().is_some_and(|(lsn, _)| *lsn <= end) {
            last = q.pop_front().map(|(_, p)| p);
        }
        last
    }

    fn push(&self, end: Lsn, position: BinlogPosition) {
        if let Ok(mut q) = self.0.lock() {
            q.push_back((end, position));
        }
    }
}

/// The binlog read by its own task; ends that task when dropped.
pub struct BinlogSource {
    items: mpsc::Receiver<Result<Option<BinlogItem>, BinlogError>>,
    task: tokio::task::JoinHandle<()>,
    positions: Positions,
    /// The reader reached the end of the binlog (`until_end`).
    ended: bool,
    last: Lsn,
    pending: watch::Sender<bool>,
}

impl BinlogSource {
    pub fn new(mut reader: BinlogReader) -> BinlogSource {
        let (tx, items) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            loop {
                let item = reader.next().await;
                let last = !matches!(item, Ok(Some(_)));
                if tx.send(item).await.is_err() || last {
                    return;
                }
            }
        });
        BinlogSource {
            items,
            task,
            positions: Positions::default(),
            ended: false,
            last: Lsn::ZERO,
            pending: watch::channel(false).0,
        }
    }

    /// Where the sink finds each transaction's binlog position.
    pub fn positions(&self) -> Positions {
        self.positions.clone()
    }
}

impl Drop for BinlogSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ChangeSource for BinlogSource {
    type Large = NoLarge;
    type Error = BinlogError;

    async fn next_event(&mut self) -> Result<Option<SourceEvent<NoLarge>>, BinlogError> {
        if self.ended {
            return std::future::pending().await;
        }
        // The task gone without a last item: it was stopped, the stream
        // is over (the caller reconnects).
        let Some(item) = self.items.recv().await else { return Ok(None) };
        self.pending.send_replace(!self.items.is_empty());
        Ok(Some(match item? {
            None => {
                self.ended = true;
                SourceEvent::CaughtUp
            }
            Some(BinlogItem::Transaction(t)) => {
                self.last = t.tx.end_lsn;
                self.positions.push(t.tx.end_lsn, t.position);
                SourceEvent::Transaction(t.tx)
            }
            Some(BinlogItem::Part { changes, at }) => {
                let lsn = at.ordinal().unwrap_or_default();
                SourceEvent::Part(Transaction { xid: 0, commit_lsn: lsn, end_lsn: lsn, commit_time_micros: 0, changes })
            }
        }))
    }

    /// Nothing to release: the position lives on the original source.
    fn confirm(&mut self, _: Lsn) {}

    async fn keep_alive(&mut self) -> Result<(), BinlogError> {
        Ok(())
    }

    fn source_end(&self) -> Lsn {
        self.last
    }

    fn pending_signal(&self) -> watch::Receiver<bool> {
        self.pending.subscribe()
    }

    async fn close(self) -> Result<(), BinlogError> {
        Ok(())
    }
}

//! NATS JetStream as the log's transport, read side: the messages xdb
//! wrote (`pipeline/to_log.rs` through `nats/`) read in stream order from the one after a given
//! sequence with an ordered consumer, and handed to the transport-neutral
//! [`EventAssembler`] (`source/log_events.rs`). Positions are stream
//! sequences.

pub mod shapes;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::model::{Lsn, TableSchema};
use crate::nats::{Log, LogError, NatsTarget};
use crate::source::log_events::{EventAssembler, EventError, LogEvent};
use crate::source::{ChangeSource, NoLarge, SourceEvent};

/// The log could not be read or holds something xdb did not write.
#[derive(Debug, thiserror::Error)]
pub enum LogSourceError {
    #[error("{0}")]
    Log(#[from] LogError),
    #[error("reading stream {stream}: {reason}")]
    Read { stream: String, reason: String },
    #[error(
        "stream {stream} starts at message {first}, but this target applied up to {applied}: the messages in \
         between are gone (the stream's retention, max_age/max_bytes, or a purge). Copy again: drop the target \
         tables and the target's xdb state for this plan, and read the log from a new snapshot (restart the \
         producer with a new stream)"
    )]
    Trimmed { stream: String, applied: u64, first: u64 },
    #[error("{0}")]
    Event(#[from] EventError),
}

impl LogSourceError {
    pub fn is_retryable(&self) -> bool {
        match self {
            LogSourceError::Log(e) => e.is_retryable(),
            // The ordered consumer's errors are its connection's.
            LogSourceError::Read { .. } => true,
            LogSourceError::Trimmed { .. } => false,
            LogSourceError::Event(e) => e.is_retryable(),
        }
    }
}

type Messages = async_nats::jetstream::consumer::pull::Ordered;

/// How long the reader waits for a message before it looks again whether
/// it is caught up (`--until-caught-up`).
const IDLE: Duration = Duration::from_millis(50);

/// The events after a stream sequence: a [`ChangeSource`] whose positions
/// are stream sequences, kept by the target only (the log needs no
/// confirmation: nothing is released on it).
pub struct LogReader {
    stream: String,
    messages: Messages,
    events: EventAssembler,
    /// The stream sequence of the last message read.
    seen: u64,
    /// With `--until-caught-up`: the stream's last sequence when the run
    /// started.
    until: Option<u64>,
    /// A message taken from the stream and not yet fed whole (the feed
    /// was cancelled while it resolved a new shape): fed again first.
    held: Option<(u64, async_nats::Subject, bytes::Bytes)>,
    pending: watch::Sender<bool>,
}

impl LogReader {
    /// Reads from the message after `after` (0: from the start), the
    /// subjects under the target's prefix; `tables` are the planned ones.
    /// With `until`, hands on [`SourceEvent::CaughtUp`] once it read that
    /// far and nothing more arrives (outside a large transaction whose
    /// first parts are applied already).
    pub async fn open(
        target: &NatsTarget,
        after: u64,
        until: Option<u64>,
        tables: Vec<Arc<TableSchema>>,
        catalog: tokio_postgres::Client,
    ) -> Result<LogReader, LogSourceError> {
        let log = Log::connect(target).await?;
        let read =
            |e: &dyn std::fmt::Display| LogSourceError::Read { stream: target.stream.clone(), reason: e.to_string() };
        let mut stream = log.js.get_stream(&target.stream).await.map_err(|e| read(&e))?;
        // Retention may have dropped messages this target never applied:
        // a refusal, never a silent gap.
        let state = stream.info().await.map_err(|e| read(&e))?.state.clone();
        if state.messages > 0 && state.first_sequence > after + 1 {
            return Err(LogSourceError::Trimmed {
                stream: target.stream.clone(),
                applied: after,
                first: state.first_sequence,
            });
        }
        let config = OrderedConfig {
            filter_subject: format!("{}.>", target.prefix),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: after + 1 },
            ..Default::default()
        };
        let consumer = stream.create_consumer(config).await.map_err(|e| read(&e))?;
        let messages = consumer.messages().await.map_err(|e| read(&e))?;
        Ok(LogReader {
            stream: target.stream.clone(),
            messages,
            events: EventAssembler::new(&target.stream, &target.prefix, tables, catalog),
            seen: after,
            until,
            held: None,
            pending: watch::channel(false).0,
        })
    }

    fn read_error(&self, reason: String) -> LogSourceError {
        LogSourceError::Read { stream: self.stream.clone(), reason }
    }

    /// The next message, `None` after [`IDLE`] without one. Tells the
    /// batcher whether the reader is waiting for the stream.
    async fn next_message(&mut self) -> Result<Option<(u64, async_nats::Subject, bytes::Bytes)>, LogSourceError> {
        let m = match self.messages.next().now_or_never() {
            Some(m) => m,
            None => {
                self.pending.send_replace(false);
                match tokio::time::timeout(IDLE, self.messages.next()).await {
                    Ok(m) => m,
                    Err(_) => return Ok(None),
                }
            }
        };
        self.pending.send_replace(true);
        let m = m
            .ok_or_else(|| self.read_error("the consumer ended".into()))?
            .map_err(|e| self.read_error(e.to_string()))?;
        let seq = m.info().map_err(|e| self.read_error(e.to_string()))?.stream_sequence;
        Ok(Some((seq, m.subject.clone(), m.payload.clone())))
    }

    /// Everything the stream held at the start is read, and no large
    /// transaction is half applied (its parts commit with its END only).
    fn caught_up(&self) -> bool {
        self.until.is_some_and(|u| self.seen >= u) && !self.events.in_parts()
    }
}

impl ChangeSource for LogReader {
    type Large = NoLarge;
    type Error = LogSourceError;

    async fn next_event(&mut self) -> Result<Option<LogEvent>, LogSourceError> {
        loop {
            let (seq, subject, payload) = match self.held.take() {
                Some(held) => held,
                // Also inside a transaction: its END may never come (a
                // producer killed in it and not restarted), and
                // `--until-caught-up` must still end; the open transaction
                // stays unapplied.
                None => match self.next_message().await? {
                    Some(m) => m,
                    None if self.caught_up() => return Ok(Some(SourceEvent::CaughtUp)),
                    None => continue,
                },
            };
            // Cancel-safe: a feed dropped while it resolves a new shape
            // (before it changed anything) is fed again next time.
            self.held = Some((seq, subject.clone(), payload.clone()));
            let event = self.events.feed(seq, &subject, &payload).await;
            self.held = None;
            self.seen = seq;
            if let Some(event) = event? {
                return Ok(Some(event));
            }
        }
    }

    /// Nothing to release: the position lives on the target.
    fn confirm(&mut self, _: Lsn) {}

    async fn keep_alive(&mut self) -> Result<(), LogSourceError> {
        Ok(())
    }

    fn source_end(&self) -> Lsn {
        Lsn(self.seen)
    }

    fn pending_signal(&self) -> watch::Receiver<bool> {
        self.pending.subscribe()
    }

    async fn close(self) -> Result<(), LogSourceError> {
        Ok(())
    }
}

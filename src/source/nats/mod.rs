//! NATS JetStream as the log's transport, read side: the messages xdb
//! wrote (`pipeline/to_log.rs` through `nats/`) read in stream order from the one after a given
//! sequence with an ordered consumer, and handed to the transport-neutral
//! [`EventAssembler`] (`source/log_events.rs`). Positions are stream
//! sequences.

pub mod shapes;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use futures_util::StreamExt;

use crate::model::TableSchema;
use crate::nats::{Log, LogError, NatsTarget};
use crate::source::log_events::{EventAssembler, EventError, LogItem};

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

/// The events after a stream sequence, as [`LogItem`]s.
pub struct LogReader {
    stream: String,
    messages: Messages,
    events: EventAssembler,
    /// The stream sequence of the last message read.
    pub seen: u64,
}

impl LogReader {
    /// Reads from the message after `after` (0: from the start), the
    /// subjects under the target's prefix; `tables` are the planned ones.
    pub async fn open(
        target: &NatsTarget,
        after: u64,
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
        })
    }

    /// The next item; `None` when nothing arrived for `idle` (the applier
    /// then commits the whole transactions it holds).
    pub async fn next(&mut self, idle: Duration) -> Result<Option<LogItem>, LogSourceError> {
        loop {
            // Also inside a transaction: its END may never come (a producer
            // killed in it and not restarted), and `--until-caught-up` must
            // still end; the open transaction stays unapplied.
            let m = match tokio::time::timeout(idle, self.messages.next()).await {
                Ok(m) => m,
                Err(_) => return Ok(None),
            };
            let m = m
                .ok_or_else(|| LogSourceError::Read {
                    stream: self.stream.clone(),
                    reason: "the consumer ended".into(),
                })?
                .map_err(|e| LogSourceError::Read { stream: self.stream.clone(), reason: e.to_string() })?;
            let seq = m
                .info()
                .map_err(|e| LogSourceError::Read { stream: self.stream.clone(), reason: e.to_string() })?
                .stream_sequence;
            self.seen = seq;
            if let Some(item) = self.events.feed(seq, &m.subject, &m.payload).await? {
                return Ok(Some(item));
            }
        }
    }
}

//! A NATS JetStream stream as a target: the connection, the stream (created
//! with the requested replicas, refused when an existing one differs), its
//! tail (what the last stored message says was published), and a pipelined
//! publisher whose acknowledgements decide what may be confirmed to the
//! source.
//!
//! Invariant *log exactly once* (docs/architecture.md): every message
//! carries a deterministic `Nats-Msg-Id` and the sequence the stream must
//! be at before it (`Nats-Expected-Last-Sequence`), so the stream's
//! content is always a gap-free prefix of xdb's publish order; the last
//! stored message's id then says exactly where to go on after any crash,
//! and the duplicate window is a second guard, not the only one.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, publish::PublishAck, Context};
use bytes::Bytes;

use crate::error_policy::Retry;
use crate::model::Lsn;
pub use crate::plan::NatsTarget;

/// A log operation failed; messages name the servers, the stream, the
/// subject and the message id.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot connect to NATS at {servers}: {source}")]
    Connect {
        servers: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("NATS stream {stream}: {what}: {reason}")]
    Api { stream: String, what: &'static str, reason: String, retry: Retry },
    #[error(
        "NATS stream {stream} exists with {what} {found}, but the plan asks for {wanted}: use another stream= or \
         change the existing stream (nats stream edit) — xdb does not change a stream it did not create this way"
    )]
    StreamDiffers { stream: String, what: &'static str, found: String, wanted: String },
    #[error("publishing {msg_id} on {subject} to stream {stream}: {source}")]
    Publish {
        stream: String,
        subject: String,
        msg_id: String,
        #[source]
        source: PublishError,
    },
    #[error(
        "stream {stream} stored message {msg_id} as sequence {got}, expected {expected}{}: another writer \
         uses the stream's subjects",
        if *.duplicate { " (a duplicate)" } else { "" }
    )]
    OutOfOrder { stream: String, msg_id: String, got: u64, expected: u64, duplicate: bool },
    #[error("{0}")]
    Config(String),
}

impl LogError {
    /// Decided from the client's error kinds (`error_policy.rs`).
    pub fn is_retryable(&self) -> bool {
        match self {
            LogError::Connect { source, .. } => crate::error_policy::nats_connect(source.kind()).is_transient(),
            LogError::Api { retry, .. } => retry.is_transient(),
            LogError::Publish { source, .. } => crate::error_policy::nats_publish(source.kind()).is_transient(),
            // A duplicate breaks the chain once (a message published again
            // after a lost ack); the next session starts from the tail.
            LogError::OutOfOrder { duplicate, .. } => *duplicate,
            LogError::StreamDiffers { .. } | LogError::Config(_) => false,
        }
    }
}

/// An open log: the client, its JetStream context and the stream.
pub struct Log {
    pub target: NatsTarget,
    pub js: Context,
    pub client: async_nats::Client,
}

/// How long a publish waits for its acknowledgement: a leader election in
/// a three-node cluster takes a few seconds.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

impl Log {
    /// Connects (any listed server; the client follows the cluster).
    pub async fn connect(target: &NatsTarget) -> Result<Log, LogError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name("xdb")
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(ACK_TIMEOUT));
        if let Some((u, p)) = &target.user {
            opts = opts.user_and_password(u.clone(), p.clone());
        }
        let addrs: Vec<async_nats::ServerAddr> = target
            .servers
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .map_err(|e| LogError::Config(format!("NATS server address: {e}")))?;
        let client = opts
            .connect(addrs)
            .await
            .map_err(|source| LogError::Connect { servers: target.servers.join(","), source })?;
        let js = jetstream::ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .max_ack_inflight(MAX_INFLIGHT * 2)
            .build(client.clone());
        Ok(Log { target: target.clone(), js, client })
    }

    fn api(&self, what: &'static str, retry: Retry) -> impl Fn(String) -> LogError + '_ {
        move |reason| LogError::Api { stream: self.target.stream.clone(), what, reason, retry }
    }

    /// Makes sure the stream exists with the plan's replicas and holds the
    /// plan's subjects; creates it when missing. Returns its configuration.
    pub async fn ensure_stream(&self) -> Result<StreamConfig, LogError> {
        let t = &self.target;
        let subjects = vec![format!("{}.>", t.prefix)];
        match self.js.get_stream(&t.stream).await {
            Ok(mut s) => {
                let info =
                    s.info().await.map_err(|e| self.api("reading the stream", Retry::Transient)(e.to_string()))?;
                let c = info.config.clone();
                if c.num_replicas.max(1) != t.replicas {
                    return Err(LogError::StreamDiffers {
                        stream: t.stream.clone(),
                        what: "replicas",
                        found: c.num_replicas.to_string(),
                        wanted: t.replicas.to_string(),
                    });
                }
                if c.subjects != subjects {
                    return Err(LogError::StreamDiffers {
                        stream: t.stream.clone(),
                        what: "subjects",
                        found: c.subjects.join(","),
                        wanted: subjects.join(","),
                    });
                }
                Ok(c)
            }
            Err(e) if matches!(e.kind(), async_nats::jetstream::context::GetStreamErrorKind::JetStream(ref j) if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                let config = StreamConfig {
                    name: t.stream.clone(),
                    subjects,
                    num_replicas: t.replicas,
                    storage: StorageType::File,
                    duplicate_window: Duration::from_secs(t.duplicate_window_secs),
                    ..Default::default()
                };
                self.js
                    .create_stream(config.clone())
                    .await
                    .map_err(|e| self.api("creating the stream", create_retry(&e))(e.to_string()))?;
                tracing::info!(stream = %t.stream, replicas = t.replicas, "created NATS JetStream stream");
                Ok(config)
            }
            Err(e) => Err(self.api("looking the stream up", Retry::Transient)(e.to_string())),
        }
    }

    /// The last stored message: its sequence and `Nats-Msg-Id` (None: empty stream).
    /// [`Log::tail`] once the stream's last sequence stopped moving: a
    /// producer killed a moment ago may have sent messages the cluster is
    /// still storing, and one stored after the tail was read would land in
    /// the middle of this session's sequence chain (at most 30 s).
    pub async fn settled_tail(&self) -> Result<(u64, Option<String>), LogError> {
        let started = std::time::Instant::now();
        let mut last = self.tail().await?;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.tail().await?;
            if now.0 == last.0 || started.elapsed() > Duration::from_secs(30) {
                return Ok(now);
            }
            last = now;
        }
    }

    pub async fn tail(&self) -> Result<(u64, Option<String>), LogError> {
        let mut s = self
            .js
            .get_stream(&self.target.stream)
            .await
            .map_err(|e| self.api("looking the stream up", Retry::Transient)(e.to_string()))?;
        let last = s
            .info()
            .await
            .map_err(|e| self.api("reading the stream", Retry::Transient)(e.to_string()))?
            .state
            .last_sequence;
        if last == 0 {
            return Ok((0, None));
        }
        let m = s
            .get_raw_message(last)
            .await
            .map_err(|e| self.api("reading the last message", Retry::Transient)(e.to_string()))?;
        let id = m.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_string());
        Ok((last, id))
    }
}

fn create_retry(e: &async_nats::jetstream::context::CreateStreamError) -> Retry {
    use async_nats::jetstream::context::CreateStreamErrorKind as K;
    match e.kind() {
        K::TimedOut | K::JetStreamUnavailable => Retry::Transient,
        _ => Retry::Fatal,
    }
}

/// Messages published and not yet acknowledged, at most.
pub const MAX_INFLIGHT: usize = 4096;

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

struct Inflight {
    ack: AckFuture,
    seq: u64,
    subject: String,
    msg_id: String,
    /// Confirmable once this message (and all before it) is stored.
    confirm: Option<Lsn>,
}

/// Publishes in order with `Nats-Msg-Id` and `Nats-Expected-Last-Sequence`,
/// many in flight; [`Publisher::acked`] is the highest position whose
/// messages are all stored.
pub struct Publisher {
    js: Context,
    stream: String,
    /// The sequence the last published message will get.
    last_seq: u64,
    inflight: VecDeque<Inflight>,
    acked: Lsn,
    pub published: u64,
}

impl Publisher {
    /// Starts after the stream's current last sequence.
    pub fn new(log: &Log, last_seq: u64, acked: Lsn) -> Publisher {
        Publisher {
            js: log.js.clone(),
            stream: log.target.stream.clone(),
            last_seq,
            inflight: VecDeque::new(),
            acked,
            published: 0,
        }
    }

    /// Sends one message; waits for the oldest acknowledgement when
    /// [`MAX_INFLIGHT`] are outstanding.
    pub async fn publish(
        &mut self,
        subject: String,
        msg_id: String,
        payload: Vec<u8>,
        confirm: Option<Lsn>,
    ) -> Result<(), LogError> {
        while self.inflight.len() >= MAX_INFLIGHT {
            self.ack_one().await?;
        }
        let msg = PublishMessage::build()
            .payload(Bytes::from(payload))
            .message_id(&msg_id)
            .expected_last_sequence(self.last_seq);
        let fut = self.js.send_publish(subject.clone(), msg).await.map_err(|source| LogError::Publish {
            stream: self.stream.clone(),
            subject: subject.clone(),
            msg_id: msg_id.clone(),
            source,
        })?;
        self.last_seq += 1;
        self.published += 1;
        self.inflight.push_back(Inflight {
            ack: Box::pin(fut.into_future()),
            seq: self.last_seq,
            subject,
            msg_id,
            confirm,
        });
        Ok(())
    }

    pub fn has_inflight(&self) -> bool {
        !self.inflight.is_empty()
    }

    /// Waits for the oldest acknowledgement. Cancel-safe: the message stays
    /// queued until its acknowledgement is in.
    pub async fn ack_one(&mut self) -> Result<(), LogError> {
        let Some(front) = self.inflight.front_mut() else { return Ok(()) };
        let r = (&mut front.ack).await;
        let f = self.inflight.pop_front().expect("front");
        let ack = r.map_err(|source| LogError::Publish {
            stream: self.stream.clone(),
            subject: f.subject.clone(),
            msg_id: f.msg_id.clone(),
            source,
        })?;
        if ack.sequence != f.seq || ack.duplicate {
            return Err(LogError::OutOfOrder {
                stream: self.stream.clone(),
                msg_id: f.msg_id,
                got: ack.sequence,
                expected: f.seq,
                duplicate: ack.duplicate,
            });
        }
        if let Some(l) = f.confirm {
            self.acked = self.acked.max(l);
        }
        Ok(())
    }

    /// Waits for every outstanding acknowledgement.
    pub async fn flush(&mut self) -> Result<Lsn, LogError> {
        while self.has_inflight() {
            self.ack_one().await?;
        }
        Ok(self.acked)
    }

    /// After a failed publish: waits until every message still in flight
    /// is stored or refused (each at most [`ACK_TIMEOUT`]), whatever the
    /// answer, so that none lands after the next session read the tail.
    pub async fn settle(&mut self) {
        while let Some(mut f) = self.inflight.pop_front() {
            let _ = (&mut f.ack).await;
        }
    }

    /// The highest position whose messages are all stored.
    pub fn acked(&self) -> Lsn {
        self.acked
    }
}

/// Where the stream's last message says publishing stands (module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Nothing complete: the copy must run (again, from a fresh snapshot).
    NeedsCopy,
    /// Everything up to `lsn` is in the stream; stream from there.
    At(Lsn),
    /// Transaction `commit` is in the stream up to event `index`
    /// (0: its BEGIN); publish the rest of it.
    Within { commit: Lsn, index: u64 },
}

/// Message ids (all deterministic; see [`Tail`]).
pub mod msg_id {
    use crate::model::Lsn;

    pub fn snapshot_start(lsn: Lsn) -> String {
        format!("snap-start:{:016X}", lsn.0)
    }
    pub fn snapshot_end(lsn: Lsn) -> String {
        format!("snap-end:{:016X}", lsn.0)
    }
    pub fn heartbeat(lsn: Lsn) -> String {
        format!("hb:{:016X}", lsn.0)
    }
    /// A copied row: the snapshot's position, the table and its key.
    pub fn copy_row(lsn: Lsn, table: &str, key: &str) -> String {
        let id = format!("r:{:016X}:{table}:{key}", lsn.0);
        if id.len() <= 256 {
            id
        } else {
            let h = twox_hash::XxHash3_128::oneshot(id.as_bytes());
            format!("r:{:016X}:{table}:#{h:032x}", lsn.0)
        }
    }
    /// Event `index` of the transaction committed at `commit` (0: BEGIN).
    pub fn event(commit: Lsn, index: u64) -> String {
        format!("tx:{:016X}:{index}", commit.0)
    }
    /// A table's shape changed just before event `index` of the transaction
    /// committed at `commit`: in the stream, event `index - 1` is done.
    pub fn schema(commit: Lsn, index: u64) -> String {
        format!("tx:{:016X}:{index}:schema", commit.0)
    }

    /// A table's shape at the start of the copy at `lsn`.
    pub fn snapshot_schema(lsn: Lsn, table: &str) -> String {
        format!("snap-schema:{:016X}:{table}", lsn.0)
    }

    /// The END of a transaction, with the position to stream from after it.
    pub fn end(commit: Lsn, end: Lsn) -> String {
        format!("tx:{:016X}:end:{:016X}", commit.0, end.0)
    }

    /// Reads the last message's id.
    pub fn tail(id: Option<&str>) -> super::Tail {
        use super::Tail;
        let hex = |s: &str| u64::from_str_radix(s, 16).ok().map(Lsn);
        let Some(id) = id else { return Tail::NeedsCopy };
        let parts: Vec<&str> = id.split(':').collect();
        match parts.as_slice() {
            ["snap-end", l] | ["hb", l] => hex(l).map(Tail::At).unwrap_or(Tail::NeedsCopy),
            ["tx", _, "end", e] => hex(e).map(Tail::At).unwrap_or(Tail::NeedsCopy),
            ["tx", c, i] => match (hex(c), i.parse()) {
                (Some(commit), Ok(index)) => Tail::Within { commit, index },
                _ => Tail::NeedsCopy,
            },
            ["tx", c, i, "schema"] => match (hex(c), i.parse::<u64>()) {
                (Some(commit), Ok(index)) if index > 0 => Tail::Within { commit, index: index - 1 },
                _ => Tail::NeedsCopy,
            },
            _ => Tail::NeedsCopy,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::nats::Tail;

        #[test]
        fn the_last_id_says_where_to_go_on() {
            assert_eq!(tail(None), Tail::NeedsCopy);
            assert_eq!(tail(Some(&copy_row(Lsn(5), "public.t", "1"))), Tail::NeedsCopy);
            assert_eq!(tail(Some(&snapshot_start(Lsn(5)))), Tail::NeedsCopy);
            assert_eq!(tail(Some(&snapshot_end(Lsn(5)))), Tail::At(Lsn(5)));
            assert_eq!(tail(Some(&heartbeat(Lsn(9)))), Tail::At(Lsn(9)));
            assert_eq!(tail(Some(&end(Lsn(7), Lsn(0x1_0000_0008)))), Tail::At(Lsn(0x1_0000_0008)));
            assert_eq!(tail(Some(&event(Lsn(7), 3))), Tail::Within { commit: Lsn(7), index: 3 });
            assert_eq!(tail(Some(&schema(Lsn(7), 3))), Tail::Within { commit: Lsn(7), index: 2 });
            assert_eq!(tail(Some(&snapshot_schema(Lsn(7), "public.t"))), Tail::NeedsCopy);
            assert!(copy_row(Lsn(1), "t", &"k".repeat(300)).len() < 100);
        }
    }
}

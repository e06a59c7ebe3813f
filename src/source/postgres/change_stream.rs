//! The stream of committed source transactions that `tail` and `sync`
//! consume: the walsender connection, the pgoutput decoder and the
//! transaction assembler put together, with type resolution against the
//! catalog, the idle-slot heartbeat and position confirmation.
//!
//! The consumer decides what is confirmed: [`ChangeStream::confirm`] is
//! called only once a transaction is durably handled (printed, committed on
//! the target), and the flush position sent to PostgreSQL never passes it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_postgres::Client;

use super::assembler::{
    AssemblerConfig, AssemblerError, AssemblerEvent, SpilledTransaction, TransactionAssembler, TypeResolver,
    ValueDecoders,
};
use super::catalog::{CatalogError, TypeCache};
use super::codec::pgoutput::{self, PgoutputMessage};
use super::codec::{value_binary, value_text};
use super::replication::{
    ReplicationClient, ReplicationError, ReplicationEvent, ReplicationStream, SnapshotAction, StartReplicationOptions,
};
use crate::error_policy::pg_error_text;
use crate::model::{Lsn, PgType, ReplicaIdentity, TableName, TableSchema};
use crate::plan::SecretUrl;
use crate::source::change_source::{ChangeSource, SourceEvent};

/// The prefix of xdb's own heartbeat messages (filtered out of the stream).
pub const HEARTBEAT_PREFIX: &str = "xdb.heartbeat";

/// The first `server_version_num` whose pgoutput takes the `messages`
/// option (and protocol 2 with `streaming`): 14.
///
/// xdb's markers (heartbeats, `--until-caught-up`, cutover's catch-up,
/// validate) are transactional `pg_logical_emit_message` calls, and what
/// proves a catch-up is the *transaction* that carries the message: it
/// commits after the message's LSN, and once the target has applied it,
/// every transaction committed before the marker was written is applied
/// too. Since 14 the message itself comes down the stream inside it. Below
/// 14 pgoutput cannot send messages, but it sends every decoded
/// transaction of the slot's database as Begin … Commit even when it holds
/// nothing published (PostgreSQL skips such empty transactions only from
/// 15 on, where messages are on), so the marker's transaction still
/// arrives, empty, with a commit LSN past the marker, and is applied and
/// confirmed like any other. That needs no object on the source (no marker
/// table to publish, nothing for `cleanup` to drop).
pub const MESSAGES_SINCE: i32 = 140000;

/// What went wrong while streaming.
#[derive(Debug, thiserror::Error)]
pub enum ChangeStreamError {
    #[error("replication connection: {0}")]
    Replication(#[from] ReplicationError),
    #[error("{0}")]
    Assemble(#[from] AssemblerError),
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    #[error("on the source: {what}: {}", pg_error_text(.source))]
    Sql {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("on the source: {0}")]
    Marker(#[from] MarkerError),
    #[error(
        "replication slot {slot} does not exist on the source, but the target has applied changes up to {applied}: \
         the changes made since then are gone with the slot (a failover to a standby without it, or someone dropped \
         it). xdb will not create a new slot and go on as if nothing happened. To recover, copy every table again \
         from a new slot: `xdb sync --plan P --recopy` (or `xdb snapshot --plan P --recopy`)"
    )]
    SlotMissing { slot: String, applied: Lsn },
    #[error(
        "replication slot {slot} has confirmed changes up to {confirmed}, but the target has applied only up to \
         {applied}: {bytes} bytes of WAL that the target never received have been released by another reader of \
         this slot (`xdb tail --plan-slot`, a second plan naming the same slot, pg_replication_slot_advance). \
         Streaming from here would lose them. To recover, copy every table again from a new slot: \
         `xdb sync --plan P --recopy`; or, if you know nothing was written in between, accept the gap with \
         `xdb sync --plan P --accept-slot-position`"
    )]
    SlotAhead { slot: String, confirmed: Lsn, applied: Lsn, bytes: u64 },
    #[error(
        "replication slot {slot} belongs to database {database}, not to the plan's source database: \
         name another slot in the plan (source.slot)"
    )]
    SlotOtherDatabase { slot: String, database: String },
    #[error(
        "replication slot {slot} is in use by another connection (pid {pid}): is another `xdb sync` or `xdb tail` \
         running with this plan? Stop it, or wait for it to exit"
    )]
    SlotInUse { slot: String, pid: i32 },
    #[error(
        "replication slot {slot} exists but uses the output plugin {plugin}, not pgoutput: drop it \
         (SELECT pg_drop_replication_slot('{slot}');) or name another slot in the plan"
    )]
    WrongPlugin { slot: String, plugin: String },
}

impl ChangeStreamError {
    /// True when reconnecting may succeed (network errors, server restart).
    pub fn is_retryable(&self) -> bool {
        match self {
            ChangeStreamError::Replication(e) => e.is_retryable(),
            ChangeStreamError::Marker(e) => e.is_retryable(),
            // A source restart ends the heartbeat and catalog connection too.
            ChangeStreamError::Sql { source, .. } => crate::error_policy::postgres(source).is_transient(),
            ChangeStreamError::Catalog(CatalogError::Query { source, .. }) => {
                crate::error_policy::postgres(source).is_transient()
            }
            _ => false,
        }
    }
}

/// How to open a stream.
#[derive(Debug, Clone)]
pub struct ChangeStreamConfig {
    pub slot: String,
    pub publication: String,
    /// Where to start; the server starts at the slot's confirmed position
    /// when that is later.
    pub start: Lsn,
    /// Idle time after which a heartbeat message is written on the source.
    pub heartbeat_interval: Duration,
    /// Streamed transactions past this many buffered bytes go to a file.
    pub spill_threshold_bytes: usize,
    pub spill_dir: PathBuf,
    /// `application_name` on the source (visible in pg_stat_replication).
    pub application_name: String,
    /// The slot must already exist and must not have confirmed past
    /// `start` (invariant *slot continuity*): `sync`, whose `start` is the
    /// position stored on the target. `tail` accepts any.
    pub continuity: Continuity,
    /// Create a missing slot as TEMPORARY: it lives only as long as this
    /// stream's connection, so a reader that must not leave anything behind
    /// (`xdb tail` by default) gets a slot of its own, starting now.
    pub temporary: bool,
}

/// What `open` demands of an existing slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Continuity {
    /// A missing slot is created; any position is accepted (`tail`).
    #[default]
    Any,
    /// The slot must exist and its confirmed position must not be past
    /// `start`: anything else means changes the target never saw are gone.
    Strict,
    /// As `Strict`, but a slot confirmed past `start` is accepted: the
    /// operator said, with `--accept-slot-position`, that nothing was lost.
    AcceptAhead,
}

/// The slot as found or created at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub created: bool,
    /// For an existing slot: its confirmed flush position; for a new one:
    /// its consistent point.
    pub position: Lsn,
}

/// Type OIDs resolved against the catalog, shared with the assembler.
#[derive(Default)]
struct ResolvedTypes(RwLock<HashMap<(u32, i32), PgType>>);

impl TypeResolver for ResolvedTypes {
    fn resolve(&self, oid: u32, typmod: i32) -> PgType {
        if let Some(t) = PgType::from_builtin_oid(oid, typmod) {
            return t;
        }
        let known = self.0.read().map(|m| m.get(&(oid, typmod)).cloned()).unwrap_or(None);
        known.unwrap_or_else(|| PgType::Other { name: format!("oid {oid}") })
    }
}

fn text_decoder(t: &PgType, s: &str) -> Result<crate::model::Value, String> {
    value_text::decode_text(t, s).map_err(|e| e.to_string())
}

fn binary_decoder(t: &PgType, b: &[u8]) -> Result<crate::model::Value, String> {
    value_binary::decode_binary(t, b).map_err(|e| e.to_string())
}

/// Committed transactions from a logical replication slot, in commit order.
pub struct ChangeStream {
    stream: ReplicationStream,
    catalog: Client,
    types: TypeCache,
    resolved: Arc<ResolvedTypes>,
    assembler: TransactionAssembler,
    in_stream: bool,
    pending: std::collections::VecDeque<AssemblerEvent>,
    heartbeat_interval: Duration,
    last_data: Instant,
    confirmed: Lsn,
    /// End of the last transaction handed out.
    received: Lsn,
    /// An XLogData taken off the wire but not yet fed to the assembler.
    inflight: Option<(Lsn, Bytes)>,
    /// `true` while this stream holds data it has not returned yet (events,
    /// read bytes); `false` while it waits for the server. Lets a consumer
    /// that batches close a batch at once instead of waiting for more that
    /// is not coming (see [`ChangeStream::pending_signal`]).
    holding: watch::Sender<bool>,
    /// Primary keys (column names) from the catalog, for tables streamed
    /// with REPLICA IDENTITY FULL (see [`ChangeStream::match_on_catalog_keys`]).
    catalog_keys: HashMap<TableName, Vec<String>>,
    pub slot: SlotInfo,
}

/// A query on the catalog connection failed while doing `what`.
fn sql(what: &str) -> impl Fn(tokio_postgres::Error) -> ChangeStreamError + '_ {
    move |e| ChangeStreamError::Sql { what: what.to_string(), source: e }
}

impl ChangeStream {
    /// Makes sure the slot exists (creating it without a snapshot when
    /// missing), then starts streaming from `config.start`. `catalog` is a
    /// plain SQL connection to the same database (type lookups, heartbeats).
    pub async fn open(
        url: &SecretUrl,
        catalog: Client,
        config: &ChangeStreamConfig,
    ) -> Result<Self, ChangeStreamError> {
        let mut client = ReplicationClient::connect_url(url, &config.application_name).await?;
        let slot = Self::existing_or_new_slot(&catalog, &mut client, config).await?;
        let version: i32 = catalog
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .map_err(sql("reading server_version_num"))?
            .get(0);
        let options = start_options(version, &config.publication);
        let stream = client.start_replication(&config.slot, config.start, &options).await?;
        let resolved = Arc::new(ResolvedTypes::default());
        let assembler = TransactionAssembler::new(
            AssemblerConfig {
                spill_threshold_bytes: config.spill_threshold_bytes,
                spill_dir: config.spill_dir.clone(),
            },
            ValueDecoders { text: text_decoder, binary: binary_decoder },
            resolved.clone(),
        );
        Ok(ChangeStream {
            stream,
            catalog,
            types: TypeCache::new(),
            resolved,
            assembler,
            in_stream: false,
            pending: Default::default(),
            heartbeat_interval: config.heartbeat_interval,
            last_data: Instant::now(),
            confirmed: Lsn::ZERO,
            received: Lsn::ZERO,
            inflight: None,
            holding: watch::channel(false).0,
            catalog_keys: HashMap::new(),
            slot,
        })
    }

    /// The slot to stream from: the existing one when it may be used
    /// (invariant *slot continuity*), else a new one when `config` allows.
    async fn existing_or_new_slot(
        catalog: &Client,
        client: &mut ReplicationClient,
        config: &ChangeStreamConfig,
    ) -> Result<SlotInfo, ChangeStreamError> {
        let existing = catalog
            .query_opt(
                "SELECT plugin::text, active_pid, confirmed_flush_lsn::text, database::text, \
                 database = current_database() FROM pg_replication_slots WHERE slot_name = $1",
                &[&config.slot],
            )
            .await
            .map_err(sql("reading pg_replication_slots"))?;
        match existing {
            Some(row) => Self::usable_slot(catalog, &row, config).await,
            None if config.continuity != Continuity::Any => {
                Err(ChangeStreamError::SlotMissing { slot: config.slot.clone(), applied: config.start })
            }
            None => {
                let created =
                    client.create_replication_slot(&config.slot, config.temporary, SnapshotAction::NoExport).await?;
                tracing::info!(
                    slot = %config.slot,
                    temporary = config.temporary,
                    at = %created.consistent_point,
                    "created replication slot"
                );
                Ok(SlotInfo { created: true, position: created.consistent_point })
            }
        }
    }

    /// An existing slot, refused when it is in another database, another
    /// plugin's, held by another session, or (strict continuity) confirmed
    /// past what the target applied.
    async fn usable_slot(
        catalog: &Client,
        row: &tokio_postgres::Row,
        config: &ChangeStreamConfig,
    ) -> Result<SlotInfo, ChangeStreamError> {
        if !row.get::<_, Option<bool>>(4).unwrap_or(false) {
            return Err(ChangeStreamError::SlotOtherDatabase {
                slot: config.slot.clone(),
                database: row.get::<_, Option<String>>(3).unwrap_or_else(|| "(physical slot)".into()),
            });
        }
        let plugin: Option<String> = row.get(0);
        if plugin.as_deref() != Some("pgoutput") {
            return Err(ChangeStreamError::WrongPlugin {
                slot: config.slot.clone(),
                plugin: plugin.unwrap_or_default(),
            });
        }
        if let Some(pid) = row.get::<_, Option<i32>>(1) {
            if let Some(pid) =
                wait_until_slot_free(catalog, &config.slot, pid).await.map_err(sql("reading pg_replication_slots"))?
            {
                return Err(ChangeStreamError::SlotInUse { slot: config.slot.clone(), pid });
            }
        }
        let lsn: Option<String> = row.get(2);
        let position = lsn.and_then(|s| s.parse().ok()).unwrap_or(Lsn::ZERO);
        if config.continuity == Continuity::Strict && position > config.start {
            return Err(ChangeStreamError::SlotAhead {
                slot: config.slot.clone(),
                confirmed: position,
                applied: config.start,
                bytes: position.0 - config.start.0,
            });
        }
        Ok(SlotInfo { created: false, position })
    }

    /// The next event: a committed transaction (whole or spilled), a
    /// relation (schema) message, or a logical message other than xdb's
    /// heartbeats. `None` when the server ended the stream.
    ///
    /// Cancel-safe between events: the underlying reader keeps partial
    /// frames in its own buffer.
    pub async fn next(&mut self) -> Result<Option<AssemblerEvent>, ChangeStreamError> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                if let AssemblerEvent::Message { prefix, .. } = &ev {
                    if prefix == HEARTBEAT_PREFIX {
                        continue;
                    }
                }
                return Ok(Some(ev));
            }
            // A message taken off the wire whose type lookups were cut short
            // by a cancelled `next()`: it must still reach the assembler.
            if let Some((wal_start, data)) = self.inflight.clone() {
                self.before_feed(&data).await?;
                self.inflight = None;
                let events = self.assembler.feed(wal_start, &data)?;
                self.note_received(&events);
                self.pending.extend(events);
                continue;
            }
            // Nothing decoded is left: say whether what comes next is
            // already here (read bytes) or must come from the server, so a
            // waiting batch closes now rather than at its delay.
            let holding = self.stream.has_buffered();
            self.set_holding(holding);
            let idle_deadline = self.last_data + self.heartbeat_interval;
            let event = tokio::select! {
                ev = self.stream.next() => ev?,
                _ = tokio::time::sleep_until(idle_deadline.into()) => {
                    self.heartbeat().await?;
                    continue;
                }
            };
            // Something arrived: held until handed over (this may be the
            // first message of a transaction whose rest is in the buffer).
            self.set_holding(true);
            match event {
                None => return Ok(None),
                Some(ReplicationEvent::Keepalive { .. }) => {}
                Some(ReplicationEvent::XLogData { wal_start, data, .. }) => {
                    self.last_data = Instant::now();
                    tracing::trace!(lsn = %wal_start, tag = ?data.first().map(|b| *b as char), len = data.len(), "pgoutput message");
                    // Parked before the await below so that cancelling
                    // `next()` there (sync selects on it) cannot lose it.
                    self.inflight = Some((wal_start, data));
                }
            }
        }
    }

    /// Whether this stream holds data it has not returned yet: `true` from
    /// the moment something is read off the connection until it has all been
    /// returned by [`next`](Self::next) and nothing more is buffered; `false`
    /// while it waits for the server. `sync`'s batcher closes a batch when
    /// its queue is empty and this is `false` (nothing is on its way, so
    /// waiting would only add latency).
    pub fn pending_signal(&self) -> watch::Receiver<bool> {
        self.holding.subscribe()
    }

    fn set_holding(&self, holding: bool) {
        // Only a change wakes the receiver: this runs for every message.
        self.holding.send_if_modified(|v| std::mem::replace(v, holding) != holding);
    }

    fn note_received(&mut self, events: &[AssemblerEvent]) {
        for ev in events {
            match ev {
                AssemblerEvent::Transaction(tx) => self.received = self.received.max(tx.end_lsn),
                AssemblerEvent::Spilled(tx) => self.received = self.received.max(tx.end_lsn),
                _ => {}
            }
        }
    }

    /// Tracks stream blocks and resolves a Relation's non-built-in column
    /// types against the catalog before the assembler needs them.
    async fn before_feed(&mut self, data: &Bytes) -> Result<(), ChangeStreamError> {
        match data.first() {
            Some(b'S') => self.in_stream = true,
            Some(b'E') => self.in_stream = false,
            Some(b'R') => {
                if let Ok(PgoutputMessage::Relation(rel)) = pgoutput::decode(data, self.in_stream) {
                    for c in &rel.columns {
                        if PgType::from_builtin_oid(c.type_oid, c.typmod).is_some() {
                            continue;
                        }
                        let t = self.types.resolve(&self.catalog, c.type_oid, c.typmod).await?;
                        if let Ok(mut m) = self.resolved.0.write() {
                            m.insert((c.type_oid, c.typmod), t);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Writes a heartbeat into the source's WAL. It comes back as a
    /// transaction without changes (holding the message from 14 on, empty
    /// below: see [`MESSAGES_SINCE`]) whose confirmation moves the slot
    /// forward on an idle database, so retained WAL does not grow
    /// (invariant *idle slots*).
    async fn heartbeat(&mut self) -> Result<(), ChangeStreamError> {
        self.last_data = Instant::now();
        tracing::debug!("idle for {:?}: writing a heartbeat", self.heartbeat_interval);
        self.catalog
            .execute("SELECT pg_logical_emit_message(true, $1, now()::text)", &[&HEARTBEAT_PREFIX])
            .await
            .map_err(|e| ChangeStreamError::Sql {
                what: "writing a heartbeat (pg_logical_emit_message)".into(),
                source: e,
            })?;
        Ok(())
    }

    /// Writes a marker message into the source's WAL and returns its LSN
    /// (see [`write_marker`]).
    pub async fn emit_marker(&self, prefix: &str) -> Result<Lsn, ChangeStreamError> {
        Ok(write_marker(&self.catalog, prefix, "").await?)
    }

    /// Declares everything up to `lsn` durably handled: it is reported as
    /// written, flushed and applied in the next status update.
    pub fn confirm(&mut self, lsn: Lsn) {
        if lsn > self.confirmed {
            self.confirmed = lsn;
            self.stream.set_positions(lsn, lsn, lsn);
        }
    }

    /// Sends a status update now (the confirmed position, no reply asked):
    /// keeps the connection alive while the reader is not reading.
    pub async fn send_status(&mut self) -> Result<(), ChangeStreamError> {
        self.stream.send_status_update(false).await?;
        Ok(())
    }

    /// The last confirmed position.
    pub fn confirmed(&self) -> Lsn {
        self.confirmed
    }

    /// End of the last transaction received.
    pub fn received(&self) -> Lsn {
        self.received
    }

    /// The server's current WAL end as last reported.
    pub fn server_wal_end(&self) -> Lsn {
        self.stream.server_wal_end()
    }

    /// The plain SQL connection to the source this stream uses.
    pub fn catalog(&self) -> &Client {
        &self.catalog
    }

    /// Sends the confirmed position and ends the stream cleanly.
    pub async fn close(mut self) -> Result<(), ChangeStreamError> {
        self.stream.send_status_update(false).await?;
        self.stream.stop().await?;
        Ok(())
    }

    /// pgoutput marks every column as key under REPLICA IDENTITY FULL (the
    /// assembler then leaves the key empty): a table that has a primary
    /// key in the catalog is matched on it, not on all its old values
    /// (which finds nothing when a value does not compare equal on the
    /// target, and fails outright on a PostgreSQL target for a `json`
    /// column, which has no equality). Applies to the Relation messages
    /// [`ChangeSource::next_event`] hands on from now.
    pub fn match_on_catalog_keys(&mut self, keys: HashMap<TableName, Vec<String>>) {
        self.catalog_keys = keys;
    }

    /// `schema` with its catalog primary key (from
    /// [`ChangeStream::match_on_catalog_keys`]).
    fn keyed(&mut self, schema: Arc<TableSchema>) -> Arc<TableSchema> {
        match self.catalog_keys.get(&schema.name).cloned() {
            Some(names) => self.keyed_on(schema, &names),
            None => schema,
        }
    }

    /// `schema`, when streamed under REPLICA IDENTITY FULL without a key,
    /// keyed on the columns `names` (its catalog primary key) and installed
    /// in the assembler so that the changes after it are keyed the same
    /// way; otherwise `schema` as it is.
    pub fn keyed_on(&mut self, schema: Arc<TableSchema>, names: &[String]) -> Arc<TableSchema> {
        if schema.replica_identity != ReplicaIdentity::Full || !schema.primary_key.is_empty() || names.is_empty() {
            return schema;
        }
        let Some(pk) = names.iter().map(|n| schema.column_index(n)).collect::<Option<Vec<usize>>>() else {
            return schema;
        };
        let mut keyed = (*schema).clone();
        keyed.primary_key = pk;
        let keyed = Arc::new(keyed);
        self.assembler.insert_relation(keyed.clone());
        keyed
    }
}

impl ChangeSource for ChangeStream {
    type Large = SpilledTransaction;
    type Error = ChangeStreamError;

    async fn next_event(&mut self) -> Result<Option<SourceEvent<SpilledTransaction>>, ChangeStreamError> {
        loop {
            return Ok(Some(match self.next().await? {
                None => return Ok(None),
                Some(AssemblerEvent::Transaction(tx)) => SourceEvent::Transaction(tx),
                Some(AssemblerEvent::Spilled(s)) => SourceEvent::Large(s),
                Some(AssemblerEvent::Relation { current, .. }) => SourceEvent::Relation(self.keyed(current)),
                Some(AssemblerEvent::Message { .. }) => continue,
            }));
        }
    }

    fn confirm(&mut self, applied: Lsn) {
        ChangeStream::confirm(self, applied)
    }

    async fn keep_alive(&mut self) -> Result<(), ChangeStreamError> {
        self.send_status().await
    }

    fn source_end(&self) -> Lsn {
        self.server_wal_end()
    }

    fn pending_signal(&self) -> watch::Receiver<bool> {
        ChangeStream::pending_signal(self)
    }

    async fn close(self) -> Result<(), ChangeStreamError> {
        ChangeStream::close(self).await
    }
}

/// Writes a transactional logical message into the source's WAL, in a
/// transaction of its own, and returns its LSN. Every transaction committed
/// before this call commits below that LSN, so once an apply has passed it
/// the target holds all of them: a catch-up proven by the stream itself, not
/// by slot positions. The transaction carrying the message reaches the
/// stream on every supported version (see [`MESSAGES_SINCE`]). The error is
/// the server's.
pub async fn write_marker(client: &Client, prefix: &str, content: &str) -> Result<Lsn, MarkerError> {
    let row = client.query_one("SELECT pg_logical_emit_message(true, $1, $2)::text", &[&prefix, &content]).await?;
    let text: String = row.get(0);
    text.parse::<Lsn>().map_err(|_| MarkerError::NotAnLsn(text))
}

/// Writing a marker message failed.
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error("writing a marker (pg_logical_emit_message): {}", pg_error_text(.0))]
    Sql(#[from] tokio_postgres::Error),
    #[error("writing a marker: the server answered {0:?}, not an LSN")]
    NotAnLsn(String),
}

impl MarkerError {
    /// A source restarting (by SQLSTATE), never by message text.
    pub fn is_retryable(&self) -> bool {
        match self {
            MarkerError::Sql(e) => crate::error_policy::postgres(e).is_transient(),
            MarkerError::NotAnLsn(_) => false,
        }
    }
}

/// What to ask pgoutput for on a server of `server_version_num` `version`.
fn start_options(version: i32, publication: &str) -> StartReplicationOptions {
    StartReplicationOptions {
        // Streaming of in-progress transactions needs protocol 2 (PG 14+).
        // Below 14 a large transaction arrives whole at its commit and the
        // assembler spills it (invariant *bounded memory*).
        proto_version: if version >= MESSAGES_SINCE { 2 } else { 1 },
        publication_names: vec![publication.to_string()],
        streaming: version >= MESSAGES_SINCE,
        // pgoutput rejects the `messages` option before 14. The markers
        // still work there: see [`MESSAGES_SINCE`].
        messages: version >= MESSAGES_SINCE,
        binary: false,
        status_interval: Duration::from_secs(1),
    }
}

/// How long a slot held by another connection is waited for before that is
/// reported as an error.
const SLOT_RELEASE_PATIENCE: Duration = Duration::from_secs(15);

/// Waits for another connection to let go of `slot`: after a crash or a
/// `kill -9` of xdb, PostgreSQL's walsender keeps the slot until it notices
/// its client is gone, which can take a moment. Returns the pid still
/// holding the slot after [`SLOT_RELEASE_PATIENCE`], or `None` once it is free.
pub async fn wait_until_slot_free(
    client: &Client,
    slot: &str,
    holder: i32,
) -> Result<Option<i32>, tokio_postgres::Error> {
    let deadline = Instant::now() + SLOT_RELEASE_PATIENCE;
    let mut holder = holder;
    tracing::info!(slot, pid = holder, "the replication slot is still held by another connection; waiting for it");
    loop {
        if Instant::now() >= deadline {
            return Ok(Some(holder));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let row = client
            .query_opt(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()",
                &[&slot],
            )
            .await?;
        match row.and_then(|r| r.get::<_, Option<i32>>(0)) {
            None => return Ok(None),
            Some(pid) => holder = pid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_ask_for_messages_and_streaming_only_from_14() {
        for version in [120022, 130023] {
            let o = start_options(version, "p");
            assert_eq!((o.proto_version, o.streaming, o.messages), (1, false, false), "{version}");
        }
        for version in [140000, 150014, 180004] {
            let o = start_options(version, "p");
            assert_eq!((o.proto_version, o.streaming, o.messages), (2, true, true), "{version}");
        }
    }
}

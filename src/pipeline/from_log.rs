//! `xdb sync` from a replicated log (`source.url: nats://…`) into any xdb
//! target: the copy's `op: r` events and every source transaction
//! (assembled by `source/nats/`) applied by the same [`SinkWriter`] as a
//! direct sync — batches of whole transactions, in commit order, with the
//! position in the same target transaction (invariants *commit order*,
//! *exactly once*). The position is the stream sequence of the last
//! applied END (or copied row), kept in the target's state table under the
//! plan's slot name; a restart reads from the message after it. Table
//! shapes come from the original PostgreSQL (`source.validate_url`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::backoff::reconnecting;
use super::sync::SyncOptions;
use crate::copy;
use crate::mapping;
use crate::model::{Change, Lsn, TableName, TableSchema, Transaction};
use crate::nats::{Log, NatsTarget};
use crate::pg_conn::client;
use crate::plan::naming::Naming;
use crate::plan::{Plan, SecretUrl};
use crate::sink::lock::ApplierLock;
use crate::sink::writer::{SinkError, SinkWriter};
use crate::sink::{TargetConn, TargetError};
use crate::source::log_events::LogItem;
use crate::source::nats::{LogReader, LogSourceError};
use crate::source::postgres::catalog::{load_table, resolve_event_shape, CatalogError, TypeCache};

#[derive(Debug, thiserror::Error)]
pub enum FromLogError {
    #[error("{0}")]
    Source(#[from] LogSourceError),
    #[error("{0}")]
    Log(#[from] crate::nats::LogError),
    #[error("{0}")]
    Sink(#[from] SinkError),
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("original source (source.validate_url): {0}")]
    SourceConnect(#[from] client::ConnectError),
    #[error("original source (source.validate_url): {0}")]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    Copy(#[from] copy::CopyError),
    #[error("table {0} does not exist on the original source")]
    MissingTable(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Sync(#[from] Box<super::sync::SyncError>),
    /// Invariant *schema drift*: stopped with the statement to run.
    #[error("{0}")]
    SchemaDrift(String),
    #[error("could not start the streaming thread: {0}")]
    StreamThread(#[source] std::io::Error),
    #[error(
        "target table for {table} already holds {rows} rows that xdb did not write: empty or drop it (xdb never \
         writes into a table it did not fill itself)"
    )]
    TargetNotEmpty { table: String, rows: u64 },
    #[error(
        "another `xdb sync` is applying the log to {target} under the same position (slot {slot}): it holds \
         the applier's lock there. Stop it first (two appliers of one position would apply the same messages \
         twice); several appliers each need a plan with its own slot name"
    )]
    ApplierRunning { slot: String, target: String },
}

impl FromLogError {
    fn is_retryable(&self) -> bool {
        match self {
            FromLogError::Source(e) => e.is_retryable(),
            FromLogError::Log(e) => e.is_retryable(),
            FromLogError::Sink(e) => e.is_retryable(),
            FromLogError::Target(e) => e.is_retryable(),
            FromLogError::SourceConnect(e) => e.retryable,
            FromLogError::Catalog(CatalogError::Query { source, .. }) => {
                crate::error_policy::postgres(source).is_transient()
            }
            FromLogError::Copy(e) => e.is_retryable(),
            FromLogError::Sync(e) => e.is_retryable(),
            _ => false,
        }
    }
}

pub async fn run(plan: &Plan, log_url: &SecretUrl, options: &SyncOptions) -> Result<(), FromLogError> {
    let target = NatsTarget::parse(log_url, &plan.name).map_err(FromLogError::Config)?;
    // A PostgreSQL target's own triggers stay quiet (invariant *quiet
    // target triggers*), as on the direct path.
    let plan = crate::sink::postgres::triggers::for_target(plan).await.map_err(copy::CopyError::from)?;
    // On the stream's own thread, as the direct stream (`own_thread`).
    let options = options.clone();
    crate::own_thread::run("xdb-from-log", move || async move {
        reconnecting(options.max_retries, FromLogError::is_retryable, || session(&plan, &target, &options)).await
    })
    .await
    .map_err(FromLogError::StreamThread)?
}

/// How long the reader waits for more before a batch is committed.
const IDLE: Duration = Duration::from_millis(50);

/// How long a batch waits for the next transaction once it holds one:
/// nothing more within this means the log holds nothing more right now.
const BATCH_IDLE: Duration = Duration::from_millis(2);

/// How long a consumer waits for the applier's lock: a killed
/// predecessor's connection can take a moment to be closed by the server.
const LOCK_WAIT: Duration = Duration::from_secs(10);

async fn session(plan: &Plan, target: &NatsTarget, options: &SyncOptions) -> Result<(), FromLogError> {
    // Held until the session ends (invariant *exactly once*: one applier
    // per position).
    let _lock = ApplierLock::acquire(&plan.target.url, &plan.source.slot, LOCK_WAIT).await?.ok_or_else(|| {
        FromLogError::ApplierRunning { slot: plan.source.slot.clone(), target: plan.target.url.redacted() }
    })?;
    let (writer, schemas, applied, catalog, target_only) = open_writer(plan, target).await?;
    // With --until-caught-up: done once everything the stream held now is read.
    let until = if options.until_caught_up { Some(Log::connect(target).await?.tail().await?.0) } else { None };
    let mut reader = LogReader::open(target, applied.0, schemas.clone(), catalog).await?;
    tracing::info!(stream = %target.stream, after = applied.0, "applying the log");
    let mut a = Applier {
        plan,
        writer,
        schemas,
        target_only,
        batch: Vec::new(),
        rows: 0,
        in_parts: false,
        first_at: None,
        max_rows: plan.apply.max_batch_rows.max(1),
        // A batch waits for more at most `apply.max_batch_delay_ms` after
        // its first transaction, as the direct path's batcher: under a
        // steady stream the log never falls idle, and a batch that waited
        // for `max_batch_rows` would hold each change for seconds.
        max_delay: Duration::from_millis(plan.apply.max_batch_delay_ms),
    };
    let r = a.run(&mut reader, until).await;
    if a.in_parts && r.is_err() {
        a.writer.abort_parts().await;
    }
    r
}

/// The applying side of a session: whole transactions batched as the
/// direct path batches them, a large one's parts in one target
/// transaction, copy markers and shape changes in order between batches.
struct Applier<'a> {
    plan: &'a Plan,
    writer: SinkWriter,
    schemas: Vec<Arc<TableSchema>>,
    target_only: HashMap<TableName, Vec<String>>,
    batch: Vec<Transaction>,
    rows: usize,
    /// Inside a large transaction whose parts are being applied.
    in_parts: bool,
    /// When the batch got its first transaction.
    first_at: Option<std::time::Instant>,
    max_rows: usize,
    max_delay: Duration,
}

impl Applier<'_> {
    async fn run(&mut self, reader: &mut LogReader, until: Option<u64>) -> Result<(), FromLogError> {
        loop {
            let wait = self.wait().await?;
            let item = reader.next(wait).await?;
            match item {
                Some(LogItem::Part(part)) => self.part(&part).await?,
                Some(LogItem::Tx(tx)) if self.in_parts => self.end_parts(&tx).await?,
                Some(LogItem::Schema { .. }) if self.in_parts => {
                    unreachable!("the reader refuses a new shape after parts of its transaction")
                }
                Some(LogItem::Tx(tx)) => {
                    self.rows += tx.changes.len();
                    self.batch.push(tx);
                    if self.rows >= self.max_rows {
                        self.flush().await?;
                    }
                }
                None => {
                    self.flush().await?;
                    // Not inside a large transaction whose parts are
                    // applied already: those commit with its END only.
                    if until.is_some_and(|u| reader.seen >= u) && !self.in_parts {
                        tracing::info!(applied = self.writer.applied().0, "the target holds everything the log held");
                        return Ok(());
                    }
                }
                Some(marker @ (LogItem::SnapshotStart { .. } | LogItem::SnapshotEnd { .. })) => {
                    self.flush().await?;
                    snapshot_marker(self.plan, &mut self.writer, &self.schemas, marker).await?;
                }
                Some(LogItem::Schema { table, renamed, catalog_unknown }) => {
                    self.flush().await?;
                    self.shape(table, &renamed, &catalog_unknown).await?;
                }
            }
        }
    }

    /// How long to wait for the next item: the batch is committed once it
    /// waited `max_delay`, and waits at most [`BATCH_IDLE`] for more.
    async fn wait(&mut self) -> Result<Duration, FromLogError> {
        if self.batch.is_empty() {
            self.first_at = None;
            return Ok(IDLE);
        }
        let first = *self.first_at.get_or_insert_with(std::time::Instant::now);
        let left = self.max_delay.saturating_sub(first.elapsed());
        if left.is_zero() {
            self.flush().await?;
            return Ok(IDLE);
        }
        Ok(left.min(BATCH_IDLE))
    }

    /// Commits the batch with its position (nothing when empty).
    async fn flush(&mut self) -> Result<(), FromLogError> {
        if !self.batch.is_empty() {
            self.writer.apply_with_retry(&self.batch).await?;
            self.batch.clear();
            self.rows = 0;
        }
        self.first_at = None;
        Ok(())
    }

    /// A large transaction: its parts and its closing Tx in one target
    /// transaction, nothing else in between (the reader yields nothing
    /// else before the END).
    async fn part(&mut self, part: &Transaction) -> Result<(), FromLogError> {
        self.flush().await?;
        if !self.in_parts {
            self.writer.begin_parts().await?;
            self.in_parts = true;
        }
        self.writer.apply_part(part).await?;
        Ok(())
    }

    async fn end_parts(&mut self, tx: &Transaction) -> Result<(), FromLogError> {
        if !tx.changes.is_empty() {
            self.writer.apply_part(tx).await?;
        }
        self.writer.commit_parts(tx.end_lsn, tx.commit_time_micros).await?;
        self.in_parts = false;
        Ok(())
    }

    /// A new shape, followed as the direct path follows a Relation
    /// message, with the renames the producer's catalog confirmed.
    async fn shape(
        &mut self,
        table: Arc<TableSchema>,
        renamed: &[(String, String)],
        catalog_unknown: &[String],
    ) -> Result<(), FromLogError> {
        refuse_unknown_added(self.plan, &table, catalog_unknown).await?;
        self.writer.relation_changed_with(table.clone(), Some(renamed)).await.map_err(|e| match e {
            SinkError::SchemaDrift(m) => FromLogError::SchemaDrift(m),
            other => FromLogError::Sink(other),
        })?;
        // A target-only column the new shape has is the source's again
        // (added on the target by the user, or renamed).
        if let Some(extra) = self.target_only.get_mut(&table.name) {
            extra.retain(|c| table.column_index(c).is_none());
            self.writer.expect_dropped_columns(table.name.clone(), extra.clone());
        }
        match self.schemas.iter_mut().find(|s| s.name == table.name) {
            Some(s) => *s = table,
            None => self.schemas.push(table),
        }
        Ok(())
    }
}

/// What [`open_writer`] opens: the writer, the tables' shapes, the applied
/// position, the original source and the target's columns the source's
/// shape lacks, per table.
type Opened = (SinkWriter, Vec<Arc<TableSchema>>, Lsn, tokio_postgres::Client, HashMap<TableName, Vec<String>>);

/// The tables as the log last described them at the target's position
/// (invariant *schema drift through the log*; the original PostgreSQL's
/// catalog for a log without schema-change events), their target tables
/// (created when missing, refused when they hold rows xdb did not write)
/// and the writer at the target's stored stream sequence; with the
/// original source's connection, which resolves later shapes' types.
async fn open_writer(plan: &Plan, target: &NatsTarget) -> Result<Opened, FromLogError> {
    let slot = &plan.source.slot;
    let catalog = client::connect(&plan.source.url, "xdb sync (log)").await?;
    let mut conn = TargetConn::connect(&plan.target.url).await?;
    let kind = conn.target_kind().await?;
    conn.ensure_state_tables().await?;
    let applied = conn.read_position(slot).await?.map(|p| p.applied_lsn).unwrap_or(Lsn::ZERO);
    let states = conn.read_tables(slot).await?;
    let in_log = crate::source::nats::shapes::shapes_at(target, applied.0).await?;
    let mut types = TypeCache::new();
    let mut schemas: Vec<Arc<TableSchema>> = Vec::new();
    for t in &plan.tables {
        let base = load_table(&catalog, &mut types, t, plan.mapping.generated)
            .await?
            .ok_or_else(|| FromLogError::MissingTable(t.to_string()))?;
        let s = match in_log.get(t) {
            Some(p) => resolve_event_shape(p, &catalog, &mut types, Some(&base)).await?,
            None => base,
        };
        // A table keyed by its replica identity index is matched on it, as
        // the direct path matches it (a log written before the producer
        // named that key in its events says no key).
        schemas.push(Arc::new(s.keyed_by_identity_index()));
    }
    // The target's tables as they are: a shape change it already followed
    // (DDL committed before the position moved) or a column the user
    // dropped on it after a stop is not followed again (as the direct path).
    let mut on_target = Vec::new();
    let mut target_only = Vec::new();
    let naming = Naming::of_plan(plan);
    for s in &schemas {
        let name = s.name.to_string();
        if conn.table_rows(&naming.table(&s.name)).await?.is_some() && states.iter().any(|st| st.table == name) {
            let (t, extra) = super::sync::as_on_target(&mut conn, &naming, s, false).await.map_err(Box::new)?;
            on_target.push(t);
            target_only.push((s.name.clone(), extra));
        } else {
            on_target.push(s.clone());
        }
    }
    let mapped = crate::mapping::map_tables(plan, &kind, &on_target).map_err(copy::CopyError::from)?;
    for m in &mapped {
        let name = m.source.name.to_string();
        if states.iter().any(|s| s.table == name) {
            continue;
        }
        match conn.table_rows(&m.target_table()).await? {
            None => {
                let ddl = mapping::create_table_ddl(m, &kind);
                conn.execute_batch(&ddl, &format!("creating the target table for {name}")).await?;
            }
            Some(0) => {}
            Some(rows) => return Err(FromLogError::TargetNotEmpty { table: name, rows }),
        }
        conn.record_table(slot, &name, Lsn::ZERO, false, 0).await?;
    }
    let sync_lsns: HashMap<String, Lsn> = mapped.iter().map(|m| (m.source.name.to_string(), Lsn::ZERO)).collect();
    let mut writer = SinkWriter::new(conn, kind, plan, super::sync::pg_live(plan), mapped, sync_lsns, applied)?;
    for (table, extra) in &target_only {
        writer.expect_dropped_columns(table.clone(), extra.clone());
    }
    Ok((writer, schemas, applied, catalog, target_only.into_iter().collect()))
}

/// An added column whose NOT NULL and default the producer could not read
/// (renamed or dropped on the source before it read the ALTER): adding it
/// nullable without default would leave NULL where the source has its
/// default (no silent data change), so the user adds it on the target as
/// it was added on the source; then it is the target's already.
async fn refuse_unknown_added(plan: &Plan, table: &TableSchema, unknown: &[String]) -> Result<(), FromLogError> {
    if unknown.is_empty() {
        return Ok(());
    }
    let mut conn = TargetConn::connect(&plan.target.url).await?;
    let on_target = conn.column_names(&Naming::of_plan(plan).table(&table.name)).await?.unwrap_or_default();
    let missing: Vec<&String> = unknown.iter().filter(|c| !on_target.contains(c)).collect();
    let Some(first) = missing.first() else { return Ok(()) };
    let ty = table.columns.iter().find(|c| &c.name == *first).map(|c| c.pg_type.sql_name()).unwrap_or_default();
    Err(FromLogError::SchemaDrift(format!(
        "schema change on {}: column {first} was added on the source and renamed or dropped there before the \
         producer read the change, so its NOT NULL and default are no longer in the source's catalog (rows that \
         existed at the ALTER hold its default there). xdb stopped before applying any later change. To continue, \
         add it on the target as it was added on the source (for example `ALTER TABLE … ADD COLUMN {first} {ty} \
         NOT NULL DEFAULT …`, with the source's definition), then run `xdb sync` again",
        table.name
    )))
}

/// The log's copy markers: a copy (re)starting empties the tables, in the
/// same target transaction as the position; its end records them as copied.
async fn snapshot_marker(
    plan: &Plan,
    writer: &mut SinkWriter,
    schemas: &[Arc<TableSchema>],
    marker: LogItem,
) -> Result<(), FromLogError> {
    let slot = &plan.source.slot;
    match marker {
        LogItem::SnapshotStart { seq } => {
            let empty = Transaction {
                xid: 0,
                commit_lsn: Lsn(seq),
                end_lsn: Lsn(seq),
                commit_time_micros: 0,
                changes: vec![Change::Truncate { tables: schemas.to_vec(), cascade: false, restart_identity: false }],
            };
            writer.apply_with_retry(&[empty]).await?;
        }
        LogItem::SnapshotEnd { seq } => {
            let mark =
                Transaction { xid: 0, commit_lsn: Lsn(seq), end_lsn: Lsn(seq), commit_time_micros: 0, changes: vec![] };
            writer.apply_with_retry(&[mark]).await?;
            let mut conn = TargetConn::connect(&plan.target.url).await?;
            for t in &plan.tables {
                conn.record_table(slot, &t.to_string(), Lsn::ZERO, true, 0).await?;
            }
            tracing::info!("the log's initial copy is applied");
        }
        _ => {}
    }
    Ok(())
}

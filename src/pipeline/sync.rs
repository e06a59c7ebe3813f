//! `xdb sync`: the initial copy when not done, then every committed source
//! transaction applied to the target, continuously, until stopped.
//!
//! Invariants kept here (docs/architecture.md: *per-table sync LSN*, *commit order*,
//! *exactly once*, *schema drift*, *bounded memory*, *slot continuity*):
//! - transactions are applied whole, in commit order, several per target
//!   transaction; the applied end LSN is written in the same target
//!   transaction, and only after that commit is it confirmed to the source;
//! - a change to a table is skipped when its commit LSN is at or below the
//!   table's sync LSN (the copy already holds it), and a transaction ending
//!   at or below the applied position is skipped (it is already applied);
//! - a schema message that adds columns adds them on the target before the
//!   next change is applied; one that drops or re-types a column stops
//!   `sync` with what changed and how to continue;
//! - the reader hands transactions to the applier over a bounded channel:
//!   a slow or absent target holds the stream back instead of buffering it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::backoff::Backoff;
use super::batcher::BatchPolicy;
use super::generated_fill::{FillError as GeneratedFillError, FilledSink, GeneratedFill};
use super::metrics::SyncMetrics;
use super::stream::{self, RunSettings};
use crate::copy::{self, CopyOptions};
use crate::model::{Lsn, TableName, TableSchema};
use crate::pg_conn::client;
use crate::plan::naming::Naming;
use crate::plan::Plan;
use crate::sink::writer::{SinkError, SinkWriter};
use crate::sink::{TargetConn, TargetError};
use crate::source::postgres::catalog::{load_indexes, load_planned, CatalogError};
use crate::source::postgres::change_stream::{ChangeStream, ChangeStreamConfig, ChangeStreamError, Continuity};

/// Why `sync` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("initial copy: {0}")]
    Copy(#[from] copy::CopyError),
    #[error("target: {0}")]
    TargetTriggers(#[from] crate::sink::postgres::triggers::TriggerError),
    #[error("source: {0}")]
    Stream(#[from] ChangeStreamError),
    #[error("{0}")]
    Sink(SinkError),
    #[error("source: {0}")]
    SourceConnect(#[from] client::ConnectError),
    #[error("source: {0}")]
    Catalog(#[from] CatalogError),
    #[error("table {0} no longer exists on the source")]
    TableGone(String),
    #[error("source: {0}")]
    Marker(#[from] crate::source::postgres::change_stream::MarkerError),
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("the source ended the replication stream (server shutting down or restarting)")]
    StreamEnded,
    #[error("the target has no table for {0}; run `xdb snapshot` first")]
    NoTargetTable(String),
    #[error("{0}")]
    SchemaDrift(String),
    #[error("type mapping:\n{0}")]
    Mapping(#[from] crate::mapping::MapTablesError),
    #[error("{0}")]
    Generated(GeneratedFillError),
    #[error("could not start the streaming thread: {0}")]
    StreamThread(#[source] std::io::Error),
}

/// The writer's own errors keep their meaning when they come through the
/// generated-column fill.
impl From<GeneratedFillError> for SyncError {
    fn from(e: GeneratedFillError) -> Self {
        match e {
            GeneratedFillError::Sink(e) => e.into(),
            other => SyncError::Generated(other),
        }
    }
}

/// A schema change the writer stops on is the command's own error.
impl From<stream::StreamEnded> for SyncError {
    fn from(_: stream::StreamEnded) -> Self {
        SyncError::StreamEnded
    }
}

impl From<SinkError> for SyncError {
    fn from(e: SinkError) -> Self {
        match e {
            SinkError::SchemaDrift(m) => SyncError::SchemaDrift(m),
            other => SyncError::Sink(other),
        }
    }
}

impl SyncError {
    /// Decided by error code where the driver error was converted
    /// ([`crate::error_policy`]), never by message text.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            SyncError::Stream(e) => e.is_retryable(),
            SyncError::Sink(e) => e.is_retryable(),
            SyncError::SourceConnect(e) => e.retryable,
            SyncError::Catalog(CatalogError::Query { source, .. }) => {
                crate::error_policy::postgres(source).is_transient()
            }
            SyncError::Target(e) => e.is_retryable(),
            SyncError::Marker(e) => e.is_retryable(),
            SyncError::StreamEnded => true,
            SyncError::Generated(e) => e.is_retryable(),
            SyncError::TargetTriggers(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// Options of `xdb sync`.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub copy: CopyOptions,
    /// Stop once the target has applied everything the source had written
    /// when this point was reached (tests, one-shot catch-up).
    pub until_caught_up: bool,
    /// Give up after this many consecutive failed reconnects (None: never).
    pub max_retries: Option<u32>,
    /// Stream even when the slot has confirmed past the target's position
    /// (the operator's explicit override of invariant "slot continuity").
    pub accept_slot_position: bool,
}

/// Shared live state (status line, metrics endpoint).
pub type SharedMetrics = Arc<Mutex<SyncMetrics>>;

/// The prefix of the marker `--until-caught-up` waits for.
pub const CATCH_UP_PREFIX: &str = "xdb.caught_up";

/// Runs until a signal (Ok), a permanent error, or — with
/// `until_caught_up` — until the target has caught up.
pub async fn run(plan: &Plan, options: &SyncOptions, metrics: SharedMetrics) -> Result<(), SyncError> {
    let outcome = copy_phase(plan, options).await?;
    if !outcome.summary.is_empty() {
        eprint!("{}", outcome.summary);
    }
    for w in &outcome.warnings {
        tracing::warn!("{w}");
    }
    let (plan, options) = (plan.clone(), options.clone());
    crate::own_thread::run("xdb-stream", move || async move { stream(&plan, &options, &metrics).await })
        .await
        .map_err(SyncError::StreamThread)?
}

/// The stream, reconnected after retryable errors, until a stop or a
/// permanent error (on the stream's own thread: [`crate::own_thread`]).
async fn stream(plan: &Plan, options: &SyncOptions, metrics: &SharedMetrics) -> Result<(), SyncError> {
    let mut backoff = Backoff::new(options.max_retries);
    let mut stop = std::pin::pin!(crate::tail::shutdown_signal());
    loop {
        match Box::pin(stream_once(plan, options, metrics, &mut stop)).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() && backoff.may_retry() => {
                if !backoff.wait(&e, "reconnecting", &mut stop).await {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The copy (or the check that it is done), retried like the stream when
/// the source or the target is away for a while (a restart while `sync`
/// starts). Finished ranges are kept across attempts.
async fn copy_phase(plan: &Plan, options: &SyncOptions) -> Result<copy::CopyOutcome, SyncError> {
    let mut backoff = Backoff::new(options.max_retries);
    let mut stop = std::pin::pin!(crate::shutdown::requested());
    loop {
        match copy::run(plan, &options.copy).await {
            Ok(o) => return Ok(o),
            Err(e) if e.is_retryable() && backoff.may_retry() => {
                if !backoff.wait(&e, "retrying the copy", &mut stop).await {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// One streaming session, in three phases: the writer (target position,
/// tables and their shapes as the target has them), the stream (opened at
/// the target's position, invariant *slot continuity*), then the reader and
/// the applier joined by a bounded channel until a stop, an error or (with
/// `--until-caught-up`) the catch-up marker.
async fn stream_once(
    plan: &Plan,
    options: &SyncOptions,
    metrics: &SharedMetrics,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<(), SyncError> {
    // The session writes past a PostgreSQL target's own triggers, as the
    // copy did (invariant *quiet target triggers*); read again each
    // session, so a target away for a moment is retried like any outage.
    let plan = &crate::sink::postgres::triggers::for_target(plan).await?;
    let slot = plan.source.slot.clone();
    let catalog = client::connect(&plan.source.url, "xdb sync").await?;
    let (writer, catalog_keys) = prepare_writer(plan, &catalog).await?;
    let applied = writer.applied();
    // Before 18, `mapping.generated: source` recomputes generated columns.
    let writer = FilledSink::new(writer, GeneratedFill::open(plan).await?);

    let config = stream_config(plan, applied, options);
    let mut stream = ChangeStream::open(&plan.source.url, catalog, &config).await?;
    stream.match_on_catalog_keys(catalog_keys);
    tracing::info!(slot = %slot, from = %applied, "streaming changes");
    // With --until-caught-up, "caught up" means past a marker written now:
    // XLogData's wal_end is only the position of the record being sent, so
    // it cannot tell a drained channel from a backlog still on its way.
    let marker = if options.until_caught_up { Some(stream.emit_marker(CATCH_UP_PREFIX).await?) } else { None };

    let policy = BatchPolicy {
        max_rows: plan.apply.max_batch_rows.max(1),
        max_delay: Duration::from_millis(plan.apply.max_batch_delay_ms),
        linger: stream::CATCH_UP_LINGER,
        max_linger: stream::CATCH_UP_MAX_LINGER,
    };
    let settings = RunSettings { policy, marker, queued_items: QUEUED_ITEMS, queued_rows: QUEUED_ROWS };
    Box::pin(stream::run::<_, _, SyncError>(stream, writer, settings, metrics, stop)).await?;
    Ok(())
}

/// The plan's slot read from `start` (the target's position), as `sync`
/// reads it directly and into a log.
pub(crate) fn stream_config(plan: &Plan, start: Lsn, options: &SyncOptions) -> ChangeStreamConfig {
    ChangeStreamConfig {
        slot: plan.source.slot.clone(),
        publication: plan.source.publication.clone(),
        start,
        heartbeat_interval: Duration::from_secs(plan.source.heartbeat_interval_secs.max(1)),
        spill_threshold_bytes: crate::tail::spill_threshold_bytes(),
        spill_dir: std::env::temp_dir(),
        application_name: "xdb sync".into(),
        continuity: if options.accept_slot_position { Continuity::AcceptAhead } else { Continuity::Strict },
        temporary: false,
    }
}

/// Transactions waiting for the applier, at most: enough for the next
/// batch to pile up while one is applied.
const QUEUED_ITEMS: usize = 64;

/// Changes held between reader and applier, at most (transactions larger
/// than `spill_threshold_bytes` are on disk and count as one).
const QUEUED_ROWS: usize = 200_000;

/// The writer for this session: the target's applied position and per-table
/// sync LSNs, the planned tables as the target has them (a column dropped
/// on the source but kept on the target is expected), the unique columns
/// whose order must be kept, and the catalog keys of tables streamed with
/// REPLICA IDENTITY FULL.
async fn prepare_writer(
    plan: &Plan,
    catalog: &tokio_postgres::Client,
) -> Result<(SinkWriter, HashMap<TableName, Vec<String>>), SyncError> {
    let slot = &plan.source.slot;
    let mut target = TargetConn::connect(&plan.target.url).await?;
    let position = target.read_position(slot).await?;
    let applied = position.map(|p| p.applied_lsn).unwrap_or(Lsn::ZERO);
    let sync_lsns: HashMap<String, Lsn> =
        target.read_tables(slot).await?.into_iter().map(|t| (t.table, t.sync_lsn)).collect();
    let kind = target.target_kind().await?;

    let schemas: HashMap<TableName, Arc<TableSchema>> =
        load_planned(catalog, &plan.tables, plan.mapping.generated, |t| SyncError::TableGone(t.to_string()))
            .await?
            .into_iter()
            .map(|s| (s.name.clone(), Arc::new(s)))
            .collect();
    let mut schema_list: Vec<Arc<TableSchema>> = Vec::new();
    let mut target_only = Vec::new();
    let naming = Naming::of_plan(plan);
    for t in &plan.tables {
        let Some(s) = schemas.get(t) else { continue };
        let (on_target, extra) = as_on_target(&mut target, &naming, s, true).await?;
        schema_list.push(on_target);
        target_only.push((t.clone(), extra));
    }
    let mapped = crate::mapping::map_tables(plan, &kind, &schema_list)?;
    let mut writer = SinkWriter::new(target, kind, plan, pg_live(plan), mapped, sync_lsns, applied)?;
    for (table, extra) in target_only {
        writer.expect_dropped_columns(table, extra);
    }
    for s in schemas.values() {
        writer.follow_generated(&s.name, Some(s)).await?;
    }
    // The copy rebuilt the source's unique indexes on the target: the writer
    // must keep source order wherever one of them could see it.
    for s in schemas.values() {
        let indexes = load_indexes(catalog, s.oid).await?;
        let mut cols: Vec<String> = Vec::new();
        for ix in indexes.iter().filter(|ix| ix.unique) {
            // An expression or partial unique index is not rebuilt, but an
            // operator may have recreated it by hand: count every column.
            let names = if ix.definition.is_some() {
                s.columns.iter().map(|c| c.name.clone()).collect()
            } else {
                ix.columns.clone()
            };
            cols.extend(names.into_iter().filter(|n| !cols.contains(n)).collect::<Vec<_>>());
        }
        writer.expect_unique_columns(s.name.clone(), cols);
    }
    // pgoutput marks every column as key under REPLICA IDENTITY FULL (the
    // assembler then leaves the key empty): a table that has a primary key
    // is matched on it, not on all its old values (which finds nothing when
    // a value does not compare equal on the target, and fails outright on a
    // PostgreSQL target for a `json` column, which has no equality).
    let catalog_keys: HashMap<TableName, Vec<String>> = schemas
        .values()
        .filter(|s| !s.primary_key.is_empty())
        .map(|s| (s.name.clone(), s.primary_key.iter().map(|&i| s.columns[i].name.clone()).collect()))
        .collect();
    Ok((writer, catalog_keys))
}

/// The table as the target holds it. Columns added on the source since the
/// target table was made are left out, so that the stream's Relation
/// message for them goes through the schema-drift path, which adds them to
/// the target before any change that uses them is applied. Also returns the
/// target's columns the source no longer has (dropped while xdb was away).
/// `from_catalog`: `schema` is the source's catalog now (the direct path),
/// not a shape read back from a log.
pub(crate) async fn as_on_target(
    target: &mut TargetConn,
    naming: &Naming,
    schema: &Arc<TableSchema>,
    from_catalog: bool,
) -> Result<(Arc<TableSchema>, Vec<String>), SyncError> {
    let table = &schema.name;
    let names =
        target.column_names(&naming.table(table)).await?.ok_or_else(|| SyncError::NoTargetTable(table.to_string()))?;
    // Generated columns are the target's own (`mapping::generated`), not drops.
    let extra: Vec<String> = names
        .iter()
        .filter(|n| schema.column_index(n).is_none() && !schema.generated.iter().any(|g| &g.name == *n))
        .cloned()
        .collect();
    if schema.columns.iter().all(|c| names.contains(&c.name)) {
        return Ok((schema.clone(), extra));
    }
    // ADD COLUMN appends: a column of the source's catalog the target lacks
    // before one it has, when the target has no column the source lacks (a
    // rename made while sync was stopped, which the stream's Relation
    // confirms), was there when the table was copied, and the target lost
    // it. Followed as an added column it would come back empty for every
    // row. (A shape read back from a log is older than the catalog: the
    // target may be past it, e.g. a column dropped there as a stop said.)
    let last_kept = schema.columns.iter().rposition(|c| names.contains(&c.name));
    if let Some(lost) = schema
        .columns
        .iter()
        .enumerate()
        .find(|(i, c)| from_catalog && extra.is_empty() && Some(*i) < last_kept && !names.contains(&c.name))
        .map(|(_, c)| c)
    {
        return Err(SyncError::SchemaDrift(format!(
            "{table}: the target table has no column {col}, which the source has had since before the copy (a column \
             after it is on the target): it was dropped on the target. xdb applied nothing. Add it back on the target \
             (ALTER TABLE {t} ADD COLUMN {c} <type>; `xdb schema` prints the type), run `xdb sync`, then `xdb \
             validate --repair` to give the rows their values again",
            col = lost.name,
            t = naming.table_ident(table),
            c = naming.ident(&lost.name),
        )));
    }
    let restricted = schema.restricted_to(&names).map(Arc::new).ok_or_else(|| {
        SyncError::SchemaDrift(format!(
            "schema change on {table}: a primary-key column is missing on the target; recreate the target table \
             (drop it and run `xdb snapshot` again)"
        ))
    })?;
    Ok((restricted, extra))
}

/// Waits until `sync` (running elsewhere in this process or in another one)
/// has finished the copy of every planned table and applied everything the
/// source had committed when the copy was seen done: a marker is written
/// into the source WAL and the target's applied position must pass it.
pub async fn wait_until_caught_up(plan: &Plan) -> Result<Lsn, SyncError> {
    let slot = &plan.source.slot;
    let mut target = loop {
        match TargetConn::connect(&plan.target.url).await {
            Ok(t) => break t,
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(e) => return Err(e.into()),
        }
    };
    loop {
        let tables = target.read_tables(slot).await.unwrap_or_default();
        let done = plan.tables.iter().all(|t| tables.iter().any(|s| s.table == t.to_string() && s.copy_done));
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let source = client::connect(&plan.source.url, "xdb sync").await?;
    let marker = crate::source::postgres::change_stream::write_marker(&source, CATCH_UP_PREFIX, "").await?;
    loop {
        let applied = target.read_position(slot).await?.map(|p| p.applied_lsn).unwrap_or(Lsn::ZERO);
        if applied >= marker {
            return Ok(applied);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The plan's PostgreSQL source as its writer asks it (schema changes,
/// generated columns added): [`crate::source::LiveSource`].
pub(crate) fn pg_live(plan: &Plan) -> Arc<dyn crate::source::LiveSource> {
    Arc::new(crate::source::postgres::live::PgLive::new(plan.source.url.clone(), plan.mapping.generated))
}

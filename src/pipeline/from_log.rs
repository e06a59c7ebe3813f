//! `xdb sync` from a replicated log (`source.url: nats://…`) into any xdb
//! target: the log is a change source (`source/nats/`, the copy's `op: r`
//! events and every source transaction) run into the same [`SinkWriter`]
//! by the same reader and applier as a direct sync ([`super::stream`]) —
//! batches of whole transactions, in commit order, with the position in
//! the same target transaction (invariants *commit order*, *exactly
//! once*). The position is the stream sequence of the last
//! applied END (or copied row), kept in the target's state table under the
//! plan's slot name; a restart reads from the message after it. Table
//! shapes come from the original PostgreSQL (`source.validate_url`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::backoff::reconnecting;
use super::batcher::BatchPolicy;
use super::stream::{self, RunSettings};
use super::sync::SharedMetrics;
use super::sync::SyncOptions;
use crate::copy;
use crate::mapping;
use crate::model::{Lsn, TableSchema};
use crate::nats::{Log, NatsTarget};
use crate::pg_conn::client;
use crate::plan::naming::Naming;
use crate::plan::{Plan, SecretUrl};
use crate::sink::lock::ApplierLock;
use crate::sink::writer::{SinkError, SinkWriter};
use crate::sink::{TargetConn, TargetError};
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
    #[error("{0}")]
    Ended(#[from] stream::StreamEnded),
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
            FromLogError::Ended(_) => true,
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
        reconnecting(options.max_retries, FromLogError::is_retryable, || Box::pin(session(&plan, &target, &options)))
            .await
    })
    .await
    .map_err(FromLogError::StreamThread)?
}

/// How long a consumer waits for the applier's lock: a killed
/// predecessor's connection can take a moment to be closed by the server.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Messages' changes held between reader and applier, at most (whole
/// transactions and parts of large ones alike).
const QUEUED_ROWS: usize = 50_000;

/// One session: the applier's lock, the writer at the target's position,
/// the log read from the message after it, joined by the pipeline's one
/// reader and applier ([`super::stream`]).
async fn session(plan: &Plan, target: &NatsTarget, options: &SyncOptions) -> Result<(), FromLogError> {
    // Held until the session ends (invariant *exactly once*: one applier
    // per position).
    let _lock = ApplierLock::acquire(&plan.target.url, &plan.source.slot, LOCK_WAIT).await?.ok_or_else(|| {
        FromLogError::ApplierRunning { slot: plan.source.slot.clone(), target: plan.target.url.redacted() }
    })?;
    let (writer, schemas, applied, catalog) = open_writer(plan, target).await?;
    // With --until-caught-up: done once everything the stream held now is read.
    let until = if options.until_caught_up { Some(Log::connect(target).await?.tail().await?.0) } else { None };
    let reader = LogReader::open(target, applied.0, until, schemas, catalog).await?;
    tracing::info!(stream = %target.stream, after = applied.0, "applying the log");
    // A batch waits for more at most `apply.max_batch_delay_ms` after its
    // first transaction, as on the direct path: under a steady stream the
    // log never falls idle.
    let policy = BatchPolicy {
        max_rows: plan.apply.max_batch_rows.max(1),
        max_delay: Duration::from_millis(plan.apply.max_batch_delay_ms),
        linger: stream::CATCH_UP_LINGER,
        max_linger: stream::CATCH_UP_MAX_LINGER,
    };
    let settings = RunSettings { policy, marker: None, queued_items: 64, queued_rows: QUEUED_ROWS };
    // A stop drops the whole session (`reconnecting`): an uncommitted
    // batch or large transaction goes with its connection.
    let mut never = std::pin::pin!(std::future::pending::<()>());
    let metrics = SharedMetrics::default();
    if Box::pin(stream::run::<_, _, FromLogError>(reader, writer, settings, &metrics, &mut never)).await? {
        tracing::info!("the target holds everything the log held");
    }
    Ok(())
}

/// What [`open_writer`] opens: the writer, the tables' shapes, the applied
/// position and the original source.
type Opened = (SinkWriter, Vec<Arc<TableSchema>>, Lsn, tokio_postgres::Client);

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
    Ok((writer, schemas, applied, catalog))
}

//! The initial bulk copy: every planned table read from the replication
//! slot's exported snapshot and written with each target's fastest path.
//!
//! Invariants kept here (docs/architecture.md: *snapshot handoff*, *per-table sync LSN*,
//! *slot continuity*):
//! - the slot is created with an exported snapshot and every worker imports
//!   it before the replication connection does anything else, so a change is
//!   either in the copy or on the stream, never both or neither;
//! - each table records the LSN its copy is consistent at (its sync LSN);
//!   the apply skips that table's changes committed at or below it;
//! - a range is loaded and recorded in one target transaction; a table is
//!   marked done only after all its ranges and indexes are in. After a
//!   crash the exported snapshot is gone, so unfinished tables are emptied
//!   and copied again from a fresh snapshot (a temporary slot's), with that
//!   snapshot's LSN as their sync LSN; finished tables are kept.

pub mod progress;
pub mod ranges;
pub mod source_reader;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::error_policy::pg_error_text;
use crate::mapping::{self, MappedTable, TargetKind};
use crate::model::{Lsn, TableName, TableSchema};
use crate::pg_conn::client;
use crate::plan::Plan;
use crate::sink::load::{LoadCounters, Loader, RangeRecord};
use crate::sink::TargetConn;
use crate::source::postgres::catalog::{load_indexes, load_planned, load_table, TypeCache};
use crate::source::postgres::replication::{ReplicationClient, SnapshotAction};
use crate::source::postgres::{publication, streamable};
use progress::{ProgressDisplay, TableProgress};
use ranges::CopyRange;
use source_reader::SnapshotReader;

/// The copy failed; messages name the table and the side.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("source: {0}")]
    Source(String),
    #[error("source: {0}")]
    SourceConnect(#[from] client::ConnectError),
    #[error("source: {0}")]
    Publication(#[from] publication::PublicationError),
    #[error("source: {0}")]
    Catalog(#[from] crate::source::postgres::catalog::CatalogError),
    #[error("source: {}", pg_error_text(.0))]
    SourceSql(#[source] tokio_postgres::Error),
    #[error("{0}")]
    Target(#[from] crate::sink::TargetError),
    #[error(
        "cannot import the exported snapshot {snapshot}: {reason} (the connection that exported it has closed; \
         run the command again: unfinished tables are copied from a fresh snapshot)"
    )]
    Snapshot { snapshot: String, reason: String },
    #[error("reading {table} from the source: {reason}")]
    Read { table: String, reason: String },
    #[error(
        "{tables} rewritten on the source (TRUNCATE or a rewriting ALTER TABLE) each of the {attempts} times the \
         copy took a snapshot, which cannot see the rows of a table rewritten after it: run the command again \
         when those statements have stopped"
    )]
    Rewritten { tables: String, attempts: u32 },
    #[error(
        "the columns of {table} changed on the source (ALTER TABLE) while the copy was starting; nothing was \
         copied from that snapshot: run the command again (`xdb sync` retries by itself)"
    )]
    ShapeChanged { table: String },
    #[error(transparent)]
    Write(#[from] crate::sink::load::LoadError),
    #[error("type mapping:\n{0}")]
    Mapping(#[from] crate::mapping::MapTablesError),
    #[error("table {0} does not exist on the source")]
    MissingTable(String),
    /// An existing target table that does not match the mapping.
    #[error("{0}")]
    ExistingTarget(String),
    #[error(
        "target table for {table} already holds {rows} rows that xdb did not copy: empty or drop it \
         (xdb never writes into a table it did not fill itself)"
    )]
    TargetNotEmpty { table: String, rows: u64 },
    #[error(
        "replication slot {slot} is in use by another connection (pid {pid}): is `xdb sync` already running \
         with this plan?"
    )]
    SlotInUse { slot: String, pid: i32 },
    #[error("replication connection: {0}")]
    Replication(#[from] crate::source::postgres::replication::ReplicationError),
    #[error("the source created slot {slot} but exported no snapshot")]
    NoSnapshot { slot: String },
    #[error("{0}")]
    TargetIsSource(#[from] crate::source::postgres::identity::TargetCheckError),
    #[error("target: {0}")]
    TargetTriggers(#[from] crate::sink::postgres::triggers::TriggerError),
    #[error(
        "replication slot {slot} does not exist on the source, but the target holds a copy streamed up to \
         {applied}: the changes made since then went with the slot (a failover to a standby without it, or \
         someone dropped it), so the stream cannot continue where it was. Copy every table again from a new \
         slot: run the same command with --recopy"
    )]
    SlotMissing { slot: String, applied: Lsn },
    #[error("{0}")]
    Unstreamable(#[from] streamable::UnstreamableTables),
    #[error(
        "{source}\n(the replication slot {slot} created by this run is kept for the next run and retains WAL \
         on the source until then: fix the problem and run the command again, or drop the slot with \
         `xdb cleanup --plan {plan}`)"
    )]
    SlotKept { slot: String, plan: String, source: Box<CopyError> },
    /// SIGINT/SIGTERM during the copy: stopped before the end.
    #[error(
        "interrupted: {tables_done} of {tables} tables copied, {ranges} ranges committed by this run (ranges in \
         flight were rolled back); run `xdb snapshot` or `xdb sync` again to continue: copied tables are kept, a \
         table stopped part-way is copied again from a fresh snapshot"
    )]
    Interrupted { tables_done: usize, tables: usize, ranges: usize },
    #[error("could not start a copy worker's thread: {0}")]
    WorkerThread(#[source] std::io::Error),
    /// SIGINT/SIGTERM during `xdb schema --scan` (it only reads).
    #[error("interrupted: the scan stopped before reading every source row, so it reports nothing; run it again")]
    ScanInterrupted,
}

impl CopyError {
    /// True when retrying the same range later may succeed (the target or the
    /// network went away for a while).
    pub fn is_retryable(&self) -> bool {
        use crate::source::postgres::catalog::CatalogError;
        match self {
            CopyError::Write(e) => e.retry.is_transient(),
            CopyError::ShapeChanged { .. } => true,
            // The kept slot is the next attempt's starting point.
            CopyError::SlotKept { source, .. } => source.is_retryable(),
            CopyError::Replication(e) => e.is_retryable(),
            CopyError::Target(e) => e.is_retryable(),
            CopyError::TargetIsSource(e) => e.is_retryable(),
            CopyError::TargetTriggers(e) => e.is_retryable(),
            CopyError::SourceConnect(e) => e.retryable,
            CopyError::Publication(e) => e.is_retryable(),
            CopyError::SourceSql(e) | CopyError::Catalog(CatalogError::Query { source: e, .. }) => {
                crate::error_policy::postgres(e).is_transient()
            }
            _ => false,
        }
    }
}

/// How to show progress.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Draw bars (stderr is a terminal) instead of log lines.
    pub terminal: bool,
    /// Seconds between progress log lines when not on a terminal.
    pub log_interval: Duration,
    /// Copy every table again from a new slot (`--recopy`): the way out
    /// when the slot was lost or moved past the target's position.
    pub recopy: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions { terminal: false, log_interval: Duration::from_secs(10), recopy: false }
    }
}

/// One table's result.
#[derive(Debug, Clone, PartialEq)]
pub struct TableCopy {
    pub table: String,
    pub rows: u64,
    pub seconds: f64,
    /// Copied by an earlier run and kept.
    pub already_done: bool,
    pub sync_lsn: Lsn,
}

/// What the copy did.
#[derive(Debug, Clone)]
pub struct CopyOutcome {
    pub tables: Vec<TableCopy>,
    /// Where streaming begins (the slot's consistent point).
    pub consistent_point: Lsn,
    /// A table for people: rows, MB, seconds, rows/s per table.
    pub summary: String,
    /// Things the operator should know (indexes not rebuilt, defaults not translated).
    pub warnings: Vec<String>,
}

struct WorkItem {
    table: usize,
    range_no: i64,
    range: CopyRange,
}

struct TableJob {
    schema: Arc<TableSchema>,
    mapped: Arc<MappedTable>,
    progress: Arc<TableProgress>,
    remaining: AtomicUsize,
    state_name: String,
}

const RANGE_ATTEMPTS: u32 = 5;

/// What is finished so far, for the message of an interrupted copy.
#[derive(Default)]
struct Tally {
    tables: AtomicUsize,
    /// Tables marked done on the target, by an earlier run or this one.
    tables_done: AtomicUsize,
    /// Ranges committed on the target by this run.
    ranges: AtomicUsize,
    /// This run created the plan's slot: an error after that says the slot
    /// is kept and retains WAL.
    created_slot: std::sync::atomic::AtomicBool,
}

impl Tally {
    fn interrupted(&self) -> CopyError {
        CopyError::Interrupted {
            tables_done: self.tables_done.load(Ordering::Acquire),
            tables: self.tables.load(Ordering::Acquire),
            ranges: self.ranges.load(Ordering::Acquire),
        }
    }
}

/// Copies every table of the plan that is not copied yet, creating the slot
/// (with its exported snapshot) when missing. Keeps the slot for `sync`.
///
/// Stops on SIGINT/SIGTERM with [`CopyError::Interrupted`]: a copy can take
/// hours, and kill -9 must not be the only way out. The copy's futures are
/// simply dropped, which is safe because each range is loaded and recorded
/// in one target transaction (the one in flight rolls back with its
/// connection) and a table is marked done in one statement after its last
/// range; the next run continues from that recorded state.
pub async fn run(plan: &Plan, options: &CopyOptions) -> Result<CopyOutcome, CopyError> {
    let tally = Arc::new(Tally::default());
    tally.tables.store(plan.tables.len(), Ordering::Release);
    let r = tokio::select! {
        r = copy_tables(plan, options, tally.clone()) => r,
        () = crate::shutdown::requested() => {
            tracing::info!("stopping the copy on signal");
            Err(tally.interrupted())
        }
    };
    match r {
        Err(e) if tally.created_slot.load(Ordering::Acquire) && !matches!(e, CopyError::Interrupted { .. }) => {
            Err(CopyError::SlotKept {
                slot: plan.source.slot.clone(),
                plan: plan.file.display().to_string(),
                source: Box::new(e),
            })
        }
        r => r,
    }
}

/// The copy, phase by phase (module doc): the source and target checked
/// before anything is created, the recorded state read, the slot and its
/// snapshot, the tables held at it, the target tables prepared, the ranges
/// planned, the workers run, the outcome told.
async fn copy_tables(plan: &Plan, options: &CopyOptions, tally: Arc<Tally>) -> Result<CopyOutcome, CopyError> {
    let slot = plan.source.slot.clone();
    let Checked { source, mut target, kind, schemas, mapped } = check_before_creating(plan).await?;
    // An existing PostgreSQL target's own triggers must not fire on the
    // rows copied (a schema restored with its triggers).
    let plan = &crate::sink::postgres::triggers::for_target(plan).await?;
    let state = read_state(&source, &mut target, &slot, options.recopy).await?;
    refuse_rows_xdb_did_not_copy(&mut target, &mapped, &state).await?;
    let mut repl = ReplicationClient::connect_url(&plan.source.url, "xdb copy").await?;
    let start = match start_snapshot(&mut repl, &mut target, &slot, &mapped, &state, &tally).await? {
        Start::AlreadyDone { consistent_point } => return Ok(already_done(plan, &state.states, consistent_point)),
        Start::Copy(start) => start,
    };
    let done = &start.done;

    // Invariant "snapshot handoff": the tables are held at the snapshot
    // before anything is read (see `hold_at_snapshot`).
    let to_copy: Vec<TableName> =
        mapped.iter().filter(|m| !done.contains(&m.source.name.to_string())).map(|m| m.source.name.clone()).collect();
    let (planner, snapshot, sync_lsn) =
        hold_at_snapshot(plan, &mut repl, &to_copy, start.snapshot.clone(), start.sync_lsn).await?;
    same_shape_at_snapshot(&planner, &schemas, &to_copy, plan.mapping.generated).await?;
    tally
        .tables_done
        .store(mapped.iter().filter(|m| done.contains(&m.source.name.to_string())).count(), Ordering::Release);

    let prepared =
        prepare_target_tables(&mut target, &kind, &slot, sync_lsn, &mapped, &schemas, done, &state.known).await?;
    let (jobs, queue) = plan_ranges_at_snapshot(plan, &planner, prepared.jobs).await?;
    let display = ProgressDisplay::start(
        jobs.iter().map(|j| j.progress.clone()).collect(),
        options.terminal,
        options.log_interval,
    );
    let mut workers = plan.copy_parallelism().max(1).min(queue.lock().map(|q| q.len()).unwrap_or(1).max(1));
    if kind == TargetKind::Sqlite && workers > 1 {
        // SQLite has one writer at a time: a second loader would only wait
        // for the first one's lock (and stall the runtime while waiting).
        tracing::info!(requested = workers, "SQLite target: copying with one worker");
        workers = 1;
    }
    tracing::info!(tables = jobs.len(), workers, snapshot = %snapshot, "copying");
    let ctx = Arc::new(WorkerContext {
        plan: plan.clone(),
        snapshot,
        slot: slot.clone(),
        sync_lsn,
        kind,
        jobs: jobs.clone(),
        queue,
        warnings: Mutex::new(Vec::new()),
        tally,
    });
    // Each worker on a thread of its own (`own_thread`): its row batches
    // never cross threads, while the workers still encode in parallel.
    let results = futures_util::future::try_join_all((0..workers).map(|w| {
        let ctx = ctx.clone();
        async move {
            crate::own_thread::run(&format!("xdb-copy-{w}"), move || worker(ctx, w))
                .await
                .map_err(CopyError::WorkerThread)?
        }
    }))
    .await
    .map(|_| ());
    display.stop().await;
    results?;
    // The replication connection held the snapshot open until every worker
    // had imported it; the temporary slot (if any) goes with it. The
    // planner's locks end here too.
    drop(repl);
    drop(planner);
    let mut warnings = prepared.warnings;
    if let Ok(w) = ctx.warnings.lock() {
        warnings.extend(w.iter().cloned());
    }
    Ok(outcome(&jobs, prepared.kept, &state.states, sync_lsn, start.consistent_point, warnings))
}

/// The source and target as the copy needs them, checked before anything
/// is created anywhere.
struct Checked {
    source: tokio_postgres::Client,
    target: TargetConn,
    kind: TargetKind,
    schemas: Vec<Arc<TableSchema>>,
    mapped: Vec<Arc<MappedTable>>,
}

/// Everything that can refuse the plan without leaving anything behind: a
/// target that is the source, missing tables, the mapping, existing target
/// tables, tables that cannot be streamed (invariant *keys*); then the
/// publication.
async fn check_before_creating(plan: &Plan) -> Result<Checked, CopyError> {
    let source = client::connect(&plan.source.url, "xdb copy").await?;
    // Before anything is created (slot, publication, `xdb` schema): a
    // target that is the source itself would get all three in the source.
    match crate::source::postgres::identity::read(&source).await {
        Ok(id) => crate::source::postgres::identity::refuse_target_is_source(&id, &plan.target.url).await?,
        // pg_control_system() is readable by every role on supported
        // servers; should a hardened one deny it, the copy still runs.
        Err(e) => tracing::warn!(
            "could not read the source's identity, so cannot tell whether the target is the source: {}",
            crate::error_policy::pg_error_text(&e)
        ),
    }
    let schemas: Vec<Arc<TableSchema>> =
        load_planned(&source, &plan.tables, plan.mapping.generated, |t| CopyError::MissingTable(t.to_string()))
            .await?
            .into_iter()
            .map(Arc::new)
            .collect();

    let mut target = TargetConn::connect(&plan.target.url).await?;
    let kind = target.target_kind().await?;
    let mapped = crate::mapping::map_tables(plan, &kind, &schemas)?;
    target.ensure_state_tables().await?;

    // Existing target tables are checked, not trusted; before anything is
    // created on the source.
    let mismatches = crate::check::existing_target::check_plan(plan, &mut target, &source, &mapped)
        .await
        .map_err(|e| CopyError::Source(e.to_string()))?;
    if !mismatches.is_empty() {
        return Err(CopyError::ExistingTarget(crate::check::existing_target::refusal(&mismatches)));
    }
    // Before anything is published or a slot created (invariant "keys").
    streamable::check(&source, &plan.tables, &plan.only_tables).await??;
    if publication::ensure(&source, &plan.source.publication, &plan.tables, &plan.only_tables, plan.mapping.generated)
        .await?
    {
        tracing::info!(publication = %plan.source.publication, "created publication");
    }
    Ok(Checked { source, target, kind, schemas, mapped })
}

/// What the source and the target hold for this plan's slot.
struct CopyState {
    /// The slot's row (active pid, confirmed LSN), if it exists.
    slot_row: Option<tokio_postgres::Row>,
    states: Vec<crate::sink::TableState>,
    position: Option<crate::sink::AppliedPosition>,
    /// Tables xdb itself was filling (so it may empty them again).
    known: Vec<String>,
    /// Tables whose copy is finished.
    done: Vec<String>,
}

/// Reads the slot and the target's copy state; with `--recopy`, drops the
/// slot and forgets the state first.
async fn read_state(
    source: &tokio_postgres::Client,
    target: &mut TargetConn,
    slot: &str,
    recopy: bool,
) -> Result<CopyState, CopyError> {
    let slot_query = "SELECT active_pid, confirmed_flush_lsn::text FROM pg_replication_slots \
                      WHERE slot_name = $1 AND database = current_database()";
    let mut slot_row = source.query_opt(slot_query, &[&slot]).await.map_err(CopyError::SourceSql)?;
    // Held by a reader that is going away (a killed xdb's walsender): wait
    // for it, then look again. A slot whose creation was cut short by the
    // kill is dropped by PostgreSQL then, and must not count as existing.
    if let Some(pid) = slot_row.as_ref().and_then(|r| r.get::<_, Option<i32>>(0)) {
        let still = crate::source::postgres::change_stream::wait_until_slot_free(source, slot, pid)
            .await
            .map_err(CopyError::SourceSql)?;
        if let Some(pid) = still {
            return Err(CopyError::SlotInUse { slot: slot.to_string(), pid });
        }
        slot_row = source.query_opt(slot_query, &[&slot]).await.map_err(CopyError::SourceSql)?;
    }
    let mut states = target.read_tables(slot).await?;
    let mut position = target.read_position(slot).await?;
    if recopy {
        slot_row = start_over(source, target, slot, slot_row).await?;
        // Every table xdb was filling is emptied and copied again.
        for st in &mut states {
            st.copy_done = false;
        }
        position = None;
    }
    let known: Vec<String> = states.iter().map(|s| s.table.clone()).collect();
    let done: Vec<String> = states.iter().filter(|s| s.copy_done).map(|s| s.table.clone()).collect();
    Ok(CopyState { slot_row, states, position, known, done })
}

/// What can be checked on the target is checked before a slot exists: a
/// table xdb would refuse to fill must not leave a slot behind.
async fn refuse_rows_xdb_did_not_copy(
    target: &mut TargetConn,
    mapped: &[Arc<MappedTable>],
    state: &CopyState,
) -> Result<(), CopyError> {
    for m in mapped {
        let name = m.source.name.to_string();
        if state.done.contains(&name) || state.known.contains(&name) {
            continue;
        }
        if let Some(rows @ 1..) = target.table_rows(&m.target_table()).await? {
            return Err(CopyError::TargetNotEmpty { table: name, rows });
        }
    }
    Ok(())
}

/// Where the copy starts.
enum Start {
    /// Every table is copied already.
    AlreadyDone {
        consistent_point: Lsn,
    },
    Copy(SnapshotStart),
}

struct SnapshotStart {
    snapshot: String,
    /// The LSN the snapshot is consistent at (the tables' sync LSN).
    sync_lsn: Lsn,
    /// Where streaming begins (the slot's consistent point).
    consistent_point: Lsn,
    /// Tables whose copy is kept.
    done: Vec<String>,
}

/// The slot (created with its exported snapshot when missing) or, when it
/// exists, a fresh snapshot for the unfinished tables (a temporary slot's).
async fn start_snapshot(
    repl: &mut ReplicationClient,
    target: &mut TargetConn,
    slot: &str,
    mapped: &[Arc<MappedTable>],
    state: &CopyState,
    tally: &Tally,
) -> Result<Start, CopyError> {
    let Some(row) = &state.slot_row else {
        // Invariant "slot continuity": the changes between the target's
        // position and now went with the slot. Copying everything again
        // may take hours, so it is the operator's call (`--recopy`).
        // (A position of 0/0 records nothing streamed.)
        if state.position.is_some_and(|p| p.applied_lsn != Lsn::ZERO) || state.states.iter().any(|s| s.copy_done) {
            let applied = state.position.map(|p| p.applied_lsn).unwrap_or(Lsn::ZERO);
            return Err(CopyError::SlotMissing { slot: slot.to_string(), applied });
        }
        let created = repl.create_replication_slot(slot, false, SnapshotAction::Export).await?;
        tally.created_slot.store(true, Ordering::Release);
        tracing::info!(slot = %slot, consistent_point = %created.consistent_point, "created replication slot");
        target.record_position(slot, created.consistent_point, created.consistent_point).await?;
        let snapshot = created.snapshot_name.ok_or_else(|| CopyError::NoSnapshot { slot: slot.to_string() })?;
        let lsn = created.consistent_point;
        return Ok(Start::Copy(SnapshotStart { snapshot, sync_lsn: lsn, consistent_point: lsn, done: Vec::new() }));
    };
    let confirmed: Lsn = row.get::<_, Option<String>>(1).and_then(|s| s.parse().ok()).unwrap_or(Lsn::ZERO);
    let consistent_point = match state.position {
        Some(p) => p.consistent_point,
        None => {
            target.record_position(slot, confirmed, confirmed).await?;
            confirmed
        }
    };
    if mapped.iter().all(|m| state.done.contains(&m.source.name.to_string())) {
        return Ok(Start::AlreadyDone { consistent_point });
    }
    // The snapshot the slot exported died with its connection: the
    // unfinished tables get a fresh one, with its own sync LSN.
    let temp = format!("{}_copy_{}", slot, std::process::id());
    let created = repl.create_replication_slot(&temp, true, SnapshotAction::Export).await?;
    tracing::info!(
        sync_lsn = %created.consistent_point,
        "copying unfinished tables from a fresh snapshot (the earlier one ended with its connection)"
    );
    let snapshot = created.snapshot_name.ok_or_else(|| CopyError::NoSnapshot { slot: slot.to_string() })?;
    Ok(Start::Copy(SnapshotStart {
        snapshot,
        sync_lsn: created.consistent_point,
        consistent_point,
        done: state.done.clone(),
    }))
}

/// The target side ready for the workers.
struct PreparedTables {
    jobs: Vec<Arc<TableJob>>,
    /// The mapping's notes on the tables to copy.
    warnings: Vec<String>,
    /// Tables whose earlier copy is kept.
    kept: Vec<String>,
}

/// Creates (or empties, when xdb was filling it) the target table of every
/// table still to copy and records it at `sync_lsn` with no range done.
#[allow(clippy::too_many_arguments)]
async fn prepare_target_tables(
    target: &mut TargetConn,
    kind: &TargetKind,
    slot: &str,
    sync_lsn: Lsn,
    mapped: &[Arc<MappedTable>],
    schemas: &[Arc<TableSchema>],
    done: &[String],
    known: &[String],
) -> Result<PreparedTables, CopyError> {
    let mut jobs: Vec<Arc<TableJob>> = Vec::new();
    let mut warnings = Vec::new();
    let mut kept = Vec::new();
    for m in mapped {
        let name = m.source.name.to_string();
        if done.contains(&name) {
            kept.push(name);
            continue;
        }
        match target.table_rows(&m.target_table()).await? {
            None => {
                let ddl = mapping::create_table_ddl(m, kind);
                target.execute_batch(&ddl, &format!("creating the target table for {name}")).await?;
            }
            Some(0) => {}
            Some(rows) if known.contains(&name) => {
                tracing::info!(table = %name, rows, "emptying a partly copied table before copying it again");
                let sql = format!("DELETE FROM {}", m.target_ident);
                target.execute_batch(&[sql], &format!("emptying {name}")).await?;
            }
            Some(rows) => return Err(CopyError::TargetNotEmpty { table: name, rows }),
        }
        warnings.extend(m.warnings.iter().cloned());
        target.clear_ranges(slot, &name).await?;
        target.record_table(slot, &name, sync_lsn, false, 0).await?;
        let schema = schemas.iter().find(|s| s.name == m.source.name).cloned().unwrap_or_else(|| m.source.clone());
        jobs.push(Arc::new(TableJob {
            schema,
            mapped: m.clone(),
            progress: TableProgress::new(name.clone(), 0),
            remaining: AtomicUsize::new(0),
            state_name: name,
        }));
    }
    Ok(PreparedTables { jobs, warnings, kept })
}

/// Splits every table into ranges at the snapshot; the queue holds the
/// biggest tables first, so the long ones do not start last.
async fn plan_ranges_at_snapshot(
    plan: &Plan,
    planner: &SnapshotReader,
    jobs: Vec<Arc<TableJob>>,
) -> Result<(Vec<Arc<TableJob>>, Arc<Mutex<VecDeque<WorkItem>>>), CopyError> {
    let mut items = Vec::new();
    let mut estimates = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let (rows, table_ranges) = plan_ranges(
            planner.client(),
            &job.schema,
            &plan.read_from(&job.schema.name),
            plan.copy.chunk_rows,
            plan.copy_parallelism(),
        )
        .await?;
        estimates.push(rows);
        job.remaining.store(table_ranges.len(), Ordering::Relaxed);
        for (n, range) in table_ranges.into_iter().enumerate() {
            items.push(WorkItem { table: i, range_no: n as i64, range });
        }
    }
    let jobs: Vec<Arc<TableJob>> = jobs
        .into_iter()
        .zip(&estimates)
        .map(|(j, &est)| {
            Arc::new(TableJob {
                schema: j.schema.clone(),
                mapped: j.mapped.clone(),
                progress: TableProgress::new(j.state_name.clone(), est),
                remaining: AtomicUsize::new(j.remaining.load(Ordering::Relaxed)),
                state_name: j.state_name.clone(),
            })
        })
        .collect();
    items.sort_by_key(|it| (std::cmp::Reverse(estimates[it.table]), it.table, it.range_no));
    Ok((jobs, Arc::new(Mutex::new(items.into_iter().collect::<VecDeque<_>>()))))
}

/// What the copy did, table by table (kept tables with what was recorded).
fn outcome(
    jobs: &[Arc<TableJob>],
    kept: Vec<String>,
    states: &[crate::sink::TableState],
    sync_lsn: Lsn,
    consistent_point: Lsn,
    warnings: Vec<String>,
) -> CopyOutcome {
    let progress: Vec<Arc<TableProgress>> = jobs.iter().map(|j| j.progress.clone()).collect();
    let mut tables: Vec<TableCopy> = jobs
        .iter()
        .map(|j| TableCopy {
            table: j.state_name.clone(),
            rows: j.progress.counters.rows.load(Ordering::Relaxed),
            seconds: j.progress.seconds(),
            already_done: false,
            sync_lsn,
        })
        .collect();
    for name in kept {
        let st = states.iter().find(|s| s.table == name);
        tables.push(TableCopy {
            table: name,
            rows: st.map(|s| s.rows_copied).unwrap_or(0),
            seconds: 0.0,
            already_done: true,
            sync_lsn: st.map(|s| s.sync_lsn).unwrap_or(consistent_point),
        });
    }
    CopyOutcome { tables, consistent_point, summary: progress::summary_table(&progress), warnings }
}

/// Opens the planner's transaction at `snapshot` and takes ACCESS SHARE
/// locks on `tables` (as pg_dump does): from then on nothing can rewrite
/// them until the copy ends. A rewrite committed between the snapshot's
/// export and the lock — TRUNCATE, or an ALTER TABLE that rewrites the
/// table — is not MVCC-safe: the snapshot would see the table empty, and
/// for a rewriting ALTER no change on the stream brings the rows back. Such
/// a table is found by its storage (the relfilenode the snapshot sees is
/// not the current one), and the copy starts again from a fresh snapshot
/// (a temporary slot's, with its LSN as every table's sync LSN).
async fn hold_at_snapshot(
    plan: &Plan,
    repl: &mut ReplicationClient,
    tables: &[TableName],
    mut snapshot: String,
    mut sync_lsn: Lsn,
) -> Result<(SnapshotReader, String, Lsn), CopyError> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    loop {
        let planner = SnapshotReader::open(&plan.source.url, &snapshot).await?;
        let rewritten = planner.hold_tables(tables, &plan.only_tables).await?;
        if rewritten.is_empty() {
            return Ok((planner, snapshot, sync_lsn));
        }
        let names: Vec<String> = rewritten.iter().map(|t| t.to_string()).collect();
        if attempt == ATTEMPTS {
            return Err(CopyError::Rewritten { tables: names.join(", "), attempts: ATTEMPTS });
        }
        tracing::warn!(
            tables = %names.join(", "),
            "rewritten on the source (TRUNCATE or a rewriting ALTER TABLE) after the snapshot was taken, \
             which cannot see their rows: taking a fresh snapshot"
        );
        drop(planner);
        // The old snapshot ends with its connection; a fresh one exports the next.
        *repl = ReplicationClient::connect_url(&plan.source.url, "xdb copy").await?;
        let temp = format!("{}_copy_{}_{attempt}", plan.source.slot, std::process::id());
        let created = repl.create_replication_slot(&temp, true, SnapshotAction::Export).await?;
        snapshot = created.snapshot_name.ok_or_else(|| CopyError::NoSnapshot { slot: temp.clone() })?;
        sync_lsn = created.consistent_point;
        attempt += 1;
    }
}

/// The tables' columns were read before the snapshot existed: a DDL
/// committed in between (one the slot's creation waited for) would make the
/// copy decode rows by the wrong shape. Read them again at the snapshot,
/// under the lock, and stop (retryably) when they differ.
pub(crate) async fn same_shape_at_snapshot(
    planner: &SnapshotReader,
    schemas: &[Arc<TableSchema>],
    tables: &[TableName],
    generated: crate::plan::GeneratedFrom,
) -> Result<(), CopyError> {
    let mut types = TypeCache::new();
    let shape = |s: &TableSchema| -> Vec<(String, u32, i32)> {
        s.columns.iter().map(|c| (c.name.clone(), c.type_oid, c.typmod)).collect()
    };
    for t in tables {
        let Some(before) = schemas.iter().find(|s| &s.name == t) else { continue };
        let now = load_table(planner.client(), &mut types, t, generated).await?;
        if now.as_ref().map(&shape) != Some(shape(before)) {
            return Err(CopyError::ShapeChanged { table: t.to_string() });
        }
    }
    Ok(())
}

fn already_done(plan: &Plan, states: &[crate::sink::TableState], consistent_point: Lsn) -> CopyOutcome {
    let tables = plan
        .tables
        .iter()
        .filter_map(|t| states.iter().find(|s| s.table == t.to_string()))
        .map(|s| TableCopy {
            table: s.table.clone(),
            rows: s.rows_copied,
            seconds: 0.0,
            already_done: true,
            sync_lsn: s.sync_lsn,
        })
        .collect();
    CopyOutcome { tables, consistent_point, summary: String::new(), warnings: Vec::new() }
}

/// `--recopy`: drops the plan's slot (when it exists and nobody holds it)
/// and forgets xdb's state for it on the target, so the copy starts over
/// from a new slot. Returns the (now absent) slot row.
async fn start_over(
    source: &tokio_postgres::Client,
    target: &mut TargetConn,
    slot: &str,
    slot_row: Option<tokio_postgres::Row>,
) -> Result<Option<tokio_postgres::Row>, CopyError> {
    if let Some(row) = slot_row {
        if let Some(pid) = row.get::<_, Option<i32>>(0) {
            return Err(CopyError::SlotInUse { slot: slot.to_string(), pid });
        }
        source.execute("SELECT pg_drop_replication_slot($1)", &[&slot]).await.map_err(|e| {
            CopyError::Source(format!("dropping replication slot {slot} for --recopy: {}", pg_error_text(&e)))
        })?;
        tracing::warn!(slot, "--recopy: dropped the replication slot; every table is copied again from a new one");
    }
    target.forget_slot(slot).await?;
    Ok(None)
}

/// Estimated rows and the ranges a table is read in.
async fn plan_ranges(
    client: &tokio_postgres::Client,
    table: &TableSchema,
    from: &str,
    chunk_rows: u64,
    parallelism: usize,
) -> Result<(u64, Vec<CopyRange>), CopyError> {
    let err = |e: tokio_postgres::Error| CopyError::Read { table: table.name.to_string(), reason: pg_error_text(&e) };
    // A partitioned table holds nothing itself: its leaves do. A ctid range
    // applies to every leaf, so the ranges span the largest leaf's pages.
    let row = client
        .query_one(
            "SELECT coalesce(sum(reltuples) FILTER (WHERE reltuples >= 0), -1)::float8, \
                    coalesce(sum(pg_relation_size(oid) / current_setting('block_size')::int8), 0)::int8, \
                    coalesce(max(pg_relation_size(oid) / current_setting('block_size')::int8), 0)::int8 \
             FROM pg_class WHERE (oid = $1 AND relkind <> 'p') \
                OR oid IN (SELECT relid FROM pg_partition_tree($1::oid::regclass) WHERE isleaf)",
            &[&table.oid],
        )
        .await
        .map_err(err)?;
    let (tuples, all_pages, pages): (f64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    // reltuples is -1 before the first ANALYZE (and relpages 0, so the pages
    // come from the relation's size): guess the rows from the page count, and
    // since that is a guess, split the table among the copy workers
    // (copy.parallelism) rather than trusting it to fit one range.
    let analyzed = tuples >= 0.0;
    let rows = if analyzed { tuples as u64 } else { all_pages.max(0) as u64 * 60 };
    let chunk_rows =
        if analyzed { chunk_rows } else { chunk_rows.min(rows.div_ceil(parallelism.max(1) as u64).max(1)) };
    if rows <= chunk_rows || (!analyzed && pages <= 1) {
        return Ok((rows, vec![CopyRange::Whole]));
    }
    // PostgreSQL 14+ reads a ctid range with a TID Range Scan: each worker
    // reads only its pages. A key range's WHERE clause is often a full
    // sequential scan per range, so key ranges are the fallback for older servers.
    let version: i32 =
        client.query_one("SELECT current_setting('server_version_num')::int4", &[]).await.map_err(err)?.get(0);
    if version >= 140_000 && pages > 0 {
        return Ok((rows, ranges::split_pages(pages as u64, rows, chunk_rows)));
    }
    if let Some(col) = ranges::int_split_column(table) {
        let sql = format!("SELECT min({c})::int8, max({c})::int8 FROM {from}", c = crate::model::pg_ident(col));
        let r = client.query_one(sql.as_str(), &[]).await.map_err(err)?;
        if let (Some(min), Some(max)) = (r.get::<_, Option<i64>>(0), r.get::<_, Option<i64>>(1)) {
            return Ok((rows, ranges::split_int_key(col, min, max, rows, chunk_rows)));
        }
        return Ok((rows, vec![CopyRange::Whole]));
    }
    Ok((rows, ranges::split_pages(pages.max(0) as u64, rows, chunk_rows)))
}

struct WorkerContext {
    plan: Plan,
    snapshot: String,
    slot: String,
    sync_lsn: Lsn,
    kind: TargetKind,
    jobs: Vec<Arc<TableJob>>,
    queue: Arc<Mutex<VecDeque<WorkItem>>>,
    warnings: Mutex<Vec<String>>,
    tally: Arc<Tally>,
}

async fn worker(ctx: Arc<WorkerContext>, id: usize) -> Result<(), CopyError> {
    let reader = SnapshotReader::open(&ctx.plan.source.url, &ctx.snapshot).await?;
    let mut loader = Loader::connect(&ctx.plan.target.url).await?;
    loop {
        let item = match ctx.queue.lock() {
            Ok(mut q) => q.pop_front(),
            Err(_) => None,
        };
        let Some(item) = item else { return Ok(()) };
        let job = ctx.jobs[item.table].clone();
        job.progress.start();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match copy_range(&ctx, &reader, &mut loader, &job, &item).await {
                Ok(_) => {
                    ctx.tally.ranges.fetch_add(1, Ordering::AcqRel);
                    break;
                }
                Err(e) if e.is_retryable() && attempt < RANGE_ATTEMPTS => {
                    let wait = Duration::from_secs(1 << attempt);
                    tracing::warn!(worker = id, table = %job.state_name, range = item.range_no, "{e}; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    if let Ok(l) = Loader::connect(&ctx.plan.target.url).await {
                        loader = l;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if job.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            finish_table(&ctx, &job).await?;
        }
    }
}

async fn copy_range(
    ctx: &WorkerContext,
    reader: &SnapshotReader,
    loader: &mut Loader,
    job: &TableJob,
    item: &WorkItem,
) -> Result<u64, CopyError> {
    // A range loads and records itself in one target transaction, so a
    // failed attempt left nothing behind and the retry needs no clearing.
    let record = RangeRecord { slot: ctx.slot.clone(), table: job.state_name.clone(), range_no: item.range_no };
    let counters: &Arc<LoadCounters> = &job.progress.counters;
    let (done_tx, done_rx) = oneshot::channel();
    let report = |r: &Result<u64, CopyError>| r.as_ref().map(|n| *n).map_err(|e| e.to_string());
    let (r, w) = if byte_for_byte(&job.mapped) {
        let (tx, rx) = mpsc::channel(16);
        let read = async {
            let r = reader.read_range_raw(&job.schema, &ctx.plan.read_from(&job.schema.name), &item.range, &tx).await;
            drop(tx);
            let _ = done_tx.send(report(&r));
            r
        };
        tokio::join!(read, loader.load_range_raw(&job.mapped, rx, done_rx, &record, counters))
    } else {
        let (tx, rx) = mpsc::channel(4);
        let read = async {
            let r = reader.read_range(&job.schema, &ctx.plan.read_from(&job.schema.name), &item.range, &tx).await;
            drop(tx);
            let _ = done_tx.send(report(&r));
            r
        };
        tokio::join!(read, loader.load_range(&job.mapped, rx, done_rx, &record, counters))
    };
    // The writer's error is the more telling one when both failed (a
    // reader stops when the writer hangs up).
    let rows = w?;
    r?;
    Ok(rows)
}

/// True when the target is PostgreSQL and every column keeps its source
/// type: COPY binary bytes then go from source to target untouched, which is
/// both the fastest path and trivially exact. Columns of types xdb reads as
/// text, or with a mapping override, take the decoding path.
fn byte_for_byte(mapped: &MappedTable) -> bool {
    mapped.kind == TargetKind::Postgres
        && mapped.columns.iter().all(|c| {
            !crate::source::postgres::select::needs_text(&c.source_type)
                && c.target_type == mapping::pg_type_sql(&c.source_type)
        })
}

/// Builds the table's secondary indexes and marks it done.
async fn finish_table(ctx: &WorkerContext, job: &TableJob) -> Result<(), CopyError> {
    let source = client::connect(&ctx.plan.source.url, "xdb copy").await?;
    let indexes = load_indexes(&source, job.schema.oid).await?;
    let (ddl, skipped) = crate::copy::index_ddl(&job.mapped, &indexes, &ctx.kind);
    if let Ok(mut w) = ctx.warnings.lock() {
        w.extend(skipped);
    }
    let mut target = TargetConn::connect(&ctx.plan.target.url).await?;
    target.execute_batch(&ddl, &format!("building indexes of {}", job.state_name)).await?;
    let rows = job.progress.counters.rows.load(Ordering::Relaxed);
    target.record_table(&ctx.slot, &job.state_name, ctx.sync_lsn, true, rows).await?;
    ctx.tally.tables_done.fetch_add(1, Ordering::AcqRel);
    job.progress.finish();
    tracing::info!(table = %job.state_name, rows, seconds = format!("{:.2}", job.progress.seconds()), "table copied");
    Ok(())
}

/// The DDL that rebuilds a table's secondary indexes on the target, and a
/// note for each index that cannot be rebuilt column by column (expression
/// and partial indexes), so the operator can recreate it by hand.
/// The column indexes among `indexes` (expression and partial ones are not rebuilt).
pub fn index_defs(indexes: &[crate::source::postgres::catalog::SourceIndex]) -> Vec<mapping::IndexDef> {
    indexes
        .iter()
        .filter(|ix| ix.definition.is_none())
        .map(|ix| mapping::IndexDef { name: ix.name.clone(), columns: ix.columns.clone(), unique: ix.unique })
        .collect()
}

pub fn index_ddl(
    mapped: &mapping::MappedTable,
    indexes: &[crate::source::postgres::catalog::SourceIndex],
    kind: &mapping::TargetKind,
) -> (Vec<String>, Vec<String>) {
    let mut defs = Vec::new();
    let mut skipped = Vec::new();
    for ix in indexes {
        match &ix.definition {
            Some(def) => skipped.push(format!(
                "{}: index {} is an expression or partial index and was not rebuilt on the target ({def})",
                mapped.source.name, ix.name
            )),
            None => {
                defs.push(mapping::IndexDef { name: ix.name.clone(), columns: ix.columns.clone(), unique: ix.unique })
            }
        }
    }
    (mapping::create_index_ddl(mapped, &defs, kind), skipped)
}

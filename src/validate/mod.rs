//! The validator: proves the target holds the same data as the source, or
//! names exactly the rows that differ (and with `--repair` rewrites them).
//!
//! Per table: the primary key is cut into ranges of about `chunk_rows` rows
//! ([`chunks`]); each range is read on both sides, every row is put in the
//! canonical form of `mapping::canonical` (so a PostgreSQL row and its MySQL, SQLite or
//! PostgreSQL copy compare equal exactly when they hold the same data), and
//! the order-independent checksums of both sides are compared. A range whose
//! checksums differ is merged by key ([`diff`]) into missing, extra and
//! changed keys, with the differing columns.
//!
//! Consistency while `xdb sync` runs (invariant kept here): every comparison
//! reads the source inside one REPEATABLE READ snapshot, then writes a
//! marker message in a transaction of its own and waits until the target's
//! applied position has passed it, so the target holds at least everything
//! the snapshot sees. The target may be ahead by changes committed since, so
//! a differing range is compared again from a fresh snapshot (twice), and only
//! differences seen every time are reported. Without a running sync the
//! target is static and one comparison is the answer.
//!
//! `--repair` rewrites each differing range from a fresh source snapshot in
//! one target transaction (delete the range, insert the source rows), then
//! compares the range again. Caveat: this does not pause a running sync (the
//! per-key sync-LSN rule (invariant *per-table sync LSN*) needs the applier's cooperation), so
//! a change to a repaired key committed after the repair snapshot but applied
//! before the rewrite commits is overwritten with the older row until the
//! key changes again; repair with the source quiet (or the sync stopped).

pub mod chunks;
pub mod diff;
pub mod json;
pub mod key_text;
pub mod report;
pub mod server_digest;
pub mod source;
pub mod target;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chunks::{Chunk, SplitKey};
use diff::{diff_rows, ChunkDiff};
pub use report::{RepairSummary, TableReport, TableStatus, ValidationReport};
use source::SourceSession;
use target::TargetSession;

use crate::mapping::MappedTable;
use crate::model::{Lsn, TableName, TableSchema};
use crate::pg_conn::client;
use crate::plan::Plan;
use crate::source::postgres::catalog::load_planned;

/// How long a comparison waits for a running sync to apply past the source
/// snapshot.
const LAG_TIMEOUT: Duration = Duration::from_secs(120);

/// Rows of a differing range digested on the servers below which it is read
/// and diffed rather than bisected further (an eighth of a range at most).
const SERVER_LEAF_ROWS: u64 = 1_000;

/// Extra comparisons of a differing range while a sync runs.
const RECHECKS: usize = 2;

/// Validation could not run (as opposed to: it ran and found differences).
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("{0}")]
    Options(String),
    /// A source value or row xdb cannot use (not a driver error).
    #[error("source: {0}")]
    Source(String),
    #[error("source: {0}")]
    SourceConnect(#[from] crate::pg_conn::client::ConnectError),
    #[error("source: {context}: {}", crate::error_policy::pg_error_text(.source))]
    SourceSql {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("source: {0}")]
    Catalog(#[from] crate::source::postgres::catalog::CatalogError),
    /// A target table or value xdb cannot use (not a driver error).
    #[error("target: {0}")]
    Target(String),
    #[error(transparent)]
    TargetConn(#[from] crate::sink::TargetError),
    #[error("target: {context}: {source}")]
    TargetSql {
        context: String,
        #[source]
        source: crate::error_policy::DriverError,
    },
    #[error("type mapping:\n{0}")]
    Mapping(#[from] crate::mapping::MapTablesError),
    #[error(
        "the target did not apply up to source position {lsn} within {seconds} s (applied: {applied}): is \
         `xdb sync` running and keeping up?"
    )]
    Lag { lsn: Lsn, applied: String, seconds: u64 },
    /// SIGINT/SIGTERM before every range was compared.
    #[error(
        "interrupted: validation stopped before comparing every range, so it has no result; run it again{}",
        if *repair { " (ranges already repaired stay repaired; a repair in progress was rolled back)" } else { "" }
    )]
    Interrupted { repair: bool },
}

/// What to validate and how.
#[derive(Clone, Debug)]
pub struct ValidateOptions {
    /// Only these tables of the plan (`schema.table` or `table`); all when `None`.
    pub tables: Option<Vec<String>>,
    /// Rewrite differing key ranges from the source, then compare them again.
    pub repair: bool,
    /// Rows per checksummed key range.
    pub chunk_rows: u64,
    /// Ranges compared at once (each with a source and a target connection).
    pub parallelism: usize,
    /// Compare row checksums; `false` compares row counts only.
    pub checksums: bool,
    /// Let a PostgreSQL target and the source checksum ranges themselves
    /// where the column types allow it ([`server_digest`]).
    pub server_digest: bool,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            tables: None,
            repair: false,
            chunk_rows: 10_000,
            parallelism: 4,
            checksums: true,
            server_digest: true,
        }
    }
}

/// A table being compared: its mapping, split key and ranges.
struct TableCtx {
    mapped: Arc<MappedTable>,
    /// Rows per range (larger differing ranges are bisected).
    chunk_rows: u64,
    key: Option<SplitKey>,
    chunks: Vec<Chunk>,
    /// Ranges are first digested on both servers (PostgreSQL target, same types).
    server: Option<server_digest::ServerDigest>,
}

/// One range compared.
#[derive(Debug, Clone, Default)]
struct ChunkOutcome {
    source_rows: u64,
    target_rows: u64,
    diff: ChunkDiff,
    /// Source values compared as the lossy policy writes them.
    policy_altered: u64,
}

type Item = (usize, usize);

/// Validates the plan's tables (or `opts.tables`). Differences are in the
/// report; an error means validation could not run at all.
pub async fn run(plan: &Plan, opts: &ValidateOptions) -> Result<ValidationReport, ValidateError> {
    let started = Instant::now();
    let names = select_tables(plan, opts.tables.as_deref())?;
    let catalog = client::connect(&plan.source.url, "xdb validate").await?;
    let schemas: Vec<Arc<TableSchema>> = load_planned(&catalog, &names, plan.mapping.generated, |t| {
        ValidateError::Source(format!("table {t} does not exist on the source"))
    })
    .await?
    .into_iter()
    .map(Arc::new)
    .collect();
    drop(catalog);
    let mut target = TargetSession::connect(&plan.target.url).await?;
    let kind = target.conn().target_kind().await?;
    let mapped = crate::mapping::map_tables(plan, &kind, &schemas)?;
    // Generated columns are compared like the others.
    let mapped: Vec<Arc<MappedTable>> =
        mapped.iter().map(|m| Arc::new(crate::mapping::generated::compared(m))).collect();
    let live = source::slot_active(&plan.source.url, &plan.source.slot).await? == Some(true)
        && target.applied(&plan.source.slot).await.is_some();
    if live {
        tracing::info!(slot = %plan.source.slot, "a sync is running: comparing at positions the target has applied");
    }
    let mut v = Validation { plan, opts, live, target };
    // A validation of large tables can run for hours: a signal ends it. Its
    // workers only read, except --repair's rewrites, each one target
    // transaction that rolls back with its connection when cut short.
    let compare = async {
        if opts.checksums {
            v.checksums(&mapped).await
        } else {
            v.counts(&mapped).await
        }
    };
    let tables = tokio::select! {
        r = compare => r?,
        () = crate::shutdown::requested() => return Err(ValidateError::Interrupted { repair: opts.repair }),
    };
    Ok(ValidationReport {
        plan: plan.name.clone(),
        checksums: opts.checksums,
        live_sync: live,
        tables,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The plan's tables, or the requested subset (each must be in the plan).
fn select_tables(plan: &Plan, only: Option<&[String]>) -> Result<Vec<TableName>, ValidateError> {
    let Some(only) = only else { return Ok(plan.tables.clone()) };
    let mut out = Vec::new();
    for name in only {
        let t = TableName::parse(name).ok_or_else(|| ValidateError::Options(format!("invalid table name {name:?}")))?;
        if !plan.tables.contains(&t) {
            return Err(ValidateError::Options(format!("table {t} is not in the plan")));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

struct Validation<'a> {
    plan: &'a Plan,
    opts: &'a ValidateOptions,
    live: bool,
    target: TargetSession,
}

impl Validation<'_> {
    /// Opens a source snapshot; while a sync runs, waits until the target
    /// has applied everything the snapshot sees.
    async fn snapshot(&mut self) -> Result<(SourceSession, String), ValidateError> {
        let (session, name) = SourceSession::export(&self.plan.source.url).await?;
        let session = session.with_only(&self.plan.only_tables);
        if self.live {
            let lsn = source::marker_lsn(&self.plan.source.url).await?;
            let start = Instant::now();
            loop {
                let applied = self.target.applied(&self.plan.source.slot).await;
                if applied.is_some_and(|a| a >= lsn) {
                    break;
                }
                if start.elapsed() > LAG_TIMEOUT {
                    return Err(ValidateError::Lag {
                        lsn,
                        applied: applied.map(|a| a.to_string()).unwrap_or_else(|| "nothing".into()),
                        seconds: LAG_TIMEOUT.as_secs(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tracing::debug!(%lsn, waited_ms = start.elapsed().as_millis() as u64, "target applied past the snapshot");
        }
        Ok((session, name))
    }

    /// Row counts only.
    async fn counts(&mut self, mapped: &[Arc<MappedTable>]) -> Result<Vec<TableReport>, ValidateError> {
        let mut reports: Vec<TableReport> = mapped.iter().map(|m| TableReport::new(m)).collect();
        let mut todo: Vec<usize> = (0..mapped.len()).collect();
        for round in 0..=RECHECKS {
            if todo.is_empty() || (round > 0 && !self.live) {
                break;
            }
            let (session, _) = self.snapshot().await?;
            let mut again = Vec::new();
            for &i in &todo {
                let started = Instant::now();
                let m = &mapped[i];
                let r = &mut reports[i];
                let counted = async {
                    let s = session.count(&m.source).await?;
                    let t = self.target.count(m).await?;
                    Ok::<_, ValidateError>((s, t))
                }
                .await;
                match counted {
                    Ok((s, t)) => {
                        r.source_rows = s;
                        r.target_rows = t;
                        r.error = None;
                        r.status = if s == t { TableStatus::Equal } else { TableStatus::Differs };
                        if s != t {
                            again.push(i);
                        }
                    }
                    Err(e) => {
                        r.status = TableStatus::Error;
                        r.error = Some(e.to_string());
                    }
                }
                r.seconds += started.elapsed().as_secs_f64();
                tracing::info!(table = %r.table, source_rows = r.source_rows, target_rows = r.target_rows, "counted");
            }
            todo = again;
        }
        Ok(reports)
    }

    /// Counts and checksums per key range, differences to the key.
    /// Compares every range of every table from one snapshot; while a
    /// sync runs, re-checks the differing ranges from fresh snapshots; with
    /// `--repair` rewrites what still differs and compares it again; then
    /// the per-table reports.
    async fn checksums(&mut self, mapped: &[Arc<MappedTable>]) -> Result<Vec<TableReport>, ValidateError> {
        let started = Instant::now();
        let mut reports: Vec<TableReport> = mapped.iter().map(|m| TableReport::new(m)).collect();
        let (exporter, snapshot) = self.snapshot().await?;
        let tables = Arc::new(self.plan_ranges(&exporter, mapped, &mut reports).await);
        let items: Vec<Item> =
            tables.iter().enumerate().flat_map(|(t, ctx)| (0..ctx.chunks.len()).map(move |c| (t, c))).collect();
        tracing::info!(tables = tables.len(), ranges = items.len(), "comparing");
        let mut outcomes = compare(self.plan, &snapshot, &tables, items, self.opts.parallelism).await?;
        drop(exporter);
        if self.live {
            self.recheck_differing(&tables, &mut outcomes).await?;
        }
        let to_fix = differing(&outcomes);
        let (after_repair, mut repairs) = if self.opts.repair && !to_fix.is_empty() {
            self.repair(&tables, &to_fix).await?
        } else {
            Default::default()
        };
        for (t, ctx) in tables.iter().enumerate() {
            let repaired = repairs.remove(&t);
            self.fill_report(&mut reports[t], t, ctx, &outcomes, &after_repair, repaired);
            if reports[t].status != TableStatus::Error {
                reports[t].seconds = started.elapsed().as_secs_f64();
            }
        }
        Ok(reports)
    }

    /// Each table's key ranges at the snapshot (one range when the key
    /// cannot be split; a table whose ranges cannot be planned is an error
    /// in its report).
    async fn plan_ranges(
        &self,
        exporter: &SourceSession,
        mapped: &[Arc<MappedTable>],
        reports: &mut [TableReport],
    ) -> Vec<TableCtx> {
        let mut tables = Vec::new();
        for (i, m) in mapped.iter().enumerate() {
            let key = SplitKey::of(&m.source);
            match &key {
                None => {
                    reports[i].note = Some(
                        "the primary key is missing or does not start with an integer, text or uuid column: \
                         compared as one range"
                            .into(),
                    )
                }
                Some(k) if k.is_prefix_of(&m.source) => {
                    let names: Vec<&str> = k.columns.iter().map(|&c| m.source.columns[c].name.as_str()).collect();
                    reports[i].note = Some(format!(
                        "ranges on the key's leading integer, text or uuid column(s) ({}): rows sharing their values \
                         are compared as one range",
                        names.join(", ")
                    ));
                }
                Some(_) => {}
            }
            let chunks = match exporter.plan_chunks(&m.source, key.as_ref(), self.opts.chunk_rows).await {
                Ok(c) => c,
                Err(e) => {
                    reports[i].status = TableStatus::Error;
                    reports[i].error = Some(e.to_string());
                    Vec::new()
                }
            };
            let server = self.server_digest(exporter, m).await;
            tables.push(TableCtx { mapped: m.clone(), chunk_rows: self.opts.chunk_rows.max(1), key, chunks, server });
        }
        tables
    }

    /// Whether `m`'s ranges are digested on the servers first (see
    /// [`server_digest`]); the reason when not is logged.
    async fn server_digest(&self, exporter: &SourceSession, m: &MappedTable) -> Option<server_digest::ServerDigest> {
        let target = self.target.pg_client().filter(|_| self.opts.server_digest)?;
        match server_digest::choose(exporter.client(), target, m, &self.plan.only_tables).await {
            Ok(d) => {
                tracing::info!(table = %m.source.name, "ranges are digested on both servers first");
                Some(d)
            }
            Err(why) => {
                tracing::info!(table = %m.source.name, "ranges are compared row by row: {why}");
                None
            }
        }
    }

    /// While a sync runs, a range can differ only because the target has
    /// not caught up yet: compare the differing ranges again from fresh
    /// snapshots; a difference counts only if it is seen every time.
    async fn recheck_differing(
        &mut self,
        tables: &Arc<Vec<TableCtx>>,
        outcomes: &mut Outcomes,
    ) -> Result<(), ValidateError> {
        for _ in 0..RECHECKS {
            let differing: Vec<Item> = differing(outcomes);
            if differing.is_empty() {
                break;
            }
            tracing::info!(ranges = differing.len(), "re-checking differing ranges from a fresh snapshot");
            let (exporter, snapshot) = self.snapshot().await?;
            let again = compare(self.plan, &snapshot, tables, differing, self.opts.parallelism).await?;
            drop(exporter);
            for (item, r) in again {
                let merged = match (r, outcomes.get(&item)) {
                    (Ok(new), Some(Ok(old))) => Ok(ChunkOutcome { diff: new.diff.intersect(&old.diff), ..new }),
                    (r, _) => r,
                };
                outcomes.insert(item, merged);
            }
        }
        Ok(())
    }

    /// `--repair`: rewrites each differing range from the source, then
    /// compares the rewritten ranges again.
    async fn repair(
        &mut self,
        tables: &Arc<Vec<TableCtx>>,
        to_fix: &[Item],
    ) -> Result<(Outcomes, HashMap<usize, RepairSummary>), ValidateError> {
        let mut after_repair = Outcomes::new();
        let mut repairs: HashMap<usize, RepairSummary> = HashMap::new();
        let (reader, _) = self.snapshot().await?;
        let mut fixed = Vec::new();
        for &(t, c) in to_fix {
            let ctx = &tables[t];
            let chunk = &ctx.chunks[c];
            let sum = repairs.entry(t).or_default();
            let r = async {
                let rows = reader.read_rows(&ctx.mapped.source, ctx.key.as_ref(), chunk).await?;
                let deleted = self.target.replace_chunk(&ctx.mapped, ctx.key.as_ref(), chunk, &rows).await?;
                Ok::<_, ValidateError>((deleted, rows.len() as u64))
            }
            .await;
            match r {
                Ok((deleted, written)) => {
                    sum.chunks += 1;
                    sum.rows_deleted += deleted;
                    sum.rows_written += written;
                    fixed.push((t, c));
                }
                Err(e) => {
                    after_repair.insert((t, c), Err(e));
                }
            }
        }
        drop(reader);
        tracing::info!(ranges = fixed.len(), "repaired; comparing the repaired ranges again");
        let (exporter, snapshot) = self.snapshot().await?;
        after_repair.extend(compare(self.plan, &snapshot, tables, fixed, self.opts.parallelism).await?);
        drop(exporter);
        Ok((after_repair, repairs))
    }

    /// One table's report from its ranges' outcomes (and, after a repair,
    /// what still differs).
    fn fill_report(
        &self,
        r: &mut TableReport,
        t: usize,
        ctx: &TableCtx,
        outcomes: &Outcomes,
        after_repair: &Outcomes,
        repaired: Option<RepairSummary>,
    ) {
        if r.status == TableStatus::Error {
            return;
        }
        r.chunks = ctx.chunks.len() as u64;
        for c in 0..ctx.chunks.len() {
            match outcomes.get(&(t, c)) {
                Some(Ok(o)) => {
                    r.source_rows += o.source_rows;
                    r.target_rows += o.target_rows;
                    r.policy_altered += o.policy_altered;
                    if !o.diff.is_empty() {
                        r.chunks_differing += 1;
                        r.add_diff(&ctx.mapped, &o.diff);
                    }
                }
                Some(Err(e)) => {
                    r.status = TableStatus::Error;
                    r.error.get_or_insert_with(|| e.to_string());
                }
                None => {
                    r.status = TableStatus::Error;
                    r.error.get_or_insert_with(|| format!("range {c} was not compared"));
                }
            }
        }
        r.finish(&ctx.mapped);
        if r.status == TableStatus::Error {
            return;
        }
        r.status = if r.differences() == 0 { TableStatus::Equal } else { TableStatus::Differs };
        if self.opts.repair && r.differences() > 0 {
            let mut sum = repaired.unwrap_or_default();
            let mut failed = None;
            for c in 0..ctx.chunks.len() {
                match after_repair.get(&(t, c)) {
                    Some(Ok(o)) => {
                        sum.remaining += (o.diff.missing.len() + o.diff.extra.len() + o.diff.changed.len()) as u64;
                    }
                    Some(Err(e)) => failed = Some(e.to_string()),
                    None => {}
                }
            }
            if let Some(e) = failed {
                r.error = Some(format!("repair: {e}"));
            } else if sum.remaining == 0 {
                r.status = TableStatus::Repaired;
            }
            r.repair = Some(sum);
        }
    }
}

/// Each compared range's outcome.
type Outcomes = HashMap<Item, Result<ChunkOutcome, ValidateError>>;

/// The ranges that differ (errors excluded).
fn differing(outcomes: &Outcomes) -> Vec<Item> {
    let mut v: Vec<Item> =
        outcomes.iter().filter(|(_, r)| matches!(r, Ok(o) if !o.diff.is_empty())).map(|(k, _)| *k).collect();
    v.sort_unstable();
    v
}

/// Compares `items` with `parallelism` workers, each with a source
/// connection in `snapshot` and a target connection.
async fn compare(
    plan: &Plan,
    snapshot: &str,
    tables: &Arc<Vec<TableCtx>>,
    items: Vec<Item>,
    parallelism: usize,
) -> Result<HashMap<Item, Result<ChunkOutcome, ValidateError>>, ValidateError> {
    let total = items.len();
    let workers = parallelism.max(1).min(total.max(1));
    let mut remaining: Vec<AtomicUsize> = tables.iter().map(|_| AtomicUsize::new(0)).collect();
    for &(t, _) in &items {
        *remaining[t].get_mut() += 1;
    }
    let shared = Arc::new(Shared {
        queue: Mutex::new(items.into_iter().collect()),
        results: Mutex::new(HashMap::new()),
        remaining,
        done: AtomicUsize::new(0),
        rows: AtomicUsize::new(0),
    });
    let progress = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let done = shared.done.load(Ordering::Relaxed);
                let rows = shared.rows.load(Ordering::Relaxed);
                let rate = rows as f64 / start.elapsed().as_secs_f64().max(0.001);
                tracing::info!("validated {done}/{total} ranges, {rows} source rows ({rate:.0} rows/s)");
            }
        })
    };
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (plan, snapshot, tables, shared) = (plan.clone(), snapshot.to_string(), tables.clone(), shared.clone());
        handles.push(tokio::spawn(async move { worker(plan, snapshot, tables, shared).await }));
    }
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(ValidateError::Options(format!("a validation worker failed: {e}")));
            }
        }
    }
    progress.abort();
    let results = std::mem::take(&mut *shared.results.lock().map_err(|_| ValidateError::Options("poisoned".into()))?);
    let left = shared.queue.lock().map(|q| q.len()).unwrap_or(0);
    match first_err {
        // A worker that could not start leaves its share to the others; only
        // fail when ranges were left over.
        Some(e) if left > 0 || results.len() < total => Err(e),
        _ => Ok(results),
    }
}

struct Shared {
    queue: Mutex<VecDeque<Item>>,
    results: Mutex<HashMap<Item, Result<ChunkOutcome, ValidateError>>>,
    remaining: Vec<AtomicUsize>,
    done: AtomicUsize,
    rows: AtomicUsize,
}

async fn worker(
    plan: Plan,
    snapshot: String,
    tables: Arc<Vec<TableCtx>>,
    shared: Arc<Shared>,
) -> Result<(), ValidateError> {
    let source = SourceSession::import(&plan.source.url, &snapshot).await?.with_only(&plan.only_tables);
    let mut target = TargetSession::connect(&plan.target.url).await?;
    if let Some(t) = target.pg_client().filter(|_| tables.iter().any(|c| c.server.is_some())) {
        server_digest::pin_settings(source.client(), t).await?;
    }
    loop {
        let item = match shared.queue.lock() {
            Ok(mut q) => q.pop_front(),
            Err(_) => None,
        };
        let Some((t, c)) = item else { return Ok(()) };
        let ctx = &tables[t];
        let chunk = &ctx.chunks[c];
        let r = compare_chunk(&source, &mut target, ctx, chunk).await;
        if let Ok(o) = &r {
            shared.rows.fetch_add(o.source_rows as usize, Ordering::Relaxed);
            if !o.diff.is_empty() {
                tracing::debug!(table = %ctx.mapped.source.name, range = %chunk.describe(&ctx.mapped.source, ctx.key.as_ref()), "range differs");
            }
        }
        if let Ok(mut res) = shared.results.lock() {
            res.insert((t, c), r);
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
        if shared.remaining[t].fetch_sub(1, Ordering::AcqRel) == 1 {
            tracing::info!(table = %ctx.mapped.source.name, ranges = ctx.chunks.len(), "table compared");
        }
    }
}

async fn compare_chunk(
    source: &SourceSession,
    target: &mut TargetSession,
    ctx: &TableCtx,
    chunk: &Chunk,
) -> Result<ChunkOutcome, ValidateError> {
    let key = ctx.key.as_ref();
    // Both servers digest the range themselves; equal digests imply equal
    // canonical rows (invariant *server digest implies canonical equality*).
    // Differing ones go straight to reading the rows.
    let server = match (&ctx.server, target.pg_client()) {
        (Some(d), Some(t)) => Some(d.digests(source.client(), t, &ctx.mapped, key, chunk).await?),
        _ => None,
    };
    let on_servers = server.is_some();
    let (rows, policy_altered) = match server {
        Some((s, t)) if s == t => {
            return Ok(ChunkOutcome { source_rows: s.rows, target_rows: t.rows, ..Default::default() });
        }
        // A PostgreSQL target alters no value of a PostgreSQL source.
        Some((s, t)) => (s.rows.max(t.rows), 0),
        None => {
            // First only counts and checksums, nothing kept: most ranges are equal.
            let (s, t) = tokio::join!(source.digest(&ctx.mapped, key, chunk), target.digest(&ctx.mapped, key, chunk));
            let ((s, policy_altered), t) = (s?, t?);
            if s == t {
                return Ok(ChunkOutcome {
                    source_rows: s.rows,
                    target_rows: t.rows,
                    diff: ChunkDiff::default(),
                    policy_altered,
                });
            }
            (s.rows.max(t.rows), policy_altered)
        }
    };
    // A large differing range (sparse keys) is bisected, so only small
    // ranges are ever held in memory to be diffed. Digested on the servers,
    // halves cost a pass there instead of every row read here: narrowed
    // down to `SERVER_LEAF_ROWS`.
    let leaf = if on_servers { SERVER_LEAF_ROWS.min(ctx.chunk_rows / 8).max(1) } else { 4 * ctx.chunk_rows };
    if rows > leaf {
        if let Some((a, b)) = chunks::bisect(chunk) {
            let x = Box::pin(compare_chunk(source, target, ctx, &a)).await?;
            let y = Box::pin(compare_chunk(source, target, ctx, &b)).await?;
            let mut diff = x.diff;
            diff.missing.extend(y.diff.missing);
            diff.extra.extend(y.diff.extra);
            diff.changed.extend(y.diff.changed);
            return Ok(ChunkOutcome {
                source_rows: x.source_rows + y.source_rows,
                target_rows: x.target_rows + y.target_rows,
                diff,
                policy_altered: x.policy_altered + y.policy_altered,
            });
        }
    }
    // The range differs: read it again, keeping the rows, and merge by key.
    let (s, t) = tokio::join!(source.read_chunk(&ctx.mapped, key, chunk), target.read_chunk(&ctx.mapped, key, chunk));
    let (s, t) = (s?, t?);
    let (source_rows, target_rows) = (s.len() as u64, t.len() as u64);
    Ok(ChunkOutcome { source_rows, target_rows, diff: diff_rows(s, t), policy_altered })
}

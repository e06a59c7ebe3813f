//! `xdb tail`: decoded changes from the replication stream as JSON lines.
//!
//! By default tail reads a TEMPORARY slot of its own, created as it starts
//! (PostgreSQL drops it when the connection ends): confirming on the plan's
//! slot would move the position the next `xdb sync` starts from, and every
//! change tail printed would never reach the target (issue 14). Reading the
//! plan's slot is an explicit choice (`plan_slot`), and even then nothing is
//! confirmed there once a sync has recorded a position on the target.
//!
//! Each transaction is printed, flushed, and only then confirmed, so a
//! transaction is never lost between a crash and the slot; with the plan's
//! slot, a restart prints nothing that was confirmed before.

pub mod json;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::model::ChunkedTransaction as _;
use crate::model::{Lsn, ReplicaIdentity, TableSchema, Transaction};
use crate::pg_conn::client;
use crate::plan::{GeneratedFrom, Plan};
use crate::source::postgres::assembler::{AssemblerEvent, SpilledTransaction};
use crate::source::postgres::catalog::{load_table, TypeCache};
use crate::source::postgres::change_stream::{ChangeStream, ChangeStreamConfig, ChangeStreamError};
use crate::source::postgres::{publication, streamable};

/// Options of `xdb tail`.
#[derive(Debug, Clone, Default)]
pub struct TailOptions {
    /// Read the plan's own slot (`source.slot`) instead of a temporary one.
    /// Confirms there only while the target holds no applied position for
    /// it (no sync uses it yet); otherwise runs as `no_ack`.
    pub plan_slot: bool,
    /// Start here instead of the slot's confirmed position (the server
    /// never goes back before what was confirmed). Only with `plan_slot`.
    pub from_lsn: Option<Lsn>,
    /// Print without confirming: the slot does not move, the next run shows
    /// the same changes again.
    pub no_ack: bool,
    /// Stop after this many transactions (tests, sampling).
    pub max_transactions: Option<u64>,
}

/// Why `tail` stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("{0}")]
    Connect(#[from] client::ConnectError),
    #[error("{0}")]
    Publication(#[from] publication::PublicationError),
    #[error("{0}")]
    Stream(#[from] ChangeStreamError),
    #[error("table {0} does not exist on the source")]
    MissingTable(String),
    #[error("{0}")]
    Unstreamable(#[from] streamable::UnstreamableTables),
    #[error("writing the output: {0}")]
    Output(std::io::Error),
    /// A temporary slot starts at its creation; the server would silently
    /// start there instead of at an earlier LSN.
    #[error(
        "--from-lsn needs --plan-slot: tail's own temporary slot starts when tail starts and cannot go back to \
         {0}; to re-read older changes, read the plan's slot (--plan-slot --from-lsn {0})"
    )]
    FromLsnNeedsPlanSlot(Lsn),
}

/// What a run printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailSummary {
    pub transactions: u64,
    pub changes: u64,
    pub confirmed: Lsn,
}

/// Rows per chunk when printing a spilled (very large) transaction.
const SPILL_CHUNK: usize = 10_000;

/// Bytes of a streamed transaction held in memory before it spills to a
/// temporary file: `XDB_SPILL_THRESHOLD_BYTES`, default 16 MiB (peak memory is about three times the threshold).
pub fn spill_threshold_bytes() -> usize {
    std::env::var("XDB_SPILL_THRESHOLD_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(16 << 20)
}

/// Streams until a signal, the end of the output, or `max_transactions`.
pub async fn run(plan: &Plan, options: &TailOptions, out: &mut dyn Write) -> Result<TailSummary, TailError> {
    if let (false, Some(lsn)) = (options.plan_slot, options.from_lsn) {
        return Err(TailError::FromLsnNeedsPlanSlot(lsn));
    }
    let mut options = options.clone();
    let slot = if options.plan_slot {
        if !options.no_ack {
            if let Some(reason) = sync_uses_slot(plan).await {
                eprintln!(
                    "xdb tail: {}: not confirming anything on slot {} (running as --no-ack), so the next \
                     `xdb sync` still receives every change printed here",
                    plan.scrub(&reason),
                    plan.source.slot
                );
                options.no_ack = true;
            }
        }
        plan.source.slot.clone()
    } else {
        own_slot_name()
    };
    let options = &options;
    let catalog = client::connect(&plan.source.url, "xdb tail").await?;
    let mut types = TypeCache::new();
    for t in &plan.tables {
        if load_table(&catalog, &mut types, t, plan.mapping.generated).await.map_err(ChangeStreamError::from)?.is_none()
        {
            return Err(TailError::MissingTable(t.to_string()));
        }
    }
    // Before anything is published (invariant *keys*).
    streamable::check(&catalog, &plan.tables, &plan.only_tables).await.map_err(ChangeStreamError::from)??;
    if publication::ensure(&catalog, &plan.source.publication, &plan.tables, &plan.only_tables, plan.mapping.generated)
        .await?
    {
        tracing::info!(publication = %plan.source.publication, "created publication");
    }
    let config = ChangeStreamConfig {
        continuity: Default::default(),
        slot: slot.clone(),
        publication: plan.source.publication.clone(),
        start: options.from_lsn.unwrap_or(Lsn::ZERO),
        heartbeat_interval: Duration::from_secs(plan.source.heartbeat_interval_secs.max(1)),
        spill_threshold_bytes: spill_threshold_bytes(),
        spill_dir: std::env::temp_dir(),
        application_name: "xdb tail".into(),
        temporary: !options.plan_slot,
    };
    let mut stream = ChangeStream::open(&plan.source.url, catalog, &config).await?;
    tracing::info!(
        slot = %slot,
        temporary = config.temporary,
        created = stream.slot.created,
        from = %stream.slot.position.max(config.start),
        "streaming changes"
    );

    let mut summary = TailSummary::default();
    let result = pump(&mut stream, &mut types, plan.mapping.generated, options, out, &mut summary).await;
    summary.confirmed = stream.confirmed();
    // Report what was confirmed even when stopping on an error.
    let closed = stream.close().await;
    result?;
    closed?;
    Ok(summary)
}

/// Prints events until a signal, the transaction limit, the end of the
/// stream or a reader that went away; confirms what was printed unless
/// `--no-ack`.
async fn pump(
    stream: &mut ChangeStream,
    types: &mut TypeCache,
    generated: GeneratedFrom,
    options: &TailOptions,
    out: &mut dyn Write,
    summary: &mut TailSummary,
) -> Result<(), TailError> {
    let mut stop = std::pin::pin!(shutdown_signal());
    loop {
        if options.max_transactions.is_some_and(|m| summary.transactions >= m) {
            return Ok(());
        }
        let event = tokio::select! {
            ev = stream.next() => ev?,
            _ = &mut stop => {
                tracing::info!("stopping on signal");
                return Ok(());
            }
        };
        let Some(event) = event else { return Ok(()) };
        let (printed, end) = match event {
            AssemblerEvent::Transaction(tx) => {
                let printed = print(out, &tx, summary)?;
                summary.transactions += u64::from(printed && !tx.changes.is_empty());
                (printed, Some(tx.end_lsn))
            }
            AssemblerEvent::Spilled(mut spilled) => {
                let printed = print_spilled(out, &mut spilled, summary)?;
                summary.transactions += u64::from(printed);
                (printed, Some(spilled.end_lsn))
            }
            AssemblerEvent::Message { xid, transactional, lsn, prefix, content } => {
                let line = json!({
                    "lsn": lsn.to_string(),
                    "xid": xid,
                    "op": "message",
                    "transactional": transactional,
                    "prefix": prefix,
                    "content": String::from_utf8_lossy(&content),
                });
                (write_line(out, &line)? && flush(out)?, None)
            }
            AssemblerEvent::Relation { previous, current } => {
                if previous.as_ref().is_some_and(|p| p.columns != current.columns) {
                    tracing::info!(table = %current.name, "the table's columns changed on the source");
                }
                key_from_catalog(stream, types, generated, current).await?;
                (true, None)
            }
        };
        if !printed {
            return Ok(());
        }
        if let Some(end) = end.filter(|_| !options.no_ack) {
            stream.confirm(end);
        }
    }
}

/// A large transaction, chunk by chunk. False when the reader went away.
fn print_spilled(
    out: &mut dyn Write,
    spilled: &mut SpilledTransaction,
    summary: &mut TailSummary,
) -> Result<bool, TailError> {
    loop {
        let changes = spilled.next_changes(SPILL_CHUNK).map_err(ChangeStreamError::from)?;
        if changes.is_empty() {
            return Ok(true);
        }
        let chunk = Transaction { changes, ..spilled.header() };
        if !print(out, &chunk, summary)? {
            return Ok(false);
        }
    }
}

/// pgoutput marks every column as key under REPLICA IDENTITY FULL; the
/// catalog knows the real primary key, if any, and the changes that
/// follow are printed with it.
async fn key_from_catalog(
    stream: &mut ChangeStream,
    types: &mut TypeCache,
    generated: GeneratedFrom,
    current: Arc<TableSchema>,
) -> Result<(), TailError> {
    if current.replica_identity != ReplicaIdentity::Full || !current.primary_key.is_empty() {
        return Ok(());
    }
    let catalog_schema =
        load_table(stream.catalog(), types, &current.name, generated).await.map_err(ChangeStreamError::from)?;
    if let Some(s) = catalog_schema {
        let names: Vec<String> = s.primary_key.iter().map(|&i| s.columns[i].name.clone()).collect();
        stream.keyed_on(current, &names);
    }
    Ok(())
}

/// Prints a transaction's changes and flushes. False when the reader went
/// away (a closed pipe): stop without confirming.
fn print(out: &mut dyn Write, tx: &Transaction, summary: &mut TailSummary) -> Result<bool, TailError> {
    for line in json::transaction_lines(tx) {
        if !write_line(out, &line)? {
            return Ok(false);
        }
        summary.changes += 1;
    }
    flush(out)
}

fn flush(out: &mut dyn Write) -> Result<bool, TailError> {
    match out.flush() {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(TailError::Output(e)),
    }
}

fn write_line(out: &mut dyn Write, line: &serde_json::Value) -> Result<bool, TailError> {
    match writeln!(out, "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(TailError::Output(e)),
    }
}

/// A slot name of this process's own: slot names are unique across the
/// whole server, so the pid alone could meet another host's tail.
fn own_slot_name() -> String {
    let micros = chrono::Utc::now().timestamp_micros().rem_euclid(1_000_000_000_000);
    format!("xdb_tail_{}_{micros}", std::process::id())
}

/// Why tail must not confirm on the plan's slot: a sync has recorded an
/// applied position for it on the target (confirming would move the point
/// the next sync streams from past changes it never applied), or the
/// target could not be read to rule that out. `None` when no sync uses it.
async fn sync_uses_slot(plan: &Plan) -> Option<String> {
    use crate::plan::TargetUrl;
    use crate::sink::TargetConn;
    // Opening a missing SQLite file would create it: no file, no sync.
    if let TargetUrl::Sqlite(path) = &plan.target.url {
        if !path.exists() {
            return None;
        }
    }
    let mut target = match TargetConn::connect(&plan.target.url).await {
        Ok(t) => t,
        Err(e) => return Some(format!("cannot read the target to check for a sync using this slot ({e})")),
    };
    match target.read_position(&plan.source.slot).await {
        Ok(None) => None,
        Ok(Some(p)) => Some(format!("`xdb sync` uses this slot (the target has applied it up to {})", p.applied_lsn)),
        // Typically no state tables yet; but an unreadable target cannot
        // prove that no sync depends on the slot.
        Err(e) => Some(format!("cannot read the target's applied position for this slot ({e})")),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    crate::shutdown::requested().await
}

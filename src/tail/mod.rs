//! `xdb tail`: decoded changes from the replication stream as JSON lines.
//!
//! Each transaction is printed, flushed, and only then confirmed to the
//! source, so a transaction is never lost between a crash and the slot; a
//! restart prints nothing that was confirmed before.

pub mod json;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::model::{Lsn, ReplicaIdentity, Transaction};
use crate::plan::Plan;
use crate::source::postgres::assembler::AssemblerEvent;
use crate::source::postgres::catalog::{load_table, TypeCache};
use crate::source::postgres::change_stream::{ChangeStream, ChangeStreamConfig, ChangeStreamError};
use crate::source::postgres::{client, publication};

/// Options of `xdb tail`.
#[derive(Debug, Clone, Default)]
pub struct TailOptions {
    /// Start here instead of the slot's confirmed position (the server
    /// never goes back before what was confirmed).
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
    #[error("writing the output: {0}")]
    Output(std::io::Error),
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
    let catalog = client::connect(&plan.source.url, "xdb tail").await?;
    let mut types = TypeCache::new();
    for t in &plan.tables {
        if load_table(&catalog, &mut types, t).await.map_err(ChangeStreamError::from)?.is_none() {
            return Err(TailError::MissingTable(t.to_string()));
        }
    }
    if publication::ensure(&catalog, &plan.source.publication, &plan.tables).await? {
        tracing::info!(publication = %plan.source.publication, "created publication");
    }
    let config = ChangeStreamConfig {
        continuity: Default::default(),
        slot: plan.source.slot.clone(),
        publication: plan.source.publication.clone(),
        start: options.from_lsn.unwrap_or(Lsn::ZERO),
        heartbeat_interval: Duration::from_secs(plan.source.heartbeat_interval_secs.max(1)),
        spill_threshold_bytes: spill_threshold_bytes(),
        spill_dir: std::env::temp_dir(),
        application_name: "xdb tail".into(),
    };
    let mut stream = ChangeStream::open(&plan.source.url, catalog, &config).await?;
    tracing::info!(
        slot = %plan.source.slot,
        created = stream.slot.created,
        from = %stream.slot.position.max(config.start),
        "streaming changes"
    );

    let mut summary = TailSummary::default();
    let result = pump(&mut stream, &mut types, options, out, &mut summary).await;
    summary.confirmed = stream.confirmed();
    // Report what was confirmed even when stopping on an error.
    let closed = stream.close().await;
    result?;
    closed?;
    Ok(summary)
}

async fn pump(
    stream: &mut ChangeStream,
    types: &mut TypeCache,
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
        match event {
            AssemblerEvent::Transaction(tx) => {
                if !print(out, &tx, summary)? {
                    return Ok(());
                }
                summary.transactions += u64::from(!tx.changes.is_empty());
                if !options.no_ack {
                    stream.confirm(tx.end_lsn);
                }
            }
            AssemblerEvent::Spilled(mut spilled) => {
                loop {
                    let changes = spilled.next_changes(SPILL_CHUNK).map_err(ChangeStreamError::from)?;
                    if changes.is_empty() {
                        break;
                    }
                    let chunk = Transaction {
                        xid: spilled.xid,
                        commit_lsn: spilled.commit_lsn,
                        end_lsn: spilled.end_lsn,
                        commit_time_micros: spilled.commit_time_micros,
                        changes,
                    };
                    if !print(out, &chunk, summary)? {
                        return Ok(());
                    }
                }
                summary.transactions += 1;
                if !options.no_ack {
                    stream.confirm(spilled.end_lsn);
                }
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
                if !write_line(out, &line)? || !flush(out)? {
                    return Ok(());
                }
            }
            AssemblerEvent::Relation { previous, current } => {
                if previous.as_ref().is_some_and(|p| p.columns != current.columns) {
                    tracing::info!(table = %current.name, "the table's columns changed on the source");
                }
                // pgoutput marks every column as key under REPLICA IDENTITY
                // FULL; the catalog knows the real primary key, if any.
                if current.replica_identity == ReplicaIdentity::Full && current.primary_key.is_empty() {
                    let catalog_schema =
                        load_table(stream.catalog(), types, &current.name).await.map_err(ChangeStreamError::from)?;
                    if let Some(s) = catalog_schema.filter(|s| !s.primary_key.is_empty()) {
                        let names: Vec<&str> = s.primary_key.iter().map(|&i| s.columns[i].name.as_str()).collect();
                        let pk: Vec<usize> = current
                            .columns
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| names.contains(&c.name.as_str()))
                            .map(|(i, _)| i)
                            .collect();
                        let mut richer = (*current).clone();
                        richer.primary_key = pk;
                        stream.insert_relation(Arc::new(richer));
                    }
                }
            }
        }
    }
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

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    crate::shutdown::requested().await
}

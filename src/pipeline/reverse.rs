//! `xdb sync --reverse`: the way back after the switch. Every committed
//! change made on the MySQL/MariaDB target is applied to the original
//! PostgreSQL source, in commit order, exactly once.
//!
//! - **Start** (invariant *reverse start*): the binlog position at which the
//!   target equals the frozen source is recorded on the source in
//!   `xdb.reverse_start` (by `--set-start-here`, run after the forward
//!   stream applied everything and stopped, while the source is frozen).
//!   Without it `sync --reverse` refuses: starting anywhere else would miss
//!   or double changes.
//! - **Exactly once**: the same `SinkWriter` as forward, with a PostgreSQL
//!   connection to the source as its target, writes the applied binlog
//!   position (its ordered form, `source::mysql::position`) in `xdb.state`
//!   under the key `<slot>.reverse`, in the same transaction as the data.
//!   After a restart the dump resumes from that position.
//! - **No loop**: the forward slot must not be active (checked before every
//!   start); the reverse writes land in the source's WAL but no forward
//!   stream reads them, and xdb's forward writes on the target all precede
//!   the recorded start.
//! - **Values**: mapped back by the source's real column types
//!   (`source::mysql::value`); a value that cannot be written back exactly
//!   stops with table, column and key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::backoff::Backoff;
use super::batcher::BatchPolicy;
use super::reverse_position::{self, Recorded, Resume};
use super::stream::{self, RunSettings};
use crate::check::{CheckReport, CheckSection};
use crate::mapping::TargetKind;
use crate::model::{ChunkedTransaction, Lsn, ReplicaIdentity, TableSchema, Transaction};
use crate::pg_conn::client;
use crate::plan::naming::Naming;
use crate::plan::Plan;
use crate::plan::TargetUrl;
use crate::sink::writer::{SinkError, SinkWriter};
use crate::sink::{ChangeSink, TargetConn, TargetError};
use crate::source::mysql::binlog_source::{BinlogSource, Positions};
use crate::source::mysql::binlog_stream::{
    binary_logs, current_position, gtid_position_at, server_identity, table_columns, table_enums, BinlogReadConfig,
    BinlogReader, ReverseTable,
};
use crate::source::mysql::error::BinlogError;
use crate::source::mysql::position::BinlogPosition;
use crate::source::postgres::catalog::{load_planned, CatalogError};
use crate::source::ShapeChange;

#[derive(Debug, thiserror::Error)]
pub enum ReverseError {
    #[error("target (now the source of changes): {0}")]
    Binlog(#[from] BinlogError),
    #[error("{0}")]
    Sink(#[from] SinkError),
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("original source: {0}")]
    SourceConnect(#[from] client::ConnectError),
    #[error("original source: {0}")]
    Catalog(#[from] CatalogError),
    #[error("original source: {context}: {source}")]
    Source {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{0}")]
    Refused(String),
    #[error("could not start the streaming thread: {0}")]
    StreamThread(#[source] std::io::Error),
    #[error("target (now the source of changes): {0}")]
    Ended(#[from] stream::StreamEnded),
}

impl ReverseError {
    fn is_retryable(&self) -> bool {
        match self {
            ReverseError::Binlog(e) => e.is_retryable(),
            ReverseError::Sink(e) => e.is_retryable(),
            ReverseError::Ended(_) => true,
            ReverseError::Target(e) => e.is_retryable(),
            ReverseError::SourceConnect(e) => e.retryable,
            ReverseError::Source { source, .. } => crate::error_policy::postgres(source).is_transient(),
            _ => false,
        }
    }
}

/// Options of `xdb sync --reverse`.
#[derive(Debug, Clone, Default)]
pub struct ReverseOptions {
    /// Stop at the end of the target's binlog as it is when reading starts.
    pub until_caught_up: bool,
    pub max_retries: Option<u32>,
}

/// The key of the reverse stream's applied position in `xdb.state`.
pub fn position_key(plan: &Plan) -> String {
    format!("{}.reverse", plan.source.slot)
}

const START_DDL: &str = "CREATE SCHEMA IF NOT EXISTS xdb; CREATE TABLE IF NOT EXISTS xdb.reverse_start (\
     slot text PRIMARY KEY, binlog_file text NOT NULL, binlog_pos bigint NOT NULL, gtid text, recorded_at timestamptz NOT NULL DEFAULT now()); \
     ALTER TABLE xdb.reverse_start ADD COLUMN IF NOT EXISTS server text";

/// Why there is no way back from this target (None: MySQL/MariaDB, built).
pub fn unsupported_target(plan: &Plan) -> Option<&'static str> {
    match plan.target.url {
        TargetUrl::Mysql(_) => None,
        TargetUrl::Sqlite(_) => Some(
            "a SQLite file has no change log (no binlog, no WAL that can be read as changes), so writes made on it \
             after the switch cannot be streamed back: there is no way back from a SQLite target",
        ),
        TargetUrl::Postgres(_) => None,
        TargetUrl::Nats(_) => Some("a log target is not a database that takes writes: there is no way back from it"),
    }
}

async fn mysql_conn(plan: &Plan) -> Result<(mysql_async::Conn, bool, String), ReverseError> {
    let t = TargetConn::connect(&plan.target.url).await?;
    let label = t.label();
    let mariadb = matches!(t, TargetConn::Mysql(crate::sink::mysql::MysqlConn { mariadb: true, .. }));
    match t {
        TargetConn::Mysql(crate::sink::mysql::MysqlConn { conn, .. }) => Ok((conn, mariadb, label)),
        _ => Err(ReverseError::Refused(unsupported_target(plan).unwrap_or_default().into())),
    }
}

/// `--set-start-here`: records the target's current binlog end as the
/// reverse start. Refused while the forward slot is streaming (xdb cannot
/// tell here that it applied everything: the operator runs it after `sync
/// --until-caught-up` on a frozen source).
pub async fn record_start(plan: &Plan) -> Result<String, ReverseError> {
    let pg = client::connect(&plan.source.url, "xdb sync --reverse").await?;
    forward_stopped(plan, &pg).await?;
    record_switch_point(plan).await
}

/// The cutover's `start_reverse`: records the target's current binlog end
/// as the reverse start. The runbook guarantees the source is frozen and
/// the target caught up (the forward stream may still be running: with the
/// source frozen it applies nothing more to the plan's tables).
pub async fn record_switch_point(plan: &Plan) -> Result<String, ReverseError> {
    if let Some(why) = unsupported_target(plan) {
        return Err(ReverseError::Refused(why.into()));
    }
    if matches!(plan.target.url, TargetUrl::Postgres(_)) {
        let at = super::reverse_pg::record_switch_point(plan).await?;
        return Ok(format!("{at} (slot {} on the target)", super::reverse_pg::slot(plan)));
    }
    let pg = client::connect(&plan.source.url, "xdb sync --reverse").await?;
    let (mut conn, mariadb, label) = mysql_conn(plan).await?;
    let pos = current_position(&mut conn, &label).await?;
    let server = server_identity(&mut conn, mariadb, &label).await?;
    pg.batch_execute(START_DDL)
        .await
        .map_err(|source| ReverseError::Source { context: "creating xdb.reverse_start".into(), source })?;
    pg.batch_execute(&format!(
        "SET client_min_messages = warning; {}; RESET client_min_messages",
        reverse_position::DDL
    ))
    .await
    .map_err(|source| ReverseError::Source { context: "creating xdb.reverse_position".into(), source })?;
    pg.execute(
        "INSERT INTO xdb.reverse_start (slot, binlog_file, binlog_pos, gtid, server) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (slot) DO UPDATE SET binlog_file = excluded.binlog_file, binlog_pos = excluded.binlog_pos, \
         gtid = excluded.gtid, server = excluded.server, recorded_at = now()",
        &[&plan.source.slot, &pos.file, &(pos.pos as i64), &pos.gtid.as_ref().map(|g| g.to_string()), &server],
    )
    .await
    .map_err(|source| ReverseError::Source { context: "recording the reverse start".into(), source })?;
    // A new start makes an older applied position meaningless.
    for sql in ["DELETE FROM xdb.state WHERE slot = $1", "DELETE FROM xdb.reverse_position WHERE slot = $1"] {
        pg.execute(sql, &[&position_key(plan)])
            .await
            .or_else(
                |e| if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) { Ok(0) } else { Err(e) },
            )
            .map_err(|source| ReverseError::Source {
                context: "forgetting an older reverse position".into(),
                source,
            })?;
    }
    Ok(pos.to_string())
}

/// Refuses while the forward stream holds the plan's slot: its next
/// confirmations would carry the reverse writes forward again.
pub(super) async fn forward_stopped(plan: &Plan, pg: &tokio_postgres::Client) -> Result<(), ReverseError> {
    // A forward sync that just ended leaves the slot active until its
    // walsender notices: give it a few seconds before refusing.
    for attempt in 0..10 {
        let row = pg
            .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&plan.source.slot])
            .await
            .map_err(|source| ReverseError::Source { context: "reading pg_replication_slots".into(), source })?;
        if !row.is_some_and(|r| r.get::<_, bool>(0)) {
            return Ok(());
        }
        if attempt < 9 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Err(ReverseError::Refused(format!(
        "the forward stream is running (replication slot {} is active): stop `xdb sync` first — changes \
         written back to the source must never be read by a forward stream",
        plan.source.slot
    )))
}

/// Two reverse streams of one plan would both apply the same transactions
/// (each skips only what it applied itself): a session advisory lock on
/// the source, held by this connection for the stream's life, lets one run.
/// A killed process's session ends with its socket, releasing the lock.
async fn only_reverse_stream(plan: &Plan, pg: &tokio_postgres::Client) -> Result<(), ReverseError> {
    for attempt in 0..10 {
        let got: bool = pg
            .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&position_key(plan)])
            .await
            .map_err(|source| ReverseError::Source { context: "taking the reverse stream's lock".into(), source })?
            .get(0);
        if got {
            return Ok(());
        }
        if attempt < 9 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Err(ReverseError::Refused(format!(
        "another `xdb sync --reverse` of slot {} is running (it holds the advisory lock on the source): stop it first",
        plan.source.slot
    )))
}

/// The recorded start, if any.
pub(super) async fn read_start(
    plan: &Plan,
    pg: &tokio_postgres::Client,
) -> Result<Option<BinlogPosition>, ReverseError> {
    Ok(read_start_on(plan, pg).await?.map(|r| r.position))
}

/// The recorded start with the server it was read on.
async fn read_start_on(plan: &Plan, pg: &tokio_postgres::Client) -> Result<Option<Recorded>, ReverseError> {
    // Starts recorded before the server was kept have no such column.
    let _ = pg
        .batch_execute(
            "SET client_min_messages = warning; ALTER TABLE xdb.reverse_start ADD COLUMN IF NOT EXISTS server text; \
             RESET client_min_messages",
        )
        .await;
    reverse_position::read_from(pg, "xdb.reverse_start", &plan.source.slot).await
}

/// Runs until a signal, a permanent error, or with `until_caught_up` the
/// end of the binlog.
pub async fn run(plan: &Plan, options: &ReverseOptions) -> Result<(), ReverseError> {
    if let Some(why) = unsupported_target(plan) {
        return Err(ReverseError::Refused(why.into()));
    }
    if matches!(plan.target.url, TargetUrl::Postgres(_)) {
        return Box::pin(super::reverse_pg::run(plan, options)).await;
    }
    // On the stream's own thread, as the forward stream (`own_thread`).
    let (plan, options) = (plan.clone(), options.clone());
    crate::own_thread::run("xdb-reverse", move || async move { stream(&plan, &options).await })
        .await
        .map_err(ReverseError::StreamThread)?
}

/// The binlog stream, reconnected after retryable errors.
async fn stream(plan: &Plan, options: &ReverseOptions) -> Result<(), ReverseError> {
    let mut backoff = Backoff::new(options.max_retries);
    let mut stop = std::pin::pin!(crate::tail::shutdown_signal());
    loop {
        let began = std::time::Instant::now();
        let r = Box::pin(stream_once(plan, options)).await;
        // A stream that ran a while before failing starts the back-off anew.
        if began.elapsed() > Duration::from_secs(60) {
            backoff.reset();
        }
        match r {
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

/// Where the dump starts (module `reverse_position`): the binlog position,
/// whether by its GTID, the writer's applied ordinal, and this server's
/// identity.
async fn resume_point(
    plan: &Plan,
    pg: &tokio_postgres::Client,
    my: &mut mysql_async::Conn,
    mariadb: bool,
    label: &str,
    start: &Recorded,
    stored: Option<Lsn>,
) -> Result<(BinlogPosition, bool, Lsn, String), ReverseError> {
    let key = position_key(plan);
    let start_ordinal = start
        .position
        .ordinal()
        .ok_or_else(|| ReverseError::Refused(format!("bad binlog position {}", start.position)))?;
    let mut at = match reverse_position::read(pg, &key).await? {
        Some(r) => r,
        // Applied before positions were recorded with their GTID: the
        // ordinal, on the start's server.
        None => match stored.filter(|s| *s > start_ordinal) {
            Some(s) => Recorded {
                position: BinlogPosition::from_ordinal(s, &start.position.file)
                    .ok_or_else(|| ReverseError::Refused(format!("bad applied position {s}")))?,
                server: start.server.clone(),
            },
            None => start.clone(),
        },
    };
    let here = server_identity(my, mariadb, label).await?;
    let logs = binary_logs(my, label).await?;
    let resume = reverse_position::decide(&at, &here, &logs).map_err(ReverseError::Refused)?;
    if at.position.gtid.is_none() && resume == Resume::FilePos && mariadb {
        // Recorded without one: MariaDB tells the GTID position of any
        // file:offset it still has, so GTIDs are kept from here on.
        at.position.gtid = gtid_position_at(my, &at.position.file, at.position.pos).await;
    }
    let applied = stored.unwrap_or(start_ordinal).max(start_ordinal);
    match resume {
        Resume::FilePos => Ok((at.position, false, applied, here)),
        Resume::Gtid { failover: false } => Ok((at.position, true, applied, here)),
        Resume::Gtid { failover: true } => {
            // Another server's binlog: its file numbers start elsewhere,
            // so the ordered position starts again (the GTID position is
            // what says what is applied). Only this stream writes it (it
            // holds the advisory lock).
            tracing::warn!(
                from = %at.position,
                was = at.server.as_deref().unwrap_or_default(),
                now = %here,
                "the target is another server (a failover): resuming at the GTID position"
            );
            pg.execute("DELETE FROM xdb.state WHERE slot = $1", &[&key])
                .await
                .map_err(|source| ReverseError::Source { context: "resetting the reverse position".into(), source })?;
            Ok((at.position, true, Lsn(0), here))
        }
    }
}

/// Replica server id announced by the reader: fixed per plan, so a
/// restarted reader replaces its predecessor's dump thread on the server.
fn server_id(plan: &Plan) -> u32 {
    let h = twox_hash::XxHash3_128::oneshot(position_key(plan).as_bytes());
    0x4000_0000 | (h as u32 & 0x3fff_ffff)
}

async fn stream_once(plan: &Plan, options: &ReverseOptions) -> Result<(), ReverseError> {
    let pg = client::connect(&plan.source.url, "xdb sync --reverse").await?;
    forward_stopped(plan, &pg).await?;
    only_reverse_stream(plan, &pg).await?;
    let Some(start) = read_start_on(plan, &pg).await? else { return Err(no_start(plan)) };
    let schemas = source_schemas(plan, &pg).await?;
    let (mut my, mariadb, label) = mysql_conn(plan).await?;
    let (database, tables) = target_tables(&mut my, &label, &Naming::of_plan(plan), &schemas).await?;
    let (rplan, mut target) = original_source_as_target(plan, &pg, &schemas).await?;
    let stored = target.read_position(&rplan.source.slot).await?.map(|p| p.applied_lsn);
    let (from, by_gtid, applied, here) = resume_point(plan, &pg, &mut my, mariadb, &label, &start, stored).await?;
    let mapped = crate::mapping::map_tables(&rplan, &TargetKind::Postgres, &schemas)
        .map_err(|e| ReverseError::Refused(format!("type mapping:\n{e}")))?;
    let writer = SinkWriter::new(
        target,
        TargetKind::Postgres,
        &rplan,
        super::sync::pg_live(&rplan),
        mapped,
        HashMap::new(),
        applied,
    )?;
    let config = BinlogReadConfig {
        server_id: server_id(plan),
        start: from.clone(),
        by_gtid,
        database,
        tables,
        until_end: options.until_caught_up,
        mariadb,
        label,
    };
    let (side, _, _) = mysql_conn(plan).await?;
    let source = BinlogSource::new(BinlogReader::open(my, side, config).await?);
    if by_gtid {
        tracing::info!(from = %from, "the binlog file is not usable here: resuming at the GTID position");
    }
    tracing::info!(from = %from, "streaming the target's changes back to the original source");
    let sink = BackSink { positions: source.positions(), writer, key: position_key(plan), here };
    let policy = BatchPolicy {
        max_rows: BATCH_ROWS,
        max_delay: Duration::from_millis(plan.apply.max_batch_delay_ms),
        linger: Duration::ZERO,
        max_linger: Duration::ZERO,
    };
    let settings = RunSettings { policy, marker: None, queued_items: QUEUED_ROWS, queued_rows: QUEUED_ROWS };
    let mut stop = std::pin::pin!(crate::tail::shutdown_signal());
    let metrics = super::sync::SharedMetrics::default();
    Box::pin(stream::run::<_, _, ReverseError>(source, sink, settings, &metrics, &mut stop)).await?;
    Ok(())
}

/// Changes applied in one transaction on the original source, at most
/// (what has piled up; a large transaction's parts go in one of their own).
const BATCH_ROWS: usize = 5_000;

/// Changes read but not yet applied, at most (invariant *bounded memory*).
const QUEUED_ROWS: usize = 50_000;

/// The original source as the way back's sink: the writer, with each
/// batch's binlog position recorded in the same transaction as its data
/// (invariant *exactly once*: `xdb.reverse_position`, read on resume).
struct BackSink {
    writer: SinkWriter,
    positions: Positions,
    key: String,
    /// This MySQL/MariaDB server's identity, recorded with the position.
    here: String,
}

impl BackSink {
    /// The position of the transaction ending at `end` goes with the next
    /// commit.
    fn record_through(&mut self, end: Lsn) {
        if let Some(p) = self.positions.take_through(end) {
            let (sql, params) = reverse_position::companion(&self.key, &p, &self.here);
            self.writer.set_position_companion(sql, params);
        }
    }
}

impl ChangeSink for BackSink {
    type Error = SinkError;

    async fn apply(&mut self, txs: &mut [Transaction]) -> Result<(), SinkError> {
        if let Some(end) = txs.last().map(|t| t.end_lsn) {
            self.record_through(end);
        }
        self.writer.apply_with_retry(txs).await
    }

    async fn apply_large(&mut self, tx: &mut dyn ChunkedTransaction) -> Result<(), SinkError> {
        self.record_through(tx.header().end_lsn);
        self.writer.apply_spilled(tx).await
    }

    async fn relation_changed(&mut self, schema: Arc<TableSchema>) -> Result<(), SinkError> {
        ChangeSink::relation_changed(&mut self.writer, schema).await
    }

    async fn apply_part(&mut self, part: Transaction) -> Result<(), SinkError> {
        self.writer.apply_part(&part).await
    }

    async fn commit_parts(&mut self, last: Transaction) -> Result<(), SinkError> {
        self.record_through(last.end_lsn);
        ChangeSink::commit_parts(&mut self.writer, last).await
    }

    async fn abort_parts(&mut self) {
        self.writer.abort_parts().await
    }

    async fn shape_changed(&mut self, change: ShapeChange) -> Result<(), SinkError> {
        self.writer.shape_changed(change).await
    }

    async fn copy_done(&mut self, at: Lsn) -> Result<(), SinkError> {
        self.writer.copy_done(at).await
    }

    fn applied(&self) -> Lsn {
        self.writer.applied()
    }
}

/// Invariant *reverse start*: without a recorded start the way back
/// refuses (anywhere else would miss or double changes).
pub(super) fn no_start(plan: &Plan) -> ReverseError {
    ReverseError::Refused(format!(
        "no reverse start is recorded for slot {}: run the cutover up to its `start_reverse` step, or — once the \
         forward `xdb sync` has applied everything and is stopped, with the source frozen — \
         `xdb sync --reverse --set-start-here --plan {}`",
        plan.source.slot,
        plan.file.display()
    ))
}

/// The original source as a PostgreSQL target: the plan swapped (its
/// triggers kept quiet, its position stored under the way back's key, no
/// forward mapping overrides), connected, with xdb's state and position
/// tables.
async fn original_source_as_target(
    plan: &Plan,
    pg: &tokio_postgres::Client,
    schemas: &[Arc<TableSchema>],
) -> Result<(Plan, TargetConn), ReverseError> {
    let mut rplan = plan.clone();
    let TargetUrl::Mysql(_) = &plan.target.url else { unreachable!("checked by unsupported_target") };
    let names: Vec<String> = schemas.iter().map(|s| s.name.pg_quoted()).collect();
    let url = crate::sink::postgres::triggers::writer_url(pg, &plan.source.url, &names).await.map_err(|e| match e {
        crate::sink::postgres::triggers::TriggerError::Sql(source) => {
            ReverseError::Source { context: "reading the original source's triggers".into(), source }
        }
        other => ReverseError::Refused(format!("the original source: {other}")),
    })?;
    rplan.target.url = TargetUrl::Postgres(url);
    rplan.source.slot = position_key(plan);
    rplan.mapping = Default::default();
    let mut target = TargetConn::connect(&rplan.target.url).await?;
    target.ensure_state_tables().await?;
    pg.batch_execute(&format!(
        "SET client_min_messages = warning; {}; RESET client_min_messages",
        reverse_position::DDL
    ))
    .await
    .map_err(|source| ReverseError::Source { context: "creating xdb.reverse_position".into(), source })?;
    Ok((rplan, target))
}

/// The planned tables as the original source has them: values map back
/// to its real types, and rows are matched on the primary key (json has no
/// equality).
async fn source_schemas(plan: &Plan, pg: &tokio_postgres::Client) -> Result<Vec<Arc<TableSchema>>, ReverseError> {
    let planned = load_planned(pg, &plan.tables, plan.mapping.generated, |t| {
        ReverseError::Refused(format!("table {t} no longer exists on the original source"))
    })
    .await?;
    let mut schemas = Vec::new();
    for mut s in planned {
        // `mapping.generated: source` read the stored generated columns as
        // plain ones; PostgreSQL computes them, so they are not written back.
        let computed: Vec<String> = s.columns.iter().filter(|c| c.carried.is_some()).map(|c| c.name.clone()).collect();
        if !computed.is_empty() {
            let keep: Vec<String> =
                s.columns.iter().filter(|c| !computed.contains(&c.name)).map(|c| c.name.clone()).collect();
            let mut plain = s.restricted_to(&keep).ok_or_else(|| {
                ReverseError::Refused(format!("a primary-key column of {} is a generated column", s.name))
            })?;
            for c in s.columns.iter().filter(|c| computed.contains(&c.name)) {
                plain.generated.push(crate::model::GeneratedColumn {
                    name: c.name.clone(),
                    pg_type: c.pg_type.clone(),
                    type_oid: c.type_oid,
                    typmod: c.typmod,
                    expression: c.carried.as_ref().map(|g| g.expression.clone()).unwrap_or_default(),
                });
            }
            s = plain;
        }
        if !s.primary_key.is_empty() {
            s.replica_identity = ReplicaIdentity::Default;
            for (i, c) in s.columns.iter_mut().enumerate() {
                c.is_key = s.primary_key.contains(&i);
            }
        }
        schemas.push(Arc::new(s));
    }
    Ok(schemas)
}

/// The target's database and, per target table, its columns matched to the
/// source table's (every column on both sides, or refused) and its ENUMs.
async fn target_tables(
    my: &mut mysql_async::Conn,
    label: &str,
    naming: &Naming,
    schemas: &[Arc<TableSchema>],
) -> Result<(String, HashMap<String, ReverseTable>), ReverseError> {
    let database: Option<String> = mysql_async::prelude::Queryable::query_first(my, "SELECT DATABASE()")
        .await
        .map_err(|e| BinlogError::driver(label, "SELECT DATABASE()", e))?;
    let database = database.ok_or_else(|| ReverseError::Refused("the target URL names no database".into()))?;
    let mut tables = HashMap::new();
    for s in schemas {
        let name = naming.flat_table_name(&s.name);
        let cols = table_columns(my, &database, &name, label).await?;
        let mut columns = Vec::new();
        for c in &cols {
            // The source computes its generated columns itself.
            if s.column_index(c).is_none() && s.generated.iter().any(|g| &g.name == c) {
                columns.push(None);
                continue;
            }
            let i = s.column_index(c).ok_or_else(|| {
                ReverseError::Refused(format!(
                    "column {c} of target table {name} is not on the original source table {}: add it there first",
                    s.name
                ))
            })?;
            columns.push(Some(i));
        }
        if let Some(missing) = s.columns.iter().find(|c| !cols.contains(&c.name)) {
            return Err(ReverseError::Refused(format!(
                "column {} of {} is not on the target table {name}: writing rows back would lose its values",
                missing.name, s.name
            )));
        }
        let enums = table_enums(my, &database, &name, label).await?;
        tables.insert(name, ReverseTable { schema: s.clone(), columns, names: cols, enums });
    }
    Ok((database, tables))
}

/// `xdb check --reverse`: can the way back run from this target?
/// `check --reverse`: the original source's own triggers, which must not
/// Every column the way back writes has a type whose values can come back
/// from MySQL/MariaDB (`source::mysql::value::comes_back`): one that cannot
/// would stop `sync --reverse` on the first change of its table, after the
/// switch.
async fn way_back_types(plan: &Plan, s: &mut CheckSection) {
    let pg = match client::connect(&plan.source.url, "xdb check --reverse").await {
        Ok(c) => c,
        Err(_) => return, // said below
    };
    let schemas = match source_schemas(plan, &pg).await {
        Ok(v) => v,
        Err(e) => {
            return s.fail(format!("cannot read the planned tables on the original source: {e}"), "see the error")
        }
    };
    let mut refused = 0;
    for t in &schemas {
        for c in &t.columns {
            if let Err(why) = crate::source::mysql::value::comes_back(&c.pg_type) {
                refused += 1;
                s.fail(
                    format!("{}.{} ({}): {why}", t.name, c.name, c.pg_type.sql_name()),
                    "its changes on the target cannot be written back exactly: change the column's type on the \
                     original source to one that comes back (e.g. timestamptz, or text[] for an array), or leave \
                     the table out of the plan and move it back by hand",
                );
            }
        }
    }
    if refused == 0 {
        s.pass(format!("every column of the {} planned table(s) can come back to its source type", schemas.len()));
    }
}

/// fire on the way back ([`crate::sink::postgres::triggers`]).
async fn way_back_triggers(pg: &tokio_postgres::Client, plan: &Plan, s: &mut CheckSection) {
    let names: Vec<String> = plan.tables.iter().map(|t| t.pg_quoted()).collect();
    match crate::sink::postgres::triggers::preflight(pg, &names).await {
        Ok(None) => s.pass("no trigger of the planned tables on the original source would fire on the way back"),
        Ok(Some((firing, None))) => s.pass(format!(
            "the original source's triggers ({firing}) will not fire on the way back: it applies with \
             session_replication_role = replica"
        )),
        Ok(Some((problem, Some(fix)))) => s.fail(format!("the original source: {problem}"), fix),
        Err(e) => s.warn(format!("cannot read the original source's triggers: {e}"), "check the source connection"),
    }
}

pub async fn check(plan: &Plan) -> CheckReport {
    let mut report = CheckReport { way_back: true, ..Default::default() };
    let mut s = CheckSection::new("Reverse replication (the way back)");
    if let Some(why) = unsupported_target(plan) {
        let fix = match plan.target.url {
            TargetUrl::Sqlite(_) => "there is none for a SQLite file: keep the original source intact until the switch is final, or move to a MariaDB/MySQL target",
            _ => "not available yet: keep the original source intact until the switch is final",
        };
        s.fail(why, fix);
        report.sections.push(s);
        return report;
    }
    if matches!(plan.target.url, TargetUrl::Postgres(_)) {
        super::reverse_pg::check(plan, &mut s).await;
    } else {
        match mysql_conn(plan).await {
            Ok((mut conn, mariadb, _)) => {
                crate::check::binlog::binlog_settings(&mut conn, mariadb, &mut s).await;
                way_back_types(plan, &mut s).await;
            }
            Err(e) => s.fail(format!("cannot connect to the target: {e}"), "fix the target URL or start the server"),
        }
    }
    match client::connect(&plan.source.url, "xdb check --reverse").await {
        Ok(pg) => {
            if !matches!(plan.target.url, TargetUrl::Postgres(_)) {
                match read_start(plan, &pg).await {
                    Ok(Some(p)) => s.pass(format!("reverse start recorded on the original source: {p}")),
                    Ok(None) => s.info(
                        "no reverse start recorded yet: the cutover's start_reverse step (or `xdb sync --reverse --set-start-here`) records it",
                    ),
                    Err(e) => s.warn(format!("cannot read the reverse start: {e}"), "check the source connection"),
                }
            }
            way_back_triggers(&pg, plan, &mut s).await;
        }
        Err(e) => s.fail(format!("cannot connect to the original source: {e}"), "fix the source URL"),
    }
    report.sections.push(s);
    report
}

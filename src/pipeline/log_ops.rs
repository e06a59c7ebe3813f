//! `xdb status`, `xdb cleanup` and `xdb cutover` for the two plans of a
//! replicated log (invariant *log exactly once*): the producer's
//! (PostgreSQL → `target.url: nats://…`) and a consumer's
//! (`source.url: nats://…` → a database).
//!
//! Positions: the producer's is the slot's confirmed LSN, which moves only
//! once the log stored everything up to it; a consumer's is the stream
//! sequence of the last END it applied, in its target's state table. A
//! consumer reads with an ephemeral ordered consumer, so the cluster holds
//! nothing of it to clean up: its position lives on its target.

use serde::Serialize;

use crate::cleanup::{CleanupError, CleanupPlan};
use crate::nats::{msg_id, Log, LogError, NatsTarget, Tail};
use crate::plan::{Plan, SecretUrl, TargetUrl};
use crate::sink::TargetConn;

/// Which side of the log a plan is.
pub enum Side {
    /// PostgreSQL → the log.
    Producer(NatsTarget),
    /// The log → a database.
    Consumer(NatsTarget),
}

/// The plan's side of a log, if it has one.
pub fn side(plan: &Plan) -> Option<Result<Side, String>> {
    if let TargetUrl::Nats(u) = &plan.target.url {
        return Some(NatsTarget::parse(u, &plan.name).map(Side::Producer));
    }
    let log: &SecretUrl = plan.source.log.as_ref()?;
    Some(NatsTarget::parse(log, &plan.name).map(Side::Consumer))
}

/// The status of one side of a log.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LogStatus {
    pub plan: String,
    /// `producer` or `consumer`.
    pub role: String,
    pub stream: String,
    pub servers: String,
    pub stream_messages: Option<u64>,
    pub stream_bytes: Option<u64>,
    pub first_sequence: Option<u64>,
    pub last_sequence: Option<u64>,
    /// The last message a consumer applies (an END or a copy marker;
    /// heartbeats after it move no consumer's position).
    pub last_change_sequence: Option<u64>,
    pub replicas: Option<usize>,
    pub leader: Option<String>,
    /// Replicas (besides the leader) and whether each is current.
    pub peers: Vec<(String, bool)>,
    // The producer.
    pub source_wal_lsn: Option<String>,
    pub slot: String,
    pub slot_exists: bool,
    pub slot_active: bool,
    pub slot_confirmed_flush_lsn: Option<String>,
    pub retained_wal_bytes: Option<u64>,
    /// Everything up to this source LSN is in the log.
    pub published_lsn: Option<String>,
    /// The log's copy: `done`, `copying` or `not started`.
    pub copy: Option<String>,
    // A consumer.
    /// Whether a consumer of this plan is applying now (it holds the
    /// applier's lock on the target, `sink/lock.rs`).
    pub applier_running: Option<bool>,
    pub applied_sequence: Option<u64>,
    pub applied_commit_time: Option<String>,
    pub lag_messages: Option<u64>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub tables: Vec<crate::status::TableStatus>,
    pub problems: Vec<String>,
}

/// Reads the status; unreachable servers are problems, not errors.
pub async fn status(plan: &Plan, side: &Side) -> LogStatus {
    let (t, role) = match side {
        Side::Producer(t) => (t, "producer"),
        Side::Consumer(t) => (t, "consumer"),
    };
    let mut r = LogStatus {
        plan: plan.name.clone(),
        role: role.into(),
        stream: t.stream.clone(),
        servers: t.servers.join(","),
        slot: plan.source.slot.clone(),
        ..Default::default()
    };
    let log = match Log::connect(t).await {
        Ok(l) => Some(l),
        Err(e) => {
            r.problems.push(e.to_string());
            None
        }
    };
    let mut tail_id = None;
    if let Some(log) = &log {
        match stream_state(log, &mut r).await {
            Ok(id) => tail_id = id,
            Err(e) => r.problems.push(e.to_string()),
        }
    }
    match side {
        Side::Producer(_) => producer(plan, log.as_ref(), tail_id, &mut r).await,
        Side::Consumer(_) => {
            if let Some(log) = &log {
                r.last_change_sequence = last_change(log).await;
            }
            consumer(plan, &mut r).await
        }
    }
    r
}

/// The stream's size, sequences and cluster; returns the last message's id.
async fn stream_state(log: &Log, r: &mut LogStatus) -> Result<Option<String>, LogError> {
    let api = |e: &dyn std::fmt::Display| LogError::Api {
        stream: log.target.stream.clone(),
        what: "reading the stream",
        reason: e.to_string(),
        retry: crate::error_policy::Retry::Transient,
    };
    let mut s = log.js.get_stream(&log.target.stream).await.map_err(|e| api(&e))?;
    let info = s.info().await.map_err(|e| api(&e))?.clone();
    r.stream_messages = Some(info.state.messages);
    r.stream_bytes = Some(info.state.bytes);
    r.first_sequence = Some(info.state.first_sequence);
    r.last_sequence = Some(info.state.last_sequence);
    r.replicas = Some(info.config.num_replicas.max(1));
    if let Some(c) = &info.cluster {
        r.leader = c.leader.clone();
        r.peers = c.replicas.iter().map(|p| (p.name.clone(), p.current && !p.offline)).collect();
        for p in c.replicas.iter().filter(|p| !p.current || p.offline) {
            r.problems.push(format!(
                "log replica {} is {} (the stream keeps working while a majority of its {} replicas is up)",
                p.name,
                if p.offline { "offline" } else { "behind" },
                info.config.num_replicas
            ));
        }
    }
    Ok(log.tail().await?.1)
}

async fn producer(plan: &Plan, log: Option<&Log>, tail_id: Option<String>, r: &mut LogStatus) {
    let mut base = crate::status::StatusReport::empty(plan);
    let source_lsn = crate::status::read_source(plan, &mut base).await;
    r.source_wal_lsn = base.source_wal_lsn;
    r.slot_exists = base.slot_exists;
    r.slot_active = base.slot_active;
    r.slot_confirmed_flush_lsn = base.slot_confirmed_flush_lsn;
    r.retained_wal_bytes = base.retained_wal_bytes;
    r.problems.extend(base.problems);
    if log.is_none() {
        return;
    }
    let (published, copy) = match msg_id::tail(tail_id.as_deref()) {
        Tail::At(l) => (Some(l), "done"),
        Tail::Within { commit, .. } => (Some(commit), "done"),
        Tail::NeedsCopy if tail_id.is_some() => (None, "copying"),
        Tail::NeedsCopy => (None, "not started"),
    };
    r.copy = Some(copy.into());
    r.published_lsn = published.map(|l| l.to_string());
    if let (Some(src), Some(p)) = (source_lsn, published) {
        let lag = src.saturating_sub(p.0);
        r.lag_bytes = Some(lag);
        if lag == 0 {
            r.lag_seconds = Some(0.0);
        } else if let Some(ms) = last_commit_ms(log.expect("checked")).await {
            r.lag_seconds = Some((crate::debezium::now_ms() - ms).max(0) as f64 / 1000.0);
        }
    }
}

/// The commit time of the last transaction in the log (its END's `ts_ms`).
async fn last_commit_ms(log: &Log) -> Option<i64> {
    let s = log.js.get_stream(&log.target.stream).await.ok()?;
    let m = s.get_last_raw_message_by_subject(&log.target.transaction_subject()).await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&m.payload).ok()?;
    let p = if v.get("payload").is_some() { &v["payload"] } else { &v };
    p["ts_ms"].as_i64()
}

/// The sequence of the last END or copy marker in the stream.
async fn last_change(log: &Log) -> Option<u64> {
    let s = log.js.get_stream(&log.target.stream).await.ok()?;
    let mut last = None;
    for subject in [log.target.transaction_subject(), log.target.control_subject()] {
        if let Ok(m) = s.get_last_raw_message_by_subject(&subject).await {
            last = last.max(Some(m.sequence));
        }
    }
    last
}

async fn consumer(plan: &Plan, r: &mut LogStatus) {
    if let TargetUrl::Sqlite(path) = &plan.target.url {
        if !path.exists() {
            r.problems.push(format!("the target file {} does not exist yet (no sync has run)", path.display()));
            return;
        }
    }
    let mut t = match TargetConn::connect(&plan.target.url).await {
        Ok(t) => t,
        Err(e) => {
            r.problems.push(plan.scrub(&e.to_string()));
            return;
        }
    };
    r.applier_running = crate::sink::lock::ApplierLock::is_held(&plan.target.url, &plan.source.slot).await.ok();
    match t.has_state().await {
        Ok(true) => match t.read_position(&plan.source.slot).await {
            Ok(Some(p)) => {
                r.applied_sequence = Some(p.applied_lsn.0);
                r.applied_commit_time = (p.applied_commit_time_us > 0)
                    .then(|| chrono::DateTime::from_timestamp_micros(p.applied_commit_time_us))
                    .flatten()
                    .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
                if let Some(last) = r.last_change_sequence {
                    let lag = last.saturating_sub(p.applied_lsn.0);
                    r.lag_messages = Some(lag);
                    r.lag_seconds = if lag == 0 {
                        Some(0.0)
                    } else if p.applied_commit_time_us > 0 {
                        Some((chrono::Utc::now().timestamp_micros() - p.applied_commit_time_us).max(0) as f64 / 1e6)
                    } else {
                        None
                    };
                }
            }
            Ok(None) => r.problems.push("the target has no applied position for this plan yet".into()),
            Err(e) => r.problems.push(plan.scrub(&e.to_string())),
        },
        Ok(false) => r.problems.push("the target has no xdb state yet (no sync has run)".into()),
        Err(e) => r.problems.push(plan.scrub(&e.to_string())),
    }
    let states = t.read_tables(&plan.source.slot).await.unwrap_or_default();
    for table in &plan.tables {
        let name = table.to_string();
        let s = states.iter().find(|s| s.table == name);
        r.tables.push(crate::status::TableStatus {
            table: name,
            copy: match s {
                Some(s) if s.copy_done => "done".into(),
                Some(_) => "copying".into(),
                None => "not started".into(),
            },
            rows_copied: s.map(|s| s.rows_copied).unwrap_or(0),
            sync_lsn: None,
        });
    }
}

impl LogStatus {
    /// The report for people.
    pub fn render(&self) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let num = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        let mut o = String::new();
        o.push_str(&format!("plan {}  {} of log stream {} ({})\n", self.plan, self.role, self.stream, self.servers));
        o.push_str(&format!(
            "  log             {} messages, {} bytes, sequences {}..{}, {} replicas{}\n",
            num(self.stream_messages),
            num(self.stream_bytes),
            num(self.first_sequence),
            num(self.last_sequence),
            self.replicas.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            self.leader.as_ref().map(|l| format!(", leader {l}")).unwrap_or_default()
        ));
        let lag_s = self.lag_seconds.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into());
        if self.role == "producer" {
            o.push_str(&format!("  source WAL      {}\n", opt(&self.source_wal_lsn)));
            o.push_str(&format!(
                "  slot            {} {}{}, confirmed {}, retained WAL {}\n",
                self.slot,
                if self.slot_exists { "present" } else { "absent" },
                if self.slot_active { ", streaming" } else { ", idle" },
                opt(&self.slot_confirmed_flush_lsn),
                self.retained_wal_bytes.map(|b| format!("{b} bytes")).unwrap_or_else(|| "-".into())
            ));
            o.push_str(&format!(
                "  published       up to LSN {} (copy {})\n",
                opt(&self.published_lsn),
                opt(&self.copy)
            ));
            o.push_str(&format!("  lag             {} bytes, {lag_s} s\n", num(self.lag_bytes)));
        } else {
            o.push_str(&format!(
                "  applier         {}\n",
                match self.applier_running {
                    Some(true) => "running (`xdb sync` holds this position's lock on the target)",
                    Some(false) => "not running",
                    None => "-",
                }
            ));
            o.push_str(&format!(
                "  applied         stream sequence {} (commit {})\n",
                num(self.applied_sequence),
                opt(&self.applied_commit_time)
            ));
            o.push_str(&format!("  lag             {} messages, {lag_s} s\n", num(self.lag_messages)));
            if !self.tables.is_empty() {
                o.push_str("  tables\n");
                for t in &self.tables {
                    o.push_str(&format!("    {:<40} copy {:<12} {:>12} rows\n", t.table, t.copy, t.rows_copied));
                }
            }
        }
        for p in &self.problems {
            o.push_str(&format!("  ! {p}\n"));
        }
        o
    }
}

/// What `xdb cleanup` removes for one side of a log.
#[derive(Debug, Default)]
pub struct LogCleanup {
    /// The producer's slot and publication (the direct path's cleanup).
    pub source: CleanupPlan,
    /// A consumer's position and table states on its target.
    pub target_state: bool,
    /// The stream itself: only when asked (`--drop-stream`).
    pub drop_stream: Option<String>,
}

/// Why a log's cleanup cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum LogCleanupError {
    #[error("{0}")]
    Cleanup(#[from] CleanupError),
    #[error("{0}")]
    Log(#[from] LogError),
    #[error("{0}")]
    Config(String),
}

/// Says what cleanup would remove. A consumer's cleanup never touches the
/// original PostgreSQL (its slot and publication are the producer's).
pub async fn inspect_cleanup(plan: &Plan, side: &Side, drop_stream: bool) -> Result<LogCleanup, LogCleanupError> {
    let mut out = LogCleanup::default();
    match side {
        Side::Producer(t) => {
            let c =
                crate::pg_conn::client::connect(&plan.source.url, "xdb cleanup").await.map_err(CleanupError::from)?;
            let q = |e| LogCleanupError::Cleanup(CleanupError::SourceSql(e));
            let slot = c
                .query_opt(
                    "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1",
                    &[&plan.source.slot],
                )
                .await
                .map_err(q)?;
            if let Some(s) = slot {
                if s.get::<_, bool>(0) {
                    return Err(CleanupError::SlotActive {
                        slot: plan.source.slot.clone(),
                        pid: s.get::<_, Option<i32>>(1).unwrap_or_default(),
                    }
                    .into());
                }
                out.source.drop_slot = true;
            }
            let publication = &plan.source.publication;
            if c.query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[publication])
                .await
                .map_err(q)?
                .is_some()
            {
                if crate::source::postgres::publication::created_by_xdb(&c, publication).await.map_err(q)? {
                    out.source.drop_publication = true;
                } else {
                    out.source.keep_publication = true;
                }
            }
            if drop_stream {
                let log = Log::connect(t).await?;
                if log.js.get_stream(&t.stream).await.is_ok() {
                    out.drop_stream = Some(t.stream.clone());
                }
            }
        }
        Side::Consumer(_) => {
            if drop_stream {
                return Err(LogCleanupError::Config(
                    "--drop-stream is for the producer's plan (target.url: nats://…): the stream is the producer's, \
                     and other consumers may still read it"
                        .into(),
                ));
            }
            // Deleting a running consumer's position would make it (or its
            // next start) apply everything again.
            if crate::sink::lock::ApplierLock::is_held(&plan.target.url, &plan.source.slot)
                .await
                .map_err(CleanupError::from)?
            {
                return Err(LogCleanupError::Config(format!(
                    "a consumer (`xdb sync --plan {}`) is applying the log to {} (it holds the applier's lock of \
                     slot {}): stop it first",
                    plan.name,
                    plan.target.url.redacted(),
                    plan.source.slot
                )));
            }
            out.target_state = match &plan.target.url {
                TargetUrl::Sqlite(p) if !p.exists() => false,
                _ => {
                    let mut t = TargetConn::connect(&plan.target.url).await.map_err(CleanupError::from)?;
                    t.read_position(&plan.source.slot).await.map(|p| p.is_some()).unwrap_or(false)
                        || !t.read_tables(&plan.source.slot).await.unwrap_or_default().is_empty()
                }
            };
        }
    }
    Ok(out)
}

impl LogCleanup {
    pub fn describe(&self, plan: &Plan, side: &Side) -> Vec<String> {
        let mut v = self.source.describe(plan);
        if self.target_state {
            v.push(format!(
                "delete this consumer's position (stream sequence) and table states {} on the target {} \
                 (replicated tables are kept; the stream and the original source are not touched)",
                plan.source.slot,
                plan.target.url.redacted()
            ));
        }
        if let Some(s) = &self.drop_stream {
            v.push(format!(
                "delete NATS stream {s} with every message in it: consumers that have not applied everything lose \
                 the rest and must copy again"
            ));
        } else if let Side::Producer(t) = side {
            if !v.is_empty() {
                v.push(format!("keep NATS stream {} (pass --drop-stream to delete it too)", t.stream));
            }
        }
        v
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_empty() && !self.target_state && self.drop_stream.is_none()
    }
}

/// Carries out `what`: the source side first (refused by PostgreSQL if
/// the slot became active meanwhile), then the stream.
pub async fn execute_cleanup(plan: &Plan, side: &Side, what: &LogCleanup) -> Result<(), LogCleanupError> {
    if !what.source.is_empty() {
        crate::cleanup::execute(plan, &what.source).await?;
    }
    if what.target_state {
        if let TargetUrl::Sqlite(db) = &plan.target.url {
            let _ = std::fs::remove_file(crate::sink::lock::sqlite_lock_path(db, &plan.source.slot));
        }
        let only_state = CleanupPlan { clear_target_state: true, ..Default::default() };
        // The direct path's deletion of xdb's rows on the target; its
        // source side is empty, so the original source is not contacted
        // beyond the connection it opens.
        crate::cleanup::execute(plan, &only_state).await?;
    }
    if let (Some(stream), Side::Producer(t)) = (&what.drop_stream, side) {
        let log = Log::connect(t).await?;
        log.js.delete_stream(stream).await.map_err(|e| LogError::Api {
            stream: stream.clone(),
            what: "deleting the stream",
            reason: e.to_string(),
            retry: crate::error_policy::Retry::Fatal,
        })?;
    }
    Ok(())
}

/// `xdb cutover` on a log plan: refused, with the steps that do the same
/// for a plan pair (its waits compare a target's applied LSN with the
/// source's WAL, which a log in between does not give one process).
pub fn cutover_refusal(plan: &Plan, side: &Side) -> String {
    let steps = "stop the application's writes on the source; run `xdb sync --plan <producer plan> \
                 --until-caught-up` (the log then holds every committed change), then `xdb sync --plan <consumer \
                 plan> --until-caught-up` and `xdb validate --plan <consumer plan>`; then switch the application to \
                 the consumer's target (and `xdb cleanup` both plans once nothing needs the way back)";
    match side {
        Side::Producer(t) => format!(
            "plan {} writes to the log stream {} (target.url: nats://…), which applications do not switch to: \
             xdb cutover runs only on a plan whose target is a database. To move onto a database behind the log: {steps}",
            plan.name, t.stream
        ),
        Side::Consumer(t) => format!(
            "plan {} reads the log stream {} (source.url: nats://…): xdb cutover's drain waits for the target to reach \
             the source's WAL position, which a consumer of a log does not hold (its position is a stream sequence, \
             and the producer is another process). Cut over by hand: {steps}",
            plan.name, t.stream
        ),
    }
}

//! `xdb status`: where a sync stands, read from the servers themselves (the
//! target's state tables and the source's slot), so it works whether or not
//! `xdb sync` is running, and from any machine that can reach both.

use serde::Serialize;

use crate::model::Lsn;
use crate::pg_conn::client;
use crate::plan::Plan;
use crate::sink::TargetConn;

/// The status of one plan's replication.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub plan: String,
    pub slot: String,
    /// Source WAL position now.
    pub source_wal_lsn: Option<String>,
    /// Last source commit applied on the target (end LSN).
    pub applied_lsn: Option<String>,
    pub applied_commit_time: Option<String>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub slot_exists: bool,
    pub slot_active: bool,
    pub slot_active_pid: Option<i32>,
    pub slot_confirmed_flush_lsn: Option<String>,
    pub slot_wal_status: Option<String>,
    /// WAL kept on the source for the slot (current WAL − restart_lsn).
    pub retained_wal_bytes: Option<u64>,
    /// `max_slot_wal_keep_size` in bytes; None when unlimited (-1).
    pub max_slot_wal_keep_bytes: Option<u64>,
    pub tables: Vec<TableStatus>,
    pub problems: Vec<String>,
}

/// Copy state of one planned table.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub table: String,
    pub copy: String,
    pub rows_copied: u64,
    pub sync_lsn: Option<String>,
}

/// Reads the status of `plan` from both servers. Unreachable servers are
/// reported as problems, not errors, so status always says what it can.
pub async fn read(plan: &Plan) -> StatusReport {
    let mut r = StatusReport::empty(plan);
    let source_lsn = read_source(plan, &mut r).await;
    if let crate::plan::TargetUrl::Sqlite(path) = &plan.target.url {
        if !path.exists() {
            r.problems.push(format!("the target file {} does not exist yet (no sync has run)", path.display()));
            return r;
        }
    }
    match TargetConn::connect(&plan.target.url).await {
        Err(e) => r.problems.push(plan.scrub(&e.to_string())),
        Ok(mut t) => {
            // Reading never creates anything: a target without state tables has no sync yet.
            match t.has_state().await {
                Ok(true) => match t.read_position(&plan.source.slot).await {
                    Ok(Some(p)) => applied(&mut r, &p, source_lsn),
                    Ok(None) => r.problems.push("the target has no applied position for this slot yet".into()),
                    Err(e) => r.problems.push(plan.scrub(&e.to_string())),
                },
                Ok(false) => r.problems.push("the target has no xdb state yet (no sync has run)".into()),
                Err(e) => r.problems.push(plan.scrub(&e.to_string())),
            }
            let states = t.read_tables(&plan.source.slot).await.unwrap_or_default();
            for table in &plan.tables {
                let name = table.to_string();
                let s = states.iter().find(|s| s.table == name);
                r.tables.push(TableStatus {
                    table: name,
                    copy: match s {
                        Some(s) if s.copy_done => "done".into(),
                        Some(_) => "copying".into(),
                        None => "not started".into(),
                    },
                    rows_copied: s.map(|s| s.rows_copied).unwrap_or(0),
                    sync_lsn: s.map(|s| s.sync_lsn.to_string()),
                });
            }
        }
    }
    r
}

impl StatusReport {
    /// Nothing known yet (a log plan's status reads only the source side).
    pub(crate) fn empty(plan: &Plan) -> StatusReport {
        StatusReport {
            plan: plan.name.clone(),
            slot: plan.source.slot.clone(),
            source_wal_lsn: None,
            applied_lsn: None,
            applied_commit_time: None,
            lag_bytes: None,
            lag_seconds: None,
            slot_exists: false,
            slot_active: false,
            slot_active_pid: None,
            slot_confirmed_flush_lsn: None,
            slot_wal_status: None,
            retained_wal_bytes: None,
            max_slot_wal_keep_bytes: None,
            tables: Vec::new(),
            problems: Vec::new(),
        }
    }
}

/// The source's WAL position and the slot's state; the WAL position, for the lag.
pub(crate) async fn read_source(plan: &Plan, r: &mut StatusReport) -> Option<u64> {
    let mut source_lsn: Option<u64> = None;
    match client::connect(&plan.source.url, "xdb status").await {
        Err(e) => r.problems.push(plan.scrub(&e.to_string())),
        Ok(c) => {
            let row = c
                .query_one(
                    "SELECT pg_current_wal_lsn()::text, \
                            (SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size')",
                    &[],
                )
                .await;
            match row {
                Ok(row) => {
                    let lsn: String = row.get(0);
                    source_lsn = lsn.parse::<Lsn>().ok().map(|l| l.0);
                    r.source_wal_lsn = Some(lsn);
                    let mb: Option<i64> = row.get(1);
                    r.max_slot_wal_keep_bytes = mb.filter(|m| *m >= 0).map(|m| m as u64 * 1024 * 1024);
                }
                Err(e) => r.problems.push(format!("source: {}", crate::error_policy::pg_error_text(&e))),
            }
            let slot = c
                .query_opt(
                    // wal_status is 13+: through to_jsonb it reads as NULL on 12.
                    "SELECT active, active_pid, confirmed_flush_lsn::text, to_jsonb(s) ->> 'wal_status', \
                            pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint \
                     FROM pg_replication_slots s WHERE slot_name = $1",
                    &[&plan.source.slot],
                )
                .await;
            match slot {
                Ok(Some(s)) => {
                    r.slot_exists = true;
                    r.slot_active = s.get(0);
                    r.slot_active_pid = s.get(1);
                    r.slot_confirmed_flush_lsn = s.get(2);
                    r.slot_wal_status = s.get(3);
                    r.retained_wal_bytes = s.get::<_, Option<i64>>(4).map(|b| b.max(0) as u64);
                    if r.slot_wal_status.as_deref() == Some("lost") {
                        r.problems.push(format!(
                            "slot {} lost its WAL: changes are gone; run xdb cleanup and start a fresh sync",
                            plan.source.slot
                        ));
                    }
                }
                Ok(None) => r.problems.push(format!("slot {} does not exist (no sync started yet?)", plan.source.slot)),
                Err(e) => r.problems.push(format!("source: {}", crate::error_policy::pg_error_text(&e))),
            }
        }
    }
    source_lsn
}

/// The applied position and the lag it means.
fn applied(r: &mut StatusReport, p: &crate::sink::AppliedPosition, source_lsn: Option<u64>) {
    r.applied_lsn = Some(p.applied_lsn.to_string());
    // 0 is what a snapshot records: a position, no streamed commit yet
    // (shown as such, not as 1970-01-01).
    r.applied_commit_time = (p.applied_commit_time_us != 0)
        .then(|| chrono::DateTime::from_timestamp_micros(p.applied_commit_time_us))
        .flatten()
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
    if let Some(src) = source_lsn {
        let lag = src.saturating_sub(p.applied_lsn.0);
        r.lag_bytes = Some(lag);
        let now = chrono::Utc::now().timestamp_micros();
        r.lag_seconds = if lag == 0 {
            Some(0.0)
        } else if p.applied_commit_time_us == 0 {
            None // behind, but no commit time to measure from
        } else {
            Some((now - p.applied_commit_time_us).max(0) as f64 / 1e6)
        };
    }
}

impl StatusReport {
    /// The report for people.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        o.push_str(&format!("plan {}  slot {}\n", self.plan, self.slot));
        o.push_str(&format!("  source WAL      {}\n", opt(&self.source_wal_lsn)));
        let commit = match (&self.applied_lsn, &self.applied_commit_time) {
            (_, Some(t)) => format!("commit {t}"),
            (Some(_), None) => "snapshot; no streamed commit applied yet".into(),
            (None, None) => "commit -".into(),
        };
        o.push_str(&format!("  applied         {} ({commit})\n", opt(&self.applied_lsn)));
        o.push_str(&format!(
            "  lag             {} bytes, {} s\n",
            self.lag_bytes.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
            self.lag_seconds.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into())
        ));
        o.push_str(&format!(
            "  slot            {}{}, confirmed {}, wal_status {}\n",
            if self.slot_exists { "present" } else { "absent" },
            match (self.slot_active, self.slot_active_pid) {
                (true, Some(pid)) => format!(", streaming to pid {pid}"),
                (true, None) => ", streaming".into(),
                _ => ", idle".into(),
            },
            opt(&self.slot_confirmed_flush_lsn),
            opt(&self.slot_wal_status)
        ));
        o.push_str(&format!(
            "  retained WAL    {} (limit {})\n",
            self.retained_wal_bytes.map(human_bytes).unwrap_or_else(|| "-".into()),
            self.max_slot_wal_keep_bytes.map(human_bytes).unwrap_or_else(|| "unlimited: watch the disk".into())
        ));
        if !self.tables.is_empty() {
            o.push_str("  tables\n");
            for t in &self.tables {
                o.push_str(&format!(
                    "    {:<40} copy {:<12} {:>12} rows  sync LSN {}\n",
                    t.table,
                    t.copy,
                    t.rows_copied,
                    opt(&t.sync_lsn)
                ));
            }
        }
        for p in &self.problems {
            o.push_str(&format!("  ! {p}\n"));
        }
        o
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

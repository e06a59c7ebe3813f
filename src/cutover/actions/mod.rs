//! The built-in cutover actions and verifications, run against the plan's
//! source and target through one [`Env`] that owns the connections (opened
//! on first use), the journal and the active freeze record.
//!
//! Every message an action returns is shown to the operator: it never
//! carries a password (URLs print redacted; driver text is scrubbed by the
//! runner with [`Plan::scrub`]).

pub mod freeze;
pub mod http;
pub mod lag;
pub mod sequences;
pub mod sequences_back;

use std::time::Duration;

use crate::pg_conn::client;
use crate::plan::{Plan, TargetUrl};
use crate::sink::{TargetConn, TargetError};

use super::journal::{Event, Journal, JournalError};
use super::runbook::{Action, Side, Verify};

/// An action or verification failed. Driver errors keep their source;
/// [`ActionError::Failed`] is the action's own verdict (a check that did
/// not hold, a refusal), already worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Connect(#[from] client::ConnectError),
    #[error("source: {context}{}", crate::error_policy::pg_error_text(source))]
    Source {
        /// What was running, ending in `": "` when not empty.
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error("validate: {0}")]
    Validate(#[from] Box<crate::validate::ValidateError>),
    #[error("{0}")]
    Reverse(#[from] Box<crate::pipeline::reverse::ReverseError>),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("target: {context}: {source}")]
    TargetDriver {
        context: String,
        #[source]
        source: crate::error_policy::DriverError,
    },
    #[error("source: {0}")]
    Marker(#[from] crate::source::postgres::change_stream::MarkerError),
    /// What was being done when `source` failed.
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<ActionError>,
    },
    /// A failed `ALTER` that left the settings as they were.
    #[error("{0}; nothing was changed (the settings read back as they were)")]
    NothingChanged(#[source] Box<ActionError>),
}

impl ActionError {
    /// A query on the source failed while doing `what`.
    pub fn source(what: impl std::fmt::Display, source: tokio_postgres::Error) -> ActionError {
        ActionError::Source { context: format!("{what}: "), source }
    }

    /// `self`, said to have happened while doing `what`.
    pub fn context(self, what: impl Into<String>) -> ActionError {
        ActionError::Context { context: what.into(), source: Box::new(self) }
    }
}

/// What an action reports back.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Lines shown under the step.
    pub notes: Vec<String>,
    /// Lag measured by a wait (for the summary).
    pub lag: Option<String>,
    /// Validation result (for the summary).
    pub validation: Option<String>,
}

impl Outcome {
    fn note(s: impl Into<String>) -> Outcome {
        Outcome { notes: vec![s.into()], ..Default::default() }
    }
}

/// Everything actions share.
pub struct Env<'a> {
    pub plan: &'a Plan,
    source: Option<tokio_postgres::Client>,
    target: Option<TargetConn>,
    pub journal: Option<Journal>,
    /// What the last `stop_source_writes` changed, until writes resume.
    pub freeze: Option<freeze::FreezeRecord>,
    /// `--yes`: confirmations are answered yes, pauses do not wait without a terminal.
    pub yes: bool,
    /// stdin is a terminal.
    pub interactive: bool,
}

impl<'a> Env<'a> {
    pub fn new(plan: &'a Plan, journal: Option<Journal>, yes: bool, interactive: bool) -> Env<'a> {
        Env { plan, source: None, target: None, journal, freeze: None, yes, interactive }
    }

    /// The source connection, opened on first use. xdb's own session is
    /// always writable, even while the database default is read-only.
    pub async fn source(&mut self) -> Result<&tokio_postgres::Client, ActionError> {
        let stale = self.source.as_ref().is_some_and(|c| c.is_closed());
        if self.source.is_none() || stale {
            let c = client::connect(&self.plan.source.url, "xdb-cutover").await?;
            c.batch_execute("SET default_transaction_read_only = off")
                .await
                .map_err(|source| ActionError::Source { context: String::new(), source })?;
            self.source = Some(c);
        }
        self.source.as_ref().ok_or_else(|| ActionError::Failed("source connection lost".into()))
    }

    /// The target connection, opened on first use.
    pub async fn target(&mut self) -> Result<&mut TargetConn, ActionError> {
        if self.target.is_none() {
            let t = TargetConn::connect(&self.plan.target.url).await?;
            self.target = Some(t);
        }
        self.target.as_mut().ok_or_else(|| ActionError::Failed("target connection lost".into()))
    }

    /// Forgets a connection that failed, so the next use reconnects.
    pub fn drop_connections(&mut self) {
        self.source = None;
        self.target = None;
    }

    /// Appends to the journal (when there is one: not in dry runs).
    pub fn record(&mut self, event: Event) -> Result<(), ActionError> {
        match &mut self.journal {
            Some(j) => Ok(j.append(&event)?),
            None => Ok(()),
        }
    }

    /// Runs a query on the source; the first column of the first row as
    /// text (`NULL` for null, `None` without rows).
    pub async fn source_scalar(&mut self, sql: &str) -> Result<Option<String>, ActionError> {
        let c = self.source().await?;
        let msgs =
            c.simple_query(sql).await.map_err(|source| ActionError::Source { context: String::new(), source })?;
        for m in msgs {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                return Ok(Some(r.get(0).unwrap_or("NULL").to_string()));
            }
        }
        Ok(None)
    }

    /// Runs a query on the target; the first column of the first row as text.
    pub async fn target_scalar(&mut self, sql: &str) -> Result<Option<String>, ActionError> {
        let t = self.target().await?;
        Ok(t.scalar_text(sql).await?)
    }

    /// [`Env::source_scalar`] or [`Env::target_scalar`].
    pub async fn scalar(&mut self, on: Side, sql: &str) -> Result<Option<String>, ActionError> {
        match on {
            Side::Source => self.source_scalar(sql).await,
            Side::Target => self.target_scalar(sql).await,
        }
    }
}

/// Compares two answers: as numbers when both are numbers, as instants
/// (difference in seconds) when both are timestamps, else as text.
/// `Ok` carries a description of the difference.
pub fn compare_answers(a: &str, b: &str, max_difference: f64) -> Result<String, String> {
    let (a, b) = (a.trim(), b.trim());
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        let d = (x - y).abs();
        return if d <= max_difference {
            Ok(format!("{a} vs {b} (difference {d})"))
        } else {
            Err(format!("{a} vs {b}: difference {d} is more than {max_difference}"))
        };
    }
    if let (Some(x), Some(y)) = (parse_instant(a), parse_instant(b)) {
        let d = (x - y).abs() as f64 / 1e6;
        return if d <= max_difference {
            Ok(format!("{a} vs {b} (difference {d} s)"))
        } else {
            Err(format!("{a} vs {b}: difference {d} s is more than {max_difference} s"))
        };
    }
    if a == b {
        Ok(format!("both {a}"))
    } else {
        Err(format!("{a:?} vs {b:?}: different"))
    }
}

/// A timestamp (`2024-05-01 10:00:00[.ffffff][+hh[:mm]|Z]`, or `T` between
/// date and time) as microseconds since the epoch; no offset means UTC.
pub fn parse_instant(s: &str) -> Option<i64> {
    let s = s.trim().replacen('T', " ", 1);
    let (body, offset_secs) = split_offset(&s)?;
    let dt = chrono::NaiveDateTime::parse_from_str(body, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(body, "%Y-%m-%d %H:%M:%S"))
        .ok()?;
    Some(dt.and_utc().timestamp_micros() - offset_secs * 1_000_000)
}

fn split_offset(s: &str) -> Option<(&str, i64)> {
    if let Some(b) = s.strip_suffix('Z') {
        return Some((b, 0));
    }
    // An offset starts at the last + or - after the time part.
    let time_start = s.find(' ')?;
    match s[time_start..].rfind(['+', '-']) {
        Some(p) => {
            let pos = time_start + p;
            let (body, off) = s.split_at(pos);
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let digits: String = off[1..].chars().filter(|c| c.is_ascii_digit()).collect();
            let (h, m) = match digits.len() {
                2 => (digits.parse::<i64>().ok()?, 0),
                4 => (digits[..2].parse::<i64>().ok()?, digits[2..].parse::<i64>().ok()?),
                _ => return None,
            };
            Some((body, sign * (h * 3600 + m * 60)))
        }
        None => Some((s, 0)),
    }
}

/// What an action would do, SQL included, for `--dry-run` and the step header.
pub fn describe(action: &Action, plan: &Plan) -> Vec<String> {
    match action {
        Action::Sql { on, statements } => statements.iter().map(|s| format!("on the {on}: {}", s.trim())).collect(),
        Action::Command { run, env } => {
            let mut v = vec![format!("sh -c {run:?}")];
            v.push(format!("with SOURCE_URL={} TARGET_URL={}", plan.source.url.redacted(), plan.target.url.redacted()));
            for (k, val) in env {
                v.push(format!("with {k}={val}"));
            }
            v
        }
        Action::Sleep(d) => vec![format!("sleep {}", fmt_duration(*d))],
        Action::Pause { message } => {
            vec![format!(
                "pause until the operator presses Enter{}",
                message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
            )]
        }
        Action::HttpCheck { url, expect_status, timeout } => {
            vec![format!("GET {url}, expecting status {expect_status} (within {})", fmt_duration(*timeout))]
        }
        Action::Compare { source_sql, target_sql, max_difference } => vec![
            format!("on the source: {source_sql}"),
            format!("on the target: {target_sql}"),
            format!("answers may differ by at most {max_difference}"),
        ],
        Action::StopSourceWrites(scope) => freeze::describe_stop(scope, plan),
        Action::ResumeSourceWrites => vec![
            "restore the default_transaction_read_only settings that stop_source_writes changed, exactly as they were"
                .into(),
            "and end sessions that logged in while writes were stopped (they would stay read-only)".into(),
        ],
        Action::WaitForLag { max_bytes, max_seconds, timeout } => {
            let mut what = Vec::new();
            if let Some(b) = max_bytes {
                what.push(format!("{b} bytes"));
            }
            if let Some(s) = max_seconds {
                what.push(format!("{s} s"));
            }
            vec![
                format!(
                    "wait until the target (slot {}) is at most {} behind the source, for up to {}",
                    plan.source.slot,
                    what.join(" and "),
                    fmt_duration(*timeout)
                ),
                "on the source: SELECT pg_current_wal_lsn()".into(),
                "on the target: the applied position recorded by xdb sync".into(),
            ]
        }
        Action::WaitForCatchup { timeout } => vec![
            "on the source: SELECT pg_logical_emit_message(true, 'xdb.catchup', '<marker>')".into(),
            format!("wait until the target has applied past that LSN, for up to {}", fmt_duration(*timeout)),
        ],
        Action::SyncSequences { margin, back: false } => sequences::describe(plan, *margin),
        Action::SyncSequences { margin, back: true } => sequences_back::describe(plan, *margin),
        Action::StartReverse => vec![
            "on the target: SHOW MASTER STATUS and @@gtid_binlog_pos (the source is frozen and the target caught up)"
                .into(),
            "on the source: record that position in xdb.reverse_start, where `xdb sync --reverse` starts".into(),
        ],
        Action::Validate { checksums, tables } => vec![format!(
            "validate {} on both sides{}",
            tables.as_ref().map(|t| t.join(", ")).unwrap_or_else(|| "every planned table".into()),
            if *checksums { " (row counts and checksums of every row)" } else { " (row counts)" }
        )],
    }
}

/// A short human form of a duration.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{} ms", d.as_millis())
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

/// Runs one action.
pub async fn execute(action: &Action, env: &mut Env<'_>) -> Result<Outcome, ActionError> {
    match action {
        Action::Sql { on, statements } => {
            for sql in statements {
                match on {
                    Side::Source => {
                        let c = env.source().await?;
                        c.batch_execute(sql).await.map_err(|e| ActionError::source(short(sql), e))?;
                    }
                    Side::Target => {
                        let t = env.target().await?;
                        t.execute_batch(std::slice::from_ref(sql), "running a cutover sql step").await?;
                    }
                }
            }
            Ok(Outcome::note(format!("{} statement(s) ran on the {on}", statements.len())))
        }
        Action::Command { run, env: vars } => run_command(env.plan, run, vars).await,
        Action::Sleep(d) => {
            tokio::time::sleep(*d).await;
            Ok(Outcome::default())
        }
        Action::Pause { message } => pause(env, message.as_deref()).await,
        Action::HttpCheck { url, expect_status, timeout } => {
            let status = http::get_status(url, *timeout).await.map_err(ActionError::Failed)?;
            if status == *expect_status {
                Ok(Outcome::note(format!("GET {url}: {status}")))
            } else {
                Err(ActionError::Failed(format!("GET {url}: status {status}, expected {expect_status}")))
            }
        }
        Action::Compare { source_sql, target_sql, max_difference } => {
            let a = env.source_scalar(source_sql).await?.ok_or_else(|| no_rows("source", source_sql))?;
            let b = env.target_scalar(target_sql).await?.ok_or_else(|| no_rows("target", target_sql))?;
            compare_answers(&a, &b, *max_difference)
                .map(|d| Outcome::note(format!("source vs target: {d}")))
                .map_err(|d| ActionError::Failed(format!("source and target disagree: {d}")))
        }
        Action::StopSourceWrites(scope) => freeze::stop(env, scope).await,
        Action::ResumeSourceWrites => freeze::resume(env).await,
        Action::WaitForLag { max_bytes, max_seconds, timeout } => {
            lag::wait_for_lag(env, *max_bytes, *max_seconds, *timeout).await
        }
        Action::WaitForCatchup { timeout } => lag::wait_for_catchup(env, *timeout).await,
        Action::SyncSequences { margin, back: false } => sequences::sync(env, *margin).await,
        Action::SyncSequences { margin, back: true } => sequences_back::sync_back(env, *margin).await,
        Action::Validate { checksums, tables } => super::validate_step::run(env, tables.as_deref(), *checksums).await,
        Action::StartReverse => {
            // Only while this runbook holds the source frozen: otherwise a
            // write may land on the source after the recorded point.
            if env.freeze.is_none() {
                return Err(ActionError::Failed(
                    "start_reverse: the source is not frozen by this runbook (run stop_source_writes first)".into(),
                ));
            }
            crate::pipeline::reverse::record_switch_point(env.plan)
                .await
                .map(|p| Outcome::note(format!("sync --reverse will start at {p}")))
                .map_err(|e| ActionError::from(Box::new(e)))
        }
    }
}

fn no_rows(side: &str, sql: &str) -> ActionError {
    ActionError::Failed(format!("the {side} query returned no rows: {}", short(sql)))
}

/// Runs a verification.
pub async fn verify(v: &Verify, env: &mut Env<'_>) -> Result<String, ActionError> {
    match v {
        Verify::Command(run) => {
            run_command(env.plan, run, &Default::default()).await?;
            Ok(format!("`{run}` succeeded"))
        }
        Verify::Http { url, expect_status, timeout } => {
            let status = http::get_status(url, *timeout).await.map_err(ActionError::Failed)?;
            if status == *expect_status {
                Ok(format!("GET {url}: {status}"))
            } else {
                Err(ActionError::Failed(format!("GET {url}: status {status}, expected {expect_status}")))
            }
        }
        Verify::Sql { on, sql, expect } => {
            let got = env.scalar(*on, sql).await?.ok_or_else(|| no_rows(&on.to_string(), sql))?;
            compare_answers(&got, expect, 0.0)
                .map(|_| format!("{} on the {on} = {got}", short(sql)))
                .map_err(|_| ActionError::Failed(format!("{} on the {on} gave {got}, expected {expect}", short(sql))))
        }
    }
}

/// Describes a verification for the step header and dry runs.
pub fn describe_verify(v: &Verify) -> String {
    match v {
        Verify::Command(run) => format!("verify: sh -c {run:?} succeeds"),
        Verify::Http { url, expect_status, .. } => format!("verify: GET {url} gives {expect_status}"),
        Verify::Sql { on, sql, expect } => format!("verify: on the {on}: {sql} = {expect}"),
    }
}

/// The plan file as an absolute path: a command runs in the plan's
/// directory, where a relative `XDB_PLAN` would name another file.
fn plan_path(plan: &Plan) -> std::path::PathBuf {
    match plan.file.file_name() {
        Some(name) => plan.dir.join(name),
        None => plan.file.clone(),
    }
}

async fn run_command(
    plan: &Plan,
    run: &str,
    vars: &std::collections::BTreeMap<String, String>,
) -> Result<Outcome, ActionError> {
    let target_url = match &plan.target.url {
        TargetUrl::Mysql(u) | TargetUrl::Postgres(u) | TargetUrl::Nats(u) => u.expose().to_string(),
        TargetUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
    };
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(run)
        .env("SOURCE_URL", plan.source.url.expose())
        .env("TARGET_URL", target_url)
        .env("XDB_PLAN", plan_path(plan))
        .envs(vars)
        .current_dir(&plan.dir)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = cmd
        .output()
        .await
        .map_err(|source| ActionError::Io { context: format!("cannot run sh -c {run:?}"), source })?;
    let mut notes = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().chain(String::from_utf8_lossy(&out.stderr).lines()) {
        // A script may echo its SOURCE_URL or a password it was handed.
        notes.push(format!("| {}", crate::secrets::scrub(line)));
    }
    if out.status.success() {
        Ok(Outcome { notes, ..Default::default() })
    } else {
        let tail: Vec<String> = notes.iter().rev().take(5).rev().cloned().collect();
        let code = out.status.code().map(|c| format!("exit status {c}")).unwrap_or_else(|| "killed by a signal".into());
        let mut msg = format!("`{}` failed ({code})", crate::secrets::scrub(run));
        if !tail.is_empty() {
            msg.push_str(": ");
            msg.push_str(&tail.join(" "));
        }
        Err(ActionError::Failed(msg))
    }
}

async fn pause(env: &Env<'_>, message: Option<&str>) -> Result<Outcome, ActionError> {
    if !env.interactive {
        return if env.yes {
            Ok(Outcome::note("pause skipped: no terminal and --yes was given"))
        } else {
            Err(ActionError::Failed(
                "pause needs an operator at a terminal: stdin is not one (pass --yes to skip pauses)".into(),
            ))
        };
    }
    println!("  {} — press Enter to continue", message.unwrap_or("paused"));
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| ActionError::Failed(format!("reading the terminal: {e}")))?;
    read.map_err(|source| ActionError::Io { context: "reading the terminal".into(), source })?;
    Ok(Outcome::note("the operator continued"))
}

/// One line of SQL, at most 100 characters, for messages.
pub fn short(sql: &str) -> String {
    let one: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 100 {
        format!("{}…", one.chars().take(100).collect::<String>())
    } else {
        one
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_compare_as_numbers_instants_or_text() {
        assert!(compare_answers("10", "10.0", 0.0).is_ok());
        assert!(compare_answers("10", "12", 1.0).is_err());
        assert!(compare_answers("10", "12", 2.0).is_ok());
        assert!(compare_answers("2024-05-01 10:00:00+00", "2024-05-01 10:00:00.000000", 0.0).is_ok());
        assert!(compare_answers("2024-05-01 12:00:00+02", "2024-05-01 10:00:01", 1.0).is_ok());
        assert!(compare_answers("2024-05-01 10:00:00Z", "2024-05-01 10:00:05", 1.0).is_err());
        assert!(compare_answers("abc", "abc", 0.0).is_ok());
        assert!(compare_answers("abc", "abd", 5.0).is_err());
    }
}

//! The cutover runbook: the plan's `cutover:` section parsed into typed
//! steps. Parsing is pure and complete — every step, action, verification
//! and rollback is checked before anything runs, and an error names the step
//! (number and name) and the key, with the closest valid key when one was
//! misspelt.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_yaml_ng::Value;

/// Which database a statement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Source,
    Target,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// What `stop_source_writes` freezes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FreezeScope {
    /// The whole source database, for every role except xdb's own.
    Database,
    /// Only these login roles.
    Roles(Vec<String>),
}

/// One built-in action.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Statements run in order on one side.
    Sql {
        on: Side,
        statements: Vec<String>,
    },
    /// A shell command (`sh -c`), with `SOURCE_URL` / `TARGET_URL` set.
    Command {
        run: String,
        env: BTreeMap<String, String>,
    },
    Sleep(Duration),
    /// Wait for the operator to press Enter.
    Pause {
        message: Option<String>,
    },
    /// An HTTP GET (http:// only) expecting a status code.
    HttpCheck {
        url: String,
        expect_status: u16,
        timeout: Duration,
    },
    /// The same question asked of both sides; answers may differ by at most
    /// `max_difference` (numbers or timestamps in seconds; text must match).
    Compare {
        source_sql: String,
        target_sql: String,
        max_difference: f64,
    },
    StopSourceWrites(FreezeScope),
    /// The exact inverse of the last `stop_source_writes`.
    ResumeSourceWrites,
    /// Wait until the target is at most this far behind the source.
    WaitForLag {
        max_bytes: Option<u64>,
        max_seconds: Option<f64>,
        timeout: Duration,
    },
    /// Emit a marker into the source WAL and wait until the target applied it.
    WaitForCatchup {
        timeout: Duration,
    },
    /// Set the target's sequences / AUTO_INCREMENT past the source's values;
    /// with `back`, the source's sequences past the target's (the way back).
    SyncSequences {
        margin: i64,
        back: bool,
    },
    /// Compare the planned (or listed) tables on both sides.
    Validate {
        checksums: bool,
        tables: Option<Vec<String>>,
    },
    /// Record the target's binlog position as the start of `sync --reverse`
    /// (the switch point): after stop_source_writes and wait_for_catchup,
    /// before the traffic switch.
    StartReverse,
}

impl Action {
    /// The action's YAML key.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Sql { .. } => "sql",
            Action::Command { .. } => "command",
            Action::Sleep(_) => "sleep",
            Action::Pause { .. } => "pause",
            Action::HttpCheck { .. } => "http_check",
            Action::Compare { .. } => "compare",
            Action::StopSourceWrites(_) => "stop_source_writes",
            Action::ResumeSourceWrites => "resume_source_writes",
            Action::WaitForLag { .. } => "wait_for_lag",
            Action::WaitForCatchup { .. } => "wait_for_catchup",
            Action::SyncSequences { .. } => "sync_sequences",
            Action::Validate { .. } => "validate",
            Action::StartReverse => "start_reverse",
        }
    }

    /// True when the action needs an operator at a terminal (or `--yes`).
    pub fn needs_operator(&self) -> bool {
        matches!(self, Action::Pause { .. })
    }

    /// Waits, drains and validations prove something about *now*: a proof
    /// from an earlier run says nothing about writes made since (for
    /// example while a rollback had unfrozen the source), so `--resume`
    /// runs them again even when the journal has them completed.
    pub fn reruns_on_resume(&self) -> bool {
        matches!(
            self,
            Action::WaitForLag { .. }
                | Action::WaitForCatchup { .. }
                | Action::Validate { .. }
                | Action::Compare { .. }
        )
    }
}

/// A check after a step's action (or before the runbook, as a pre-check).
#[derive(Debug, Clone, PartialEq)]
pub enum Verify {
    /// Exit status 0 passes.
    Command(String),
    /// The status code must match.
    Http { url: String, expect_status: u16, timeout: Duration },
    /// The first column of the first row must equal `expect` (compared as
    /// numbers when both are numbers, else as text).
    Sql { on: Side, sql: String, expect: String },
}

/// One runbook step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub action: Action,
    pub verify: Option<Verify>,
    /// Limit for the action plus its verification (each attempt).
    pub timeout: Option<Duration>,
    /// Extra attempts after a failed action or verification.
    pub retries: u32,
    pub retry_delay: Duration,
    /// Actions undoing this step, run in order when this step or a later
    /// one fails.
    pub rollback: Vec<Action>,
    /// Ask the operator before running.
    pub confirm: bool,
    /// This step moves the application's traffic to the target: from here
    /// on the target accepts writes the source does not have, and a
    /// rollback past it says how many.
    pub switch: bool,
}

/// Checks that keep watching after the last step; a breach runs the
/// rollbacks of every completed step.
#[derive(Debug, Clone, PartialEq)]
pub struct PostChecks {
    /// How long to keep watching.
    pub duration: Duration,
    /// Time between rounds.
    pub interval: Duration,
    pub checks: Vec<Verify>,
}

/// The whole runbook.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Runbook {
    /// Run before anything changes; any failure aborts with nothing touched.
    pub pre_checks: Vec<Verify>,
    pub steps: Vec<Step>,
    pub post_checks: Option<PostChecks>,
}

impl Runbook {
    /// True when running needs an operator (a confirm gate or a pause).
    pub fn needs_operator(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.confirm || s.action.needs_operator() || s.rollback.iter().any(|a| a.needs_operator()))
    }
}

/// Why a runbook is invalid: the step (1-based number and name), the key,
/// and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunbookError {
    pub step: Option<(usize, String)>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for RunbookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Some((n, name)) if name.is_empty() => write!(f, "cutover step {n}: {}", self.message),
            Some((n, name)) => write!(f, "cutover step {n} ({name:?}): {}", self.message),
            None => write!(f, "cutover: {}", self.message),
        }
    }
}

impl std::error::Error for RunbookError {}

/// Every action key, for suggestions.
pub const ACTIONS: &[&str] = &[
    "sql",
    "command",
    "sleep",
    "pause",
    "http_check",
    "compare",
    "stop_source_writes",
    "resume_source_writes",
    "wait_for_lag",
    "wait_for_catchup",
    "sync_sequences",
    "validate",
    "start_reverse",
];

/// Step keys that are not actions.
pub const STEP_KEYS: &[&str] =
    &["name", "verify", "timeout", "retries", "retry_delay", "rollback", "confirm", "switch"];

const RUNBOOK_KEYS: &[&str] = &["steps", "pre_checks", "post_checks"];

/// ` — did you mean `x`?` when one candidate is close to `bad`.
pub fn did_you_mean(bad: &str, candidates: &[&str]) -> String {
    crate::suggest::did_you_mean(bad, candidates.iter().copied())
}

/// Parses a duration: `500ms`, `30s`, `10m`, `2h`, `1h30m`, or a number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = rest[..unit_end].trim();
        rest = &rest[unit_end..];
        let scale = match unit {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hour" | "hours" => 3600.0,
            _ => return None,
        };
        let secs = n * scale;
        if !secs.is_finite() || secs > 1e9 {
            return None;
        }
        total += Duration::from_secs_f64(secs);
    }
    Some(total)
}

/// A duration field in YAML: a number of seconds or text like `10m`.
#[derive(Debug, Clone, Copy)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let text = match &v {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => return Err(de::Error::custom("expected a duration such as 30s, 10m, 500ms or a number of seconds")),
        };
        parse_duration(&text).map(Dur).ok_or_else(|| {
            de::Error::custom(format!(
                "invalid duration {text:?}: write e.g. 30s, 10m, 2h, 500ms or a number of seconds"
            ))
        })
    }
}

/// A list of strings that may be written as one string.
#[derive(Debug, Clone)]
struct OneOrMany(Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::One(s)) => Ok(OneOrMany(vec![s])),
            Ok(Raw::Many(v)) => Ok(OneOrMany(v)),
            Err(_) => Err(de::Error::custom("expected a string or a list of strings")),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSql {
    on: Side,
    statements: OneOrMany,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    run: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPause {
    #[serde(default)]
    message: Option<String>,
}

fn default_status() -> u16 {
    200
}

fn default_http_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    url: String,
    #[serde(default = "default_status")]
    expect_status: u16,
    #[serde(default = "default_http_timeout")]
    timeout: Dur,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompare {
    source_sql: String,
    target_sql: String,
    #[serde(default)]
    max_difference: f64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFreeze {
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    database: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEmpty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLag {
    #[serde(default)]
    max_bytes: Option<u64>,
    #[serde(default)]
    max_seconds: Option<f64>,
    #[serde(default)]
    timeout: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatchup {
    #[serde(default)]
    timeout: Option<Dur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSequences {
    #[serde(default)]
    margin: i64,
    /// The way back: the source's sequences past what the target handed out.
    #[serde(default)]
    back: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValidate {
    #[serde(default = "yes")]
    checksums: bool,
    #[serde(default)]
    tables: Option<Vec<String>>,
}

fn default_post_interval() -> Dur {
    Dur(Duration::from_secs(10))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostChecks {
    duration: Dur,
    #[serde(default = "default_post_interval")]
    interval: Dur,
    checks: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    http_check: Option<RawHttp>,
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    on: Option<Side>,
    #[serde(default)]
    expect: Option<Value>,
}

/// Builds a [`RunbookError`] for a step.
struct Ctx<'a> {
    step: Option<(usize, String)>,
    key: Option<&'a str>,
}

impl Ctx<'_> {
    fn err(&self, message: impl Into<String>) -> RunbookError {
        RunbookError { step: self.step.clone(), key: self.key.map(str::to_string), message: message.into() }
    }

    /// Deserializes `v` (null = empty mapping) into `T`, turning serde's
    /// message into one naming the key and suggesting the closest field.
    fn body<T: serde::de::DeserializeOwned>(&self, what: &str, v: &Value) -> Result<T, RunbookError> {
        let v = if v.is_null() { Value::Mapping(Default::default()) } else { v.clone() };
        serde_yaml_ng::from_value(v).map_err(|e| {
            let mut msg = e.to_string();
            if let Some(rest) = msg.split("unknown field `").nth(1) {
                let bad = rest.split('`').next().unwrap_or_default().to_string();
                let cands: Vec<String> = rest.split('`').skip(2).step_by(2).map(str::to_string).collect();
                let cands: Vec<&str> = cands.iter().map(String::as_str).collect();
                msg.push_str(&did_you_mean(&bad, &cands));
            }
            self.err(format!("{what}: {msg}"))
        })
    }
}

fn key_str(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

/// Parses the plan's `cutover:` value.
pub fn parse(value: &Value) -> Result<Runbook, RunbookError> {
    let top = Ctx { step: None, key: None };
    let Value::Mapping(map) = value else {
        return Err(top.err("expected a mapping with `steps:` (a list of steps)"));
    };
    let mut runbook = Runbook::default();
    let mut steps_value = None;
    for (k, v) in map {
        let key = key_str(k);
        match key.as_str() {
            "steps" => steps_value = Some(v),
            "pre_checks" => {
                let ctx = Ctx { step: None, key: Some("pre_checks") };
                let Value::Sequence(items) = v else {
                    return Err(ctx.err(
                        "pre_checks must be a list of checks ({ command }, { http_check }, { sql, on, expect })",
                    ));
                };
                for item in items {
                    runbook.pre_checks.push(parse_verify(&ctx, &expand(&ctx, item)?)?);
                }
            }
            "post_checks" => {
                let ctx = Ctx { step: None, key: Some("post_checks") };
                let r: RawPostChecks = ctx.body("post_checks", &expand(&ctx, v)?)?;
                if r.checks.is_empty() {
                    return Err(ctx.err("post_checks: checks is empty"));
                }
                if r.interval.0.is_zero() {
                    return Err(ctx.err("post_checks: interval must be more than 0"));
                }
                let mut checks = Vec::new();
                for c in &r.checks {
                    checks.push(parse_verify(&ctx, c)?);
                }
                runbook.post_checks = Some(PostChecks { duration: r.duration.0, interval: r.interval.0, checks });
            }
            other => {
                return Err(Ctx { step: None, key: Some(other) }.err(format!(
                    "unknown key `{other}`, expected one of `steps`, `pre_checks`, `post_checks`{}",
                    did_you_mean(other, RUNBOOK_KEYS)
                )))
            }
        }
    }
    let Some(steps) = steps_value else {
        return Err(top.err("missing `steps:`: list the steps to run"));
    };
    let Value::Sequence(items) = steps else {
        return Err(Ctx { step: None, key: Some("steps") }.err("steps must be a list of steps"));
    };
    if items.is_empty() {
        return Err(Ctx { step: None, key: Some("steps") }.err("steps is empty: list at least one step"));
    }
    for (i, item) in items.iter().enumerate() {
        let step = parse_step(i + 1, item)?;
        if let Some(prev) = runbook.steps.iter().position(|s| s.name == step.name) {
            return Err(Ctx { step: Some((i + 1, step.name.clone())), key: Some("name") }
                .err(format!("the name is already used by step {}: step names must be unique", prev + 1)));
        }
        if step.action == Action::StartReverse {
            start_reverse_placement(&runbook.steps, i + 1, &step)?;
        }
        runbook.steps.push(step);
    }
    Ok(runbook)
}

/// `start_reverse` records where the target equals the frozen source: only
/// true after a `stop_source_writes` and a `wait_for_catchup`, and before
/// the traffic switch lets the application write to the target.
fn start_reverse_placement(before: &[Step], n: usize, step: &Step) -> Result<(), RunbookError> {
    let ctx = Ctx { step: Some((n, step.name.clone())), key: Some("start_reverse") };
    let at = |kind: &str| before.iter().rposition(|s| s.action.kind() == kind);
    let Some(frozen) = at("stop_source_writes") else {
        return Err(ctx.err("start_reverse needs a stop_source_writes step before it (the source must be frozen)"));
    };
    if at("wait_for_catchup").is_none_or(|c| c < frozen) {
        return Err(ctx.err(
            "start_reverse needs a wait_for_catchup step after stop_source_writes and before it (the target must hold everything)",
        ));
    }
    if let Some(sw) = before.iter().position(|s| s.switch) {
        return Err(ctx.err(format!(
            "start_reverse must come before the traffic switch (step {}): writes on the target after it would be missed",
            sw + 1
        )));
    }
    Ok(())
}

/// One step: its name, its one action, its keys; a wait gets the step's
/// timeout or is refused without one.
fn parse_step(n: usize, item: &Value) -> Result<Step, RunbookError> {
    let Value::Mapping(map) = item else {
        return Err(Ctx { step: Some((n, String::new())), key: None }
            .err("a step must be a mapping with `name:` and one action"));
    };
    let name = step_name(n, map)?;
    let at = |key: &'static str| Ctx { step: Some((n, name.clone())), key: Some(key) };
    let mut action = None;
    let mut step = Step {
        name: name.clone(),
        action: Action::ResumeSourceWrites,
        verify: None,
        timeout: None,
        retries: 0,
        retry_delay: Duration::from_secs(1),
        rollback: Vec::new(),
        confirm: false,
        switch: false,
    };
    for (k, v) in map {
        let key = key_str(k);
        let v = &expand(&Ctx { step: Some((n, name.clone())), key: Some(&key) }, v)?;
        match key.as_str() {
            "name" => {}
            "verify" => step.verify = Some(parse_verify(&at("verify"), v)?),
            "timeout" => step.timeout = Some(at("timeout").body::<Dur>("timeout", v)?.0),
            "retry_delay" => step.retry_delay = at("retry_delay").body::<Dur>("retry_delay", v)?.0,
            "retries" => step.retries = at("retries").body::<u32>("retries (a whole number)", v)?,
            "confirm" => step.confirm = at("confirm").body::<bool>("confirm (true or false)", v)?,
            "switch" => step.switch = at("switch").body::<bool>("switch (true or false)", v)?,
            "rollback" => step.rollback = parse_rollback(&at("rollback"), v)?,
            k if ACTIONS.contains(&k) => {
                let ctx = Ctx {
                    step: Some((n, name.clone())),
                    key: Some(ACTIONS[ACTIONS.iter().position(|a| *a == k).unwrap_or(0)]),
                };
                if let Some(prev) = &action {
                    let prev: &Action = prev;
                    return Err(ctx.err(format!(
                        "a step has exactly one action, this one has `{}` and `{k}`: split it into two steps",
                        prev.kind()
                    )));
                }
                action = Some(parse_action(&ctx, k, v)?);
            }
            other => return Err(unknown_step_key(n, &name, other)),
        }
    }
    let Some(action) = action else {
        return Err(at("name").err(format!("the step has no action: add one of {}", ACTIONS.join(", "))));
    };
    step.action = bounded_wait(action, step.timeout, &at)?;
    Ok(step)
}

fn step_name(n: usize, map: &serde_yaml_ng::Mapping) -> Result<String, RunbookError> {
    match map.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(_) => Err(Ctx { step: Some((n, String::new())), key: Some("name") }.err("name must be non-empty text")),
        None => Err(Ctx { step: Some((n, String::new())), key: None }.err("missing `name:`")),
    }
}

/// A key that is neither an action nor a step key, with the closest of both.
fn unknown_step_key(n: usize, name: &str, other: &str) -> RunbookError {
    let mut all: Vec<&str> = ACTIONS.to_vec();
    all.extend_from_slice(STEP_KEYS);
    let is_actionish = crate::suggest::closest(other, STEP_KEYS.iter().copied()).is_none();
    let what = if is_actionish { "unknown action or key" } else { "unknown key" };
    Ctx { step: Some((n, name.to_string())), key: None }.err(format!(
        "{what} `{other}`{}; actions: {}; step keys: {}",
        did_you_mean(other, &all),
        ACTIONS.join(", "),
        STEP_KEYS.join(", ")
    ))
}

/// A wait without a limit could hang a cutover forever: it takes the
/// step's timeout, and without one it is refused.
fn bounded_wait<'a>(
    action: Action,
    step_timeout: Option<Duration>,
    at: &impl Fn(&'static str) -> Ctx<'a>,
) -> Result<Action, RunbookError> {
    match &action {
        Action::WaitForLag { timeout, .. } | Action::WaitForCatchup { timeout } if timeout.is_zero() => {
            match step_timeout {
                Some(t) => Ok(with_timeout(action.clone(), t)),
                None => Err(at(action.kind()).err(format!(
                    "{} needs a timeout (e.g. {{ timeout: 2m }}) so a stuck target cannot hang the cutover",
                    action.kind()
                ))),
            }
        }
        _ => Ok(action),
    }
}

/// `v` with `${VAR}` (and `${VAR:-default}`, `${file:…}`) filled in in
/// every string, as in the plan's URLs and with the same errors: `sql`,
/// `command`, `verify`, `http_check` URLs, messages, env values alike.
/// Mapping keys are names, not values, and stay as written.
fn expand(ctx: &Ctx<'_>, v: &Value) -> Result<Value, RunbookError> {
    Ok(match v {
        Value::String(s) => {
            Value::String(crate::plan::interpolate(s, |n| std::env::var(n).ok()).map_err(|e| ctx.err(e))?)
        }
        Value::Sequence(items) => Value::Sequence(items.iter().map(|i| expand(ctx, i)).collect::<Result<_, _>>()?),
        Value::Mapping(m) => {
            let mut out = serde_yaml_ng::Mapping::new();
            for (k, val) in m {
                out.insert(k.clone(), expand(ctx, val)?);
            }
            Value::Mapping(out)
        }
        other => other.clone(),
    })
}

fn with_timeout(action: Action, t: Duration) -> Action {
    match action {
        Action::WaitForLag { max_bytes, max_seconds, .. } => Action::WaitForLag { max_bytes, max_seconds, timeout: t },
        Action::WaitForCatchup { .. } => Action::WaitForCatchup { timeout: t },
        other => other,
    }
}

fn parse_action(ctx: &Ctx<'_>, kind: &str, v: &Value) -> Result<Action, RunbookError> {
    Ok(match kind {
        "sql" => {
            let r: RawSql = ctx.body("sql", v)?;
            if r.statements.0.iter().all(|s| s.trim().is_empty()) {
                return Err(ctx.err("sql: statements is empty"));
            }
            Action::Sql { on: r.on, statements: r.statements.0 }
        }
        "command" => match v {
            Value::String(s) => Action::Command { run: s.clone(), env: BTreeMap::new() },
            _ => {
                let r: RawCommand = ctx.body("command", v)?;
                for (k, v) in &r.env {
                    if k == "SOURCE_URL" || k == "TARGET_URL" {
                        return Err(ctx.err(format!("command: env may not set {k}: xdb provides it from the plan")));
                    }
                    if crate::secrets::is_secret_name(k) {
                        crate::secrets::register(v);
                    }
                }
                Action::Command { run: r.run, env: r.env }
            }
        },
        "sleep" => Action::Sleep(ctx.body::<Dur>("sleep", v)?.0),
        "pause" => match v {
            Value::String(s) => Action::Pause { message: Some(s.clone()) },
            _ => Action::Pause { message: ctx.body::<RawPause>("pause", v)?.message },
        },
        "http_check" => {
            let r: RawHttp = ctx.body("http_check", v)?;
            check_http_url(ctx, &r.url)?;
            Action::HttpCheck { url: r.url, expect_status: r.expect_status, timeout: r.timeout.0 }
        }
        "compare" => {
            let r: RawCompare = ctx.body("compare", v)?;
            if !(r.max_difference.is_finite() && r.max_difference >= 0.0) {
                return Err(ctx.err("compare: max_difference must be 0 or more"));
            }
            Action::Compare { source_sql: r.source_sql, target_sql: r.target_sql, max_difference: r.max_difference }
        }
        "stop_source_writes" => {
            let r: RawFreeze = ctx.body("stop_source_writes", v)?;
            match (r.roles, r.database) {
                (Some(_), Some(true)) => {
                    return Err(ctx.err("stop_source_writes: give either roles or database: true, not both"))
                }
                (Some(roles), _) if roles.is_empty() => {
                    return Err(ctx.err("stop_source_writes: roles is empty (omit it to freeze the whole database)"))
                }
                (Some(roles), _) => Action::StopSourceWrites(FreezeScope::Roles(roles)),
                (None, Some(false)) => {
                    return Err(ctx.err("stop_source_writes: database: false freezes nothing; list roles instead"))
                }
                (None, _) => Action::StopSourceWrites(FreezeScope::Database),
            }
        }
        "resume_source_writes" => {
            let _: RawEmpty = ctx.body("resume_source_writes (takes no fields)", v)?;
            Action::ResumeSourceWrites
        }
        "wait_for_lag" => {
            let r: RawLag = ctx.body("wait_for_lag", v)?;
            if r.max_bytes.is_none() && r.max_seconds.is_none() {
                return Err(ctx.err("wait_for_lag: give max_bytes or max_seconds (or both)"));
            }
            if r.max_seconds.is_some_and(|s| !(s.is_finite() && s >= 0.0)) {
                return Err(ctx.err("wait_for_lag: max_seconds must be 0 or more"));
            }
            // Zero means "take the step's timeout" (checked by the caller).
            Action::WaitForLag {
                max_bytes: r.max_bytes,
                max_seconds: r.max_seconds,
                timeout: r.timeout.map(|d| d.0).unwrap_or(Duration::ZERO),
            }
        }
        "wait_for_catchup" => {
            let r: RawCatchup = ctx.body("wait_for_catchup", v)?;
            Action::WaitForCatchup { timeout: r.timeout.map(|d| d.0).unwrap_or(Duration::ZERO) }
        }
        "sync_sequences" => {
            let r: RawSequences = ctx.body("sync_sequences", v)?;
            if r.margin < 0 {
                return Err(ctx.err("sync_sequences: margin must be 0 or more"));
            }
            Action::SyncSequences { margin: r.margin, back: r.back }
        }
        "validate" => {
            let r: RawValidate = ctx.body("validate", v)?;
            Action::Validate { checksums: r.checksums, tables: r.tables }
        }
        "start_reverse" => {
            let _: RawEmpty = ctx.body("start_reverse (takes no fields)", v)?;
            Action::StartReverse
        }
        other => return Err(ctx.err(format!("unknown action `{other}`{}", did_you_mean(other, ACTIONS)))),
    })
}

fn check_http_url(ctx: &Ctx<'_>, url: &str) -> Result<(), RunbookError> {
    if url.starts_with("https://") {
        return Err(ctx.err(format!(
            "{url}: https is not supported by the built-in check; use a command instead, e.g. command: \"curl -fsS {url}\""
        )));
    }
    if !url.starts_with("http://") {
        return Err(ctx.err(format!("{url:?} is not an http:// URL")));
    }
    Ok(())
}

fn parse_rollback(ctx: &Ctx<'_>, v: &Value) -> Result<Vec<Action>, RunbookError> {
    let items: Vec<&Value> = match v {
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    if items.is_empty() {
        return Err(ctx.err("rollback is empty: name an action (e.g. resume_source_writes) or remove the key"));
    }
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::String(name) => {
                if !ACTIONS.contains(&name.as_str()) {
                    return Err(ctx.err(format!(
                        "rollback names no action: `{name}`{}; actions: {}",
                        did_you_mean(name, ACTIONS),
                        ACTIONS.join(", ")
                    )));
                }
                out.push(parse_action(ctx, name, &Value::Null)?);
            }
            Value::Mapping(m) if m.len() == 1 => {
                let Some((k, body)) = m.iter().next() else { continue };
                let k = key_str(k);
                if !ACTIONS.contains(&k.as_str()) {
                    return Err(ctx.err(format!(
                        "rollback: unknown action `{k}`{}; actions: {}",
                        did_you_mean(&k, ACTIONS),
                        ACTIONS.join(", ")
                    )));
                }
                out.push(parse_action(ctx, &k, body)?);
            }
            Value::Null => {
                return Err(ctx.err("rollback names nothing: name an action (e.g. resume_source_writes)"));
            }
            _ => return Err(ctx.err("rollback must be an action name, one `{ action: … }` mapping, or a list of them")),
        }
    }
    Ok(out)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("NULL".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn parse_verify(ctx: &Ctx<'_>, v: &Value) -> Result<Verify, RunbookError> {
    if let Value::String(s) = v {
        return Ok(Verify::Command(s.clone()));
    }
    let r: RawVerify = ctx.body("verify", v)?;
    match (r.command, r.http_check, r.sql) {
        (Some(c), None, None) => {
            if r.on.is_some() || r.expect.is_some() {
                return Err(ctx.err("verify: `on` and `expect` belong to a { sql } check, not a command"));
            }
            Ok(Verify::Command(c))
        }
        (None, Some(h), None) => {
            check_http_url(ctx, &h.url)?;
            Ok(Verify::Http { url: h.url, expect_status: h.expect_status, timeout: h.timeout.0 })
        }
        (None, None, Some(sql)) => {
            let on = r.on.unwrap_or(Side::Target);
            let Some(expect) = r.expect else {
                return Err(ctx.err("verify: a { sql } check needs `expect:` (the answer it must give)"));
            };
            let expect = scalar_text(&expect).ok_or_else(|| ctx.err("verify: expect must be a single value"))?;
            Ok(Verify::Sql { on, sql, expect })
        }
        (None, None, None) => Err(ctx.err("verify needs one of command, http_check, or sql (with on and expect)")),
        _ => Err(ctx.err("verify takes exactly one of command, http_check, or sql")),
    }
}

/// Finds where a runbook error points in the plan text: the step's
/// `name:` line, then the key inside that step when one is named.
/// Returns 1-based (line, column).
pub fn locate(text: &str, err: &RunbookError) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let cutover = lines.iter().position(|l| l.trim_end() == "cutover:" || l.starts_with("cutover:"))?;
    let key_at = |from: usize, to: usize, key: &str| -> Option<(usize, usize)> {
        (from..to).find_map(|i| {
            let l = lines.get(i)?;
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            let after = t.strip_prefix(key)?;
            after.trim_start().starts_with(':').then(|| (i + 1, l.len() - t.len() + 1))
        })
    };
    let Some((n, _)) = &err.step else {
        return match &err.key {
            Some(k) => key_at(cutover, lines.len(), k),
            None => Some((cutover + 1, 1)),
        };
    };
    // Steps are the list items under `steps:`; find the n-th `- ` at that indent.
    let steps = key_at(cutover, lines.len(), "steps")?.0; // 1-based line of `steps:`
    let mut item_indent = None;
    let mut starts = Vec::new();
    for (i, l) in lines.iter().enumerate().skip(steps) {
        let indent = l.len() - l.trim_start().len();
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        if l.trim_start().starts_with("- ") || l.trim() == "-" {
            match item_indent {
                None => item_indent = Some(indent),
                Some(ind) if ind == indent => {}
                Some(ind) if indent < ind => break,
                Some(_) => continue,
            }
            starts.push(i);
        } else if item_indent.is_some_and(|ind| indent <= ind) || (item_indent.is_none() && indent == 0) {
            break;
        }
    }
    let start = *starts.get(n.checked_sub(1)?)?;
    let end = starts.get(*n).copied().unwrap_or_else(|| {
        // The last step ends at the first line indented no deeper than the list.
        let ind = item_indent.unwrap_or(0);
        (start + 1..lines.len())
            .find(|&i| {
                let l = lines[i];
                !l.trim().is_empty() && (l.len() - l.trim_start().len()) <= ind && !l.trim_start().starts_with("- ")
            })
            .unwrap_or(lines.len())
    });
    if let Some(k) = &err.key {
        if let Some(found) = key_at(start, end, k) {
            return Some(found);
        }
    }
    // An unknown key: find it by the backquoted name in the message.
    if let Some(bad) = err.message.split('`').nth(1) {
        if let Some(found) = key_at(start, end, bad) {
            return Some(found);
        }
    }
    let l = lines.get(start)?;
    Some((start + 1, l.len() - l.trim_start().len() + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(yaml: &str) -> Result<Runbook, RunbookError> {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        parse(&v)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("m"), None);
    }

    #[test]
    fn the_design_example_parses() {
        let rb = parse_text(
            r#"
steps:
  - name: Wait until lag is small
    wait_for_lag: { max_bytes: 1048576, timeout: 10m }
  - name: Stop writes on the source
    stop_source_writes: { roles: [app] }
    rollback: resume_source_writes
  - name: Drain the last changes
    wait_for_catchup: { timeout: 2m }
  - name: Validate
    validate: { checksums: true }
  - name: Sync sequences
    sync_sequences: {}
  - name: Switch traffic
    command: ./switch-to-mysql.sh
    verify: { command: "curl -fsS http://127.0.0.1:8080/health" }
    rollback: { command: ./switch-to-postgres.sh }
"#,
        )
        .unwrap();
        assert_eq!(rb.steps.len(), 6);
        assert_eq!(rb.steps[1].action, Action::StopSourceWrites(FreezeScope::Roles(vec!["app".into()])));
        assert_eq!(rb.steps[1].rollback, vec![Action::ResumeSourceWrites]);
        assert_eq!(rb.steps[2].action, Action::WaitForCatchup { timeout: Duration::from_secs(120) });
        assert_eq!(rb.steps[5].verify, Some(Verify::Command("curl -fsS http://127.0.0.1:8080/health".into())));
        assert!(!rb.needs_operator());
    }

    #[test]
    fn unknown_action_suggests_the_closest() {
        let e = parse_text("steps:\n  - name: Freeze\n    stop_source_write: {}\n").unwrap_err();
        assert_eq!(e.step, Some((1, "Freeze".into())));
        assert!(
            e.message.contains("`stop_source_write`") && e.message.contains("did you mean `stop_source_writes`"),
            "{e}"
        );
        let e = parse_text("steps:\n  - name: A\n    sleep: 1s\n    retrys: 2\n").unwrap_err();
        assert!(e.message.contains("did you mean `retries`"), "{e}");
        let e = parse_text("steps:\n  - name: A\n    wait_for_lag: { max_byte: 10, timeout: 1m }\n").unwrap_err();
        assert!(
            e.message.contains("unknown field `max_byte`") && e.message.contains("did you mean `max_bytes`"),
            "{e}"
        );
    }

    #[test]
    fn waits_need_a_timeout_and_rollbacks_must_name_an_action() {
        let e = parse_text("steps:\n  - name: W\n    wait_for_catchup: {}\n").unwrap_err();
        assert!(e.message.contains("needs a timeout"), "{e}");
        let ok = parse_text("steps:\n  - name: W\n    timeout: 30s\n    wait_for_catchup: {}\n").unwrap();
        assert_eq!(ok.steps[0].action, Action::WaitForCatchup { timeout: Duration::from_secs(30) });
        let e = parse_text("steps:\n  - name: S\n    sleep: 1s\n    rollback:\n").unwrap_err();
        assert!(e.message.contains("names nothing"), "{e}");
        let e = parse_text("steps:\n  - name: S\n    sleep: 1s\n    rollback: resume_writes\n").unwrap_err();
        assert!(e.message.contains("did you mean `resume_source_writes`"), "{e}");
        let e = parse_text("steps:\n  - name: S\n    sleep: 1s\n    command: x\n").unwrap_err();
        assert!(e.message.contains("exactly one action"), "{e}");
        let e = parse_text("steps:\n  - name: S\n    http_check: { url: 'https://x' }\n").unwrap_err();
        assert!(e.message.contains("https is not supported"), "{e}");
    }

    #[test]
    fn locates_the_step_and_key() {
        let text = "name: x\ncutover:\n  steps:\n    - name: A\n      sleep: 1s\n    - name: B\n      sleep: 1s\n      retrys: 2\ntables: []\n";
        let v: Value = serde_yaml_ng::from_str(text).unwrap();
        let e = parse(v.get("cutover").unwrap()).unwrap_err();
        assert_eq!(locate(text, &e), Some((8, 7)), "{e}");
        let e = RunbookError { step: Some((1, "A".into())), key: Some("sleep".into()), message: String::new() };
        assert_eq!(locate(text, &e), Some((5, 7)));
    }

    #[test]
    fn start_reverse_only_between_the_drain_and_the_switch() {
        let freeze = "  - name: F\n    stop_source_writes: { database: true }\n";
        let drain = "  - name: D\n    wait_for_catchup: { timeout: 1m }\n";
        let start = "  - name: R\n    start_reverse: {}\n";
        let switch = "  - name: S\n    switch: true\n    command: ./switch.sh\n";
        let ok = parse_text(&format!("steps:\n{freeze}{drain}{start}{switch}")).unwrap();
        assert_eq!(ok.steps[2].action, Action::StartReverse);
        let e = parse_text(&format!("steps:\n{freeze}{start}")).unwrap_err();
        assert!(e.message.contains("wait_for_catchup"), "{e}");
        let e = parse_text(&format!("steps:\n{drain}{start}")).unwrap_err();
        assert!(e.message.contains("stop_source_writes"), "{e}");
        let e = parse_text(&format!("steps:\n{freeze}{drain}{switch}{start}")).unwrap_err();
        assert!(e.message.contains("before the traffic switch"), "{e}");
    }
}

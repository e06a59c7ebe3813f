//! The runbook executor: pre-checks, then each step in order (confirm gate,
//! action, verification, retries, timeout), journaled; on a failure the
//! rollbacks of the failed step and of every completed step, newest first.
//!
//! Invariants: nothing runs before the whole runbook validated and the
//! operator requirements (`confirm`, `pause` without a terminal need
//! `--yes`) are met; a step is journaled as started before its action runs
//! and as done only after its verification passed; `--resume` never re-runs
//! a completed step.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::actions::{self, describe, describe_verify, fmt_duration, ActionError, Env, Outcome};
use super::journal::{self, now_ms, Event, Journal, JournalError, JournalState};
use super::runbook::{Action, Runbook, Step};
use crate::plan::{Plan, PlanError};
use crate::source::postgres::identity;
use crate::state_dir;

/// How `xdb cutover` runs.
#[derive(Debug, Clone, Default)]
pub struct CutoverOptions {
    /// Print every step and the SQL it would run; connect to nothing.
    pub dry_run: bool,
    /// Answer confirmations with yes; let pauses pass without a terminal.
    pub yes: bool,
    /// Continue after the last completed step of the journal.
    pub resume: bool,
    /// Undo what the journal shows in effect (the interrupted step, then
    /// every completed one, newest first) instead of running steps.
    pub rollback: bool,
    /// Journal file; default: in the state directory, keyed by plan name
    /// and source identity (see [`journal::default_path`]).
    pub journal: Option<PathBuf>,
    /// stdin is a terminal (an operator can answer).
    pub interactive: bool,
}

/// The end of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Steps run in this invocation.
    pub steps_run: usize,
    /// Steps skipped because the journal had them completed.
    pub steps_skipped: usize,
    /// How long source writes were stopped, and whether they still are.
    pub write_freeze: Option<(Duration, bool)>,
    /// Lag measured by the last wait step.
    pub lag: Option<String>,
    /// The last validation result.
    pub validation: Option<String>,
}

/// Why a cutover did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    /// The runbook is invalid (nothing ran).
    #[error("invalid plan: {0}")]
    Invalid(#[from] PlanError),
    /// Refused before anything ran (operator, journal state).
    #[error("{0}; nothing was changed")]
    Refused(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{0}; nothing was changed")]
    StateDir(#[from] crate::state_dir::NoStateDir),
    /// `--rollback`: some rollbacks failed.
    #[error("{} rollback(s) failed: {}", .0.len(), .0.join("; "))]
    RollbackFailed(Vec<String>),
    /// The source could not be reached or identified before anything ran.
    #[error("{0}; nothing was changed")]
    Source(#[source] ActionError),
    /// A pre-check failed (nothing was changed).
    #[error("pre-check {number} failed: {reason}; nothing was changed")]
    PreCheck { number: usize, reason: String },
    /// A step failed; rollbacks ran (some may have failed too).
    #[error("{}", step_failed(*.number, .name, .reason, .rollback_failures))]
    StepFailed { number: usize, name: String, reason: String, rollback_failures: Vec<String> },
}

fn step_failed(number: usize, name: &str, reason: &str, failures: &[String]) -> String {
    let mut s = format!("step {number} ({name:?}) failed: {reason}");
    if failures.is_empty() {
        s.push_str("; the rollbacks ran, newest first");
    } else {
        s.push_str(&format!("; {} rollback(s) failed too: {}", failures.len(), failures.join("; ")));
    }
    s
}

impl CutoverError {
    /// 2 when nothing ran (bad plan, refused), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CutoverError::Invalid(_)
            | CutoverError::Refused(_)
            | CutoverError::StateDir(_)
            | CutoverError::Source(_) => 2,
            _ => 1,
        }
    }
}

/// Writes operator-facing lines with every plan secret masked.
struct Printer<'a> {
    out: &'a mut dyn Write,
    plan: &'a Plan,
}

impl Printer<'_> {
    fn line(&mut self, s: &str) {
        let _ = writeln!(self.out, "{}", self.plan.scrub(s));
        let _ = self.out.flush();
    }
}

/// Runs (or with `dry_run` prints) the plan's runbook, in phases: refuse
/// what cannot run unattended, find this source's journal, refuse an
/// unfinished run that was not asked to resume, pre-checks, the steps, the
/// post-checks.
pub async fn run(plan: &Plan, opts: &CutoverOptions, out: &mut dyn Write) -> Result<Summary, CutoverError> {
    let runbook = super::load_runbook(plan)?;
    let mut p = Printer { out, plan };
    if opts.dry_run {
        let (path, state) = dry_run_journal(plan, opts, &mut p)?;
        let start = start_at(&runbook, opts, &state, &path)?;
        print_dry_run(&mut p, &runbook, opts, start, &state, &path);
        return Ok(Summary::default());
    }
    refuse_without_operator(&runbook, opts)?;
    let mut env = Env::new(plan, None, opts.yes, opts.interactive);
    let found = find_journal(plan, opts, &mut env, &mut p).await?;
    if opts.rollback {
        env.freeze = found.freeze;
        return roll_back_run(&runbook, &found.state, &found.path, &mut env, &mut p).await;
    }
    if !opts.resume && found.state.unfinished {
        return Err(refuse_unfinished(plan, &found, &mut env).await);
    }
    let start = start_at(&runbook, opts, &found.state, &found.path)?;
    let n = runbook.steps.len();
    if opts.resume && found.state.finished_ok {
        // A finished cutover is never re-armed: its waits and validations
        // would run against a source that is no longer the live one.
        p.line(&format!(
            "xdb cutover: the cutover in journal {} finished with every step done; nothing to resume",
            found.path.display()
        ));
        return Ok(Summary { steps_skipped: n, ..Default::default() });
    }

    // Listening from here on: a SIGINT/SIGTERM between steps is kept and
    // fails the next step, so a stop request always leads to the rollbacks.
    let mut interrupt = Interrupt::new();
    env.freeze = found.freeze;
    p.line(&format!(
        "xdb cutover: plan {} — {n} step(s){}; journal {}",
        plan.name,
        if start > 0 { format!(", resuming at step {}", start + 1) } else { String::new() },
        found.path.display()
    ));
    if start == 0 {
        run_pre_checks(&runbook, &mut env, &mut p).await?;
    }
    env.journal = Some(Journal::open(&found.path)?);
    let names = runbook.steps.iter().map(|s| s.name.clone()).collect();
    env.record(Event::RunStarted { at_ms: now_ms(), steps: names, resume: opts.resume })
        .map_err(|e| CutoverError::Refused(e.to_string()))?;
    let mut progress = Progress {
        // Steps before the resume point are completed by definition.
        completed: if opts.resume { found.state.completed.clone() } else { Vec::new() },
        summary: Summary { steps_skipped: start, ..Default::default() },
        switch: if opts.resume { found.state.switch.clone() } else { None },
    };
    for (i, step) in runbook.steps.iter().enumerate().skip(start) {
        run_one_step(&runbook, i, step, &mut progress, &mut interrupt, &mut env, &mut p).await?;
    }
    if let Some(post) = &runbook.post_checks {
        let watched = tokio::select! {
            r = watch(post, &mut env, &mut p) => r,
            () = interrupt.wait() => Err("interrupted by SIGINT/SIGTERM".to_string()),
        };
        if let Err(reason) = watched {
            return Err(
                fail_and_roll_back(&runbook, n, "post_checks", reason, false, &mut progress, &mut env, &mut p).await
            );
        }
    }
    record(&mut env, Event::RunFinished { at_ms: now_ms(), ok: true })?;
    progress.summary.write_freeze = freeze_window(&Journal::read(&found.path)?);
    print_summary(&mut p, &progress.summary);
    Ok(progress.summary)
}

/// Steps that need an operator's answer, with nobody to give it: refused
/// before anything runs.
fn refuse_without_operator(runbook: &Runbook, opts: &CutoverOptions) -> Result<(), CutoverError> {
    if !runbook.needs_operator() || opts.yes || opts.interactive {
        return Ok(());
    }
    let which: Vec<String> = runbook
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.confirm || s.action.needs_operator())
        .map(|(i, s)| format!("step {} ({:?})", i + 1, s.name))
        .collect();
    Err(CutoverError::Refused(format!(
        "{} need(s) an operator's answer but stdin is not a terminal: run from a terminal or pass --yes",
        which.join(", ")
    )))
}

/// This source's journal, replayed, and the freeze record it holds if that
/// record is for this source.
struct FoundJournal {
    path: PathBuf,
    state: JournalState,
    freeze: Option<actions::freeze::FreezeRecord>,
}

/// The journal belongs to one source: which one is read from the server,
/// not from the URL's spelling. A plan whose target is its own source is
/// refused here (it would "prove" the source equal to itself and switch to it).
async fn find_journal(
    plan: &Plan,
    opts: &CutoverOptions,
    env: &mut Env<'_>,
    p: &mut Printer<'_>,
) -> Result<FoundJournal, CutoverError> {
    let identity = {
        let c = env.source().await.map_err(CutoverError::Source)?;
        identity::read(c)
            .await
            .map_err(|e| CutoverError::Source(ActionError::source("reading the source's identity", e)))?
    };
    identity::refuse_target_is_source(&identity, &plan.target.url)
        .await
        .map_err(|e| CutoverError::Refused(plan.scrub(&e.to_string())))?;
    let path = match &opts.journal {
        Some(p) => p.clone(),
        None => journal::default_path(&state_dir::root()?, &plan.name, &identity),
    };
    let state = JournalState::replay(&Journal::read(&path)?);
    let freeze = match state.freeze.clone() {
        Some(r) if r.source.as_ref().is_some_and(|s| *s != identity) => {
            p.line(&format!(
                "journal {}: its freeze record is for {}, not for this source ({identity}): ignored",
                path.display(),
                r.source.as_ref().map(ToString::to_string).unwrap_or_default()
            ));
            None
        }
        other => other,
    };
    Ok(FoundJournal { path, state, freeze })
}

/// A run that started and never finished, and neither `--resume` nor
/// `--rollback` was asked: said first, with whether the source is still
/// frozen (the application may be unable to write right now).
async fn refuse_unfinished(plan: &Plan, found: &FoundJournal, env: &mut Env<'_>) -> CutoverError {
    let frozen = match &found.freeze {
        Some(r) => {
            let read = match env.source().await {
                Ok(c) => actions::freeze::read_back(c, r).await,
                Err(e) => Err(e),
            };
            super::notice::message(
                plan,
                &found.state,
                r,
                &found.path,
                read.as_ref().map_err(|e| e.to_string()).as_ref().map(|r| *r).map_err(|e| e.as_str()),
            )
        }
        None => None,
    };
    let file = plan.file.display();
    CutoverError::Refused(format!(
        "{}the journal {} shows a cutover that started and never finished: continue it with `xdb cutover --plan {file} --resume`, or undo what it did with `xdb cutover --plan {file} --rollback`",
        frozen.map(|f| format!("{f}\n")).unwrap_or_default(),
        found.path.display()
    ))
}

/// The runbook's pre-checks, before anything changes.
async fn run_pre_checks(runbook: &Runbook, env: &mut Env<'_>, p: &mut Printer<'_>) -> Result<(), CutoverError> {
    for (i, check) in runbook.pre_checks.iter().enumerate() {
        p.line(&format!("pre-check {}: {}", i + 1, describe_verify(check)));
        match actions::verify(check, env).await {
            Ok(msg) => p.line(&format!("  ok: {msg}")),
            Err(e) => {
                p.line(&format!("  FAILED: {e}"));
                return Err(CutoverError::PreCheck { number: i + 1, reason: p.plan.scrub(&e.to_string()) });
            }
        }
    }
    Ok(())
}

/// What a run carries from step to step.
struct Progress {
    completed: Vec<usize>,
    summary: Summary,
    /// The completed traffic switch and the target's row counts then.
    switch: Option<(usize, Vec<(String, u64)>)>,
}

/// One step: skipped when the journal has it done (and it is not one that
/// always runs again), else run, journaled, and on failure rolled back.
async fn run_one_step(
    runbook: &Runbook,
    i: usize,
    step: &Step,
    progress: &mut Progress,
    interrupt: &mut Interrupt,
    env: &mut Env<'_>,
    p: &mut Printer<'_>,
) -> Result<(), CutoverError> {
    let (number, n) = (i + 1, runbook.steps.len());
    if progress.completed.contains(&i) && !step.action.reruns_on_resume() {
        p.line(&format!("[{number}/{n}] {} — already done (journal), skipped", step.name));
        progress.summary.steps_skipped += 1;
        return Ok(());
    }
    p.line(&format!("[{number}/{n}] {} ({})", step.name, step.action.kind()));
    let started = Instant::now();
    let result = tokio::select! {
        r = run_step(step, i, env, p) => r,
        () = interrupt.wait() => {
            env.drop_connections();
            Err(StepError { reason: "interrupted by SIGINT/SIGTERM".into(), started: true })
        }
    };
    progress.summary.steps_run += 1;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(StepError { reason, started: action_started }) => {
            p.line(&format!("  FAILED after {}: {}", fmt_duration(started.elapsed()), p.plan.scrub(&reason)));
            return Err(fail_and_roll_back(runbook, i, &step.name, reason, action_started, progress, env, p).await);
        }
    };
    for note in &outcome.notes {
        p.line(&format!("      {note}"));
    }
    let ms = started.elapsed().as_millis() as u64;
    record(env, Event::StepDone { at_ms: now_ms(), step: i, name: step.name.clone(), ms })?;
    if !progress.completed.contains(&i) {
        progress.completed.push(i);
    }
    if step.switch {
        match super::validate_step::target_counts(env).await {
            Ok(counts) => {
                record(env, Event::SwitchCounts { at_ms: now_ms(), step: i, counts: counts.clone() })?;
                progress.switch = Some((i, counts));
            }
            Err(e) => p.line(&format!("      (could not count the target's rows at the switch: {e})")),
        }
    }
    p.line(&format!("  ok ({})", fmt_duration(started.elapsed())));
    progress.summary.lag = outcome.lag.or(progress.summary.lag.take());
    progress.summary.validation = outcome.validation.or(progress.summary.validation.take());
    Ok(())
}

/// A step (index `i`; `runbook.steps.len()` for the post-checks) failed:
/// journal it, run the rollbacks — of the failed step too when its action
/// had started — newest first, say what state things are in, and return
/// the error to report.
#[allow(clippy::too_many_arguments)]
async fn fail_and_roll_back(
    runbook: &Runbook,
    i: usize,
    name: &str,
    reason: String,
    action_started: bool,
    progress: &mut Progress,
    env: &mut Env<'_>,
    p: &mut Printer<'_>,
) -> CutoverError {
    let reason = p.plan.scrub(&reason);
    let failed = Event::StepFailed { at_ms: now_ms(), step: i, name: name.to_string(), error: reason.clone() };
    if let Err(e) = record(env, failed) {
        return e;
    }
    let failed_step = action_started.then_some(i);
    let rollback_failures =
        match roll_back(runbook, failed_step, &mut progress.completed, progress.switch.as_ref(), env, p).await {
            Ok(f) => f,
            Err(e) => return e,
        };
    if let Err(e) = record(env, Event::RunFinished { at_ms: now_ms(), ok: false }) {
        return e;
    }
    print_state(p, env, &progress.completed, runbook, &rollback_failures).await;
    CutoverError::StepFailed { number: i + 1, name: name.to_string(), reason, rollback_failures }
}

/// `--rollback`: undoes what the journal shows in effect — the step a
/// killed run was in, then every completed step, newest first — exactly as
/// a failed step's rollbacks would have.
async fn roll_back_run(
    runbook: &Runbook,
    state: &JournalState,
    path: &std::path::Path,
    env: &mut Env<'_>,
    p: &mut Printer<'_>,
) -> Result<Summary, CutoverError> {
    let names: Vec<String> = runbook.steps.iter().map(|s| s.name.clone()).collect();
    if !state.any_run {
        return Err(CutoverError::Refused(format!(
            "the journal {} records no cutover: nothing to roll back",
            path.display()
        )));
    }
    if state.steps != names {
        return Err(CutoverError::Refused(format!(
            "the runbook's steps changed since the journal {} was written (it had: {}); roll back with the same runbook",
            path.display(),
            state.steps.join(", ")
        )));
    }
    p.line(&format!("xdb cutover --rollback: plan {}; journal {}", p.plan.name, path.display()));
    env.journal = Some(Journal::open(path)?);
    env.record(Event::RunStarted { at_ms: now_ms(), steps: names, resume: true })
        .map_err(|e| CutoverError::Refused(e.to_string()))?;
    let mut completed = state.completed.clone();
    let failures = roll_back(runbook, state.interrupted, &mut completed, state.switch.as_ref(), env, p).await?;
    record(env, Event::RunFinished { at_ms: now_ms(), ok: false })?;
    print_state(p, env, &completed, runbook, &failures).await;
    if failures.is_empty() {
        Ok(Summary::default())
    } else {
        Err(CutoverError::RollbackFailed(failures))
    }
}

/// The first step to run, or a refusal: a resumed runbook must be the one
/// journaled, and a run that never finished is only ever resumed.
fn start_at(
    runbook: &Runbook,
    opts: &CutoverOptions,
    state: &JournalState,
    path: &std::path::Path,
) -> Result<usize, CutoverError> {
    let names: Vec<String> = runbook.steps.iter().map(|s| s.name.clone()).collect();
    if opts.resume {
        if state.any_run && state.steps != names {
            return Err(CutoverError::Refused(format!(
                "the runbook's steps changed since the journal {} was written (it had: {}); resume with the same runbook, or move the journal away to start over",
                path.display(),
                state.steps.join(", ")
            )));
        }
        Ok(state.resume_at(names.len(), |i| runbook.steps[i].action.reruns_on_resume()))
    } else if state.unfinished {
        Err(CutoverError::Refused(format!(
            "the journal {} shows a cutover that started and never finished: continue it with --resume (or move the journal away once the source and target are checked by hand)",
            path.display()
        )))
    } else {
        Ok(0)
    }
}

/// The journal a dry run reads: `--journal`, or the plan's journal in the
/// state directory when there is exactly one (a dry run contacts no server,
/// so it cannot tell which source's journal is meant; every one is listed).
fn dry_run_journal(
    plan: &Plan,
    opts: &CutoverOptions,
    p: &mut Printer<'_>,
) -> Result<(PathBuf, JournalState), CutoverError> {
    if let Some(path) = &opts.journal {
        return Ok((path.clone(), JournalState::replay(&Journal::read(path)?)));
    }
    let root = state_dir::root()?;
    let found = journal::journals_for_plan(&root, &plan.name);
    let mut states = Vec::new();
    for path in found {
        let state = JournalState::replay(&Journal::read(&path)?);
        let mut what = Vec::new();
        if state.unfinished {
            what.push("a run that never finished".to_string());
        }
        if let Some(f) = &state.freeze {
            what.push(format!(
                "source writes recorded as stopped{}",
                f.source.as_ref().map(|s| format!(" on {s}")).unwrap_or_default()
            ));
        }
        if !what.is_empty() {
            p.line(&format!("journal {}: {}", path.display(), what.join("; ")));
        }
        states.push((path, state));
    }
    match states.len() {
        1 => Ok(states.remove(0)),
        0 => Ok((root.join("cutover").join(state_dir::component(&plan.name)), JournalState::default())),
        k => {
            p.line(&format!(
                "{k} journals for plan {} (one per source): the real run uses the one of the plan's source",
                plan.name
            ));
            Ok((root.join("cutover").join(state_dir::component(&plan.name)), JournalState::default()))
        }
    }
}

/// Runs the post-checks every `interval` for `duration`; the first breach
/// is an error.
async fn watch(post: &super::runbook::PostChecks, env: &mut Env<'_>, p: &mut Printer<'_>) -> Result<(), String> {
    p.line(&format!(
        "post-checks: {} check(s) every {} for {}",
        post.checks.len(),
        fmt_duration(post.interval),
        fmt_duration(post.duration)
    ));
    let start = Instant::now();
    let mut rounds = 0u64;
    loop {
        for c in &post.checks {
            if let Err(e) = actions::verify(c, env).await {
                p.line(&format!("  post-check breached after {}: {e}", fmt_duration(start.elapsed())));
                return Err(format!("{}: {e}", describe_verify(c)));
            }
        }
        rounds += 1;
        if start.elapsed() + post.interval > post.duration {
            p.line(&format!("  ok: {rounds} round(s) passed"));
            return Ok(());
        }
        tokio::time::sleep(post.interval).await;
    }
}

fn record(env: &mut Env<'_>, e: Event) -> Result<(), CutoverError> {
    env.record(e).map_err(|e| CutoverError::Journal(JournalError { path: "(journal)".into(), reason: e.to_string() }))
}

/// SIGINT/SIGTERM as a request to abort the cutover: the running step fails
/// and the rollbacks run (they are not interruptible; `kill -9` and
/// `--resume` remain for a stuck rollback).
struct Interrupt {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Interrupt {
    fn new() -> Interrupt {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signals = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
                (Ok(i), Ok(t)) => Some((i, t)),
                _ => None,
            };
            Interrupt { signals }
        }
        #[cfg(not(unix))]
        Interrupt {}
    }

    /// Completes when a stop was requested.
    async fn wait(&mut self) {
        #[cfg(unix)]
        {
            if let Some((i, t)) = &mut self.signals {
                tokio::select! {
                    _ = i.recv() => {}
                    _ = t.recv() => {}
                }
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A failed step: why, and whether its action had started (a declined
/// confirmation changes nothing, so it has nothing to roll back).
struct StepError {
    reason: String,
    started: bool,
}

async fn run_step(step: &Step, i: usize, env: &mut Env<'_>, p: &mut Printer<'_>) -> Result<Outcome, StepError> {
    if step.confirm {
        confirm(step, env, p).await.map_err(|e| StepError { reason: e.to_string(), started: false })?;
    }
    env.record(Event::StepStarted { at_ms: now_ms(), step: i, name: step.name.clone() })
        .map_err(|e| StepError { reason: e.to_string(), started: false })?;
    let attempts = step.retries + 1;
    let mut attempt = 1;
    loop {
        let r = attempt_once(step, env).await;
        match r {
            Ok(o) => return Ok(o),
            Err(e) if attempt < attempts => {
                p.line(&format!(
                    "      attempt {attempt}/{attempts} failed: {e}; retrying in {}",
                    fmt_duration(step.retry_delay)
                ));
                env.drop_connections();
                tokio::time::sleep(step.retry_delay).await;
                attempt += 1;
            }
            Err(e) => {
                let reason = if attempts > 1 { format!("{e} (after {attempts} attempts)") } else { e.to_string() };
                return Err(StepError { reason, started: true });
            }
        }
    }
}

/// The action, then the verification, within the step's timeout.
async fn attempt_once(step: &Step, env: &mut Env<'_>) -> Result<Outcome, ActionError> {
    let work = async {
        let mut o = actions::execute(&step.action, env).await?;
        if let Some(v) = &step.verify {
            let msg = actions::verify(v, env).await.map_err(|e| e.context("verification failed"))?;
            o.notes.push(format!("verified: {msg}"));
        }
        Ok(o)
    };
    match step.timeout {
        Some(t) => match tokio::time::timeout(t, work).await {
            Ok(r) => r,
            Err(_) => {
                // A query cut off mid-flight leaves its connection in doubt.
                env.drop_connections();
                Err(ActionError::Failed(format!("timed out after {}", fmt_duration(t))))
            }
        },
        None => work.await,
    }
}

async fn confirm(step: &Step, env: &Env<'_>, p: &mut Printer<'_>) -> Result<(), ActionError> {
    if env.yes {
        p.line("      confirmed by --yes");
        return Ok(());
    }
    if !env.interactive {
        return Err(ActionError::Failed(
            "this step needs confirmation and stdin is not a terminal (pass --yes)".into(),
        ));
    }
    p.line(&format!("      run step {:?}? type yes to continue:", step.name));
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| ActionError::Failed(format!("reading the answer: {e}")))?
    .map_err(|source| ActionError::Io { context: "reading the answer".into(), source })?;
    if matches!(answer.trim(), "yes" | "y") {
        Ok(())
    } else {
        Err(ActionError::Failed("the operator declined".into()))
    }
}

/// Runs the rollbacks: the failed step's (when its action started), then
/// every completed step's, newest first. Returns the rollbacks that failed.
async fn roll_back(
    runbook: &Runbook,
    failed: Option<usize>,
    completed: &mut Vec<usize>,
    switch: Option<&(usize, Vec<(String, u64)>)>,
    env: &mut Env<'_>,
    p: &mut Printer<'_>,
) -> Result<Vec<String>, CutoverError> {
    let mut order: Vec<usize> = failed.into_iter().collect();
    let mut done: Vec<usize> = completed.iter().copied().filter(|c| Some(*c) != failed).collect();
    done.sort_unstable_by(|a, b| b.cmp(a));
    order.extend(done);
    if order.iter().all(|&i| runbook.steps.get(i).is_none_or(|s| s.rollback.is_empty())) {
        p.line("rolling back: no step ran that has a rollback");
        return Ok(Vec::new());
    }
    p.line("rolling back, newest first:");
    let mut failures = Vec::new();
    for i in order {
        let Some(step) = runbook.steps.get(i) else { continue };
        if let Some((_, before)) = switch.filter(|(s, _)| *s == i) {
            warn_writes_since_switch(before, env, p).await;
        }
        if step.rollback.is_empty() {
            p.line(&format!("  step {} ({}): no rollback — left as it is", i + 1, step.name));
            continue;
        }
        let started = Instant::now();
        let mut error = None;
        for action in &step.rollback {
            p.line(&format!("  step {} ({}): {}", i + 1, step.name, action.kind()));
            match rollback_action(action, step, env).await {
                Ok(o) => {
                    for note in o.notes {
                        p.line(&format!("      {note}"));
                    }
                }
                Err(e) => {
                    p.line(&format!("      FAILED: {e}"));
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        match error {
            None => {
                p.line(&format!("      rolled back ({})", fmt_duration(started.elapsed())));
                record(env, Event::RollbackDone { at_ms: now_ms(), step: i, name: step.name.clone() })?;
                completed.retain(|c| *c != i);
            }
            Some(e) => {
                let e = env.plan.scrub(&e);
                record(
                    env,
                    Event::RollbackFailed { at_ms: now_ms(), step: i, name: step.name.clone(), error: e.clone() },
                )?;
                failures.push(format!("step {} ({}): {e}", i + 1, step.name));
            }
        }
    }
    Ok(failures)
}

/// Rolling back past the traffic switch: the target took writes the source
/// does not have. Says so plainly, with the target's own row counts.
async fn warn_writes_since_switch(before: &[(String, u64)], env: &mut Env<'_>, p: &mut Printer<'_>) {
    let msg = match super::validate_step::target_counts(env).await {
        Ok(now) => {
            let (total, detail) = super::validate_step::count_changes(before, &now);
            format!(
                "  WARNING: traffic reached the target; writes it accepted since the switch are NOT on the source: \
                 {total:+} rows by the target's own counts ({detail}; rows updated in place do not show in counts)"
            )
        }
        Err(e) => format!(
            "  WARNING: traffic reached the target; writes it accepted since the switch are NOT on the source \
             (could not count them: {e})"
        ),
    };
    p.line(&msg);
}

async fn rollback_action(action: &Action, step: &Step, env: &mut Env<'_>) -> Result<Outcome, ActionError> {
    // A freeze that failed before it changed anything leaves nothing to restore.
    if matches!(action, Action::ResumeSourceWrites) && env.freeze.is_none() {
        return Ok(Outcome { notes: vec!["writes were not stopped: nothing to restore".into()], ..Default::default() });
    }
    let attempts = step.retries + 1;
    let mut last = None;
    for attempt in 1..=attempts {
        let r = match step.timeout {
            Some(t) => tokio::time::timeout(t, actions::execute(action, env))
                .await
                .unwrap_or_else(|_| Err(ActionError::Failed(format!("timed out after {}", fmt_duration(t))))),
            None => actions::execute(action, env).await,
        };
        match r {
            Ok(o) => return Ok(o),
            Err(e) => {
                last = Some(e);
                if attempt < attempts {
                    env.drop_connections();
                    tokio::time::sleep(step.retry_delay).await;
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| ActionError::Failed("rollback did not run".into())))
}

/// After a failure: what is in effect now. The freeze is reported from
/// the settings read back from the source, never from the journal alone: a
/// freeze whose ALTER was refused is no freeze.
async fn print_state(
    p: &mut Printer<'_>,
    env: &mut Env<'_>,
    completed: &[usize],
    runbook: &Runbook,
    failures: &[String],
) {
    p.line("state now:");
    match env.freeze.clone() {
        Some(f) => {
            let read = match env.source().await {
                Ok(c) => actions::freeze::read_back(c, &f).await,
                Err(e) => Err(e),
            };
            let roles = if f.roles.is_empty() { "all but xdb's own".to_string() } else { f.roles.join(", ") };
            match read {
                Ok(r) if r.frozen => p.line(&format!(
                    "  source writes: STILL STOPPED on database {} (roles: {roles}; read back: {}) — run resume_source_writes",
                    f.database,
                    r.changed.join(", ")
                )),
                Ok(r) if r.changed.is_empty() => p.line(&format!(
                    "  source writes: not stopped — the settings on database {} read back as before the freeze",
                    f.database
                )),
                Ok(r) => p.line(&format!(
                    "  source writes: not stopped, but settings xdb changed are still in place: {}",
                    r.changed.join(", ")
                )),
                Err(e) => p.line(&format!(
                    "  source writes: UNKNOWN — the journal records a freeze on database {} (roles: {roles}) but the settings could not be read back: {e}",
                    f.database
                )),
            }
        }
        None => p.line("  source writes: not stopped by xdb"),
    }
    if completed.is_empty() {
        p.line("  every step that ran is undone");
    } else {
        let names: Vec<String> =
            completed.iter().filter_map(|&i| runbook.steps.get(i).map(|s| format!("{} ({})", i + 1, s.name))).collect();
        p.line(&format!("  still in effect (no rollback or rollback failed): {}", names.join(", ")));
    }
    if !failures.is_empty() {
        p.line(&format!("  {} rollback(s) FAILED: fix by hand, then `xdb cutover --resume`", failures.len()));
    } else {
        let file = p.plan.file.display().to_string();
        p.line(&format!(
            "  `xdb cutover --plan {file} --resume` runs again from the first step not in effect; `--rollback` undoes what is"
        ));
    }
}

fn print_summary(p: &mut Printer<'_>, s: &Summary) {
    p.line(&format!("cutover complete: {} step(s) run, {} skipped (already done)", s.steps_run, s.steps_skipped));
    match s.write_freeze {
        Some((d, true)) => p.line(&format!(
            "  writes stopped on the source for {} so far (still stopped: the source stays read-only)",
            fmt_duration(d)
        )),
        Some((d, false)) => p.line(&format!("  writes were stopped on the source for {}", fmt_duration(d))),
        None => p.line("  source writes were not stopped"),
    }
    if let Some(l) = &s.lag {
        p.line(&format!("  lag at the switch: {l}"));
    }
    if let Some(v) = &s.validation {
        p.line(&format!("  validation: {v}"));
    }
}

/// The last freeze in a journal: how long writes were (or are) stopped,
/// and whether they still are.
pub fn freeze_window(events: &[Event]) -> Option<(Duration, bool)> {
    let mut window: Option<(i64, Option<i64>)> = None;
    for e in events {
        match e {
            Event::Freeze { at_ms, .. } if window.is_none_or(|(_, end)| end.is_some()) => window = Some((*at_ms, None)),
            Event::FreezeReleased { at_ms } => {
                if let Some((_, end)) = &mut window {
                    *end = Some(*at_ms);
                }
            }
            _ => {}
        }
    }
    let (start, end) = window?;
    let stop = end.unwrap_or_else(now_ms);
    Some((Duration::from_millis(stop.saturating_sub(start).max(0) as u64), end.is_none()))
}

fn print_dry_run(
    p: &mut Printer<'_>,
    runbook: &Runbook,
    opts: &CutoverOptions,
    start: usize,
    state: &JournalState,
    path: &std::path::Path,
) {
    let n = runbook.steps.len();
    p.line(&format!(
        "xdb cutover --dry-run: plan {} — {n} step(s); nothing will be changed, no server is contacted",
        p.plan.name
    ));
    p.line(&format!("source {} → target {}", p.plan.source.url.redacted(), p.plan.target.url.redacted()));
    if opts.resume {
        p.line(&format!("journal {}: would resume at step {}", path.display(), start + 1));
    }
    if state.freeze.is_some() {
        p.line("journal: source writes are stopped by an earlier run");
    }
    let plan = p.plan;
    for (i, c) in runbook.pre_checks.iter().enumerate() {
        p.line(&format!("pre-check {}: {}", i + 1, describe_verify(c)));
    }
    for (i, step) in runbook.steps.iter().enumerate() {
        let done = i < start || (opts.resume && state.completed.contains(&i));
        let skip = if done && !step.action.reruns_on_resume() {
            " — already done, skipped"
        } else if done {
            " — done before, runs again (waits and validations always do on --resume)"
        } else {
            ""
        };
        p.line(&format!("[{}/{n}] {} ({}){skip}", i + 1, step.name, step.action.kind()));
        if step.confirm {
            p.line("      asks the operator first (or --yes)");
        }
        if step.switch {
            p.line("      the traffic switch: the target's row counts are recorded when it completes");
        }
        for line in describe(&step.action, plan) {
            p.line(&format!("      {line}"));
        }
        if let Some(v) = &step.verify {
            p.line(&format!("      {}", describe_verify(v)));
        }
        let mut limits = Vec::new();
        if let Some(t) = step.timeout {
            limits.push(format!("timeout {}", fmt_duration(t)));
        }
        if step.retries > 0 {
            limits.push(format!("{} retries, {} apart", step.retries, fmt_duration(step.retry_delay)));
        }
        if !limits.is_empty() {
            p.line(&format!("      {}", limits.join(", ")));
        }
        for a in &step.rollback {
            p.line(&format!("      rollback: {}", a.kind()));
            for line in describe(a, plan) {
                p.line(&format!("        {line}"));
            }
        }
    }
    if let Some(post) = &runbook.post_checks {
        p.line(&format!(
            "after the last step, every {} for {}: (a breach runs the rollbacks)",
            fmt_duration(post.interval),
            fmt_duration(post.duration)
        ));
        for c in &post.checks {
            p.line(&format!("  post-check: {}", describe_verify(c)));
        }
    }
}

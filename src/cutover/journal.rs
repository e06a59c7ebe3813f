//! The cutover journal: one JSON object per line, appended and flushed to
//! disk before the runner moves on, so that after a crash (even `kill -9`)
//! `--resume` knows which steps completed, which were rolled back, and what
//! `stop_source_writes` changed on the source (so the inverse restores
//! exactly the previous settings).
//!
//! Invariant: a step counts as completed when its `step_done` is in the
//! journal and no later `rollback_done` undid it. The freeze record is
//! written *before* the source is changed, so a crash between the two still
//! leaves the previous settings on file.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::actions::freeze::FreezeRecord;
use crate::source::postgres::identity::SourceIdentity;
use crate::state_dir;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run began; `steps` are the runbook's step names in order.
    RunStarted {
        at_ms: i64,
        steps: Vec<String>,
        resume: bool,
    },
    StepStarted {
        at_ms: i64,
        step: usize,
        name: String,
    },
    StepDone {
        at_ms: i64,
        step: usize,
        name: String,
        ms: u64,
    },
    StepFailed {
        at_ms: i64,
        step: usize,
        name: String,
        error: String,
    },
    /// The rollback actions of a step all succeeded: the step is undone.
    RollbackDone {
        at_ms: i64,
        step: usize,
        name: String,
    },
    RollbackFailed {
        at_ms: i64,
        step: usize,
        name: String,
        error: String,
    },
    /// Written before the source's settings are changed.
    Freeze {
        at_ms: i64,
        record: FreezeRecord,
    },
    /// Writes were resumed: the freeze record is spent.
    FreezeReleased {
        at_ms: i64,
    },
    /// A `switch: true` step completed: the target's row counts then, per
    /// planned table, to tell what a later rollback leaves behind.
    SwitchCounts {
        at_ms: i64,
        step: usize,
        counts: Vec<(String, u64)>,
    },
    /// The run ended: `ok` after the last step, not ok after the rollbacks.
    RunFinished {
        at_ms: i64,
        ok: bool,
    },
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What a journal says, replayed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalState {
    /// Step indexes (0-based) completed and not rolled back.
    pub completed: Vec<usize>,
    /// The active freeze, when writes are stopped.
    pub freeze: Option<FreezeRecord>,
    /// When the active freeze was recorded.
    pub freeze_at_ms: Option<i64>,
    /// The last run started and never finished (crashed or killed).
    pub unfinished: bool,
    /// Step names of the last run, to refuse resuming a different runbook.
    pub steps: Vec<String>,
    /// True when the journal holds any run.
    pub any_run: bool,
    /// The completed traffic switch (step index) and the target's row counts then.
    pub switch: Option<(usize, Vec<(String, u64)>)>,
    /// The last run finished with every step done: `--resume` has nothing
    /// left to do (a finished cutover is never re-armed).
    pub finished_ok: bool,
    /// The step the last run was in when it stopped (started, neither done
    /// nor failed: killed mid-step), for `--rollback`.
    pub interrupted: Option<usize>,
}

impl JournalState {
    /// Folds events in order (pure).
    pub fn replay(events: &[Event]) -> JournalState {
        let mut s = JournalState::default();
        for e in events {
            match e {
                Event::RunStarted { steps, resume, .. } => {
                    s.any_run = true;
                    s.unfinished = true;
                    s.finished_ok = false;
                    s.interrupted = None;
                    if !resume {
                        s.completed.clear();
                    }
                    s.steps = steps.clone();
                }
                Event::StepStarted { step, .. } => s.interrupted = Some(*step),
                Event::StepDone { step, .. } => {
                    s.interrupted = None;
                    if !s.completed.contains(step) {
                        s.completed.push(*step);
                    }
                }
                Event::RollbackDone { step, .. } => {
                    // Every step after a rolled-back one ran on top of a
                    // state that no longer holds (a drain or validation
                    // after a freeze that was undone proves nothing), so
                    // `--resume` runs all of them again.
                    s.completed.retain(|c| c < step);
                    if s.switch.as_ref().is_some_and(|(i, _)| i == step) {
                        s.switch = None;
                    }
                }
                Event::SwitchCounts { step, counts, .. } => s.switch = Some((*step, counts.clone())),
                Event::Freeze { record, at_ms } => {
                    // A re-run of a freeze keeps the first record: its
                    // "previous" values are the ones from before xdb.
                    if s.freeze.is_none() {
                        s.freeze = Some(record.clone());
                        s.freeze_at_ms = Some(*at_ms);
                    }
                }
                Event::FreezeReleased { .. } => {
                    s.freeze = None;
                    s.freeze_at_ms = None;
                }
                Event::RunFinished { ok, .. } => {
                    s.interrupted = None;
                    s.unfinished = false;
                    s.finished_ok = *ok;
                }
                Event::StepFailed { .. } => s.interrupted = None,
                Event::RollbackFailed { .. } => {}
            }
        }
        s.completed.sort_unstable();
        s
    }

    /// The first step to run on `--resume`: the first one not completed,
    /// or the first that always runs again (`rerun(i)`: waits, drains,
    /// validations).
    pub fn resume_at(&self, steps: usize, rerun: impl Fn(usize) -> bool) -> usize {
        (0..steps).find(|&i| !self.completed.contains(&i) || rerun(i)).unwrap_or(steps)
    }
}

/// A journal file, open for appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
}

/// The journal could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("cutover journal {path}: {reason}")]
pub struct JournalError {
    pub path: String,
    pub reason: String,
}

/// The default journal path, in the state directory (never beside the
/// plan, see [`crate::state_dir`]), keyed by plan name and source identity:
/// `<state>/cutover/<plan name>/<system identifier>-<database>.jsonl`. A
/// journal — and the freeze it records — thus only ever speaks about the
/// source it was written for.
pub fn default_path(state_root: &Path, plan_name: &str, source: &SourceIdentity) -> PathBuf {
    plan_dir(state_root, plan_name).join(format!(
        "{}-{}.jsonl",
        state_dir::component(&source.system_identifier),
        state_dir::component(&source.database)
    ))
}

fn plan_dir(state_root: &Path, plan_name: &str) -> PathBuf {
    state_root.join("cutover").join(state_dir::component(plan_name))
}

/// Every journal of a plan name in the state directory (any source), for
/// `--dry-run`, which contacts no server and so cannot tell which source
/// is meant.
pub fn journals_for_plan(state_root: &Path, plan_name: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(plan_dir(state_root, plan_name)) else { return Vec::new() };
    let mut v: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    v.sort();
    v
}

impl Journal {
    /// Reads every event of the journal at `path` (none when it does not exist).
    pub fn read(path: &Path) -> Result<Vec<Event>, JournalError> {
        let err = |reason: String| JournalError { path: path.display().to_string(), reason };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(err(e.to_string())),
        };
        let mut events = Vec::new();
        let lines: Vec<String> =
            std::io::BufReader::new(file).lines().collect::<Result<_, _>>().map_err(|e| err(e.to_string()))?;
        let last = lines.len().saturating_sub(1);
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Event>(line) {
                Ok(e) => events.push(e),
                // A crash mid-write leaves a torn last line: it recorded nothing.
                Err(_) if i == last => break,
                Err(e) => return Err(err(format!("line {}: {e}", i + 1))),
            }
        }
        Ok(events)
    }

    /// Opens (creating it and its directory) the journal for appending.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| JournalError { path: path.display().to_string(), reason: e.to_string() })?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| JournalError { path: path.display().to_string(), reason: e.to_string() })?;
        Ok(Journal { path: path.to_path_buf(), file })
    }

    /// Appends an event and syncs it to disk.
    pub fn append(&mut self, event: &Event) -> Result<(), JournalError> {
        let err = |reason: String| JournalError { path: self.path.display().to_string(), reason };
        // Error text comes from drivers and scripts: it goes through the
        // scrubber before it reaches the disk. Freeze records are settings
        // read back from the source, kept byte for byte for the restore.
        let event = match event {
            Event::StepFailed { at_ms, step, name, error } => Event::StepFailed {
                at_ms: *at_ms,
                step: *step,
                name: name.clone(),
                error: crate::secrets::scrub(error),
            },
            Event::RollbackFailed { at_ms, step, name, error } => Event::RollbackFailed {
                at_ms: *at_ms,
                step: *step,
                name: name.clone(),
                error: crate::secrets::scrub(error),
            },
            other => other.clone(),
        };
        let mut line = serde_json::to_string(&event).map_err(|e| err(e.to_string()))?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(|e| err(e.to_string()))?;
        self.file.sync_data().map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(step: usize) -> Event {
        Event::StepDone { at_ms: 0, step, name: format!("s{step}"), ms: 1 }
    }

    #[test]
    fn rolled_back_steps_are_not_completed() {
        let events = vec![
            Event::RunStarted { at_ms: 0, steps: vec!["a".into(), "b".into(), "c".into()], resume: false },
            done(0),
            done(1),
            Event::StepFailed { at_ms: 0, step: 2, name: "c".into(), error: "x".into() },
            Event::RollbackDone { at_ms: 0, step: 0, name: "a".into() },
            Event::RunFinished { at_ms: 0, ok: false },
        ];
        let s = JournalState::replay(&events);
        // Step 1 ran after step 0, which was rolled back: it runs again.
        assert!(s.completed.is_empty());
        assert_eq!(s.resume_at(3, |_| false), 0);
        assert!(!s.unfinished);
    }

    #[test]
    fn a_killed_run_resumes_after_the_last_completed_step() {
        let events = vec![
            Event::RunStarted { at_ms: 0, steps: vec!["a".into(), "b".into()], resume: false },
            done(0),
            Event::StepStarted { at_ms: 0, step: 1, name: "b".into() },
        ];
        let s = JournalState::replay(&events);
        assert!(s.unfinished);
        assert_eq!(s.resume_at(2, |_| false), 1);
        // A completed wait or validation runs again on resume.
        assert_eq!(s.resume_at(2, |i| i == 0), 0);
    }

    #[test]
    fn a_rollback_re_arms_every_later_step_even_one_without_a_rollback() {
        // Freeze (0), drain (1), validate (2) done; sequences (3) failed;
        // only the freeze had a rollback.
        let events = vec![
            Event::RunStarted { at_ms: 0, steps: (0..5).map(|i| format!("s{i}")).collect(), resume: false },
            done(0),
            done(1),
            done(2),
            Event::StepFailed { at_ms: 0, step: 3, name: "s3".into(), error: "x".into() },
            Event::RollbackDone { at_ms: 0, step: 0, name: "s0".into() },
            Event::RunFinished { at_ms: 0, ok: false },
        ];
        let s = JournalState::replay(&events);
        assert!(s.completed.is_empty(), "{:?}", s.completed);
        assert_eq!(s.resume_at(5, |_| false), 0);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = std::env::temp_dir().join(format!("xdb_journal_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j.jsonl");
        let mut j = Journal::open(&path).unwrap();
        j.append(&done(0)).unwrap();
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"event\":\"step_do").unwrap();
        assert_eq!(Journal::read(&path).unwrap(), vec![done(0)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

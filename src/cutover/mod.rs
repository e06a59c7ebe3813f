//! The cutover orchestrator: the plan's `cutover:` runbook executed step by
//! step — freeze the source, drain, prove, switch — with a rollback for
//! every step, a journal for resuming, and a dry run that touches nothing.
//!
//! - [`runbook`]: the typed runbook and its parser (all validated up front);
//! - [`runner`]: the executor (confirm gates, retries, timeouts, rollbacks);
//! - [`actions`]: the built-in actions and verifications;
//! - [`journal`]: the JSON-lines journal that makes `--resume` exact;
//! - [`validate_step`]: the `validate` action.
//!
//! See docs/cutover.md for the runbook format.

pub mod actions;
pub mod journal;
pub mod notice;
pub mod runbook;
pub mod runner;
pub mod validate_step;

use std::path::Path;

pub use runbook::Runbook;
pub use runner::{run, CutoverOptions};

use crate::plan::{Plan, PlanError};

/// Parses a `cutover:` value into a runbook; errors point at
/// `file:line:column` in `text` (the plan's text) and name the step.
pub fn parse_runbook(value: &serde_yaml_ng::Value, file: &Path, text: &str) -> Result<Runbook, PlanError> {
    crate::plan::with_base(&crate::plan::paths::plan_dir(file), || runbook::parse(value)).map_err(|e| {
        let loc = runbook::locate(text, &e);
        PlanError {
            file: file.display().to_string(),
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
            message: e.to_string(),
        }
    })
}

/// The plan's runbook, validated (the plan file is read again only to
/// locate an error).
pub fn load_runbook(plan: &Plan) -> Result<Runbook, PlanError> {
    let Some(value) = &plan.cutover else {
        return Err(PlanError {
            file: plan.file.display().to_string(),
            line: None,
            column: None,
            message: "the plan has no `cutover:` section: add `cutover: { steps: [...] }` (see docs/cutover.md)".into(),
        });
    };
    let text = std::fs::read_to_string(&plan.file).unwrap_or_default();
    parse_runbook(value, &plan.file, &text)
}

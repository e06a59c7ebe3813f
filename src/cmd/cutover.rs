//! `xdb cutover`: the runbook, step by step.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use super::PlanArg;
use crate::cutover::CutoverOptions;
use crate::plan::Plan;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub plan: PlanArg,
    /// Print every step and the SQL it would run; contact no server.
    #[arg(long)]
    pub dry_run: bool,
    /// Answer confirmations yes; let pauses pass (required for
    /// `confirm`/`pause` steps when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Continue an interrupted or failed cutover at the first step the
    /// journal does not show as completed.
    #[arg(long, conflicts_with = "rollback")]
    pub resume: bool,
    /// Undo an interrupted or failed cutover: the rollbacks of the step
    /// it stopped in and of every completed step, newest first (for
    /// example after kill -9 left the source frozen).
    #[arg(long, conflicts_with = "dry_run")]
    pub rollback: bool,
    /// The journal file (default: <state dir>/cutover/<plan
    /// name>/<source system id>-<database>.jsonl).
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

pub async fn run(args: Args) -> ExitCode {
    let plan = super::plan_or_exit!(args.plan);
    if let Some(side) = crate::pipeline::log_ops::side(&plan) {
        let text = match side {
            Ok(side) => crate::pipeline::log_ops::cutover_refusal(&plan, &side),
            Err(e) => e,
        };
        eprintln!("error: {}", plan.scrub(&text));
        return ExitCode::from(2);
    }
    let options = CutoverOptions {
        dry_run: args.dry_run,
        yes: args.yes,
        resume: args.resume,
        rollback: args.rollback,
        journal: args.journal,
        interactive: std::io::stdin().is_terminal(),
    };
    execute(&plan, &options).await
}

/// Runs the runbook on stdout; the exit code follows its outcome.
pub(super) async fn execute(plan: &Plan, options: &CutoverOptions) -> ExitCode {
    let mut out = std::io::stdout();
    match crate::cutover::run(plan, options, &mut out).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", plan.scrub(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

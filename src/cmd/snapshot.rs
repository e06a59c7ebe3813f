//! `xdb snapshot`: the initial copy only.

use std::process::ExitCode;

use super::{copy_options, fail, interrupted, PlanArg, RecopyArg};
use crate::copy::CopyError;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub recovery: RecopyArg,
}

pub async fn run(args: Args) -> ExitCode {
    let plan = super::plan_or_exit!(args.plan);
    let outcome = match crate::copy::run(&plan, &copy_options(args.recovery.recopy)).await {
        Ok(o) => o,
        Err(e @ CopyError::Interrupted { .. }) => return interrupted(&plan, &e),
        Err(e) => return fail(&plan, &e, 1),
    };
    for w in &outcome.warnings {
        eprintln!("warning: {}", plan.scrub(w));
    }
    if outcome.tables.iter().all(|t| t.already_done) {
        println!("every table was already copied; nothing to do (the slot is kept for `xdb sync`)");
    } else {
        print!("{}", outcome.summary);
        println!(
            "copy done; streaming starts at {} (run `xdb sync --plan {}`)",
            outcome.consistent_point,
            plan.file.display()
        );
    }
    ExitCode::SUCCESS
}

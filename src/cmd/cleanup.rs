//! `xdb cleanup`: drop the slot, the publication and xdb's state.

use std::io::IsTerminal;
use std::process::ExitCode;

use super::{fail, PlanArg};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub plan: PlanArg,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Show what would be removed and stop.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(args: Args) -> ExitCode {
    let plan = super::plan_or_exit!(args.plan);
    let what = match crate::cleanup::inspect(&plan).await {
        Ok(w) => w,
        Err(e) => return fail(&plan, &e, 1),
    };
    if what.is_empty() {
        println!("nothing to clean up for plan {}", plan.name);
        return ExitCode::SUCCESS;
    }
    println!("xdb cleanup for plan {} will:", plan.name);
    for line in what.describe(&plan) {
        println!("  - {line}");
    }
    if args.dry_run {
        println!("(dry run: nothing was changed)");
        return ExitCode::SUCCESS;
    }
    if !args.yes && !confirmed() {
        return if std::io::stdin().is_terminal() {
            println!("cancelled: nothing was changed");
            ExitCode::from(1)
        } else {
            eprintln!("error: refusing to clean up without confirmation: pass --yes");
            ExitCode::from(2)
        };
    }
    match crate::cleanup::execute(&plan, &what).await {
        Ok(()) => {
            println!("done");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&plan, &e, 1),
    }
}

/// Asks on the terminal; false without one.
fn confirmed() -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    print!("Type yes to proceed: ");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && answer.trim() == "yes"
}

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
    /// For the producer's plan of a replicated log (`target.url:
    /// nats://…`): delete the NATS stream as well, with every message in
    /// it. Without it the stream is kept (other consumers may read it).
    #[arg(long)]
    pub drop_stream: bool,
}

pub async fn run(args: Args) -> ExitCode {
    let plan = super::plan_or_exit!(args.plan);
    if let Some(side) = crate::pipeline::log_ops::side(&plan) {
        return log(&plan, side, &args).await;
    }
    if args.drop_stream {
        eprintln!("error: --drop-stream is for the producer's plan of a replicated log (target.url: nats://…)");
        return ExitCode::from(2);
    }
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

/// A plan on either side of a replicated log (`pipeline::log_ops`).
async fn log(plan: &crate::plan::Plan, side: Result<crate::pipeline::log_ops::Side, String>, args: &Args) -> ExitCode {
    use crate::pipeline::log_ops;
    let side = match side {
        Ok(s) => s,
        Err(e) => return fail(plan, &e, 2),
    };
    let what = match log_ops::inspect_cleanup(plan, &side, args.drop_stream).await {
        Ok(w) => w,
        Err(e) => return fail(plan, &e, 1),
    };
    let lines = what.describe(plan, &side);
    if what.is_empty() {
        println!("nothing to clean up for plan {}", plan.name);
        for line in lines {
            println!("  - {line}");
        }
        return ExitCode::SUCCESS;
    }
    println!("xdb cleanup for plan {} will:", plan.name);
    for line in lines {
        println!("  - {line}");
    }
    if args.dry_run {
        println!("(dry run: nothing was changed)");
        return ExitCode::SUCCESS;
    }
    if !args.yes && !confirmed() {
        eprintln!("error: refusing to clean up without confirmation: pass --yes");
        return ExitCode::from(2);
    }
    match log_ops::execute_cleanup(plan, &side, &what).await {
        Ok(()) => {
            println!("done");
            ExitCode::SUCCESS
        }
        Err(e) => fail(plan, &e, 1),
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

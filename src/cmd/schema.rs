//! `xdb schema`: the target tables the plan maps to.

use std::process::ExitCode;

use super::{fail, interrupted, PlanArg};
use crate::copy::CopyError;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub plan: PlanArg,
    /// Create the tables on the target instead of printing the DDL.
    #[arg(long)]
    pub apply: bool,
    /// Scan the source data for values the mapping would reject or alter.
    #[arg(long)]
    pub scan: bool,
}

pub async fn run(args: Args) -> ExitCode {
    let plan = super::plan_or_exit!(args.plan);
    let out = match crate::schema::run(&plan, args.apply, args.scan).await {
        Ok(out) => out,
        Err(e @ CopyError::ScanInterrupted) => return interrupted(&plan, &e),
        Err(e) => return fail(&plan, &e, 1),
    };
    print!("{}", plan.scrub(&out.script));
    if args.apply {
        for t in &out.created {
            println!("created the target table for {t}");
        }
        for t in &out.existing {
            println!("kept the existing target table for {t} (not changed)");
        }
    }
    if args.scan {
        if out.scan.is_empty() {
            println!("\nscan: every source value maps exactly under the current policies");
        } else {
            println!("\nscan: values the mapping would reject or alter:");
            for line in &out.scan {
                println!("  {}", plan.scrub(line));
            }
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

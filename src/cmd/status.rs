//! `xdb status`: lag, positions, retained WAL, copy state.

use std::process::ExitCode;

use super::{print_report, OutputFormat, PlanArg};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub plan: PlanArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// The way back instead (`sync --reverse`): its start, applied
    /// position (with GTID), the target's binlog end, lag, retained
    /// binlogs and their expiry (PostgreSQL target: the reverse slot, lag
    /// and retained WAL). Text only.
    #[arg(long)]
    pub reverse: bool,
}

pub async fn run(args: Args) -> ExitCode {
    let plan = super::plan_or_exit!(args.plan);
    if args.reverse {
        return match crate::pipeline::reverse_status::report(&plan).await {
            Ok(text) => {
                print!("{}", plan.scrub(&text));
                ExitCode::SUCCESS
            }
            Err(e) => super::fail(&plan, &e, 1),
        };
    }
    // A plan on either side of a replicated log: its position there.
    if let Some(side) = crate::pipeline::log_ops::side(&plan) {
        let side = match side {
            Ok(s) => s,
            Err(e) => return super::fail(&plan, &e, 2),
        };
        let report = crate::pipeline::log_ops::status(&plan, &side).await;
        print_report(&plan, args.format, || report.render(), &report);
        return ExitCode::SUCCESS;
    }
    // An unfinished cutover that left the source frozen is said first.
    let frozen = crate::cutover::notice::frozen_source(&plan).await;
    let report = crate::status::read(&plan).await;
    if let Some(n) = &frozen {
        match args.format {
            OutputFormat::Text => println!("{}\n", plan.scrub(n)),
            OutputFormat::Json => eprintln!("{}", plan.scrub(n)),
        }
    }
    print_report(&plan, args.format, || report.render(), &report);
    ExitCode::SUCCESS
}

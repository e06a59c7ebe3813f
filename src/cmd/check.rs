//! `xdb check`: the preflight checklist.

use std::io::IsTerminal;
use std::process::ExitCode;

use super::PlanArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub plan: PlanArg,
    /// Check the way back instead (`sync --reverse`): on a MySQL/MariaDB
    /// target log_bin, binlog_format=ROW, binlog_row_image=FULL, binlog
    /// retention, GTIDs and the replication privileges; on a PostgreSQL
    /// target wal_level=logical, REPLICATION and a free slot; each with its
    /// fix. A SQLite target has no change log, so no way back.
    #[arg(long)]
    pub reverse: bool,
}

pub async fn run(args: Args) -> ExitCode {
    let plan = super::plan_or_exit!(args.plan);
    println!("xdb check: plan {} ({})\n", plan.name, plan.file.display());
    let report =
        if args.reverse { crate::pipeline::reverse::check(&plan).await } else { crate::check::run(&plan).await };
    print!("{}", plan.scrub(&report.render(std::io::stdout().is_terminal())));
    if report.failures() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

//! `xdb check`: the preflight checklist.

use std::io::IsTerminal;
use std::process::ExitCode;

use super::PlanArg;

pub async fn run(args: PlanArg) -> ExitCode {
    let plan = match args.load() {
        Ok(p) => p,
        Err(code) => return code,
    };
    println!("xdb check: plan {} ({})\n", plan.name, plan.file.display());
    let report = crate::check::run(&plan).await;
    print!("{}", plan.scrub(&report.render(std::io::stdout().is_terminal())));
    if report.failures() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

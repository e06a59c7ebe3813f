//! `xdb tail`: the decoded stream as JSON lines.

use std::process::ExitCode;

use super::{fail, PlanArg};
use crate::tail::{TailError, TailOptions};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub plan: PlanArg,
    /// Read the plan's own slot (source.slot; created when missing)
    /// instead of a temporary one: changes waiting in it are printed
    /// too. Each printed transaction is confirmed there, so a restart
    /// continues after it, but only while no `xdb sync` uses the slot:
    /// once the target holds an applied position for it (or cannot be
    /// read), tail confirms nothing (as --no-ack) and says so, so the
    /// next sync still receives every change.
    #[arg(long)]
    pub plan_slot: bool,
    /// With --plan-slot: start at this LSN (e.g. 0/16B3748) instead of
    /// the slot's confirmed position; PostgreSQL never goes back before
    /// it. (A temporary slot starts when tail starts.)
    #[arg(long, value_name = "LSN", requires = "plan_slot")]
    pub from_lsn: Option<String>,
    /// Do not confirm: the slot stays where it is and the next run
    /// prints the same changes again.
    #[arg(long)]
    pub no_ack: bool,
    /// Stop after this many transactions.
    #[arg(long, value_name = "N")]
    pub max_transactions: Option<u64>,
}

pub async fn run(args: Args) -> ExitCode {
    let plan = super::plan_or_exit!(args.plan);
    let from_lsn = match args.from_lsn.map(|s| s.parse::<crate::model::Lsn>()).transpose() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: --from-lsn: {e}");
            return ExitCode::from(2);
        }
    };
    let options = TailOptions {
        plan_slot: args.plan_slot,
        from_lsn,
        no_ack: args.no_ack,
        max_transactions: args.max_transactions,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    match crate::tail::run(&plan, &options, &mut out).await {
        Ok(summary) => {
            tracing::info!(
                transactions = summary.transactions,
                changes = summary.changes,
                confirmed = %summary.confirmed,
                "tail stopped"
            );
            ExitCode::SUCCESS
        }
        Err(e @ TailError::FromLsnNeedsPlanSlot(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => fail(&plan, &e, 1),
    }
}

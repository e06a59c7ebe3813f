//! `xdb sync`: copy, then stream; with `--cutover`, the runbook once caught up.

use std::io::IsTerminal;
use std::process::ExitCode;

use super::{copy_options, fail, interrupted, PlanArg, RecopyArg};
use crate::copy::CopyError;
use crate::pipeline::metrics::SharedMetrics;
use crate::pipeline::sync::{SyncError, SyncOptions};
use crate::plan::Plan;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub plan: PlanArg,
    /// Stop once the target has applied everything the source had
    /// written (a one-shot catch-up instead of a continuous tail).
    #[arg(long)]
    pub until_caught_up: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9187).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Seconds between status lines (applied position, lag, rows/s).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub status_interval: u64,
    /// Once the copy is done and the tail has caught up, run the plan's
    /// cutover runbook (see `xdb cutover`) while the tail keeps
    /// applying; stop when the runbook ends. Exit code as `xdb cutover`.
    #[arg(long, conflicts_with = "until_caught_up")]
    pub cutover: bool,
    /// With --cutover: answer the runbook's confirmations yes.
    #[arg(long, short = 'y', requires = "cutover")]
    pub yes: bool,
    #[command(flatten)]
    pub recovery: RecopyArg,
    /// The slot has confirmed past the position stored on the target
    /// (another reader acknowledged changes the target never got) and
    /// you know that nothing the plan copies was written in between:
    /// stream from where the slot now is. Without it `sync` refuses.
    #[arg(long)]
    pub accept_slot_position: bool,
    /// The way back after the switch: stream every committed change made
    /// on the MySQL/MariaDB target (its binlog; resumed by GTID after a
    /// purge or a failover) or PostgreSQL target (a slot made at the
    /// switch point) back to the original PostgreSQL source, in commit
    /// order, exactly once (the applied position is stored on the source
    /// with the data). Needs the switch point recorded (cutover step
    /// start_reverse, or --set-start-here) and the forward sync stopped.
    /// A SQLite target has no change log: no way back. See README "The
    /// way back".
    #[arg(long, conflicts_with = "cutover")]
    pub reverse: bool,
    /// With --reverse: record the target's current binlog position (or,
    /// on PostgreSQL, create the reverse slot) as the switch point and
    /// exit. Only right after the forward sync
    /// applied everything and stopped, with the source frozen and no
    /// writes on the target yet.
    #[arg(long, requires = "reverse")]
    pub set_start_here: bool,
}

pub async fn run(args: Args) -> ExitCode {
    let plan = super::plan_or_exit!(args.plan);
    if args.reverse {
        return reverse(&plan, args.until_caught_up, args.set_start_here).await;
    }
    if args.cutover {
        return Box::pin(then_cutover(plan, args.metrics_addr, args.status_interval, args.yes)).await;
    }
    let options = SyncOptions {
        copy: copy_options(args.recovery.recopy),
        until_caught_up: args.until_caught_up,
        max_retries: None,
        accept_slot_position: args.accept_slot_position,
    };
    if let crate::plan::TargetUrl::Nats(url) = &plan.target.url {
        return to_log(&plan, url, &options).await;
    }
    if let Some(log) = &plan.source.log {
        return match Box::pin(crate::pipeline::from_log::run(&plan, log, &options)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&plan, &e, 1),
        };
    }
    Box::pin(stream(&plan, options, args.metrics_addr, args.status_interval)).await
}

/// `sync` into a replicated log (README "Through a replicated log").
async fn to_log(plan: &Plan, url: &crate::plan::SecretUrl, options: &SyncOptions) -> ExitCode {
    let target = match crate::nats::NatsTarget::parse(url, &plan.name) {
        Ok(t) => t,
        Err(e) => return fail(plan, &e, 2),
    };
    match Box::pin(crate::pipeline::to_log::run(plan, &target, options)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(plan, &e, 1),
    }
}

/// `sync --reverse`: the way back, or with `--set-start-here` only its start.
async fn reverse(plan: &Plan, until_caught_up: bool, set_start_here: bool) -> ExitCode {
    use crate::pipeline::reverse::{record_start, run, ReverseOptions};
    let result = if set_start_here {
        record_start(plan).await.map(|p| println!("reverse start recorded on the original source: {p}"))
    } else {
        Box::pin(run(plan, &ReverseOptions { until_caught_up, max_retries: None })).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(plan, &e, 1),
    }
}

/// Runs the sync with its metrics endpoint and periodic status line.
async fn stream(
    plan: &Plan,
    options: SyncOptions,
    metrics_addr: Option<std::net::SocketAddr>,
    status_interval: u64,
) -> ExitCode {
    // Said before anything else: the application may be unable to write,
    // and `sync` must keep running for a resumed cutover to drain.
    if let Some(n) = crate::cutover::notice::frozen_source(plan).await {
        eprintln!("{}", plan.scrub(&n));
    }
    let metrics: SharedMetrics = Default::default();
    if let Ok(mut m) = metrics.lock() {
        m.slot = plan.source.slot.clone();
    }
    if let Some(addr) = metrics_addr {
        let m = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::pipeline::metrics::serve(addr, m).await {
                tracing::error!("metrics endpoint on {addr}: {e}");
            }
        });
    }
    let status = tokio::spawn(status_lines(metrics.clone(), status_interval));
    let r = Box::pin(crate::pipeline::sync::run(plan, &options, metrics.clone())).await;
    status.abort();
    match r {
        Ok(()) => {
            let line = metrics.lock().map(|m| m.stopped_line()).unwrap_or_default();
            tracing::info!("{line}");
            ExitCode::SUCCESS
        }
        Err(e @ SyncError::Copy(CopyError::Interrupted { .. })) => interrupted(plan, &e),
        Err(e) => fail(plan, &e, 1),
    }
}

/// A status line every `every_secs`: applied position, totals, rate, lag.
async fn status_lines(m: SharedMetrics, every_secs: u64) {
    let mut last_rows = 0u64;
    let every = std::time::Duration::from_secs(every_secs.max(1));
    loop {
        tokio::time::sleep(every).await;
        let line = match m.lock() {
            Ok(m) => {
                let now = chrono::Utc::now().timestamp_micros();
                let rate = (m.applied_rows - last_rows) as f64 / every.as_secs_f64();
                last_rows = m.applied_rows;
                m.status_line(rate, now)
            }
            Err(_) => continue,
        };
        tracing::info!("{line}");
    }
}

/// `sync --cutover`: the sync runs in the background; once it has caught
/// up, the runbook runs; when the runbook ends, the sync is stopped as by a
/// signal (it confirms what it applied) and the runbook's outcome decides
/// the exit code.
async fn then_cutover(
    plan: Plan,
    metrics_addr: Option<std::net::SocketAddr>,
    status_interval: u64,
    yes: bool,
) -> ExitCode {
    // The runbook is checked before anything starts.
    if let Err(e) = crate::cutover::load_runbook(&plan) {
        eprintln!("error: invalid cutover runbook: {}", plan.scrub(&e.to_string()));
        return ExitCode::from(2);
    }
    // One task: the sync future is not Send (it holds the replication stream).
    let options = SyncOptions { copy: copy_options(false), ..Default::default() };
    let sync_run = stream(&plan, options, metrics_addr, status_interval);
    tokio::pin!(sync_run);
    let runbook = async {
        match crate::pipeline::sync::wait_until_caught_up(&plan).await {
            Ok(applied) => tracing::info!(applied = %applied, "caught up: starting the cutover runbook"),
            Err(e) => {
                eprintln!("error: waiting for the tail to catch up: {}", plan.scrub(&e.to_string()));
                return ExitCode::from(1);
            }
        }
        let options = crate::cutover::CutoverOptions {
            dry_run: false,
            yes,
            resume: false,
            rollback: false,
            journal: None,
            interactive: std::io::stdin().is_terminal(),
        };
        super::cutover::execute(&plan, &options).await
    };
    tokio::select! {
        code = &mut sync_run => {
            eprintln!("error: sync stopped before the cutover runbook finished");
            if code == ExitCode::SUCCESS { ExitCode::from(1) } else { code }
        }
        code = runbook => {
            crate::shutdown::request();
            let _ = sync_run.await;
            code
        }
    }
}

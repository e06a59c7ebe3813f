//! The `xdb` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use xdb::plan::Plan;

/// xdb — move a live PostgreSQL database to MySQL/MariaDB, SQLite or
/// PostgreSQL: one consistent bulk copy, a continuous change stream
/// (logical replication, pgoutput), validation with row counts and
/// checksums, and a cutover runbook with a rollback for every step.
///
/// Everything is driven by one YAML plan file (see README.md, "The plan
/// file"). Passwords come from ${ENV} references in the plan and are never
/// printed.
#[derive(Parser)]
#[command(name = "xdb", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// Log format on stderr: `text` for people, `json` for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log filter (tracing syntax), e.g. `info`, `debug`, `xdb=debug`.
    #[arg(long, global = true, env = "XDB_LOG", default_value = "info")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(Args)]
struct PlanArg {
    /// The plan file (YAML).
    #[arg(long, short = 'p', value_name = "FILE")]
    plan: PathBuf,
}

#[derive(Args)]
struct RecopyArg {
    /// The replication slot is gone or has moved past what the target
    /// holds, so the stream cannot continue where it was: drop the slot,
    /// forget xdb's copy state and copy every planned table again from a
    /// new slot (tables xdb filled are emptied first). Without it, xdb
    /// refuses and says what happened.
    #[arg(long)]
    recopy: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Preflight: check source, tables, publication, slot and target, and
    /// print a checklist with the exact fix for every problem. Changes
    /// nothing. Exit 0 when nothing blocks, 1 when something does, 2 for a
    /// bad plan.
    Check {
        #[command(flatten)]
        plan: PlanArg,
        /// Check the way back instead (`sync --reverse`): on a MySQL/MariaDB
        /// target log_bin, binlog_format=ROW, binlog_row_image=FULL, binlog
        /// retention and the replication privileges, each with its fix; a
        /// SQLite target has no change log, so no way back.
        #[arg(long)]
        reverse: bool,
    },
    /// Print (or with --apply, create) the target tables the plan maps to,
    /// with the type chosen for every column and a note on every mapping
    /// that can lose information. Secondary indexes are listed; the copy
    /// builds them after loading. Exit 1 when --scan finds values the
    /// mapping would reject or alter, 130/143 when SIGINT/SIGTERM stop the scan.
    Schema {
        #[command(flatten)]
        plan: PlanArg,
        /// Create the tables on the target instead of printing the DDL.
        #[arg(long)]
        apply: bool,
        /// Scan the source data for values the mapping would reject or alter.
        #[arg(long)]
        scan: bool,
    },
    /// Initial bulk copy only, from the replication slot's exported
    /// snapshot (created when missing); the slot is kept so a later `sync`
    /// streams exactly what changed after the copy. Creates the target
    /// tables, copies tables in parallel (split into key or page ranges),
    /// builds indexes afterwards. Resumable: tables finished by an earlier
    /// run are kept, unfinished ones are copied again from a fresh snapshot.
    /// SIGINT/SIGTERM stop it, keeping what is committed: exit 130/143.
    Snapshot {
        #[command(flatten)]
        plan: PlanArg,
        #[command(flatten)]
        recovery: RecopyArg,
    },
    /// The main job: the initial copy (when not done), then every committed
    /// source change applied to the target, in commit order, exactly once,
    /// continuously, until SIGINT/SIGTERM (exit 0; during the copy, exit
    /// 130/143 as `snapshot`). Reconnects to either side after an outage
    /// and resumes from the position recorded on the target.
    Sync {
        #[command(flatten)]
        plan: PlanArg,
        /// Stop once the target has applied everything the source had
        /// written (a one-shot catch-up instead of a continuous tail).
        #[arg(long)]
        until_caught_up: bool,
        /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9187).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        /// Seconds between status lines (applied position, lag, rows/s).
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        status_interval: u64,
        /// Once the copy is done and the tail has caught up, run the plan's
        /// cutover runbook (see `xdb cutover`) while the tail keeps
        /// applying; stop when the runbook ends. Exit code as `xdb cutover`.
        #[arg(long, conflicts_with = "until_caught_up")]
        cutover: bool,
        /// With --cutover: answer the runbook's confirmations yes.
        #[arg(long, short = 'y', requires = "cutover")]
        yes: bool,
        #[command(flatten)]
        recovery: RecopyArg,
        /// The slot has confirmed past the position stored on the target
        /// (another reader acknowledged changes the target never got) and
        /// you know that nothing the plan copies was written in between:
        /// stream from where the slot now is. Without it `sync` refuses.
        #[arg(long)]
        accept_slot_position: bool,
        /// The way back after the switch: stream every committed change made
        /// on the MySQL/MariaDB target back to the original PostgreSQL
        /// source, in commit order, exactly once (the applied binlog position
        /// is stored on the source with the data). Needs the switch point
        /// recorded (cutover step start_reverse, or --set-start-here) and
        /// the forward sync stopped. See README "The way back".
        #[arg(long, conflicts_with = "cutover")]
        reverse: bool,
        /// With --reverse: record the target's current binlog position as
        /// the switch point and exit. Only right after the forward sync
        /// applied everything and stopped, with the source frozen and no
        /// writes on the target yet.
        #[arg(long, requires = "reverse")]
        set_start_here: bool,
    },
    /// Print decoded changes from the replication stream as JSON lines, one
    /// per row change (lsn, commit_time, xid, table, op, key, new, old,
    /// unchanged_toast). Creates the publication when missing. By default
    /// reads a temporary replication slot of its own, starting now, which
    /// PostgreSQL drops when tail exits: the plan's slot, and so what the
    /// next `xdb sync` receives, is never touched. Stops on SIGINT/SIGTERM.
    Tail {
        #[command(flatten)]
        plan: PlanArg,
        /// Read the plan's own slot (source.slot; created when missing)
        /// instead of a temporary one: changes waiting in it are printed
        /// too. Each printed transaction is confirmed there, so a restart
        /// continues after it, but only while no `xdb sync` uses the slot:
        /// once the target holds an applied position for it (or cannot be
        /// read), tail confirms nothing (as --no-ack) and says so, so the
        /// next sync still receives every change.
        #[arg(long)]
        plan_slot: bool,
        /// With --plan-slot: start at this LSN (e.g. 0/16B3748) instead of
        /// the slot's confirmed position; PostgreSQL never goes back before
        /// it. (A temporary slot starts when tail starts.)
        #[arg(long, value_name = "LSN", requires = "plan_slot")]
        from_lsn: Option<String>,
        /// Do not confirm: the slot stays where it is and the next run
        /// prints the same changes again.
        #[arg(long)]
        no_ack: bool,
        /// Stop after this many transactions.
        #[arg(long, value_name = "N")]
        max_transactions: Option<u64>,
    },
    /// Compare source and target: row counts, then checksums over
    /// primary-key ranges on the canonical form of every row, down to the
    /// exact keys and columns that differ. Consistent while `xdb sync` runs
    /// (compares at positions the target has applied; re-checks a
    /// mismatching range before reporting it). Exit 0 equal, 1 differences
    /// found, 2 could not validate, 130/143 stopped by SIGINT/SIGTERM.
    Validate {
        #[command(flatten)]
        plan: PlanArg,
        /// Only these tables (comma-separated, `schema.table` or `table`).
        #[arg(long, value_delimiter = ',', value_name = "TABLES")]
        tables: Option<Vec<String>>,
        /// Rewrite differing key ranges from the source, then compare them
        /// again (see README: not while the source is being written).
        #[arg(long)]
        repair: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Rows per checksummed key range.
        #[arg(long, value_name = "N", default_value_t = 10_000)]
        chunk_rows: u64,
        /// Ranges compared at once.
        #[arg(long, value_name = "N", default_value_t = 4)]
        parallelism: usize,
        /// Compare row counts only (no checksums).
        #[arg(long)]
        counts_only: bool,
    },
    /// Run the plan's cutover runbook step by step: each step's action,
    /// verification and outcome with durations; on a failed step the
    /// rollbacks of that step and every completed one, newest first. A
    /// journal in the state directory ($XDB_STATE_DIR, else
    /// $XDG_STATE_HOME/xdb or ~/.local/state/xdb), one per plan and
    /// source, lets --resume continue after the last completed step. See docs/cutover.md. Exit 0 when every step ran, 1
    /// when a step failed (after its rollbacks), 2 for a bad runbook or
    /// when nothing ran.
    Cutover {
        #[command(flatten)]
        plan: PlanArg,
        /// Print every step and the SQL it would run; contact no server.
        #[arg(long)]
        dry_run: bool,
        /// Answer confirmations yes; let pauses pass (required for
        /// `confirm`/`pause` steps when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Continue an interrupted or failed cutover at the first step the
        /// journal does not show as completed.
        #[arg(long, conflicts_with = "rollback")]
        resume: bool,
        /// Undo an interrupted or failed cutover: the rollbacks of the step
        /// it stopped in and of every completed step, newest first (for
        /// example after kill -9 left the source frozen).
        #[arg(long, conflicts_with = "dry_run")]
        rollback: bool,
        /// The journal file (default: <state dir>/cutover/<plan
        /// name>/<source system id>-<database>.jsonl).
        #[arg(long, value_name = "FILE")]
        journal: Option<PathBuf>,
    },
    /// Lag, applied position, slot state and retained WAL, and each table's
    /// copy state, read from the servers (works while `sync` runs elsewhere).
    Status {
        #[command(flatten)]
        plan: PlanArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// The way back instead (`sync --reverse`): its start, applied
        /// position (with GTID), the target's binlog end, lag and retained
        /// binlogs. Text only.
        #[arg(long)]
        reverse: bool,
    },
    /// Drop the replication slot, the publication (if xdb created it) and
    /// xdb's state on the target, after confirmation. Replicated tables are
    /// kept. Refuses while a sync streams from the slot.
    Cleanup {
        #[command(flatten)]
        plan: PlanArg,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Show what would be removed and stop.
        #[arg(long)]
        dry_run: bool,
    },
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn load_plan(p: &PlanArg) -> Result<Plan, ExitCode> {
    Plan::load(&p.plan).map_err(|e| {
        eprintln!("error: invalid plan: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> ExitCode {
    xdb::shutdown::install();
    match command {
        Command::Check { plan: p, reverse } => {
            let plan = match load_plan(&p) {
                Ok(p) => p,
                Err(code) => return code,
            };
            println!("xdb check: plan {} ({})\n", plan.name, plan.file.display());
            let report =
                if reverse { xdb::pipeline::reverse::check(&plan).await } else { xdb::check::run(&plan).await };
            print!("{}", plan.scrub(&report.render(std::io::stdout().is_terminal())));
            if report.failures() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Schema { plan, apply, scan } => {
            let plan = match load_plan(&plan) {
                Ok(p) => p,
                Err(code) => return code,
            };
            schema(&plan, apply, scan).await
        }
        Command::Snapshot { plan, recovery } => {
            let plan = match load_plan(&plan) {
                Ok(p) => p,
                Err(code) => return code,
            };
            snapshot(&plan, recovery.recopy).await
        }
        Command::Sync {
            plan,
            until_caught_up,
            metrics_addr,
            status_interval,
            cutover,
            yes,
            recovery,
            accept_slot_position,
            reverse,
            set_start_here,
        } => {
            let plan = match load_plan(&plan) {
                Ok(p) => p,
                Err(code) => return code,
            };
            if reverse {
                return xdb::pipeline::reverse::cli(&plan, until_caught_up, set_start_here).await;
            }
            if cutover {
                return Box::pin(sync_then_cutover(plan, metrics_addr, status_interval, yes)).await;
            }
            let options = xdb::pipeline::sync::SyncOptions {
                copy: copy_options(recovery.recopy),
                until_caught_up,
                max_retries: None,
                accept_slot_position,
            };
            sync(&plan, options, metrics_addr, status_interval).await
        }
        Command::Tail { plan, plan_slot, from_lsn, no_ack, max_transactions } => {
            let plan = match load_plan(&plan) {
                Ok(p) => p,
                Err(code) => return code,
            };
            tail(&plan, plan_slot, from_lsn, no_ack, max_transactions).await
        }
        Command::Validate { plan, tables, repair, format, chunk_rows, parallelism, counts_only } => {
            let plan = match load_plan(&plan) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let opts = xdb::validate::ValidateOptions {
                tables,
                repair,
                chunk_rows: chunk_rows.max(1),
                parallelism: parallelism.max(1),
                checksums: !counts_only,
            };
            match xdb::validate::run(&plan, &opts).await {
                Ok(report) => {
                    match format {
                        OutputFormat::Text => print!("{}", plan.scrub(&report.render_text())),
                        OutputFormat::Json => {
                            println!("{}", plan.scrub(&serde_json::to_string_pretty(&report).unwrap_or_default()))
                        }
                    }
                    if report.has_differences() {
                        ExitCode::from(1)
                    } else if report.is_equal() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(2)
                    }
                }
                Err(e @ xdb::validate::ValidateError::Interrupted { .. }) => interrupted(&plan, &e),
                Err(e) => {
                    eprintln!("error: could not validate: {}", plan.scrub(&e.to_string()));
                    ExitCode::from(2)
                }
            }
        }
        Command::Cutover { plan, dry_run, yes, resume, rollback, journal } => {
            let plan = match load_plan(&plan) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let options = xdb::cutover::CutoverOptions {
                dry_run,
                yes,
                resume,
                rollback,
                journal,
                interactive: std::io::stdin().is_terminal(),
            };
            let mut out = std::io::stdout();
            match xdb::cutover::run(&plan, &options, &mut out).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {}", plan.scrub(&e.to_string()));
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Status { plan, format, reverse } => {
            let plan = match load_plan(&plan) {
                Ok(p) => p,
                Err(code) => return code,
            };
            if reverse {
                return xdb::pipeline::reverse_status::cli(&plan).await;
            }
            // An unfinished cutover that left the source frozen is said first.
            let frozen = xdb::cutover::notice::frozen_source(&plan).await;
            let report = xdb::status::read(&plan).await;
            if let Some(n) = &frozen {
                match format {
                    OutputFormat::Text => println!("{}\n", plan.scrub(n)),
                    OutputFormat::Json => eprintln!("{}", plan.scrub(n)),
                }
            }
            match format {
                OutputFormat::Text => print!("{}", plan.scrub(&report.render())),
                OutputFormat::Json => {
                    println!("{}", plan.scrub(&serde_json::to_string_pretty(&report).unwrap_or_default()))
                }
            }
            ExitCode::SUCCESS
        }
        Command::Cleanup { plan, yes, dry_run } => {
            let plan = match load_plan(&plan) {
                Ok(p) => p,
                Err(code) => return code,
            };
            cleanup(&plan, yes, dry_run).await
        }
    }
}

async fn schema(plan: &Plan, apply: bool, scan: bool) -> ExitCode {
    match xdb::schema::run(plan, apply, scan).await {
        Ok(out) => {
            print!("{}", plan.scrub(&out.script));
            if apply {
                for t in &out.created {
                    println!("created the target table for {t}");
                }
                for t in &out.existing {
                    println!("kept the existing target table for {t} (not changed)");
                }
            }
            if scan {
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
        Err(e @ xdb::copy::CopyError::ScanInterrupted) => interrupted(plan, &e),
        Err(e) => {
            eprintln!("error: {}", plan.scrub(&e.to_string()));
            ExitCode::from(1)
        }
    }
}

fn copy_options(recopy: bool) -> xdb::copy::CopyOptions {
    xdb::copy::CopyOptions {
        terminal: std::io::stderr().is_terminal(),
        log_interval: std::time::Duration::from_secs(10),
        recopy,
    }
}

async fn snapshot(plan: &Plan, recopy: bool) -> ExitCode {
    match xdb::copy::run(plan, &copy_options(recopy)).await {
        Ok(outcome) => {
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
        Err(e @ xdb::copy::CopyError::Interrupted { .. }) => interrupted(plan, &e),
        Err(e) => {
            eprintln!("error: {}", plan.scrub(&e.to_string()));
            ExitCode::from(1)
        }
    }
}

/// A command cut short by SIGINT/SIGTERM: says what was kept and exits 130
/// (SIGINT) or 143 (SIGTERM), so a script can tell unfinished from done.
fn interrupted(plan: &Plan, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{}", plan.scrub(&e.to_string()));
    ExitCode::from(xdb::shutdown::interrupted_exit_code())
}

async fn sync(
    plan: &Plan,
    options: xdb::pipeline::sync::SyncOptions,
    metrics_addr: Option<std::net::SocketAddr>,
    status_interval: u64,
) -> ExitCode {
    // Said before anything else: the application may be unable to write,
    // and `sync` must keep running for a resumed cutover to drain.
    if let Some(n) = xdb::cutover::notice::frozen_source(plan).await {
        eprintln!("{}", plan.scrub(&n));
    }
    let metrics: xdb::pipeline::metrics::SharedMetrics = Default::default();
    if let Ok(mut m) = metrics.lock() {
        m.slot = plan.source.slot.clone();
    }
    if let Some(addr) = metrics_addr {
        let m = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = xdb::pipeline::metrics::serve(addr, m).await {
                tracing::error!("metrics endpoint on {addr}: {e}");
            }
        });
    }
    let status = {
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut last_rows = 0u64;
            let every = std::time::Duration::from_secs(status_interval.max(1));
            loop {
                tokio::time::sleep(every).await;
                let line = match m.lock() {
                    Ok(m) => {
                        let now = chrono::Utc::now().timestamp_micros();
                        let rate = (m.applied_rows - last_rows) as f64 / every.as_secs_f64();
                        last_rows = m.applied_rows;
                        format!(
                            "applied up to {} ({} transactions, {} rows, {rate:.0} rows/s), lag {} bytes / {:.1} s",
                            xdb::model::Lsn(m.applied_lsn),
                            m.applied_transactions,
                            m.applied_rows,
                            m.lag_bytes(),
                            m.lag_seconds(now)
                        )
                    }
                    Err(_) => continue,
                };
                tracing::info!("{line}");
            }
        })
    };
    let r = xdb::pipeline::sync::run(plan, &options, metrics.clone()).await;
    status.abort();
    match r {
        Ok(()) => {
            let applied = metrics.lock().map(|m| m.applied_lsn).unwrap_or(0);
            tracing::info!(applied = %xdb::model::Lsn(applied), "sync stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(e @ xdb::pipeline::sync::SyncError::Copy(xdb::copy::CopyError::Interrupted { .. })) => {
            interrupted(plan, &e)
        }
        Err(e) => {
            eprintln!("error: {}", plan.scrub(&e.to_string()));
            ExitCode::from(1)
        }
    }
}

/// `sync --cutover`: the sync runs in the background; once it has caught
/// up, the runbook runs; when the runbook ends, the sync is stopped as by a
/// signal (it confirms what it applied) and the runbook's outcome decides
/// the exit code.
async fn sync_then_cutover(
    plan: Plan,
    metrics_addr: Option<std::net::SocketAddr>,
    status_interval: u64,
    yes: bool,
) -> ExitCode {
    // The runbook is checked before anything starts.
    if let Err(e) = xdb::cutover::load_runbook(&plan) {
        eprintln!("error: invalid cutover runbook: {}", plan.scrub(&e.to_string()));
        return ExitCode::from(2);
    }
    // One task: the sync future is not Send (it holds the replication stream).
    let options = xdb::pipeline::sync::SyncOptions { copy: copy_options(false), ..Default::default() };
    let sync_run = sync(&plan, options, metrics_addr, status_interval);
    tokio::pin!(sync_run);
    let runbook = async {
        match xdb::pipeline::sync::wait_until_caught_up(&plan).await {
            Ok(applied) => tracing::info!(applied = %applied, "caught up: starting the cutover runbook"),
            Err(e) => {
                eprintln!("error: waiting for the tail to catch up: {}", plan.scrub(&e.to_string()));
                return ExitCode::from(1);
            }
        }
        let options = xdb::cutover::CutoverOptions {
            dry_run: false,
            yes,
            resume: false,
            rollback: false,
            journal: None,
            interactive: std::io::stdin().is_terminal(),
        };
        let mut out = std::io::stdout();
        match xdb::cutover::run(&plan, &options, &mut out).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", plan.scrub(&e.to_string()));
                ExitCode::from(e.exit_code())
            }
        }
    };
    tokio::select! {
        code = &mut sync_run => {
            eprintln!("error: sync stopped before the cutover runbook finished");
            if code == ExitCode::SUCCESS { ExitCode::from(1) } else { code }
        }
        code = runbook => {
            xdb::shutdown::request();
            let _ = sync_run.await;
            code
        }
    }
}

async fn tail(
    plan: &Plan,
    plan_slot: bool,
    from_lsn: Option<String>,
    no_ack: bool,
    max_transactions: Option<u64>,
) -> ExitCode {
    let from_lsn = match from_lsn.map(|s| s.parse::<xdb::model::Lsn>()).transpose() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: --from-lsn: {e}");
            return ExitCode::from(2);
        }
    };
    let options = xdb::tail::TailOptions { plan_slot, from_lsn, no_ack, max_transactions };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    match xdb::tail::run(plan, &options, &mut out).await {
        Ok(summary) => {
            tracing::info!(
                transactions = summary.transactions,
                changes = summary.changes,
                confirmed = %summary.confirmed,
                "tail stopped"
            );
            ExitCode::SUCCESS
        }
        Err(e @ xdb::tail::TailError::FromLsnNeedsPlanSlot(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {}", plan.scrub(&e.to_string()));
            ExitCode::from(1)
        }
    }
}

async fn cleanup(plan: &Plan, yes: bool, dry_run: bool) -> ExitCode {
    let what = match xdb::cleanup::inspect(plan).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {}", plan.scrub(&e.to_string()));
            return ExitCode::from(1);
        }
    };
    if what.is_empty() {
        println!("nothing to clean up for plan {}", plan.name);
        return ExitCode::SUCCESS;
    }
    println!("xdb cleanup for plan {} will:", plan.name);
    for line in what.describe(plan) {
        println!("  - {line}");
    }
    if dry_run {
        println!("(dry run: nothing was changed)");
        return ExitCode::SUCCESS;
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            eprintln!("error: refusing to clean up without confirmation: pass --yes");
            return ExitCode::from(2);
        }
        print!("Type yes to proceed: ");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer).is_err() || answer.trim() != "yes" {
            println!("cancelled: nothing was changed");
            return ExitCode::from(1);
        }
    }
    match xdb::cleanup::execute(plan, &what).await {
        Ok(()) => {
            println!("done");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", plan.scrub(&e.to_string()));
            ExitCode::from(1)
        }
    }
}

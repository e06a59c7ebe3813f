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

#[derive(Subcommand)]
enum Command {
    /// Preflight: check source, tables, publication, slot and target, and
    /// print a checklist with the exact fix for every problem. Changes
    /// nothing. Exit 0 when nothing blocks, 1 when something does, 2 for a
    /// bad plan.
    Check(PlanArg),
    /// Print (or with --apply, create) the target tables the plan maps to,
    /// with a comment on every lossy mapping. [not built yet: issue 4]
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
    /// snapshot; the slot is kept for a later `sync`. [not built yet: issue 5]
    Snapshot(PlanArg),
    /// The main job: copy (when not done), then apply every committed source
    /// change to the target, continuously, until stopped. [not built yet: issue 6]
    Sync(PlanArg),
    /// Print decoded changes from the replication stream as JSON lines
    /// (debugging and inspection). [not built yet: issue 3]
    Tail(PlanArg),
    /// Compare source and target: row counts, chunked checksums, the exact
    /// rows that differ. [not built yet: issue 7]
    Validate(PlanArg),
    /// Run the plan's cutover runbook step by step, with rollbacks.
    /// [not built yet: issue 8]
    Cutover(PlanArg),
    /// Lag, applied position, slot state and retained WAL, and each table's
    /// copy state, read from the servers (works while `sync` runs elsewhere).
    Status {
        #[command(flatten)]
        plan: PlanArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
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

fn not_built(cmd: &str, issue: u32) -> ExitCode {
    eprintln!("error: `xdb {cmd}` is not built yet (tracked as issue {issue}); nothing was done");
    ExitCode::from(2)
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
    match command {
        Command::Check(p) => {
            let plan = match load_plan(&p) {
                Ok(p) => p,
                Err(code) => return code,
            };
            println!("xdb check: plan {} ({})\n", plan.name, plan.file.display());
            let report = xdb::check::run(&plan).await;
            print!("{}", plan.scrub(&report.render(std::io::stdout().is_terminal())));
            if report.failures() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Schema { plan, .. } => gate(&plan, "schema", 4),
        Command::Snapshot(p) => gate(&p, "snapshot", 5),
        Command::Sync(p) => gate(&p, "sync", 6),
        Command::Tail(p) => gate(&p, "tail", 3),
        Command::Validate(p) => gate(&p, "validate", 7),
        Command::Cutover(p) => gate(&p, "cutover", 8),
        Command::Status { plan, format } => {
            let plan = match load_plan(&plan) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let report = xdb::status::read(&plan).await;
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

/// Validates the plan (so a bad plan is reported even for commands still
/// being built), then says the command is not available.
fn gate(p: &PlanArg, cmd: &str, issue: u32) -> ExitCode {
    if let Err(code) = load_plan(p) {
        return code;
    }
    not_built(cmd, issue)
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

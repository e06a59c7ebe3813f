//! The `xdb` command line.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use xdb::cmd;

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

#[derive(Subcommand)]
enum Command {
    /// Preflight: check source, tables, publication, slot and target, and
    /// print a checklist with the exact fix for every problem. Changes
    /// nothing. Exit 0 when nothing blocks, 1 when something does, 2 for a
    /// bad plan.
    Check(cmd::check::Args),
    /// Print (or with --apply, create) the target tables the plan maps to,
    /// with the type chosen for every column and a note on every mapping
    /// that can lose information. Secondary indexes are listed; the copy
    /// builds them after loading. Exit 1 when --scan finds values the
    /// mapping would reject or alter, 130/143 when SIGINT/SIGTERM stop the scan.
    Schema(cmd::schema::Args),
    /// Initial bulk copy only, from the replication slot's exported
    /// snapshot (created when missing); the slot is kept so a later `sync`
    /// streams exactly what changed after the copy. Creates the target
    /// tables, copies tables in parallel (split into key or page ranges),
    /// builds indexes afterwards. Resumable: tables finished by an earlier
    /// run are kept, unfinished ones are copied again from a fresh snapshot.
    /// SIGINT/SIGTERM stop it, keeping what is committed: exit 130/143.
    Snapshot(cmd::snapshot::Args),
    /// The main job: the initial copy (when not done), then every committed
    /// source change applied to the target, in commit order, exactly once,
    /// continuously, until SIGINT/SIGTERM (exit 0; during the copy, exit
    /// 130/143 as `snapshot`). Reconnects to either side after an outage
    /// and resumes from the position recorded on the target.
    Sync(cmd::sync::Args),
    /// Print decoded changes from the replication stream as JSON lines, one
    /// per row change (lsn, commit_time, xid, table, op, key, new, old,
    /// unchanged_toast). Creates the publication when missing. By default
    /// reads a temporary replication slot of its own, starting now, which
    /// PostgreSQL drops when tail exits: the plan's slot, and so what the
    /// next `xdb sync` receives, is never touched. Stops on SIGINT/SIGTERM.
    Tail(cmd::tail::Args),
    /// Compare source and target: row counts, then checksums over
    /// primary-key ranges on the canonical form of every row, down to the
    /// exact keys and columns that differ. Consistent while `xdb sync` runs
    /// (compares at positions the target has applied; re-checks a
    /// mismatching range before reporting it). Exit 0 equal, 1 differences
    /// found, 2 could not validate, 130/143 stopped by SIGINT/SIGTERM.
    Validate(cmd::validate::Args),
    /// Run the plan's cutover runbook step by step: each step's action,
    /// verification and outcome with durations; on a failed step the
    /// rollbacks of that step and every completed one, newest first. A
    /// journal in the state directory ($XDB_STATE_DIR, else
    /// $XDG_STATE_HOME/xdb or ~/.local/state/xdb), one per plan and
    /// source, lets --resume continue after the last completed step. See docs/cutover.md. Exit 0 when every step ran, 1
    /// when a step failed (after its rollbacks), 2 for a bad runbook or
    /// when nothing ran.
    Cutover(cmd::cutover::Args),
    /// Lag, applied position, slot state and retained WAL, and each table's
    /// copy state, read from the servers (works while `sync` runs elsewhere).
    Status(cmd::status::Args),
    /// Drop the replication slot, the publication (if xdb created it) and
    /// xdb's state on the target, after confirmation. Replicated tables are
    /// kept. Refuses while a sync streams from the slot.
    Cleanup(cmd::cleanup::Args),
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(xdb::secrets::ScrubbedStderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
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

/// Each command lives in `xdb::cmd::<command>`.
async fn run(command: Command) -> ExitCode {
    xdb::shutdown::install();
    match command {
        Command::Check(a) => cmd::check::run(a).await,
        Command::Schema(a) => cmd::schema::run(a).await,
        Command::Snapshot(a) => cmd::snapshot::run(a).await,
        Command::Sync(a) => Box::pin(cmd::sync::run(a)).await,
        Command::Tail(a) => cmd::tail::run(a).await,
        Command::Validate(a) => cmd::validate::run(a).await,
        Command::Cutover(a) => cmd::cutover::run(a).await,
        Command::Status(a) => cmd::status::run(a).await,
        Command::Cleanup(a) => cmd::cleanup::run(a).await,
    }
}

//! The commands, one module each, named like the commands: each parses its
//! own arguments (clap), loads the plan, calls the pipeline and turns the
//! outcome into what the operator reads and the exit code. No command logic
//! lives in `main.rs`; none of the pipeline lives here.

pub mod check;
pub mod cleanup;
pub mod cutover;
pub mod schema;
pub mod snapshot;
pub mod status;
pub mod sync;
pub mod tail;
pub mod validate;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::plan::Plan;

/// `--plan FILE`, shared by every command.
#[derive(clap::Args)]
pub struct PlanArg {
    /// The plan file (YAML).
    #[arg(long, short = 'p', value_name = "FILE")]
    pub plan: PathBuf,
}

impl PlanArg {
    /// Loads the plan; a bad plan is exit 2 with the reason.
    pub fn load(&self) -> Result<Plan, ExitCode> {
        Plan::load(&self.plan).map_err(|e| {
            eprintln!("error: invalid plan: {e}");
            ExitCode::from(2)
        })
    }
}

/// The plan of `$arg` (a [`PlanArg`]), or the command returns exit 2 with
/// the reason.
macro_rules! plan_or_exit {
    ($arg:expr) => {
        match $arg.load() {
            Ok(plan) => plan,
            Err(code) => return code,
        }
    };
}
pub(crate) use plan_or_exit;

/// `--recopy`, shared by `snapshot` and `sync`.
#[derive(clap::Args)]
pub struct RecopyArg {
    /// The replication slot is gone or has moved past what the target
    /// holds, so the stream cannot continue where it was: drop the slot,
    /// forget xdb's copy state and copy every planned table again from a
    /// new slot (tables xdb filled are emptied first). Without it, xdb
    /// refuses and says what happened.
    #[arg(long)]
    pub recopy: bool,
}

/// `--format` of the reporting commands.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Prints a report in the chosen format, secrets scrubbed.
fn print_report<T: serde::Serialize>(plan: &Plan, format: OutputFormat, text: impl FnOnce() -> String, value: &T) {
    match format {
        OutputFormat::Text => print!("{}", plan.scrub(&text())),
        OutputFormat::Json => println!("{}", plan.scrub(&serde_json::to_string_pretty(value).unwrap_or_default())),
    }
}

/// An error for the operator, secrets scrubbed.
fn fail(plan: &Plan, e: &dyn std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("error: {}", plan.scrub(&e.to_string()));
    ExitCode::from(code)
}

/// A command cut short by SIGINT/SIGTERM: says what was kept and exits 130
/// (SIGINT) or 143 (SIGTERM), so a script can tell unfinished from done.
fn interrupted(plan: &Plan, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{}", plan.scrub(&e.to_string()));
    ExitCode::from(crate::shutdown::interrupted_exit_code())
}

fn copy_options(recopy: bool) -> crate::copy::CopyOptions {
    crate::copy::CopyOptions {
        terminal: std::io::stderr().is_terminal(),
        log_interval: std::time::Duration::from_secs(10),
        recopy,
    }
}

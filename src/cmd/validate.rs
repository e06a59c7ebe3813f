//! `xdb validate`: counts and checksums, down to the differing keys.

use std::process::ExitCode;

use super::{interrupted, print_report, OutputFormat, PlanArg};
use crate::validate::{ValidateError, ValidateOptions};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub plan: PlanArg,
    /// Only these tables (comma-separated, `schema.table` or `table`).
    #[arg(long, value_delimiter = ',', value_name = "TABLES")]
    pub tables: Option<Vec<String>>,
    /// Rewrite differing key ranges from the source, then compare them
    /// again (see README: not while the source is being written).
    #[arg(long)]
    pub repair: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Rows per checksummed key range.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub chunk_rows: u64,
    /// Ranges compared at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub parallelism: usize,
    /// Compare row counts only (no checksums).
    #[arg(long)]
    pub counts_only: bool,
    /// Read and checksum every row in xdb, even where a PostgreSQL target
    /// and the source could checksum their ranges themselves (same column
    /// types on both sides); slower, the same report.
    #[arg(long)]
    pub row_by_row: bool,
}

pub async fn run(args: Args) -> ExitCode {
    let plan = super::plan_or_exit!(args.plan);
    let opts = ValidateOptions {
        tables: args.tables,
        repair: args.repair,
        chunk_rows: args.chunk_rows.max(1),
        parallelism: args.parallelism.max(1),
        checksums: !args.counts_only,
        server_digest: !args.row_by_row,
    };
    let report = match crate::validate::run(&plan, &opts).await {
        Ok(r) => r,
        Err(e @ ValidateError::Interrupted { .. }) => return interrupted(&plan, &e),
        Err(e) => {
            eprintln!("error: could not validate: {}", plan.scrub(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    print_report(&plan, args.format, || report.render_text(), &report);
    if report.has_differences() {
        ExitCode::from(1)
    } else if report.is_equal() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

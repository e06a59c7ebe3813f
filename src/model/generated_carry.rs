//! `mapping.generated: source`: stored generated columns move as plain
//! columns whose values come from the source.
//!
//! PostgreSQL 18 publishes stored generated columns when the publication
//! says `publish_generated_columns = stored`; before 18 the stream
//! recomputes them on the source from each change (`generated_recompute`).
//! The copy reads them like any column. With the plan's `mapping.generated: source` the catalog reader
//! puts them among the table's columns (in their place, without their
//! generation expression as a default), xdb's publication publishes them,
//! and copy, stream and `validate` treat them as the plain columns they
//! become on the target: kept current by xdb while it streams, computed by
//! no one after the switch (`check` and `schema` say so per column).
//! Virtual generated columns (18) are never published and stay generated
//! columns of the target (`mapping::generated`).
//!
//! Set once when the plan is loaded, like the plan's secrets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, RwLock};

use super::TableName;

static FROM_SOURCE: AtomicBool = AtomicBool::new(false);
static RECOMPUTED: AtomicBool = AtomicBool::new(false);

/// The first major version that publishes generated columns.
pub const FIRST_VERSION: i32 = 180000;

pub fn set_from_source(on: bool) {
    FROM_SOURCE.store(on, Ordering::Release);
}

/// Whether stored generated columns come from the source as plain columns.
pub fn from_source() -> bool {
    FROM_SOURCE.load(Ordering::Acquire)
}

/// Records that the source does not publish generated columns (before 18):
/// the stream recomputes them (`generated_recompute`). Set by the catalog
/// reader, which asks the server.
pub fn set_recomputed(on: bool) {
    RECOMPUTED.store(on, Ordering::Release);
}

/// Whether the stream recomputes the generated columns on the source
/// (known once a table was read from the catalog).
pub fn recomputed() -> bool {
    RECOMPUTED.load(Ordering::Acquire)
}

/// Per table: (column, expression) of the stored generated columns read as plain.
type Registry = RwLock<HashMap<TableName, Vec<(String, String)>>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| RwLock::new(HashMap::new()))
}

/// Records the stored generated columns (name, expression) the catalog
/// reader made plain columns of `table`.
pub fn record(table: &TableName, columns: Vec<(String, String)>) {
    if let Ok(mut r) = registry().write() {
        r.insert(table.clone(), columns);
    }
}

/// Per table: the columns its recomputed generated columns read (before 18).
type Inputs = RwLock<HashMap<TableName, Vec<String>>>;

fn inputs_registry() -> &'static Inputs {
    static R: OnceLock<Inputs> = OnceLock::new();
    R.get_or_init(|| RwLock::new(HashMap::new()))
}

/// Records the columns `table`'s generated columns read (`generated_recompute`).
pub fn record_inputs(table: &TableName, columns: Vec<String>) {
    if let Ok(mut r) = inputs_registry().write() {
        r.insert(table.clone(), columns);
    }
}

/// The columns `table`'s recomputed generated columns read.
pub fn inputs(table: &TableName) -> Vec<String> {
    inputs_registry().read().ok().and_then(|r| r.get(table).cloned()).unwrap_or_default()
}

/// The expression of `table.column` when it is a stored generated column
/// moved as a plain column.
pub fn expression(table: &TableName, column: &str) -> Option<String> {
    let r = registry().read().ok()?;
    r.get(table)?.iter().find(|(c, _)| c == column).map(|(_, e)| e.clone())
}

//! Sinks: where changes land. Each target kind has its own folder
//! (`mysql/`, `sqlite/`, `postgres/`) holding its connection, its SQL and
//! its bulk load; what every target shares sits beside them: the pure apply
//! planning ([`apply_plan`]), SQL rendering per dialect ([`dialect`]),
//! xdb's state tables ([`state`]), the connection that dispatches to the
//! target's folder ([`conn`]), the copy worker's loader ([`load`]) and the
//! change applier ([`writer`]). A new target is a new folder plus one
//! variant in `conn` and `load`.

pub mod apply_plan;
pub mod change_sink;
pub mod conn;
pub mod dialect;
pub mod load;
pub mod lock;
pub mod mysql;
pub mod postgres;
pub mod sqlite;
pub mod state;
pub mod value_errors;
pub mod writer;

pub use change_sink::ChangeSink;
pub use conn::{AppliedPosition, StateParam, TableState, TargetConn, TargetError};

/// FNV-1a: stable across builds and machines, for names xdb gives things
/// on a target (a staging table per shape, an applier's lock).
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

//! Sinks: where changes land. Every target has the same split — apply
//! planning (shared, pure), dialect SQL, state tables, writer — so a new
//! target copies a pattern.

pub mod apply_plan;
pub mod dialect;
pub mod mysql_tls;
pub mod state;
pub mod target;
pub mod writer;

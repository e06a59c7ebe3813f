//! Sources of changes: PostgreSQL (forward), MySQL/MariaDB binlogs (reverse), a replicated log of Debezium events (NATS JetStream).

pub mod change_source;
pub mod live_source;
pub mod log_events;
pub mod mysql;
pub mod nats;

pub mod postgres;

pub use change_source::{ChangeSource, NoLarge, ShapeChange, SourceEvent};
pub use live_source::{LiveSource, SourceReadError};

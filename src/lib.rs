//! xdb: CDC-based cross-database replication and cutover, from PostgreSQL to
//! MySQL/MariaDB, SQLite or PostgreSQL. The design, the invariants by name
//! and how to add a source or a target: `docs/architecture.md`.
//!
//! Modules by role, in the order data flows (dependencies point up this
//! list: a module uses those above it, never those below; `layers.rs`
//! checks it on every `cargo test`, without exceptions):
//!
//! - **Vocabulary** — [`model`] (tables, values, changes, LSNs),
//!   [`plan`] (the YAML plan and its URLs), [`pg_conn`] (connections to a
//!   PostgreSQL server — TLS, URL parameters, the password guard — for the
//!   source and the PostgreSQL target alike), [`error_policy`] (retry or stop,
//!   decided by driver error code), [`shutdown`] (SIGINT/SIGTERM),
//!   [`state_dir`] (local state outside the repository), [`secrets`] (the
//!   one scrubber), [`net`] (loopback or not, warn once per server),
//!   [`term`] (log lines beside progress bars), [`own_thread`] (a future on
//!   a thread of its own: the stream, each copy worker), [`suggest`] ("did
//!   you mean").
//! - **Sources** — [`source`]: `source::postgres` reads the catalog, the
//!   exported snapshot (COPY binary) and the pgoutput stream; its protocol
//!   codecs are sans-I/O. `source::mysql` reads a MySQL/MariaDB binlog for
//!   the way back (`sync --reverse`).
//! - **Mapping** — [`mapping`]: PostgreSQL types and values to each target's,
//!   with the lossy-value policies, the DDL and the canonical form validation
//!   compares.
//! - **The replicated log's format and transport** — [`debezium`] (the
//!   change-event and schema-change envelopes, sans-I/O), [`nats`] (NATS
//!   JetStream: connection, stream, publisher, message ids), used by the
//!   log's producer (`pipeline::to_log`) and its consumer (`source::nats`).
//! - **Sinks** — [`sink`]: one folder per target (`mysql`, `sqlite`,
//!   `postgres`) with its connection, SQL and bulk load; the shared apply
//!   planning and the change writer.
//! - **Pipelines** — [`copy`] (the initial copy), [`pipeline`] (copy then
//!   stream: `sync`), [`validate`], [`tail`], [`schema`], [`cutover`] (the
//!   runbook and its actions), [`check`] (preflight), [`status`], [`cleanup`].
//! - **Commands** — [`cmd`]: one module per command, arguments to exit code.

pub(crate) mod check;
pub(crate) mod cleanup;
pub mod cmd;
pub(crate) mod copy;
pub(crate) mod cutover;
pub mod debezium;
pub(crate) mod error_policy;
#[cfg(test)]
mod layers;
pub mod mapping;
pub mod model;
pub mod nats;
pub(crate) mod net;
pub(crate) mod own_thread;
pub mod pg_conn;
pub(crate) mod pipeline;
pub mod plan;
pub(crate) mod schema;
pub mod secrets;
pub mod shutdown;
pub mod sink;
pub mod source;
pub(crate) mod state_dir;
pub(crate) mod status;
pub(crate) mod suggest;
pub(crate) mod tail;
pub(crate) mod term;
pub(crate) mod validate;

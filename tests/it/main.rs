//! xdb's integration tests: one binary, against the real servers that
//! `scripts/test.sh` starts (PostgreSQL with wal_level=logical, MariaDB).
//! Each test creates its own databases, slots and publications.

mod support;

mod app_schema;
mod apply_order;
mod check;
mod cleanup;
mod compose;
mod cutover;
mod generated_drift;
mod generated_recompute;
mod generated_source;
mod latency;
mod log;
mod mapping_roundtrip;
mod merge_apply;
mod money;
mod pgoutput_capture;
mod plan_errors;
mod readme;
mod replication;
mod reverse;
mod reverse_gtid;
mod reverse_pg;
mod reverse_runbook;
mod schema;
mod stream_safety;
mod sync;
mod tail;
mod target_names;
mod tls;
mod trust;
mod upgrade;
mod validate;
mod value_decode;
mod versions;

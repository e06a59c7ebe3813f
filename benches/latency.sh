#!/usr/bin/env bash
# Commit-to-apply latency (issue 18): how long a committed change takes to be
# visible on the target. For SQLite, MariaDB and PostgreSQL targets: N rows
# inserted one at a time on an idle source, then N more while pgbench runs
# single-row INSERT + UPDATE transactions on 2 clients; each row's time from
# its commit to being visible on the target (each target polled about every
# millisecond, on its own) is a sample.
# PostgreSQL's own logical replication from the same source, polled for the
# same rows, is reported next to each: the floor the source itself sets
# (walsender decoding, and on a shared server everyone else's WAL).
# Prints p50 / p99 / max per target and phase, and xdb's own
# commit-to-apply histogram over the same phase (tests/it/latency.rs).
# The probes and pgbench commit with synchronous_commit = on: the dev
# servers run with it off, where a commit reaches the walsender only when
# the WAL writer flushes (up to 200 ms), for xdb and native alike.
#
#   benches/latency.sh [N]                       default 200 samples per phase
#   XDB_LATENCY_BIN=/path/to/other/xdb benches/latency.sh     measure another build
#   XDB_LATENCY_TARGETS="sqlite mysql postgres"  XDB_LATENCY_RATE=3700 (pgbench -R)
#   XDB_LATENCY_PROFILE=release                  default debug (the probe itself
#                                                is not timing-sensitive; xdb is)
set -euo pipefail
cd "$(dirname "$0")/.."
export XDB_LATENCY_N=${1:-200}
scripts/dev-dbs.sh up >/dev/null
command -v pgbench >/dev/null || apt-get install -y -qq postgresql-contrib >/dev/null
eval "$(scripts/dev-dbs.sh env)"
profile=()
[ "${XDB_LATENCY_PROFILE:-debug}" = release ] && profile=(--release)
cargo test "${profile[@]}" --quiet --test it latency::commit_to_apply_latency -- --ignored --nocapture --test-threads 1 2>&1 \
  | grep -E '^(LATENCY|==|xdb)|panicked|FAILED'

#!/usr/bin/env bash
# xdb beside the tools people would use instead, in one run, on the same
# data (the orders table of benches/copy.sh), best of XDB_BENCH_RUNS runs
# (default 3) each; every result is a ratio peer time / xdb time (> 1: xdb
# is faster), with the issue's target beside it:
#
#   copy → PostgreSQL  vs native logical replication's initial sync (CREATE
#                      SUBSCRIPTION, copy_data; timed until the table's
#                      srsubstate is 'r'; the target table made beforehand
#                      with pg_dump -s, as native needs)        target ≥ 1.5
#                      vs pgcopydb clone (--table-jobs 2 --index-jobs 2,
#                      --split-tables-larger-than 50MB) into an empty database
#   copy → MariaDB     vs psql \copy | mariadb LOAD DATA LOCAL INFILE, into the
#                      table xdb creates                       target ≥ 1.3
#   copy → SQLite      vs psql \copy to TSV + sqlite3 .import  target ≥ 1.5
#   validate           xdb validate vs reladiff (hashdiff, every column,
#                      -j 2), PostgreSQL vs PostgreSQL (xdb's copy) with 10
#                      planted differences both must report row by row  target ≥ 3
#   backlog catch-up   benches/backlog.sh (xdb → PostgreSQL vs native
#                      logical replication), as changes/s     target ≥ 1.2
#
#   benches/peers.sh [ROWS] [TXS]     default 1,000,000 rows, 50,000 backlog transactions
#   XDB_PEERS="postgres mysql sqlite validate backlog"   which parts (default: all)
#   XDB_BENCH_RUNS=3                  runs per part (the best counts)
#   XDB_BENCH_BIN=…                   an xdb binary (default: a release build)
#
# Installs what is missing: pgcopydb (apt-get) and reladiff (PyPI, into a
# venv under ~/.cache/xdb-bench). Drops every database, slot, publication
# and subscription it made; writes nothing into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
ROWS=${1:-1000000}
TXS=${2:-50000}
RUNS=${XDB_BENCH_RUNS:-3}
PARTS=${XDB_PEERS:-postgres mysql sqlite validate backlog}
PARTS=${PARTS//mariadb/mysql}   # the MariaDB part answers to either name

bench_setup peers
has() { [[ " $PARTS " == *" $1 "* ]]; }
if has postgres && ! command -v pgcopydb >/dev/null; then apt-get install -y -qq pgcopydb >/dev/null; fi
RELADIFF_VENV=${XDB_RELADIFF_VENV:-$HOME/.cache/xdb-bench/reladiff-venv}
if has validate && [ ! -x "$RELADIFF_VENV/bin/reladiff" ]; then
  python3 -m venv "$RELADIFF_VENV"
  "$RELADIFF_VENV/bin/pip" install -q 'reladiff[postgresql]==0.6.0'
fi
RDBASE=postgresql${PGBASE#postgres}   # reladiff knows the long scheme only
SRC=xdb_peers_src
PGDB=xdb_peers_pg NATIVE=xdb_peers_native PGCOPYDB=xdb_peers_pgcopydb MYDB=xdb_peers_my
q() { psql "$1" -qAtc "$2"; }

drop_subscription() {
  q "$PGBASE/$NATIVE" "ALTER SUBSCRIPTION peers_sub DISABLE; ALTER SUBSCRIPTION peers_sub SET (slot_name = NONE); DROP SUBSCRIPTION peers_sub" >/dev/null 2>&1 || true
}
cleanup() {
  set +e
  drop_subscription
  # The subscription's slot and any table-sync slot left by an interrupted sync.
  q "$XDB_PG_SUPER_URL" "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database IN ('$SRC', 'xdb_backlog_src') AND NOT active" >/dev/null 2>&1
  for db in $NATIVE $PGCOPYDB $PGDB $SRC; do q "$XDB_PG_SUPER_URL" "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1; done
  mariadb "${MYARGS[@]}" -e "DROP DATABASE IF EXISTS $MYDB" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# min / max of the numbers given; peer/xdb as a ratio.
least() { printf '%s\n' "$@" | sort -g | head -1; }
most() { printf '%s\n' "$@" | sort -g | tail -1; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "$1" "$2"; }
results=()
report() { # label peer_best xdb_best target unit
  local r; r=$(ratio "$2" "$3")
  results+=("$(printf '%-44s %7s  (peer %s %s, xdb %s %s; target ≥ %s)' "$1" "${r}×" "$2" "$5" "$3" "$5" "$4")")
  echo "-- $1: ${r}×"
}

echo "== $(date -u '+%F %T') UTC, load:$(uptime | sed 's/.*load average://'), $(nproc) cores; $ROWS rows, best of $RUNS"
echo "== source: orders-like table with $ROWS rows"
orders_static "$SRC" "$ROWS"

if has postgres; then
  q "$PGBASE/$SRC" "CREATE PUBLICATION peers_pub FOR TABLE orders" >/dev/null
  xdb_t=() native_t=() pgcopydb_t=() rss=()
  for run in $(seq "$RUNS"); do
    pg_fresh_db "$PGDB"
    xdb_snapshot "$SRC" "$PGBASE/$PGDB" xdb_peers_pg
    xdb_t+=("$XDB_SECONDS") rss+=("$XDB_RSS_MB")

    pg_fresh_db "$NATIVE"
    pg_dump -s -t orders "$PGBASE/$SRC" | psql -q "$PGBASE/$NATIVE" >/dev/null
    # The slot is made beforehand: CREATE SUBSCRIPTION cannot create one in
    # its own cluster (it would wait for itself).
    q "$PGBASE/$SRC" "SELECT pg_create_logical_replication_slot('peers_sub', 'pgoutput')" >/dev/null
    t0=$(now)
    q "$PGBASE/$NATIVE" "CREATE SUBSCRIPTION peers_sub CONNECTION '$PGBASE/$SRC' PUBLICATION peers_pub WITH (create_slot = false, slot_name = 'peers_sub')" >/dev/null 2>&1
    until [ "$(q "$PGBASE/$NATIVE" "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate = 'r'")" = 1 ]; do sleep 0.05; done
    native_t+=("$(secs_since "$t0")")
    n=$(q "$PGBASE/$NATIVE" "SELECT count(*) FROM orders")
    [ "$n" = "$ROWS" ] || { echo "native initial sync has $n rows, expected $ROWS"; exit 1; }
    drop_subscription
    q "$PGBASE/$SRC" "SELECT pg_drop_replication_slot('peers_sub')" >/dev/null

    pg_fresh_db "$PGCOPYDB"
    rm -rf "$WORK/pgcopydb"
    t0=$(now)
    pgcopydb clone --source "$PGBASE/$SRC" --target "$PGBASE/$PGCOPYDB" --dir "$WORK/pgcopydb" \
      --table-jobs 2 --index-jobs 2 --split-tables-larger-than 50MB --no-owner --no-acl >"$WORK/pgcopydb.log" 2>&1 \
      || { tail -20 "$WORK/pgcopydb.log"; exit 1; }
    pgcopydb_t+=("$(secs_since "$t0")")
    n=$(q "$PGBASE/$PGCOPYDB" "SELECT count(*) FROM orders")
    [ "$n" = "$ROWS" ] || { echo "pgcopydb copied $n rows, expected $ROWS"; exit 1; }
    echo "   run $run: xdb ${xdb_t[-1]} s (peak RSS $XDB_RSS_MB MiB), native initial sync ${native_t[-1]} s, pgcopydb ${pgcopydb_t[-1]} s"
  done
  q "$PGBASE/$SRC" "DROP PUBLICATION peers_pub" >/dev/null
  q "$XDB_PG_SUPER_URL" "DROP DATABASE $NATIVE WITH (FORCE)" >/dev/null
  q "$XDB_PG_SUPER_URL" "DROP DATABASE $PGCOPYDB WITH (FORCE)" >/dev/null
  best=$(least "${xdb_t[@]}")
  report "copy → PostgreSQL vs native initial sync" "$(least "${native_t[@]}")" "$best" 1.5 s
  report "copy → PostgreSQL vs pgcopydb" "$(least "${pgcopydb_t[@]}")" "$best" "-" s
  results+=("   xdb peak RSS (PostgreSQL target): $(most "${rss[@]}") MiB (target < 256)")
fi

if has mysql; then
  xdb_t=() hand_t=() rss=() hand_cpu=() xdb_cpu=()
  url="mysql://xdb:$XDB_MYSQL_PASSWORD@127.0.0.1:$XDB_MYSQL_PORT/$MYDB"
  for run in $(seq "$RUNS"); do
    hand_mariadb "$SRC" "$MYDB" "$ROWS"   # leaves the database empty for xdb
    hand_t+=("$BASE")
    xdb_snapshot "$SRC" "$url" xdb_peers_my
    xdb_t+=("$XDB_SECONDS") rss+=("$XDB_RSS_MB")
    # CPU seconds (local dev servers): the pipe's one LOAD DATA runs on one
    # server thread, so its wall time is at least the server's CPU time; xdb's
    # parallel loads share the cores with xdb and PostgreSQL.
    hand_cpu+=("MariaDB $HAND_MY_CPU, PostgreSQL $HAND_PG_CPU")
    xdb_cpu+=("MariaDB $XDB_MY_CPU, xdb $XDB_CPU, PostgreSQL $XDB_PG_CPU")
    echo "   run $run: xdb ${xdb_t[-1]} s (peak RSS $XDB_RSS_MB MiB; CPU s: ${xdb_cpu[-1]}), hand pipe ${hand_t[-1]} s (CPU s: ${hand_cpu[-1]})"
  done
  mariadb "${MYARGS[@]}" -e "DROP DATABASE $MYDB"
  report "copy → MariaDB vs psql | LOAD DATA" "$(least "${hand_t[@]}")" "$(least "${xdb_t[@]}")" 1.3 s
  results+=("   xdb peak RSS (MariaDB target): $(most "${rss[@]}") MiB (target < 256)")
  # The CPU of each side's fastest run.
  bh=0 bx=0
  for i in "${!hand_t[@]}"; do
    [ "${hand_t[$i]}" = "$(least "${hand_t[@]}")" ] && bh=$i
    [ "${xdb_t[$i]}" = "$(least "${xdb_t[@]}")" ] && bx=$i
  done
  results+=("   CPU seconds of the fastest runs: pipe ${hand_cpu[$bh]}; xdb ${xdb_cpu[$bx]} ($(nproc) cores)")
fi

if has sqlite; then
  xdb_t=() hand_t=() rss=()
  for run in $(seq "$RUNS"); do
    hand_sqlite "$SRC" "$WORK/hand.db"
    hand_t+=("$BASE")
    rm -f "$WORK"/xdb.db*
    xdb_snapshot "$SRC" "sqlite://$WORK/xdb.db" xdb_peers_sqlite
    xdb_t+=("$XDB_SECONDS") rss+=("$XDB_RSS_MB")
    rm -f "$WORK"/xdb.db*
    echo "   run $run: xdb ${xdb_t[-1]} s (peak RSS $XDB_RSS_MB MiB), psql + sqlite3 .import ${hand_t[-1]} s"
  done
  report "copy → SQLite vs sqlite3 .import" "$(least "${hand_t[@]}")" "$(least "${xdb_t[@]}")" 1.5 s
  results+=("   xdb peak RSS (SQLite target): $(most "${rss[@]}") MiB (target < 256)")
fi

if has validate; then
  # xdb's PostgreSQL copy (made here when the postgres part did not run),
  # with 10 rows changed on the target.
  if ! has postgres; then pg_fresh_db "$PGDB"; xdb_snapshot "$SRC" "$PGBASE/$PGDB" xdb_peers_pg; fi
  orders_plan "$SRC" "$PGBASE/$PGDB" xdb_peers_pg "$WORK/validate.yaml"
  q "$PGBASE/$PGDB" "UPDATE orders SET note = 'planted' WHERE id % ($ROWS / 10) = 7" >/dev/null
  xdb_t=() rd_t=()
  for run in $(seq "$RUNS"); do
    t0=$(now); set +e
    "$XDB" validate --plan "$WORK/validate.yaml" --format json >"$WORK/v.json" 2>"$WORK/v.log"; c=$?
    set -e; xdb_t+=("$(secs_since "$t0")")
    found=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tables'][0]['changed_total'])" "$WORK/v.json" 2>/dev/null || echo "?")
    [ "$c" = 1 ] && [ "$found" = 10 ] || { echo "xdb validate exited $c, found $found of 10"; tail -20 "$WORK/v.log"; exit 1; }

    t0=$(now)
    "$RELADIFF_VENV/bin/reladiff" "$RDBASE/$SRC" orders "$RDBASE/$PGDB" orders -k id -c '%' -j 2 -a hashdiff \
      >"$WORK/rd.txt" 2>"$WORK/rd.log" || { tail -20 "$WORK/rd.log"; exit 1; }
    rd_t+=("$(secs_since "$t0")")
    # A changed row is a '-' line and a '+' line with its key.
    found=$(grep -c '^[-+]' "$WORK/rd.txt" || true)
    [ "$found" = 20 ] || { echo "reladiff printed $found diff lines, expected 20"; head -30 "$WORK/rd.txt"; exit 1; }
    echo "   run $run: xdb validate ${xdb_t[-1]} s, reladiff ${rd_t[-1]} s (both: 10 changed rows, row by row)"
  done
  report "validate vs reladiff (PostgreSQL vs PostgreSQL)" "$(least "${rd_t[@]}")" "$(least "${xdb_t[@]}")" 3 s
fi
has postgres || has validate && q "$XDB_PG_SUPER_URL" "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null

if has backlog; then
  # benches/backlog.sh itself, RUNS times: the best rate of each side.
  xdb_r=() native_r=()
  for run in $(seq "$RUNS"); do
    XDB_BENCH_BIN=$XDB XDB_BENCH_TARGETS="postgres native" benches/backlog.sh "$TXS" | tee "$WORK/backlog.txt" | sed 's/^/   /'
    xdb_r+=("$(sed -n 's/^xdb → PostgreSQL: .* = \([0-9]*\) changes\/s$/\1/p' "$WORK/backlog.txt")")
    native_r+=("$(sed -n 's/^native logical replication → PostgreSQL: .* = \([0-9]*\) changes\/s$/\1/p' "$WORK/backlog.txt")")
  done
  # Rates: peer time / xdb time for the same changes is xdb rate / peer rate.
  report "backlog catch-up → PostgreSQL vs native" "$(most "${xdb_r[@]}")" "$(most "${native_r[@]}")" 1.2 changes/s
  results[-1]=$(sed 's/(peer \([0-9]*\) changes\/s, xdb \([0-9]*\) changes\/s/(xdb \1 changes\/s, native \2 changes\/s/' <<<"${results[-1]}")
fi

echo
echo "== peer time / xdb time, best of $RUNS ($ROWS rows; backlog $TXS transactions)"
printf '%s\n' "${results[@]}"

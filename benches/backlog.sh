#!/usr/bin/env bash
# Catch-up on a backlog: with the consumer stopped, pgbench commits TXS
# single-row transactions (an UPDATE, and an INSERT in 3 of 10) on an
# orders-like table; then the consumer starts and the time until the target
# has applied everything is measured. xdb (`sync --until-caught-up`) and, in
# the same run, PostgreSQL's native logical replication (a disabled
# subscription enabled again) on the same backlog. Prints row changes/s and
# the ratio xdb / native.
#
#   benches/backlog.sh [TXS] [ROWS]     default 50,000 transactions, 100,000 rows
#   XDB_BENCH_TARGETS="postgres native mysql sqlite"   (default: postgres native)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
TXS=${1:-50000}
ROWS=${2:-100000}
TARGETS=${XDB_BENCH_TARGETS:-postgres native}

bench_setup backlog
command -v pgbench >/dev/null || apt-get install -y -qq postgresql-contrib >/dev/null
SRC=xdb_backlog_src
export PGPW="$XDB_PG_REPL_PASSWORD" MYPW="$XDB_MYSQL_PASSWORD"
q() { psql "$1" -qAtc "$2"; }


cat > "$WORK/load.sql" <<SQL
\\set id random(1, $ROWS)
\\set r random(1, 10)
BEGIN;
UPDATE orders SET amount = amount + 0.01, updated_at = now(), paid = NOT paid WHERE id = :id;
INSERT INTO orders (customer_id, title, amount, created_at, updated_at, doc, paid, ref)
  SELECT :r, 'bench', 1.00, now(), now(), '{"sku": "B"}', false, gen_random_uuid() WHERE :r <= 3;
END;
SQL

declare -A rate
for target in $TARGETS; do
  orders_live "$SRC" "$ROWS"
  case $target in
    sqlite) url="sqlite://$WORK/backlog.db"; rm -f "$WORK"/backlog.db*; label="xdb → SQLite" ;;
    mysql)
      mariadb "${MYARGS[@]}" -e "DROP DATABASE IF EXISTS xdb_backlog; CREATE DATABASE xdb_backlog"
      url="mysql://xdb:\${MYPW}@127.0.0.1:$XDB_MYSQL_PORT/xdb_backlog"; label="xdb → MariaDB" ;;
    postgres|native)
      q "$XDB_PG_SUPER_URL" "DROP DATABASE IF EXISTS xdb_backlog_t WITH (FORCE)" >/dev/null
      q "$XDB_PG_SUPER_URL" "CREATE DATABASE xdb_backlog_t OWNER xdb_repl" >/dev/null
      url="postgres://xdb_repl:\${PGPW}@127.0.0.1:$XDB_PG_PORT/xdb_backlog_t"; label="xdb → PostgreSQL" ;;
    *) echo "unknown target $target"; exit 2 ;;
  esac
  # 1. The initial copy, then the consumer stops.
  if [ "$target" = native ]; then
    label="native logical replication → PostgreSQL"
    pg_dump -s -t orders "$PGBASE/$SRC" | psql -q "$PGBASE/xdb_backlog_t" >/dev/null
    q "$PGBASE/$SRC" "CREATE PUBLICATION backlog_pub FOR TABLE orders" >/dev/null
    q "$PGBASE/$SRC" "SELECT pg_create_logical_replication_slot('backlog_native', 'pgoutput')" >/dev/null
    q "$PGBASE/xdb_backlog_t" "CREATE SUBSCRIPTION backlog_sub CONNECTION '$PGBASE/$SRC' PUBLICATION backlog_pub WITH (create_slot = false, slot_name = 'backlog_native')" >/dev/null 2>&1
    until [ "$(q "$PGBASE/xdb_backlog_t" "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")" = 0 ]; do sleep 0.5; done
    q "$PGBASE/xdb_backlog_t" "ALTER SUBSCRIPTION backlog_sub DISABLE" >/dev/null
    until [ "$(q "$PGBASE/$SRC" "SELECT active FROM pg_replication_slots WHERE slot_name = 'backlog_native'")" = f ]; do sleep 0.2; done
  else
    cat > "$WORK/plan.yaml" <<YAML
name: backlog
source:
  url: postgres://xdb_repl:\${PGPW}@127.0.0.1:$XDB_PG_PORT/$SRC
  slot: xdb_backlog
target:
  url: $url
tables: [public.orders]
YAML
    "$XDB" snapshot --plan "$WORK/plan.yaml" --log warn >/dev/null
  fi
  # 2. The backlog, written while nothing consumes it.
  pgbench -n -c 2 -j 2 -t $((TXS / 2)) -f "$WORK/load.sql" "$PGBASE/$SRC" >/dev/null 2>&1
  changes=$(q "$PGBASE/$SRC" "SELECT $TXS + count(*) FROM orders WHERE title = 'bench'")
  # A sentinel committed last: both consumers apply in commit order, so
  # once it is on the target, everything before it is too.
  q "$PGBASE/$SRC" "INSERT INTO orders (customer_id, title, amount, created_at, updated_at, doc, paid, ref) VALUES (0, 'sentinel', 0, now(), now(), '{}', false, gen_random_uuid())" >/dev/null
  case $target in
    sqlite) seen() { sqlite3 "$WORK/backlog.db" "SELECT count(*) FROM orders WHERE title = 'sentinel'" 2>/dev/null; } ;;
    mysql) seen() { mariadb "${MYARGS[@]}" -N -e "SELECT COUNT(*) FROM xdb_backlog.orders WHERE title = 'sentinel'" 2>/dev/null; } ;;
    *)
      # One connection for all the polls (a psql per poll costs more CPU
      # than the apply being timed).
      coproc POLL { psql "$PGBASE/xdb_backlog_t" -qAt; }
      seen() { echo "SELECT count(*) FROM orders WHERE title = 'sentinel';" >&"${POLL[1]}"; read -r n <&"${POLL[0]}"; echo "$n"; } ;;
  esac
  # 3. The consumer starts; timed until the sentinel is on the target.
  t0=$(date +%s.%N)
  if [ "$target" = native ]; then
    q "$PGBASE/xdb_backlog_t" "ALTER SUBSCRIPTION backlog_sub ENABLE" >/dev/null
    # The launcher starts the apply worker up to wal_retrieve_retry_interval
    # later: the clock starts when the worker exists (xdb's own start-up,
    # connecting and reading the catalog, stays in its time).
    until [ -n "$(q "$PGBASE/xdb_backlog_t" "SELECT pid FROM pg_stat_subscription WHERE subname = 'backlog_sub' AND pid IS NOT NULL")" ]; do sleep 0.01; done
    t0=$(date +%s.%N)
  else
    # XDB_BENCH_PERF=FILE: a system-wide CPU profile (xdb and both servers) during the catch-up.
    if [ -n "${XDB_BENCH_PERF:-}" ]; then
      perf record -q -a -F 999 -o "$XDB_BENCH_PERF" -- "$XDB" sync --plan "$WORK/plan.yaml" --log warn >/dev/null 2>&1 &
    else
      "$XDB" sync --plan "$WORK/plan.yaml" --log warn >/dev/null 2>&1 &
    fi
    SYNC_PID=$!
  fi
  until [ "$(seen)" = 1 ]; do sleep 0.02; done
  [ -n "${POLL_PID:-}" ] && { exec {POLL[1]}>&-; wait "$POLL_PID" 2>/dev/null || true; }
  secs=$(python3 -c "print(f'{$(date +%s.%N)-$t0:.2f}')")
  rate[$target]=$(python3 -c "print(int($changes / $secs))")
  echo "$label: $changes row changes ($TXS transactions) in $secs s = ${rate[$target]} changes/s"
  if [ "$target" = native ]; then
    q "$PGBASE/xdb_backlog_t" "ALTER SUBSCRIPTION backlog_sub DISABLE; ALTER SUBSCRIPTION backlog_sub SET (slot_name = NONE); DROP SUBSCRIPTION backlog_sub" >/dev/null 2>&1 || true
  else
    kill -INT "$SYNC_PID"; wait "$SYNC_PID" 2>/dev/null || true
    "$XDB" cleanup --plan "$WORK/plan.yaml" --yes --log warn >/dev/null || true
  fi
done
if [ -n "${rate[postgres]:-}" ] && [ -n "${rate[native]:-}" ]; then
  python3 -c "print(f'xdb → PostgreSQL / native: {${rate[postgres]} / ${rate[native]}:.2f}x')"
fi
# Leaves no slot (native's is kept by its subscription's SET slot_name = NONE) and no database.
q "$XDB_PG_SUPER_URL" "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$SRC' AND NOT active" >/dev/null
q "$XDB_PG_SUPER_URL" "DROP DATABASE IF EXISTS xdb_backlog_t WITH (FORCE)" >/dev/null
q "$XDB_PG_SUPER_URL" "DROP DATABASE IF EXISTS $SRC WITH (FORCE)" >/dev/null
[[ " $TARGETS " == *" mysql "* ]] && mariadb "${MYARGS[@]}" -e "DROP DATABASE IF EXISTS xdb_backlog" || true

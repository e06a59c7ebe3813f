#!/usr/bin/env bash
# Change-stream throughput and lag: a pgbench load (single-row UPDATEs and
# INSERTs on an orders-like table, 2 clients, full speed) against the source
# while `xdb sync` tails it. Reports source TPS, xdb's applied rows/s, lag
# p50/p99 sampled each second, and the catch-up time after the load stops.
# In the same run, PostgreSQL's native logical replication (PUBLICATION /
# SUBSCRIPTION) under the same load is the peer.
#
#   benches/cdc.sh [SECONDS] [ROWS]           default 60 s, 100,000 rows
#   XDB_BENCH_TARGETS="sqlite mysql postgres native"
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
SECS=${1:-60}
ROWS=${2:-100000}
TARGETS=${XDB_BENCH_TARGETS:-sqlite mysql postgres native}

bench_setup cdc
command -v pgbench >/dev/null || apt-get install -y -qq postgresql-contrib >/dev/null
command -v curl >/dev/null || apt-get install -y -qq curl >/dev/null
SRC=xdb_cdc_src
cleanup() { [ -n "${SYNC_PID:-}" ] && kill "$SYNC_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
export PGPW="$XDB_PG_REPL_PASSWORD" MYPW="$XDB_MYSQL_PASSWORD"



cat > "$WORK/load.sql" <<SQL
\\set id random(1, $ROWS)
\\set r random(1, 10)
UPDATE orders SET amount = amount + 0.01, updated_at = now(), paid = NOT paid WHERE id = :id;
INSERT INTO orders (customer_id, title, amount, created_at, updated_at, doc, paid, ref)
  SELECT :r, 'bench', 1.00, now(), now(), '{"sku": "B"}', false, gen_random_uuid() WHERE :r <= 3;
SQL

results=()
for target in $TARGETS; do
  orders_live "$SRC" "$ROWS"
  case $target in
    sqlite) url="sqlite://$WORK/cdc.db"; label="xdb → SQLite" ;;
    mysql)
      mariadb "${MYARGS[@]}" -e "DROP DATABASE IF EXISTS xdb_cdc; CREATE DATABASE xdb_cdc"
      url="mysql://xdb:\${MYPW}@127.0.0.1:$XDB_MYSQL_PORT/xdb_cdc"; label="xdb → MariaDB" ;;
    postgres|native)
      psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS xdb_cdc_t WITH (FORCE)" >/dev/null
      psql "$XDB_PG_SUPER_URL" -qAtc "CREATE DATABASE xdb_cdc_t OWNER xdb_repl" >/dev/null
      url="postgres://xdb_repl:\${PGPW}@127.0.0.1:$XDB_PG_PORT/xdb_cdc_t"; label="xdb → PostgreSQL" ;;
    *) echo "unknown target $target"; exit 2 ;;
  esac
  : > "$WORK/lag"; : > "$WORK/lag_s"
  if [ "$target" = native ]; then
    label="native logical replication → PostgreSQL"
    pg_dump -s -t orders "$PGBASE/$SRC" | psql -q "$PGBASE/xdb_cdc_t" >/dev/null
    psql "$PGBASE/$SRC" -qAtc "CREATE PUBLICATION cdc_pub FOR TABLE orders" >/dev/null
    # Same cluster: the slot is made first, or CREATE SUBSCRIPTION would wait on itself.
    psql "$PGBASE/$SRC" -qAtc "SELECT pg_create_logical_replication_slot('cdc_native', 'pgoutput')" >/dev/null
    t0=$(date +%s.%N)
    psql "$PGBASE/xdb_cdc_t" -qAtc "CREATE SUBSCRIPTION cdc_sub CONNECTION '$PGBASE/$SRC' PUBLICATION cdc_pub WITH (create_slot = false, slot_name = 'cdc_native')" >/dev/null 2>&1
    until [ "$(psql "$PGBASE/xdb_cdc_t" -qAtc "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")" = 0 ]; do sleep 0.5; done
  else
    cat > "$WORK/plan.yaml" <<YAML
name: cdc
source:
  url: postgres://xdb_repl:\${PGPW}@127.0.0.1:$XDB_PG_PORT/$SRC
  slot: xdb_cdc
target:
  url: $url
tables: [public.orders]
YAML
    t0=$(date +%s.%N)
    "$XDB" sync --plan "$WORK/plan.yaml" --metrics-addr 127.0.0.1:9187 --log warn >"$WORK/sync.log" 2>&1 &
    SYNC_PID=$!
    until [ "$(psql "$PGBASE/$SRC" -qAtc "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = 'xdb_cdc'")" = t ]; do
      kill -0 "$SYNC_PID" || { cat "$WORK/sync.log"; exit 1; }; sleep 0.5; done
  fi
  copy_s=$(python3 -c "print(f'{$(date +%s.%N)-$t0:.1f}')")
  n0=$(psql "$PGBASE/$SRC" -qAtc "SELECT count(*) FROM orders")
  # Lag = source WAL position minus what the target has applied, sampled each
  # second: xdb's applied position from its metrics, the native subscriber's
  # from pg_stat_subscription (received; it applies in order right after).
  applied() {
    if [ "$target" = native ]; then
      psql "$PGBASE/xdb_cdc_t" -qAtc "SELECT coalesce(latest_end_lsn, received_lsn) - '0/0'::pg_lsn FROM pg_stat_subscription WHERE subname = 'cdc_sub'"
    else
      curl -s 127.0.0.1:9187/metrics | awk '/^xdb_applied_lsn/ {print $2}'
    fi
  }
  wal() { psql "$PGBASE/$SRC" -qAtc "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"; }
  touch "$WORK/sampling"
  ( while [ -f "$WORK/sampling" ]; do w=$(wal); a=$(applied)
      # Skip samples before the first applied position is known.
      [ -n "$a" ] && python3 -c "a=int(float('$a')); print(max(0, int(float('$w')) - a)) if a > 0 else None" >> "$WORK/lag"
      # xdb's own lag in seconds: now minus the commit time of the last applied transaction.
      [ "$target" != native ] && curl -s 127.0.0.1:9187/metrics | awk '/^xdb_lag_seconds/ {print $2}' >> "$WORK/lag_s"
      sleep 1; done ) &
  SAMPLER=$!
  w0=$(wal)
  tps=$(pgbench -n -c 2 -j 2 -T "$SECS" -f "$WORK/load.sql" "$PGBASE/$SRC" 2>/dev/null | awk '/^tps/ {print $3; exit}')
  rm -f "$WORK/sampling"; wait "$SAMPLER" 2>/dev/null || true
  # A transactional marker after the last pgbench commit: xdb applies it
  # (an empty transaction), so its applied position passes it exactly.
  end=$(psql "$PGBASE/$SRC" -qAtc "SELECT pg_logical_emit_message(true, 'bench', 'end') - '0/0'::pg_lsn")
  t1=$(date +%s.%N)
  # Caught up: the target has applied everything written during the load.
  until python3 -c "import sys; sys.exit(0 if int(float('$(applied)' or 0)) >= int(float('$end')) else 1)"; do sleep 0.2; done
  catchup=$(python3 -c "print(f'{$(date +%s.%N)-$t1:.1f}')")
  n1=$(psql "$PGBASE/$SRC" -qAtc "SELECT count(*) FROM orders")
  changes=$(python3 -c "print(int(float('${tps:-0}') * $SECS * 1.3))")
  p50=$(pct "$WORK/lag" 50); p99=$(pct "$WORK/lag" 99)
  # Bytes behind, and the same in seconds at the load's own WAL rate.
  rate=$(python3 -c "print(max(1.0, (float('$end') - float('$w0')) / $SECS))")
  lag=$(python3 -c "r=$rate; print(f'p50 {$p50/1e6:.2f} MB (~{$p50/r:.2f} s), p99 {$p99/1e6:.2f} MB (~{$p99/r:.2f} s) at {r/1e6:.1f} MB/s of WAL')")
  secs=""
  if [ -s "$WORK/lag_s" ]; then secs="; xdb_lag_seconds p50/p99 $(pct "$WORK/lag_s" 50)/$(pct "$WORK/lag_s" 99) s"; fi
  line="$label: copy ${copy_s}s; load ${tps} TPS (≈ $changes row changes, $((n1 - n0)) inserts); lag (source WAL − applied) ${lag}${secs}; catch-up ${catchup} s"
  echo "== $line"
  results+=("$line")
  if [ "$target" = native ]; then
    psql "$PGBASE/xdb_cdc_t" -qAtc "ALTER SUBSCRIPTION cdc_sub DISABLE; ALTER SUBSCRIPTION cdc_sub SET (slot_name = NONE); DROP SUBSCRIPTION cdc_sub" >/dev/null 2>&1 || true
  else
    kill -TERM "$SYNC_PID"; wait "$SYNC_PID" 2>/dev/null || true; SYNC_PID=
  fi
done
echo
echo "== summary (${SECS}s of pgbench, 2 clients, $ROWS-row table)"
printf '%s\n' "${results[@]}"
psql "$XDB_PG_SUPER_URL" -qAtc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$SRC'" >/dev/null
psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS $SRC WITH (FORCE)" >/dev/null
psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS xdb_cdc_t WITH (FORCE)" >/dev/null

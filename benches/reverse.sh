#!/usr/bin/env bash
# The way back under load: a pgbench-style write load (single-row UPDATEs
# and INSERTs on an orders-like table, 2 clients, autocommit) against
# MariaDB while `xdb sync --reverse` applies it to the original PostgreSQL
# source. Reports the load's TPS, the reverse lag p50/p99 (a probe row
# written on MariaDB every 0.5 s, timed until it is on PostgreSQL), the
# catch-up time after the load stops, and validates both sides at the end.
# Compare with benches/cdc.sh (the forward figures, README "Performance").
#
#   benches/reverse.sh [SECONDS] [ROWS]      default 30 s, 100,000 rows
#   XDB_BENCH_RATE=5500   target statements/s over both clients (0: full
#                         speed); 5,500 is what pgbench reaches in benches/cdc.sh
#   XDB_BIN=target/debug/xdb benches/reverse.sh   use a build at hand
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
SECS=${1:-30}
ROWS=${2:-100000}
RATE=${XDB_BENCH_RATE:-5500}

bench_setup rev-bench
REPLBASE=${XDB_PG_URL%/*}
DB=xdb_rev_bench
MY=(mariadb "${MYARGS[@]}")
cleanup() {
  [ -n "${REV_PID:-}" ] && kill "$REV_PID" 2>/dev/null
  # The forward slot would hold the dev server's WAL until the next run.
  psql "$XDB_PG_SUPER_URL" -qAtc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
    WHERE database = '$DB' AND NOT active" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

psql "$XDB_PG_SUPER_URL" -qAtc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$DB'" >/dev/null
psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
psql "$XDB_PG_SUPER_URL" -qAtc "CREATE DATABASE $DB OWNER xdb_repl" >/dev/null
psql "$PGBASE/$DB" -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer_id bigint NOT NULL, title text NOT NULL, amount numeric(12,2) NOT NULL,
  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, doc jsonb NOT NULL, paid boolean NOT NULL,
  note text);
CREATE TABLE probe (id bigint PRIMARY KEY, at_ms bigint NOT NULL);
INSERT INTO orders SELECT g, g % 10007, 'order title ' || g, (g % 100000) / 100.0, now(), now(),
       jsonb_build_object('sku', 'SKU-' || (g % 997)), g % 3 = 0, 'note ' || g FROM generate_series(1, $ROWS) g;
ALTER TABLE orders OWNER TO xdb_repl; ALTER TABLE probe OWNER TO xdb_repl;
SQL
"${MY[@]}" -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
cat > "$WORK/plan.yaml" <<YAML
name: rev-bench
source:
  url: $REPLBASE/$DB
target:
  url: ${XDB_MYSQL_URL%/*}/$DB
tables: [public.orders, public.probe]
YAML
P=(--plan "$WORK/plan.yaml")
"$XDB" sync --until-caught-up "${P[@]}" 2>"$WORK/forward.log"
"$XDB" sync --reverse --set-start-here "${P[@]}"
"$XDB" sync --reverse "${P[@]}" 2>"$WORK/reverse.log" &
REV_PID=$!

# The load: 2 clients, each a stream of autocommit statements.
gen() {
  python3 - "$1" "$ROWS" "$SECS" "$RATE" <<'PY'
import random, sys, time
client, rows, secs, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
start = time.time()
deadline = start + secs
sent = 0
next_id = rows + 1 + client * 10_000_000
out = sys.stdout
while time.time() < deadline:
    if rate > 0:
        due = (time.time() - start) * rate / 2
        if sent >= due:
            out.flush()
            time.sleep(0.005)
            continue
    sent += 1
    if random.random() < 0.7:
        out.write(f"UPDATE orders SET amount = amount + 1, updated_at = NOW(6) WHERE id = {random.randint(1, rows)};\n")
    else:
        out.write(f"INSERT INTO orders VALUES ({next_id}, 1, 'new', 1.00, NOW(6), NOW(6), '{{\"sku\": \"N\"}}', 0, NULL);\n")
        next_id += 1
PY
}
START_POS=$("${MY[@]}" -N -e "SELECT @@GLOBAL.gtid_binlog_pos")
LOAD_PIDS=""
for c in 0 1; do
  (gen $c | "${MY[@]}" "$DB" 2>/dev/null) &
  LOAD_PIDS="$LOAD_PIDS $!"
done
: > "$WORK/lag"
T0=$(now_ms); i=0
while [ $(( $(now_ms) - T0 )) -lt $(( SECS * 1000 )) ]; do
  i=$((i + 1))
  t=$(now_ms)
  "${MY[@]}" "$DB" -e "INSERT INTO probe VALUES ($i, $t)"
  until [ "$(psql "$PGBASE/$DB" -qAtc "SELECT count(*) FROM probe WHERE id = $i")" = 1 ]; do
    [ $(( $(now_ms) - t )) -gt 120000 ] && { echo "probe $i not applied within 120 s" >&2; exit 1; }
    sleep 0.02
  done
  echo "$(( $(now_ms) - t ))" >> "$WORK/lag"
  sleep 0.5
done
# The generators stop by themselves after SECS seconds.
wait $LOAD_PIDS
LOAD_PIDS=""
LOAD_END=$(now_ms)
END_POS=$("${MY[@]}" -N -e "SELECT @@GLOBAL.gtid_binlog_pos")
TXNS=$(( ${END_POS##*-} - ${START_POS##*-} ))
until "$XDB" status --reverse "${P[@]}" 2>/dev/null | grep -q "lag: *0 bytes"; do sleep 0.1; done
CATCHUP=$(( $(now_ms) - LOAD_END ))
kill "$REV_PID"; wait "$REV_PID" 2>/dev/null || true; REV_PID=""
"$XDB" validate "${P[@]}" >"$WORK/validate.log" 2>&1 || { cat "$WORK/validate.log"; echo "validate FAILED" >&2; exit 1; }
echo "reverse (MariaDB -> PostgreSQL), $SECS s, 2 clients, rate ${RATE}/s (0 = full speed): $TXNS target transactions, $(( TXNS / SECS )) TPS"
echo "lag p50 $(pct "$WORK/lag" 50) ms, p99 $(pct "$WORK/lag" 99) ms ($(wc -l < "$WORK/lag") probes); catch-up after the load: $CATCHUP ms; validate: equal"

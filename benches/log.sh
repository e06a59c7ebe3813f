#!/usr/bin/env bash
# The replicated log's cost: the orders copy and a change backlog into
# MariaDB directly, beside the same through a three-node NATS JetStream
# cluster (PostgreSQL → log with 3 replicas → MariaDB, two xdb processes).
# Prints seconds and rows/s per leg; each target is validated.
# Then commit-to-visible latency, direct beside through the log, with all
# three processes running: a probe row inserted on PostgreSQL (synchronous
# commit) every 0.2 s, polled on both MariaDB databases with the mariadb
# client until visible (`probe_visible` in benches/lib.sh; a poll costs a
# client start, ~5-10 ms, which both paths pay alike): idle, then while
# pgbench runs single-row UPDATE + INSERT transactions (2 clients, -R RATE)
# — the lag under load.
#
#   benches/log.sh [ROWS] [TXNS] [SECS]   default 200,000 rows, 20,000 change
#                                         transactions, 30 s per latency phase
#   XDB_BIN=target/debug/xdb         use another binary (default: a release build)
#   XDB_BENCH_RATE=1000              pgbench -R during the loaded phase
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
ROWS=${1:-200000}
TXNS=${2:-20000}
SECS=${3:-30}
RATE=${XDB_BENCH_RATE:-1000}

bench_setup bench-log
SRC=xdb_bench_log
chmod 755 "$WORK"
PORT=${XDB_NATS_PORT:-61220}
CPORT=${XDB_NATS_CLUSTER_PORT:-62220}
as_dev() { if [ "$(id -u)" = 0 ]; then runuser -u "${XDB_DEV_USER:-xdbdev}" -- "$@"; else "$@"; fi; }
PIDS=""
stop_cluster() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  for i in 0 1 2; do [ -f "$WORK/n$i.pid" ] && kill "$(cat "$WORK/n$i.pid")" 2>/dev/null || true; done
  sleep 0.5; rm -rf "$WORK"
}
trap stop_cluster EXIT

echo "== three-node JetStream cluster on 127.0.0.1:$PORT-$((PORT + 2))"
for i in 0 1 2; do
  routes=""
  for j in 0 1 2; do [ $j != $i ] && routes="$routes nats-route://127.0.0.1:$((CPORT + j)),"; done
  cat > "$WORK/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$((PORT + i))
jetstream { store_dir: "$WORK/n$i" }
cluster { name: xdbbench, listen: 127.0.0.1:$((CPORT + i)), routes: [${routes%,}] }
CONF
done
[ "$(id -u)" = 0 ] && chown -R "${XDB_DEV_USER:-xdbdev}" "$WORK"
start_node() { # a port in the ephemeral range may be briefly taken: try again
  for _ in $(seq 60); do
    as_dev nats-server -c "$WORK/n$1.conf" -P "$WORK/n$1.pid" -l "$WORK/n$1.log" &
    sleep 1
    kill -0 $! 2>/dev/null && return 0
  done
  echo "nats-server n$1 does not start: $(tail -1 "$WORK/n$1.log")" >&2; exit 1
}
for i in 0 1 2; do start_node $i; done
for _ in $(seq 100); do
  grep -q "new metadata leader" "$WORK"/n*.log 2>/dev/null && break
  sleep 0.2
done
sleep 2   # the peers register with the leader
NATS="nats://127.0.0.1:$PORT,127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2))"

echo "== source: orders-like table with $ROWS rows"
orders_live "$SRC" "$ROWS"
psql "$PGBASE/$SRC" -qAtc "CREATE TABLE probe (id bigint PRIMARY KEY, at_ms bigint NOT NULL); ALTER TABLE probe OWNER TO xdb_repl"
for db in xdb_bench_direct xdb_bench_via_log; do mariadb "${MYARGS[@]}" -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db"; done
MY="mysql://xdb:$XDB_MYSQL_PASSWORD@127.0.0.1:$XDB_MYSQL_PORT"
cat > "$WORK/direct.yaml" <<YAML
name: bench_direct
source: { url: "$PGBASE/$SRC", slot: xdb_bench_direct }
target: { url: "$MY/xdb_bench_direct" }
tables: [public.orders, public.probe]
YAML
cat > "$WORK/produce.yaml" <<YAML
name: bench_log
source: { url: "$PGBASE/$SRC", slot: xdb_bench_log }
target: { url: "$NATS?stream=BENCH&replicas=3&schemas=false" }
tables: [public.orders, public.probe]
YAML
cat > "$WORK/consume.yaml" <<YAML
name: bench_log
source: { url: "$NATS?stream=BENCH", validate_url: "$PGBASE/$SRC", slot: to_mariadb }
target: { url: "$MY/xdb_bench_via_log" }
tables: [public.orders, public.probe]
YAML

leg() { # label plan rows
  local t0 t1; t0=$(now)
  "$XDB" sync --plan "$WORK/$2" --until-caught-up >"$WORK/$2.log" 2>&1 || { tail -20 "$WORK/$2.log"; exit 1; }
  t1=$(now)
  printf '  %-34s %8.1f s  %10s rows/s\n' "$1" "$(python3 -c "print($t1-$t0)")" "$(rate "$3" "$(python3 -c "print($t1-$t0)")")"
}

echo "== copy ($ROWS rows)"
leg "direct → MariaDB" direct.yaml "$ROWS"
leg "PostgreSQL → log (R3)" produce.yaml "$ROWS"
leg "log → MariaDB" consume.yaml "$ROWS"

echo "== change backlog ($TXNS transactions: update, insert, delete)"
python3 - "$TXNS" "$ROWS" > "$WORK/load.sql" <<'PY'
import sys
n, rows = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    k = (i * 7919) % rows + 1
    if i % 3 == 0:
        print(f"UPDATE orders SET amount = amount + 1, updated_at = now() WHERE id = {k};")
    elif i % 3 == 1:
        print("INSERT INTO orders (customer_id, title, amount, created_at, updated_at, doc, paid, ref) "
              f"VALUES ({i}, 'new {i}', 1.00, now(), now(), '{{}}', false, md5('{i}')::uuid);")
    else:
        print(f"DELETE FROM orders WHERE id = {k + 1};")
PY
psql "$PGBASE/$SRC" -q -f "$WORK/load.sql" >/dev/null
leg "direct → MariaDB" direct.yaml "$TXNS"
leg "PostgreSQL → log (R3)" produce.yaml "$TXNS"
leg "log → MariaDB" consume.yaml "$TXNS"

echo "== commit-to-visible (probe on PostgreSQL, polled on MariaDB; p50 / p99 / max ms)"
for p in direct.yaml produce.yaml consume.yaml; do
  "$XDB" sync --plan "$WORK/$p" >"$WORK/$p.live.log" 2>&1 &
  PIDS="$PIDS $!"
done
PROBE_BASE=0
insert_probe() {
  PGOPTIONS="-c synchronous_commit=on" psql "$PGBASE/$SRC" -qAtc "INSERT INTO probe VALUES ($((PROBE_BASE + $1)), $2)" >/dev/null
}
seen_in() { [ "$(mariadb "${MYARGS[@]}" -N "$1" -e "SELECT count(*) FROM probe WHERE id = $2")" = 1 ]; }
seen_direct() { seen_in xdb_bench_direct "$((PROBE_BASE + $1))"; }
seen_log() { seen_in xdb_bench_via_log "$((PROBE_BASE + $1))"; }
report() { # label file
  printf '  %-34s %6s / %6s / %6s ms  (%s probes)\n' "$1" "$(pct "$2" 50)" "$(pct "$2" 99)" "$(pct "$2" 100)" "$(wc -l < "$2")"
}
PROBE_BASE=1000000; probe_visible 5 0.2 "$WORK/warm" insert_probe seen_direct seen_log   # all three running
PROBE_BASE=2000000; probe_visible "$SECS" 0.2 "$WORK/idle" insert_probe seen_direct seen_log
echo " idle"
report "direct → MariaDB" "$WORK/idle.1"
report "PostgreSQL → log (R3) → MariaDB" "$WORK/idle.2"
cat > "$WORK/load.pgbench" <<PGB
\set id random(1, $ROWS)
UPDATE orders SET amount = amount + 1, updated_at = now() WHERE id = :id;
INSERT INTO orders (customer_id, title, amount, created_at, updated_at, doc, paid, ref) VALUES (:id, 'load', 1.00, now(), now(), '{}', false, md5(:id::text)::uuid);
PGB
PGOPTIONS="-c synchronous_commit=on" pgbench -n -c 2 -j 2 -R "$RATE" -T "$SECS" -f "$WORK/load.pgbench" "$PGBASE/$SRC" >"$WORK/pgbench.log" 2>&1 &
LOAD=$!
sleep 1
PROBE_BASE=3000000; probe_visible $((SECS - 2)) 0.2 "$WORK/load" insert_probe seen_direct seen_log
wait "$LOAD"
echo " under load: pgbench $(awk '/^tps/ {printf "%.0f TPS", $3}' "$WORK/pgbench.log") (-R $RATE, 2 clients)"
report "direct → MariaDB" "$WORK/load.1"
report "PostgreSQL → log (R3) → MariaDB" "$WORK/load.2"
for p in $PIDS; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
PIDS=""

echo "== validate"
"$XDB" sync --plan "$WORK/direct.yaml" --until-caught-up >/dev/null 2>&1
"$XDB" sync --plan "$WORK/produce.yaml" --until-caught-up >/dev/null 2>&1
"$XDB" sync --plan "$WORK/consume.yaml" --until-caught-up >/dev/null 2>&1
"$XDB" validate --plan "$WORK/direct.yaml" | tail -1
"$XDB" validate --plan "$WORK/consume.yaml" | tail -1
"$XDB" cleanup --plan "$WORK/direct.yaml" --yes >/dev/null 2>&1 || true
psql "$XDB_PG_SUPER_URL" -qAtc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$SRC' AND NOT active" >/dev/null

#!/usr/bin/env bash
# The xdb demo, end to end: a throw-away PostgreSQL source with a small shop
# schema and a writer that keeps changing it, replicated into SQLite (the
# embedded default target) by `xdb sync`; then `xdb validate` and the cutover
# runbook in cutover-plans/pg-to-sqlite.yaml.
#
#   scripts/demo.sh                 XDB_DEMO_SECONDS=20 (how long the writer runs while sync tails)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${XDB_DEMO_SECONDS:-20}

scripts/dev-dbs.sh up
eval "$(scripts/dev-dbs.sh env)"

echo "== building xdb"
cargo build --quiet --bin xdb
xdb="$root/target/debug/xdb"

work=${XDB_DEMO_DIR:-/tmp/xdb-demo}
mkdir -p "$work"
db=xdb_demo_shop
src="${XDB_PG_SUPER_URL%/*}/$db"
echo "== creating the demo source database '$db' (customers, products, orders, order_items)"
psql "$XDB_PG_SUPER_URL" -qAtc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$db'" >/dev/null
psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
psql "$XDB_PG_SUPER_URL" -qAtc "DO \$\$BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_app') THEN
  DROP OWNED BY shop_app; DROP ROLE shop_app; END IF; END\$\$;" >/dev/null
psql "$XDB_PG_SUPER_URL" -qAtc "CREATE DATABASE $db OWNER xdb_repl" >/dev/null
psql "$src" -q -v ON_ERROR_STOP=1 -f scripts/demo/shop.sql >/dev/null
for t in customers products orders order_items; do
  psql "$src" -qAtc "ALTER TABLE $t OWNER TO xdb_repl" >/dev/null
done
# The application's own login: the cutover freezes it, xdb's role keeps going.
psql "$src" -qAtc "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_app') THEN
  CREATE ROLE shop_app LOGIN PASSWORD 'shop-app-pw'; END IF; END\$\$;
  GRANT ALL ON ALL TABLES IN SCHEMA public TO shop_app; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO shop_app;
  GRANT pg_signal_backend TO xdb_repl;" >/dev/null

# xdb's local state (the cutover journal) stays with the demo's other files:
# the source is recreated above, so the last demo's journal is dropped too.
export XDB_STATE_DIR="$work/state"
rm -rf "$XDB_STATE_DIR"
export SOURCE_PASSWORD="$XDB_PG_REPL_PASSWORD"
export DEMO_SOURCE_PORT="$XDB_PG_PORT"
export DEMO_SQLITE="$work/shop.db"
rm -f "$DEMO_SQLITE" "$DEMO_SQLITE"-*
plan=cutover-plans/pg-to-sqlite.yaml

echo "== xdb check --plan $plan"
"$xdb" check --plan "$plan" || { echo "xdb check found problems (see above)"; exit 1; }

app="postgres://shop_app:shop-app-pw@127.0.0.1:$XDB_PG_PORT/$db"
echo "== starting a writer (new orders, status changes, price changes) for ${seconds}s"
touch "$work/writer.run"
( while [ -f "$work/writer.run" ]; do psql "$app" -q -f scripts/demo/writer.sql >/dev/null 2>&1 || true; sleep 0.1; done ) &
writer=$!

stop_all() {
  rm -f "$work/writer.run"
  [ -n "${sync_pid:-}" ] && kill -TERM "$sync_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop_all EXIT

echo "== xdb sync --plan $plan   (copy from one snapshot, then tail; log: $work/sync.log)"
"$xdb" sync --plan "$plan" >"$work/sync.log" 2>&1 &
sync_pid=$!
end=$((SECONDS + seconds))
while [ $SECONDS -lt $end ]; do
  sleep 5
  kill -0 "$sync_pid" 2>/dev/null || { echo "xdb sync stopped:"; tail -20 "$work/sync.log"; exit 1; }
  "$xdb" status --plan "$plan" --log warn 2>&1 | sed -n '1,6p' | sed 's/^/   /'
  echo
done

echo "== xdb validate --plan $plan   (while sync tails and the writer writes)"
"$xdb" validate --plan "$plan" || { echo "validation found differences (see above)"; exit 1; }

echo "== xdb cutover --plan $plan --yes   (the writer is still writing: the runbook freezes it)"
"$xdb" cutover --plan "$plan" --yes || { echo "the cutover stopped (see above); completed steps were rolled back"; exit 1; }

echo "== stopping the writer and sync"
rm -f "$work/writer.run"
wait "$writer" 2>/dev/null || true
kill -TERM "$sync_pid"; wait "$sync_pid" || true; sync_pid=

echo "== row counts, source vs SQLite"
for t in customers products orders order_items; do
  s=$(psql "$src" -qAtc "SELECT count(*) FROM $t")
  d=$(sqlite3 "$DEMO_SQLITE" "SELECT count(*) FROM $t")
  printf '   %-12s source %6s   sqlite %6s\n' "$t" "$s" "$d"
done

cat <<MSG

== done
The SQLite copy of the shop is $DEMO_SQLITE — try:
   sqlite3 $DEMO_SQLITE 'SELECT status, count(*) FROM orders GROUP BY status'
The source is still there, frozen read-only by the cutover:
   psql "postgres://xdb_repl:***@127.0.0.1:$XDB_PG_PORT/$db"
   (to write there again: ALTER DATABASE $db RESET default_transaction_read_only)
Its replication slot xdb_demo_shop_to_sqlite is left in place, inactive: it
keeps WAL on the source until it is dropped. To undo both at once:
   "$xdb" cutover --plan $plan --rollback     (only needed if a run stopped half-way)
   psql "\$XDB_PG_SUPER_URL" -c "ALTER DATABASE $db RESET default_transaction_read_only"
   "$xdb" cleanup --plan $plan --yes          (drops the slot and the publication)
Next: change a row on the source and run \`xdb sync --plan $plan --until-caught-up\`;
      \`xdb status --plan $plan\` shows lag and retained WAL.
Stop the servers with: scripts/dev-dbs.sh down
MSG

#!/usr/bin/env bash
# The xdb demo: a throw-away PostgreSQL source with a small shop schema,
# replicated into SQLite (the embedded default target).
#
# Today xdb's preflight (`xdb check`) is what runs end to end; the copy,
# tail, validation and cutover steps join this script as they are built.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/dev-dbs.sh up
eval "$(scripts/dev-dbs.sh env)"

echo "== building xdb"
cargo build --quiet --bin xdb
xdb="$root/target/debug/xdb"

work=${XDB_DEMO_DIR:-/tmp/xdb-demo}
mkdir -p "$work"
db=xdb_demo_shop
echo "== creating the demo source database '$db' (customers, products, orders, order_items)"
psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
psql "$XDB_PG_SUPER_URL" -qAtc "CREATE DATABASE $db OWNER xdb_repl" >/dev/null
psql "${XDB_PG_SUPER_URL%/*}/$db" -q -v ON_ERROR_STOP=1 -f scripts/demo/shop.sql >/dev/null
psql "${XDB_PG_SUPER_URL%/*}/$db" -qAtc "REASSIGN OWNED BY postgres TO xdb_repl" >/dev/null 2>&1 || true
for t in customers products orders order_items; do
  psql "${XDB_PG_SUPER_URL%/*}/$db" -qAtc "ALTER TABLE $t OWNER TO xdb_repl" >/dev/null
done

export SOURCE_PASSWORD="$XDB_PG_REPL_PASSWORD"
export DEMO_SOURCE_PORT="$XDB_PG_PORT"
export DEMO_SQLITE="$work/shop.db"
plan=cutover-plans/pg-to-sqlite.yaml

echo "== xdb check --plan $plan"
"$xdb" check --plan "$plan" || { echo "xdb check found problems (see above)"; exit 1; }

cat <<MSG

== demo source is ready
PostgreSQL source: psql "postgres://xdb_repl:***@127.0.0.1:$XDB_PG_PORT/$db"
Plan: $plan (target SQLite file: $DEMO_SQLITE)
Next: xdb sync / validate / cutover join this demo as they are built (see README "Status").
Stop the servers with: scripts/dev-dbs.sh down
MSG

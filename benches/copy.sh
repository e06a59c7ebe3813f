#!/usr/bin/env bash
# Bulk-copy throughput: xdb beside the hand-made best case, same table, same
# machine, same run. Prints seconds, rows/s and the ratio xdb/baseline
# (throughput; >= 1.0 means xdb is faster), and xdb's peak RSS.
#
#   benches/copy.sh [ROWS]            default 1,000,000 rows
#   XDB_BENCH_TARGETS="mysql sqlite"  which targets to run (default: mysql sqlite postgres)
#
# Baselines:
#   mysql:    psql \copy (SELECT … with conversions in SQL) TO STDOUT | mariadb LOAD DATA LOCAL INFILE '/dev/stdin'
#   sqlite:   psql \copy … TO STDOUT | sqlite3 .import (TSV)
#   postgres: psql \copy … TO STDOUT | psql \copy … FROM STDIN (pgcopydb when installed)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
ROWS=${1:-1000000}
TARGETS=${XDB_BENCH_TARGETS:-mysql sqlite postgres}

scripts/dev-dbs.sh up >/dev/null
eval "$(scripts/dev-dbs.sh env)"
cargo build --release --quiet --bin xdb
XDB=$(pwd)/target/release/xdb
PGBASE=${XDB_PG_SUPER_URL%/*}
SRC=xdb_bench_src
MYARGS=(--no-defaults -h 127.0.0.1 -P "$XDB_MYSQL_PORT" -u xdb "-p$XDB_MYSQL_PASSWORD")
WORK=$(mktemp -d /tmp/xdb-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

ratio() { python3 -c "import sys; print(f'{float(sys.argv[2])/float(sys.argv[1]):.2f}')" "$1" "$2"; }

echo "== source: orders-like table with $ROWS rows"
orders_static "$SRC" "$ROWS"

SELECT_MYSQL="SELECT id, customer_id, title, amount, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), doc::text, CASE WHEN paid THEN 1 ELSE 0 END, ref::text, note FROM orders"

# Creates the target table exactly as xdb would, for the baseline to load into.
schema_apply() {
  cat > "$WORK/schema.yaml" <<YAML
name: bench
source:
  url: $PGBASE/$SRC
target:
  url: $1
tables: [public.orders]
YAML
  "$XDB" schema --apply --plan "$WORK/schema.yaml" >/dev/null
}

results=()
run_xdb() { # target_url label
  cat > "$WORK/plan.yaml" <<YAML
name: bench
source:
  url: $PGBASE/$SRC
  slot: xdb_bench_$2
  publication: xdb_bench
target:
  url: $1
tables: [public.orders]
YAML
  local t0 t1
  t0=$(now)
  /usr/bin/time -f "%M" -o "$WORK/rss" "$XDB" snapshot --plan "$WORK/plan.yaml" >"$WORK/xdb.log" 2>&1 || { tail -20 "$WORK/xdb.log"; return 1; }
  t1=$(now)
  XDB_SECONDS=$(python3 -c "print($t1-$t0)")
  XDB_RSS_MB=$(( $(cat "$WORK/rss") / 1024 ))
  psql "$PGBASE/$SRC" -qAtc "SELECT pg_drop_replication_slot('xdb_bench_$2')" >/dev/null 2>&1 || true
}

for target in $TARGETS; do
  case $target in
    mysql)
      DB=xdb_bench_my
      # The baseline loads into the very table xdb creates (xdb schema --apply):
      # same types, same json_valid CHECK, same collation; only the data path differs.
      mariadb "${MYARGS[@]}" -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
      schema_apply "mysql://xdb:$XDB_MYSQL_PASSWORD@127.0.0.1:$XDB_MYSQL_PORT/$DB"
      t0=$(now)
      psql "$PGBASE/$SRC" -qAtc "\\copy ($SELECT_MYSQL) TO STDOUT" \
        | mariadb "${MYARGS[@]}" --local-infile=1 "$DB" -e "LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE orders"
      t1=$(now)
      BASE=$(python3 -c "print($t1-$t0)")
      n=$(mariadb "${MYARGS[@]}" -N -e "SELECT COUNT(*) FROM $DB.orders")
      [ "$n" = "$ROWS" ] || { echo "baseline loaded $n rows, expected $ROWS"; exit 1; }
      mariadb "${MYARGS[@]}" -e "DROP DATABASE $DB; CREATE DATABASE $DB"
      label="PostgreSQL → MariaDB"
      url="mysql://xdb:$XDB_MYSQL_PASSWORD@127.0.0.1:$XDB_MYSQL_PORT/$DB"
      ;;
    sqlite)
      rm -f "$WORK/base.db" "$WORK/xdb.db"
      schema_apply "sqlite://$WORK/base.db"
      t0=$(now)
      psql "$PGBASE/$SRC" -qAtc "\\copy ($SELECT_MYSQL) TO STDOUT" > "$WORK/orders.tsv"
      sqlite3 "$WORK/base.db" ".mode tabs" ".import $WORK/orders.tsv orders"
      t1=$(now)
      BASE=$(python3 -c "print($t1-$t0)")
      label="PostgreSQL → SQLite"
      url="sqlite://$WORK/xdb.db"
      ;;
    postgres)
      DB=xdb_bench_pg
      psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
      psql "$XDB_PG_SUPER_URL" -qAtc "CREATE DATABASE $DB OWNER xdb_repl" >/dev/null
      pg_dump -s -t orders "$PGBASE/$SRC" | psql -q "$PGBASE/$DB" >/dev/null
      t0=$(now)
      psql "$PGBASE/$SRC" -qAtc "\\copy orders TO STDOUT (FORMAT binary)" | psql "$PGBASE/$DB" -qAtc "\\copy orders FROM STDIN (FORMAT binary)"
      t1=$(now)
      BASE=$(python3 -c "print($t1-$t0)")
      psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
      psql "$XDB_PG_SUPER_URL" -qAtc "CREATE DATABASE $DB OWNER xdb_repl" >/dev/null
      label="PostgreSQL → PostgreSQL"
      url="$PGBASE/$DB"
      ;;
    *) echo "unknown target $target"; exit 2 ;;
  esac
  echo "== $label: baseline $(printf %.2f "$BASE") s ($(rate "$ROWS" "$BASE") rows/s)"
  if run_xdb "$url" "$target"; then
    echo "== $label: xdb      $(printf %.2f "$XDB_SECONDS") s ($(rate "$ROWS" "$XDB_SECONDS") rows/s), peak RSS $XDB_RSS_MB MiB"
    results+=("$label: xdb/baseline throughput ratio $(ratio "$XDB_SECONDS" "$BASE") (baseline $(printf %.2f "$BASE") s, xdb $(printf %.2f "$XDB_SECONDS") s, RSS $XDB_RSS_MB MiB)")
  else
    results+=("$label: xdb snapshot failed (see above); baseline $(printf %.2f "$BASE") s")
  fi
done
echo
echo "== summary ($ROWS rows)"
printf '%s\n' "${results[@]}"
psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS $SRC WITH (FORCE)" >/dev/null

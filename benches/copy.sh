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

bench_setup bench
SRC=xdb_bench_src

ratio() { python3 -c "import sys; print(f'{float(sys.argv[2])/float(sys.argv[1]):.2f}')" "$1" "$2"; }

echo "== source: orders-like table with $ROWS rows"
orders_static "$SRC" "$ROWS"

results=()
for target in $TARGETS; do
  case $target in
    mysql)
      DB=xdb_bench_my
      hand_mariadb "$SRC" "$DB" "$ROWS"
      label="PostgreSQL → MariaDB"
      url="mysql://xdb:$XDB_MYSQL_PASSWORD@127.0.0.1:$XDB_MYSQL_PORT/$DB"
      ;;
    sqlite)
      rm -f "$WORK/xdb.db"
      hand_sqlite "$SRC" "$WORK/base.db"
      label="PostgreSQL → SQLite"
      url="sqlite://$WORK/xdb.db"
      ;;
    postgres)
      DB=xdb_bench_pg
      pg_fresh_db "$DB"
      pg_dump -s -t orders "$PGBASE/$SRC" | psql -q "$PGBASE/$DB" >/dev/null
      t0=$(now)
      psql "$PGBASE/$SRC" -qAtc "\\copy orders TO STDOUT (FORMAT binary)" | psql "$PGBASE/$DB" -qAtc "\\copy orders FROM STDIN (FORMAT binary)"
      t1=$(now)
      BASE=$(python3 -c "print($t1-$t0)")
      pg_fresh_db "$DB"
      label="PostgreSQL → PostgreSQL"
      url="$PGBASE/$DB"
      ;;
    *) echo "unknown target $target"; exit 2 ;;
  esac
  echo "== $label: baseline $(printf %.2f "$BASE") s ($(rate "$ROWS" "$BASE") rows/s)"
  if xdb_snapshot "$SRC" "$url" "xdb_bench_$target"; then
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

#!/usr/bin/env bash
# Validation cost: `xdb validate` on an orders-like table beside the time to
# simply read the table out of both servers (both reads at once, output
# thrown away), same table, same machine, same run. Prints seconds, rows/s
# and the ratio validate/plain-read (target: at most 1.5), once with no
# differences and once with 10 planted ones (which must all be reported).
#
#   benches/validate.sh [ROWS]        default 1,000,000 rows
#   XDB_BENCH_TARGETS="mysql sqlite"  which targets to run (default: mysql sqlite postgres)
#   XDB_VALIDATE_ARGS="--parallelism 2"  extra arguments for xdb validate
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
ROWS=${1:-1000000}
TARGETS=${XDB_BENCH_TARGETS:-mysql sqlite postgres}
EXTRA=${XDB_VALIDATE_ARGS:-}

bench_setup vbench
SRC=xdb_vbench_src

ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "$1" "$2"; }
secs() { python3 -c "print(f'{$2-$1:.2f}')"; }

echo "== source: orders-like table with $ROWS rows"
orders_static "$SRC" "$ROWS"

results=()
for target in $TARGETS; do
  case $target in
    mysql)
      DB=xdb_vbench_my
      mariadb "${MYARGS[@]}" -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;"
      url="mysql://xdb:$XDB_MYSQL_PASSWORD@127.0.0.1:$XDB_MYSQL_PORT/$DB"
      label="PostgreSQL vs MariaDB"
      read_target() { mariadb "${MYARGS[@]}" --quick -N "$DB" -e "SELECT * FROM orders" >/dev/null; }
      plant() { mariadb "${MYARGS[@]}" "$DB" -e "UPDATE orders SET note = 'planted' WHERE id % ($ROWS / 10) = 7"; }
      ;;
    sqlite)
      rm -f "$WORK/v.db"
      url="sqlite://$WORK/v.db"
      label="PostgreSQL vs SQLite"
      read_target() { sqlite3 "$WORK/v.db" "SELECT * FROM orders" >/dev/null; }
      plant() { sqlite3 "$WORK/v.db" "UPDATE orders SET note = 'planted' WHERE id % ($ROWS / 10) = 7"; }
      ;;
    postgres)
      DB=xdb_vbench_pg
      psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
      psql "$XDB_PG_SUPER_URL" -qAtc "CREATE DATABASE $DB OWNER xdb_repl" >/dev/null
      url="$PGBASE/$DB"
      label="PostgreSQL vs PostgreSQL"
      read_target() { psql "$PGBASE/$DB" -qAtc "\\copy orders TO '/dev/null'"; }
      plant() { psql "$PGBASE/$DB" -qAtc "UPDATE orders SET note = 'planted' WHERE id % ($ROWS / 10) = 7" >/dev/null; }
      ;;
    *) echo "unknown target $target"; exit 2 ;;
  esac
  cat > "$WORK/plan.yaml" <<YAML
name: vbench
source:
  url: $PGBASE/$SRC
  slot: xdb_vbench_$target
  publication: xdb_vbench
target:
  url: $url
tables: [public.orders]
YAML
  "$XDB" snapshot --plan "$WORK/plan.yaml" >"$WORK/copy.log" 2>&1 || { tail -20 "$WORK/copy.log"; exit 1; }
  psql "$PGBASE/$SRC" -qAtc "SELECT pg_drop_replication_slot('xdb_vbench_$target')" >/dev/null 2>&1 || true

  # Plain read of both sides at once.
  t0=$(now)
  psql "$PGBASE/$SRC" -qAtc "\\copy orders TO '/dev/null'" &
  read_target
  wait
  t1=$(now)
  READ=$(secs "$t0" "$t1")

  # shellcheck disable=SC2086
  t0=$(now); set +e; "$XDB" validate --plan "$WORK/plan.yaml" $EXTRA >"$WORK/v0.txt" 2>"$WORK/v0.log"; c0=$?; set -e; t1=$(now)
  V0=$(secs "$t0" "$t1")
  [ "$c0" = 0 ] || { echo "validate (no differences) exited $c0"; tail -20 "$WORK/v0.txt" "$WORK/v0.log"; exit 1; }

  plant
  # shellcheck disable=SC2086
  t0=$(now); set +e; "$XDB" validate --plan "$WORK/plan.yaml" --format json $EXTRA >"$WORK/v1.json" 2>"$WORK/v1.log"; c1=$?; set -e; t1=$(now)
  V1=$(secs "$t0" "$t1")
  found=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tables'][0]['changed_total'])" "$WORK/v1.json" 2>/dev/null || echo "?")
  [ "$c1" = 1 ] && [ "$found" = 10 ] || { echo "validate (10 planted) exited $c1, found $found"; tail -20 "$WORK/v1.log"; exit 1; }

  echo "== $label: plain read of both sides ${READ} s ($(rate "$ROWS" "$READ") rows/s)"
  echo "== $label: validate, equal      ${V0} s ($(rate "$ROWS" "$V0") rows/s), ratio $(ratio "$V0" "$READ")"
  echo "== $label: validate, 10 planted ${V1} s ($(rate "$ROWS" "$V1") rows/s), ratio $(ratio "$V1" "$READ"), found $found"
  results+=("$label: validate/read $(ratio "$V0" "$READ") equal, $(ratio "$V1" "$READ") with 10 planted (read $READ s, validate $V0 s / $V1 s)")

  case $target in
    mysql) mariadb "${MYARGS[@]}" -e "DROP DATABASE IF EXISTS $DB" ;;
    postgres) psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 ;;
  esac
done
echo
echo "== summary ($ROWS rows)"
printf '%s\n' "${results[@]}"
psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS $SRC WITH (FORCE)" >/dev/null

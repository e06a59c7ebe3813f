#!/usr/bin/env bash
# The cost of recomputing stored generated columns on the source (PostgreSQL
# before 18, `mapping.generated: source`): catch-up on a backlog of TXS
# single-row transactions (an UPDATE of `length`, an INSERT in 3 of 10) on a
# table with two generated columns no target computes the same way
# (`round(length / 60.0, 2)`, `md5(note || length)`), against the same load
# on the same table where the load writes those two columns itself (plain
# columns, no recomputation). Same xdb, same target, same run; the
# recomputed run ends with `xdb validate`.
#
#   benches/generated.sh [TXS] [ROWS]      default 20,000 transactions, 50,000 rows
#   XDB_BENCH_TARGETS="sqlite mysql"       (default: sqlite mysql)
#   XDB_BENCH_BIN=target/debug/xdb         (default: a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
TXS=${1:-20000}
ROWS=${2:-50000}
TARGETS=${XDB_BENCH_TARGETS:-sqlite mysql}

bench_setup genbench
SRC=xdb_genbench_src
export PGPW="$XDB_PG_REPL_PASSWORD" MYPW="$XDB_MYSQL_PASSWORD"
q() { psql "$1" -qAtc "$2"; }

source_table() { # $1: generated | plain
  psql "$XDB_PG_SUPER_URL" -qAtc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$SRC'" >/dev/null
  q "$XDB_PG_SUPER_URL" "DROP DATABASE IF EXISTS $SRC WITH (FORCE)" >/dev/null
  q "$XDB_PG_SUPER_URL" "CREATE DATABASE $SRC OWNER xdb_repl" >/dev/null
  if [ "$1" = generated ]; then
    cols="length_hours numeric(8,2) GENERATED ALWAYS AS (round(length / 60.0, 2)) STORED,
          note_md5 text GENERATED ALWAYS AS (md5(note || length::text)) STORED"
    fill="" ; load_set="length = length + 1"; ins_cols="length, note"; ins_vals=":id, 'bench'"
  else
    cols="length_hours numeric(8,2), note_md5 text"
    fill=", length_hours = round(length / 60.0, 2), note_md5 = md5(note || length::text)"
    load_set="length = length + 1, length_hours = round((length + 1) / 60.0, 2), note_md5 = md5(note || (length + 1)::text)"
    ins_cols="length, note, length_hours, note_md5"; ins_vals=":id, 'bench', round(:id / 60.0, 2), md5('bench' || :id::text)"
  fi
  psql "$PGBASE/$SRC" -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE trips (id bigserial PRIMARY KEY, length int NOT NULL, note text NOT NULL, $cols);
INSERT INTO trips (id, length, note) SELECT g, g % 1000, 'note ' || g FROM generate_series(1, $ROWS) g;
UPDATE trips SET length = length $fill;
SELECT setval('trips_id_seq', $ROWS) \\gset
ALTER TABLE trips OWNER TO xdb_repl; ALTER SEQUENCE trips_id_seq OWNER TO xdb_repl;
VACUUM ANALYZE trips;
SQL
  cat > "$WORK/load.sql" <<SQL
\\set id random(1, $ROWS)
\\set r random(1, 10)
BEGIN;
UPDATE trips SET $load_set WHERE id = :id;
INSERT INTO trips ($ins_cols) SELECT $ins_vals WHERE :r <= 3;
END;
SQL
}

for target in $TARGETS; do
  for kind in plain generated; do
    source_table $kind
    case $target in
      sqlite) url="sqlite://$WORK/gen.db"; rm -f "$WORK"/gen.db*; label="SQLite" ;;
      mysql)
        mariadb "${MYARGS[@]}" -e "DROP DATABASE IF EXISTS xdb_genbench; CREATE DATABASE xdb_genbench"
        url="mysql://xdb:\${MYPW}@127.0.0.1:$XDB_MYSQL_PORT/xdb_genbench"; label="MariaDB" ;;
      *) echo "unknown target $target"; exit 2 ;;
    esac
    extra=""
    [ $kind = generated ] && extra=$'mapping:\n  generated: source'
    cat > "$WORK/plan.yaml" <<YAML
name: genbench
source:
  url: postgres://xdb_repl:\${PGPW}@127.0.0.1:$XDB_PG_PORT/$SRC
  slot: xdb_genbench
target:
  url: $url
tables: [public.trips]
$extra
YAML
    "$XDB" snapshot --plan "$WORK/plan.yaml" --log warn >/dev/null
    pgbench -n -c 2 -j 2 -t $((TXS / 2)) -f "$WORK/load.sql" "$PGBASE/$SRC" >/dev/null 2>&1
    changes=$(q "$PGBASE/$SRC" "SELECT $TXS + count(*) FROM trips WHERE note = 'bench'")
    t0=$(now)
    "$XDB" sync --plan "$WORK/plan.yaml" --until-caught-up \
      --log warn,xdb::source::postgres::generated_recompute=debug >/dev/null 2>"$WORK/sync.log"
    secs=$(python3 -c "print(f'{$(now)-$t0:.2f}')")
    echo "$label, $kind columns: $changes row changes ($TXS transactions) caught up in $secs s = $(rate "$changes" "$secs") changes/s"
    if [ $kind = generated ]; then
      # The statements' own time (round trip and evaluation on the source).
      python3 - "$WORK/sync.log" "$secs" <<'PY'
import re, sys
runs = [(int(r), int(u)) for r, u in re.findall(r"rows=(\d+) elapsed_us=(\d+)", open(sys.argv[1]).read())]
rows, us = sum(r for r, _ in runs), sum(u for _, u in runs)
print(f"  recomputation: {len(runs)} statements for {rows} rows, {us / 1e6:.2f} s in all "
      f"({us / max(len(runs), 1) / 1e3:.1f} ms each, {us / max(rows, 1):.1f} us/row, {us / 1e4 / float(sys.argv[2]):.0f} % of the catch-up)")
PY
      "$XDB" validate --plan "$WORK/plan.yaml" --log warn >/dev/null && echo "$label, generated columns: validate equal"
    fi
    "$XDB" cleanup --plan "$WORK/plan.yaml" --yes --log warn >/dev/null || true
  done
done

# Shared by the end-to-end benches (sourced, not run): the orders-like
# source table every bench uses and the small arithmetic helpers.
#
#   orders_static DB ROWS   ROWS rows with fixed timestamps and a nested
#                           jsonb document (copy and validate benches)
#   orders_live DB ROWS     ROWS rows and a sequence after them, for loads that
#                           insert (change-stream benches); drops DB's slots first
#   bench_setup NAME        the dev servers up and their environment, the xdb
#                           to time ($XDB: XDB_BENCH_BIN, or XDB_BIN, else a
#                           release build), PGBASE, MYARGS (the mariadb
#                           client's), WORK (/tmp/xdb-NAME.*, removed on exit
#                           unless the bench sets its own EXIT trap)
#   probe_visible SECS GAP OUT INSERT CHECK...
#                           commit-to-visible probes for SECS seconds, one
#                           every GAP seconds: `INSERT i t_ms` commits probe
#                           row i on the source; each `CHECK i` (one per
#                           target) succeeds once the row is visible there;
#                           the milliseconds per target go to OUT.<k> (k = 1…)

bench_setup() {
  scripts/dev-dbs.sh up >/dev/null
  eval "$(scripts/dev-dbs.sh env)"
  local bin=${XDB_BENCH_BIN:-${XDB_BIN:-}}
  if [ -z "$bin" ]; then
    cargo build --release --quiet --bin xdb
    bin=${CARGO_TARGET_DIR:-$(pwd)/target}/release/xdb
  fi
  XDB=$(realpath "$bin")
  PGBASE=${XDB_PG_SUPER_URL%/*}
  MYARGS=(--no-defaults -h 127.0.0.1 -P "$XDB_MYSQL_PORT" -u xdb "-p$XDB_MYSQL_PASSWORD")
  WORK=$(mktemp -d "/tmp/xdb-$1.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
}

now() { date +%s.%N; }
now_ms() { date +%s%3N; }
rate() { python3 -c "import sys; r,s=float(sys.argv[1]),float(sys.argv[2]); print(f'{r/s:,.0f}')" "$1" "$2"; }
# Percentile $2 of the numbers in file $1.
pct() { python3 -c "
import sys; v=sorted(float(x) for x in open(sys.argv[1]).read().split()) or [0.0]
p=float(sys.argv[2]); print(v[min(len(v)-1, int(round(p/100*(len(v)-1))))])" "$1" "$2"; }

orders_static() {
  local SRC=$1 ROWS=$2
  psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS $SRC WITH (FORCE)" >/dev/null
  psql "$XDB_PG_SUPER_URL" -qAtc "CREATE DATABASE $SRC OWNER xdb_repl" >/dev/null
  psql "$PGBASE/$SRC" -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer_id bigint NOT NULL, title text NOT NULL, amount numeric(12,2) NOT NULL,
  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, doc jsonb NOT NULL, paid boolean NOT NULL,
  ref uuid NOT NULL, note text);
INSERT INTO orders
SELECT g, g % 10007, 'order title ' || g, (g % 100000) / 100.0,
       '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 second',
       '2024-06-01 12:00:00+00'::timestamptz + g * interval '1 second',
       jsonb_build_object('sku', 'SKU-' || (g % 997), 'qty', g % 7, 'tags', jsonb_build_array('a', 'b', g % 3),
                          'address', jsonb_build_object('city', 'City ' || (g % 101), 'zip', lpad((g % 99999)::text, 5, '0'))),
       g % 3 = 0, md5(g::text)::uuid, CASE WHEN g % 4 = 0 THEN NULL ELSE 'note ' || g END
FROM generate_series(1, $ROWS) g;
ALTER TABLE orders OWNER TO xdb_repl;
VACUUM ANALYZE orders;
SQL
}

orders_live() {
  local SRC=$1 ROWS=$2
  psql "$XDB_PG_SUPER_URL" -qAtc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$SRC'" >/dev/null
  psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS $SRC WITH (FORCE)" >/dev/null
  psql "$XDB_PG_SUPER_URL" -qAtc "CREATE DATABASE $SRC OWNER xdb_repl" >/dev/null
  psql "$PGBASE/$SRC" -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE orders (
  id bigserial PRIMARY KEY, customer_id bigint NOT NULL, title text NOT NULL, amount numeric(12,2) NOT NULL,
  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, doc jsonb NOT NULL, paid boolean NOT NULL,
  ref uuid NOT NULL, note text);
INSERT INTO orders
SELECT g, g % 10007, 'order title ' || g, (g % 100000) / 100.0, now(), now(),
       jsonb_build_object('sku', 'SKU-' || (g % 997), 'qty', g % 7), g % 3 = 0, md5(g::text)::uuid, 'note ' || g
FROM generate_series(1, $ROWS) g;
SELECT setval('orders_id_seq', $ROWS) \\gset
ALTER TABLE orders OWNER TO xdb_repl; ALTER SEQUENCE orders_id_seq OWNER TO xdb_repl;
VACUUM ANALYZE orders;
SQL
}

# ---- the copy and its hand-made peers (copy.sh, peers.sh) ----
# They expect PGBASE (the super URL without its database), MYARGS (mariadb
# client arguments), XDB (the binary) and WORK (a scratch directory).

# The orders columns as the hand pipes load them into MySQL/MariaDB and
# SQLite (timestamps as UTC text, booleans as 0/1).
SELECT_FLAT="SELECT id, customer_id, title, amount, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), doc::text, CASE WHEN paid THEN 1 ELSE 0 END, ref::text, note FROM orders"

secs_since() { python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):.3f}')" "$1"; }

# CPU seconds the local dev servers (scripts/dev-dbs.sh, XDB_DEV_DIR) have
# used so far: MariaDB's whole process, and PostgreSQL's exited backends
# (the postmaster's reaped children, so read it after the client is gone).
# Empty when the servers are not local. Where the time goes matters more
# than the wall time on a machine shared with other work: a load bound by
# one server thread takes that thread's CPU time however idle the machine.
mariadb_cpu() {
  local pid; pid=$(cat "${XDB_DEV_DIR:-/nonexistent}/mysql.pid" 2>/dev/null) || return 0
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$pid/stat" 2>/dev/null || true
}
postgres_children_cpu() {
  local pid; pid=$(head -1 "${XDB_DEV_DIR:-/nonexistent}/pg/postmaster.pid" 2>/dev/null) || return 0
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($14 + $15) / hz }' "/proc/$pid/stat" 2>/dev/null || true
}
cpu_since() { [ -n "$1" ] && [ -n "$2" ] && python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f}')" "$1" "$2" || echo "?"; }

# A one-table plan for SRC's orders into TARGET_URL, written to FILE.
orders_plan() { # SRC TARGET_URL SLOT FILE
  cat > "$4" <<YAML
name: bench
source:
  url: $PGBASE/$1
  slot: $3
  publication: $3
target:
  url: $2
tables: [public.orders]
YAML
}

# Creates the target table exactly as xdb would, for a hand pipe to load into.
schema_apply() { # SRC TARGET_URL
  orders_plan "$1" "$2" xdb_bench_schema "$WORK/schema.yaml"
  "$XDB" schema --apply --plan "$WORK/schema.yaml" >/dev/null
}

# `xdb snapshot` of SRC's orders into TARGET_URL, timed: sets XDB_SECONDS,
# XDB_RSS_MB (peak RSS), XDB_CPU (xdb's user + system seconds) and
# XDB_MY_CPU / XDB_PG_CPU (the local servers' CPU seconds meanwhile, "?"
# when not local); drops the slot and publication it made.
xdb_snapshot() { # SRC TARGET_URL SLOT
  local t0 m0 p0 rss user sys
  orders_plan "$1" "$2" "$3" "$WORK/plan.yaml"
  m0=$(mariadb_cpu) p0=$(postgres_children_cpu)
  t0=$(now)
  /usr/bin/time -f "%M %U %S" -o "$WORK/rss" "$XDB" snapshot --plan "$WORK/plan.yaml" >"$WORK/xdb.log" 2>&1 \
    || { tail -20 "$WORK/xdb.log"; return 1; }
  XDB_SECONDS=$(secs_since "$t0")
  XDB_MY_CPU=$(cpu_since "$m0" "$(mariadb_cpu)")
  read -r rss user sys < <(tail -1 "$WORK/rss")
  XDB_RSS_MB=$(( rss / 1024 ))
  XDB_CPU=$(python3 -c "import sys; print(f'{float(sys.argv[1])+float(sys.argv[2]):.2f}')" "$user" "$sys")
  psql "$PGBASE/$1" -qAtc "SELECT pg_drop_replication_slot('$3')" >/dev/null 2>&1 || true
  psql "$PGBASE/$1" -qAtc "DROP PUBLICATION IF EXISTS $3" >/dev/null 2>&1 || true
  XDB_PG_CPU=$(cpu_since "$p0" "$(postgres_children_cpu)")
}

# The hand pipe into MariaDB: psql \copy | LOAD DATA LOCAL INFILE, into the
# table xdb creates (same types, CHECKs, collation); DB is recreated empty
# afterwards. Sets BASE (seconds) and HAND_MY_CPU / HAND_PG_CPU (the local
# servers' CPU seconds meanwhile, "?" when not local).
hand_mariadb() { # SRC DB ROWS
  local t0 n m0 p0 url="mysql://xdb:$XDB_MYSQL_PASSWORD@127.0.0.1:$XDB_MYSQL_PORT/$2"
  mariadb "${MYARGS[@]}" -e "DROP DATABASE IF EXISTS $2; CREATE DATABASE $2"
  schema_apply "$1" "$url"
  m0=$(mariadb_cpu) p0=$(postgres_children_cpu)
  t0=$(now)
  psql "$PGBASE/$1" -qAtc "\\copy ($SELECT_FLAT) TO STDOUT" \
    | mariadb "${MYARGS[@]}" --local-infile=1 "$2" -e "LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE orders"
  BASE=$(secs_since "$t0")
  HAND_MY_CPU=$(cpu_since "$m0" "$(mariadb_cpu)")
  n=$(mariadb "${MYARGS[@]}" -N -e "SELECT COUNT(*) FROM $2.orders")
  HAND_PG_CPU=$(cpu_since "$p0" "$(postgres_children_cpu)")
  [ "$n" = "$3" ] || { echo "hand pipe loaded $n rows, expected $3"; return 1; }
  mariadb "${MYARGS[@]}" -e "DROP DATABASE $2; CREATE DATABASE $2"
}

# The hand pipe into SQLite: psql \copy to a TSV file, sqlite3 .import,
# into FILE (recreated). Sets BASE (seconds).
hand_sqlite() { # SRC FILE
  local t0
  rm -f "$2" "$WORK/orders.tsv"
  schema_apply "$1" "sqlite://$2"
  t0=$(now)
  psql "$PGBASE/$1" -qAtc "\\copy ($SELECT_FLAT) TO STDOUT" > "$WORK/orders.tsv"
  sqlite3 "$2" ".mode tabs" ".import $WORK/orders.tsv orders"
  BASE=$(secs_since "$t0")
  rm -f "$2" "$WORK/orders.tsv"
}

# An empty PostgreSQL database DB owned by xdb_repl.
pg_fresh_db() { # DB
  psql "$XDB_PG_SUPER_URL" -qAtc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1
  psql "$XDB_PG_SUPER_URL" -qAtc "CREATE DATABASE $1 OWNER xdb_repl" >/dev/null
}

probe_visible() {
  local secs=$1 gap=$2 out=$3 insert=$4; shift 4
  local t0 i=0 t k pending
  for k in $(seq $#); do : > "$out.$k"; done
  t0=$(now_ms)
  while [ $(( $(now_ms) - t0 )) -lt $(( secs * 1000 )) ]; do
    i=$((i + 1)); t=$(now_ms)
    "$insert" "$i" "$t"
    pending=$(seq $#)
    while [ -n "$pending" ]; do
      local left=""
      for k in $pending; do
        if "${!k}" "$i"; then echo "$(( $(now_ms) - t ))" >> "$out.$k"; else left="$left $k"; fi
      done
      pending=$left
      [ $(( $(now_ms) - t )) -gt 120000 ] && { echo "probe $i not visible within 120 s" >&2; return 1; }
    done
    sleep "$gap"
  done
}

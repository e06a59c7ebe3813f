#!/usr/bin/env bash
# A throw-away pgbouncer in front of the dev PostgreSQL, for the
# PostgreSQL-upgrade cutover example: the application connects to the
# pgbouncer database "app"; the cutover's traffic switch points "app" at the
# target database with PAUSE / RELOAD / RESUME, so clients never reconnect.
#
#   scripts/pgbouncer.sh up SOURCE_DB APP_USER APP_PASSWORD   start, "app" → SOURCE_DB
#   scripts/pgbouncer.sh switch DB                            point "app" at DB (pause, reload, resume)
#   scripts/pgbouncer.sh current                              the database "app" points at
#   scripts/pgbouncer.sh down                                 stop
#
# Port: $XDB_PGBOUNCER_PORT (default 26432: below the kernel's ephemeral range,
# so a busy test run's outgoing connections cannot already occupy it). Runs as the dev servers' unprivileged user.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV_DIR=${XDB_DEV_DIR:-/tmp/xdb-dev}
DEV_USER=${XDB_DEV_USER:-xdbdev}
PORT=${XDB_PGBOUNCER_PORT:-26432}
DIR=$DEV_DIR/pgbouncer
INI=$DIR/pgbouncer.ini
PG_PORT=${XDB_PG_PORT:-55432}

as_dev() { if [ "$(id -u)" = 0 ]; then runuser -u "$DEV_USER" -- "$@"; else "$@"; fi; }
admin() { psql "host=127.0.0.1 port=$PORT dbname=pgbouncer user=pgbouncer" -qAtc "$1"; }

case ${1:-} in
  up)
    src=$2 user=$3 pw=$4
    [ -x /usr/sbin/pgbouncer ] || { echo "pgbouncer is not installed: run scripts/dev-dbs.sh up (installs it) or apt-get install pgbouncer" >&2; exit 1; }
    mkdir -p "$DIR"
    cat > "$INI" <<INI
[databases]
app = host=127.0.0.1 port=$PG_PORT dbname=$src user=$user password=$pw

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir =
auth_type = trust
auth_file = $DIR/users.txt
admin_users = pgbouncer
pool_mode = session
logfile = $DIR/pgbouncer.log
pidfile = $DIR/pgbouncer.pid
INI
    printf '"%s" ""\n"pgbouncer" ""\n' "$user" > "$DIR/users.txt"
    [ "$(id -u)" = 0 ] && chown -R "$DEV_USER" "$DIR"
    if [ -f "$DIR/pgbouncer.pid" ] && kill -0 "$(cat "$DIR/pgbouncer.pid")" 2>/dev/null; then
      admin "RELOAD" >/dev/null
    else
      as_dev /usr/sbin/pgbouncer -d "$INI"
      for _ in $(seq 1 50); do admin "SHOW VERSION" >/dev/null 2>&1 && break; sleep 0.1; done
      admin "SHOW VERSION" >/dev/null 2>&1 || { echo "pgbouncer did not start:" >&2; tail -5 "$DIR/pgbouncer.log" >&2; exit 1; }
    fi
    echo "pgbouncer: 127.0.0.1:$PORT, database app → $src"
    ;;
  switch)
    db=$2
    admin "PAUSE app" >/dev/null
    sed -i "s/^app = \(.*\)dbname=[^ ]*/app = \1dbname=$db/" "$INI"
    admin "RELOAD" >/dev/null
    admin "RESUME app" >/dev/null
    echo "pgbouncer: database app → $db"
    ;;
  current)
    sed -n 's/^app = .*dbname=\([^ ]*\).*/\1/p' "$INI"
    ;;
  down)
    if [ -f "$DIR/pgbouncer.pid" ]; then kill "$(cat "$DIR/pgbouncer.pid")" 2>/dev/null || true; fi
    rm -f "$DIR/pgbouncer.pid"
    ;;
  *) echo "usage: $0 up SOURCE_DB APP_USER APP_PASSWORD | switch DB | current | down" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Throw-away PostgreSQL (wal_level=logical) and MariaDB (row-based binlog with full
# images, for `xdb sync --reverse`) servers for xdb's tests
# and demo, on loopback ports that do not clash with default installs.
#
#   scripts/dev-dbs.sh up     install what is missing, start both servers (idempotent)
#   scripts/dev-dbs.sh down   stop the servers that `up` started (and nothing else)
#   scripts/dev-dbs.sh env    print the connection URLs as shell exports
#   scripts/dev-dbs.sh status say what is running
#
# Settings (environment): XDB_DEV_DIR (data directories, default /tmp/xdb-dev),
# XDB_PG_PORT (default 55432), XDB_MYSQL_PORT (default 53306),
# XDB_DEV_USER (unprivileged user that runs the servers when invoked as root,
# default xdbdev). initdb refuses to run as root, hence that user.
set -euo pipefail

DEV_DIR=${XDB_DEV_DIR:-/tmp/xdb-dev}
PG_PORT=${XDB_PG_PORT:-55432}
MY_PORT=${XDB_MYSQL_PORT:-53306}
DEV_USER=${XDB_DEV_USER:-xdbdev}
# Throw-away credentials for throw-away servers on loopback only.
PG_SUPER_PASSWORD=xdb-super-pw
PG_REPL_PASSWORD=xdb-repl-pw
MY_PASSWORD=xdb-mysql-pw

PG_DATA=$DEV_DIR/pg
MY_DATA=$DEV_DIR/mysql
MY_SOCK=$DEV_DIR/mysql.sock
MY_PID=$DEV_DIR/mysql.pid

log() { echo "dev-dbs: $*" >&2; }
die() { echo "dev-dbs: error: $*" >&2; exit 1; }

as_dev() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$DEV_USER" -- "$@"
  else
    "$@"
  fi
}

pg_bindir() {
  local d
  for d in /usr/lib/postgresql/17/bin /usr/lib/postgresql/16/bin /usr/lib/postgresql/15/bin \
           /usr/lib/postgresql/14/bin; do
    if [ -x "$d/postgres" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  done
  return 1
}

apt_install() {
  [ "$(id -u)" = 0 ] || die "missing packages ($*) and not root: install them with apt-get install -y $*"
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -f "$DEV_DIR/.apt-updated" ]; then
    log "apt-get update"
    apt-get update -qq >/dev/null
    mkdir -p "$DEV_DIR"; touch "$DEV_DIR/.apt-updated"
  fi
  log "apt-get install -y $*"
  # The packages' own services are not wanted; policy-rc.d keeps them from starting.
  local had_policy=0
  [ -f /usr/sbin/policy-rc.d ] && had_policy=1
  if [ $had_policy = 0 ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi
  apt-get install -y -qq "$@" >/dev/null
  if [ $had_policy = 0 ]; then rm -f /usr/sbin/policy-rc.d; fi
}

install_missing() {
  local pkgs=()
  pg_bindir >/dev/null || pkgs+=(postgresql)
  command -v psql >/dev/null || pkgs+=(postgresql-client)
  { [ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null; } || pkgs+=(mariadb-server)
  command -v mariadb >/dev/null || pkgs+=(mariadb-client)
  command -v sqlite3 >/dev/null || pkgs+=(sqlite3)
  # The TLS tests make a throw-away CA and server certificates.
  command -v openssl >/dev/null || pkgs+=(openssl)
  # The PostgreSQL-upgrade cutover example switches traffic in pgbouncer.
  [ -x /usr/sbin/pgbouncer ] || pkgs+=(pgbouncer)
  # The replicated-log tests (tests/it/log.rs) start a three-node JetStream cluster.
  { [ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null; } || pkgs+=(nats-server)
  if [ ${#pkgs[@]} -gt 0 ]; then apt_install "${pkgs[@]}"; fi
  pg_bindir >/dev/null || die "no PostgreSQL server binaries found under /usr/lib/postgresql/*/bin after install"
  # tests/it/money.rs runs a database with lc_monetary = ja_JP.UTF-8 (yen:
  # no fraction digits); PostgreSQL sees a locale generated after it started
  # only once restarted.
  if ! locale -a 2>/dev/null | grep -qix 'ja_jp.utf8'; then
    [ "$(id -u)" = 0 ] || die "the locale ja_JP.UTF-8 is missing and not root: run localedef -i ja_JP -f UTF-8 ja_JP.UTF-8"
    log "localedef ja_JP.UTF-8"
    localedef -i ja_JP -f UTF-8 ja_JP.UTF-8 || die "localedef ja_JP.UTF-8 failed (install the locales package)"
  fi
}

ensure_user() {
  [ "$(id -u)" = 0 ] || return 0
  if ! id "$DEV_USER" >/dev/null 2>&1; then
    log "creating unprivileged user $DEV_USER"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$DEV_USER"
  fi
  mkdir -p "$DEV_DIR"
  chown "$DEV_USER" "$DEV_DIR"
  chmod 755 "$DEV_DIR"
}

mariadbd_bin() {
  if [ -x /usr/sbin/mariadbd ]; then echo /usr/sbin/mariadbd; else command -v mariadbd; fi
}

pg_running() {
  local bin; bin=$(pg_bindir)
  [ -f "$PG_DATA/PG_VERSION" ] && as_dev "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

my_running() {
  [ -f "$MY_PID" ] && kill -0 "$(cat "$MY_PID")" 2>/dev/null
}

pg_up() {
  local bin; bin=$(pg_bindir)
  if pg_running; then
    # Line 4 of postmaster.pid is the port it listens on.
    local on; on=$(sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true)
    [ "$on" = "$PG_PORT" ] \
      || die "PostgreSQL of $DEV_DIR already runs on port $on, not $PG_PORT: run scripts/dev-dbs.sh down first"
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT"; return 0
  fi
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "initdb $PG_DATA"
    local pwfile="$DEV_DIR/.pgpw"
    echo "$PG_SUPER_PASSWORD" > "$pwfile"; chmod 644 "$pwfile"
    as_dev "$bin/initdb" -D "$PG_DATA" -U postgres --pwfile="$pwfile" --auth-local=trust \
      --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$DEV_DIR/initdb.log" 2>&1 \
      || { cat "$DEV_DIR/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
    cat >> "$PG_DATA/postgresql.conf" <<EOF
# xdb dev/test settings
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$DEV_DIR'
wal_level = logical
max_replication_slots = 100
max_wal_senders = 100
max_connections = 400
fsync = off
full_page_writes = off
synchronous_commit = off
wal_sender_timeout = 60s
logical_decoding_work_mem = 64kB
log_min_messages = warning
EOF
    # Specific auth methods for the auth tests come first; everything else is SCRAM.
    cat > "$PG_DATA/pg_hba.conf" <<EOF
local all         all                     trust
local replication all                     trust
host  all         xdb_trust   127.0.0.1/32 trust
host  replication xdb_trust   127.0.0.1/32 trust
host  all         xdb_md5     127.0.0.1/32 md5
host  replication xdb_md5     127.0.0.1/32 md5
host  all         xdb_clear   127.0.0.1/32 password
host  replication xdb_clear   127.0.0.1/32 password
host  all         all         127.0.0.1/32 scram-sha-256
host  replication all         127.0.0.1/32 scram-sha-256
EOF
  fi
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  # -p: the port asked now, not the one written in postgresql.conf when
  # the data directory was made (XDB_PG_PORT may have changed since).
  as_dev "$bin/pg_ctl" -D "$PG_DATA" -l "$DEV_DIR/postgres.log" -o "-p $PG_PORT" -w -t 60 start >/dev/null \
    || { tail -20 "$DEV_DIR/postgres.log" >&2; die "PostgreSQL did not start"; }
  as_dev psql -h "$DEV_DIR" -p "$PG_PORT" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 >/dev/null <<EOF
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'xdb_repl') THEN
    CREATE ROLE xdb_repl LOGIN REPLICATION CREATEDB PASSWORD '$PG_REPL_PASSWORD';
  END IF;
END \$\$;
EOF
}

my_up() {
  if my_running; then log "MariaDB already running on 127.0.0.1:$MY_PORT"; return 0; fi
  if [ ! -d "$MY_DATA/mysql" ]; then
    log "mariadb-install-db $MY_DATA"
    mkdir -p "$MY_DATA"; [ "$(id -u)" = 0 ] && chown "$DEV_USER" "$MY_DATA"
    # --tmpdir: see below; the bootstrap server cleans its tmpdir too.
    as_dev mariadb-install-db --no-defaults --datadir="$MY_DATA" --tmpdir="$MY_DATA" --auth-root-authentication-method=socket \
      --skip-test-db >"$DEV_DIR/mariadb-install.log" 2>&1 \
      || { cat "$DEV_DIR/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
  fi
  log "starting MariaDB on 127.0.0.1:$MY_PORT"
  local bin; bin=$(mariadbd_bin)
  # --tmpdir: its own; a MariaDB starting deletes every #sql* file in its
  # tmpdir, and /tmp is shared with the servers the tests start.
  as_dev bash -c "nohup '$bin' --no-defaults --datadir='$MY_DATA' --tmpdir='$MY_DATA' --port=$MY_PORT --bind-address=127.0.0.1 \
    --socket='$MY_SOCK' --pid-file='$MY_PID' --local-infile=1 --max-connections=500 \
    --innodb-flush-log-at-trx-commit=2 --innodb-buffer-pool-size=256M --max-allowed-packet=256M \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_bin \
    --server-id=1 --log-bin='$MY_DATA/binlog' --binlog-format=ROW --binlog-row-image=FULL \
    --binlog-expire-logs-seconds=86400 \
    --log-error='$DEV_DIR/mariadb.err' >/dev/null 2>&1 &"
  # mariadb-install-db gives the OS user that runs it (and root) socket authentication.
  local admin=(mariadb --no-defaults -S "$MY_SOCK" -u "$(id -un)")
  local i
  for i in $(seq 1 120); do
    if "${admin[@]}" -e 'SELECT 1' >/dev/null 2>&1; then break; fi
    sleep 0.5
  done
  [ "$i" -lt 120 ] || { tail -20 "$DEV_DIR/mariadb.err" >&2; die "MariaDB did not start"; }
  "${admin[@]}" <<EOF
CREATE USER IF NOT EXISTS 'xdb'@'127.0.0.1' IDENTIFIED BY '$MY_PASSWORD';
CREATE USER IF NOT EXISTS 'xdb'@'localhost' IDENTIFIED BY '$MY_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO 'xdb'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'xdb'@'localhost' WITH GRANT OPTION;
FLUSH PRIVILEGES;
EOF
}

pg_down() {
  local bin
  bin=$(pg_bindir) || return 0
  if pg_running; then
    log "stopping PostgreSQL"
    as_dev "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null || true
  fi
}

my_down() {
  if my_running; then
    log "stopping MariaDB"
    local pid; pid=$(cat "$MY_PID")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
}

print_env() {
  cat <<EOF
export XDB_DEV_DIR='$DEV_DIR'
export XDB_PG_BINDIR='$(pg_bindir || true)'
export XDB_PG_SUPER_URL='postgres://postgres:$PG_SUPER_PASSWORD@127.0.0.1:$PG_PORT/postgres'
export XDB_PG_URL='postgres://xdb_repl:$PG_REPL_PASSWORD@127.0.0.1:$PG_PORT/postgres'
export XDB_MYSQL_URL='mysql://xdb:$MY_PASSWORD@127.0.0.1:$MY_PORT/mysql'
export XDB_PG_HOST=127.0.0.1 XDB_PG_PORT=$PG_PORT XDB_MYSQL_HOST=127.0.0.1 XDB_MYSQL_PORT=$MY_PORT
export XDB_PG_SUPER_PASSWORD='$PG_SUPER_PASSWORD' XDB_PG_REPL_PASSWORD='$PG_REPL_PASSWORD' XDB_MYSQL_PASSWORD='$MY_PASSWORD'
EOF
}

case "${1:-}" in
  up)
    install_missing
    ensure_user
    pg_up
    my_up
    log "ready: PostgreSQL 127.0.0.1:$PG_PORT, MariaDB 127.0.0.1:$MY_PORT (eval \"\$(scripts/dev-dbs.sh env)\")"
    ;;
  down)
    pg_down
    my_down
    ;;
  env)
    print_env
    ;;
  status)
    if pg_running 2>/dev/null; then echo "PostgreSQL: running on 127.0.0.1:$PG_PORT"; else echo "PostgreSQL: stopped"; fi
    if my_running; then echo "MariaDB: running on 127.0.0.1:$MY_PORT"; else echo "MariaDB: stopped"; fi
    ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

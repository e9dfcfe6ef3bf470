#!/usr/bin/env bash
# Starts (or reuses) a private PostgreSQL cluster for tests and benchmarks and prints
# the database URL on stdout. Idempotent: a running cluster is reused.
# Env: ORRERY_PG_DIR (default /var/tmp/orrery-pg), ORRERY_PG_PORT (default 55432).
set -euo pipefail
dir=${ORRERY_PG_DIR:-/var/tmp/orrery-pg}
port=${ORRERY_PG_PORT:-55432}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[[ -n $bindir ]] || { echo "PostgreSQL server binaries not found" >&2; exit 1; }
run() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [[ ! -f $dir/PG_VERSION ]]; then
  mkdir -p "$dir"; [[ $(id -u) == 0 ]] && chown postgres:postgres "$dir"
  run "$bindir/initdb" -D "$dir" -U postgres -A trust -E UTF8 >/dev/null
  cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
CONF
fi
if ! run "$bindir/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
  run "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
fi
psql_() { run psql -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
psql_ -c "SELECT 1 FROM pg_roles WHERE rolname='orrery'" | grep -q 1 ||
  psql_ -c "CREATE ROLE orrery LOGIN PASSWORD 'orrery' SUPERUSER"
psql_ -c "SELECT 1 FROM pg_database WHERE datname='orrery'" | grep -q 1 ||
  psql_ -c "CREATE DATABASE orrery OWNER orrery"
echo "postgresql://orrery:orrery@127.0.0.1:$port/orrery"

#!/usr/bin/env bash
# Starts (or reuses) a private PostgreSQL cluster for tests and benchmarks and prints the
# Manager's database URL on stdout (with --owner: the log owner's URL instead). Idempotent:
# a running cluster is reused.
#
# Every connection, TCP or Unix socket, authenticates with a password (scram-sha-256):
# the superuser `postgres`, the owner `orrery_owner` (owns the database and the schemas;
# creates the log, see commands/logguard.py) and the Manager's role `orrery` (no
# superuser, no CREATEDB: it reads and appends to the log the owner set up for it). The
# passwords are random, made at creation, and kept in the cluster's .pgpass (mode 0600).
# A cluster of the older layout (trust authentication) found in the directory is a
# private test cluster and is made anew.
# Env: ORRERY_PG_DIR (default /var/tmp/orrery-pgauth), ORRERY_PG_PORT (default 55433).
set -euo pipefail
dir=${ORRERY_PG_DIR:-/var/tmp/orrery-pgauth}
port=${ORRERY_PG_PORT:-55433}
want=manager
[[ ${1:-} == --owner ]] && want=owner
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[[ -n $bindir ]] || { echo "PostgreSQL server binaries not found" >&2; exit 1; }
root() { [[ $(id -u) == 0 ]]; }
run() { if root; then runuser -u postgres -- "$@"; else "$@"; fi; }
newpw() { head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32; }
pgpass=$dir/.pgpass

if [[ -f $dir/PG_VERSION ]] && grep -Eq '^[[:space:]]*[^#].*[[:space:]]trust([[:space:]]|$)' "$dir/pg_hba.conf"; then
  echo "dev-postgres: $dir trusts local connections (older layout): making it anew" >&2
  run "$bindir/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
fi
if [[ ! -f $dir/PG_VERSION ]]; then
  mkdir -p "$dir"; chmod 700 "$dir"; root && chown postgres:postgres "$dir"
  su_pw=$(newpw)
  pwfile=$(mktemp); chmod 600 "$pwfile"; printf '%s\n' "$su_pw" >"$pwfile"
  root && chown postgres "$pwfile"
  run "$bindir/initdb" -D "$dir" -U postgres -A scram-sha-256 --pwfile="$pwfile" -E UTF8 >/dev/null
  rm -f "$pwfile"
  cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
password_encryption = scram-sha-256
CONF
  umask 077
  {
    echo "*:$port:*:postgres:$su_pw"
    echo "*:$port:*:orrery_owner:$(newpw)"
    echo "*:$port:*:orrery:$(newpw)"
  } >"$pgpass"
  chmod 600 "$pgpass"; root && chown postgres:postgres "$pgpass"
fi
if ! run "$bindir/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
  run "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
fi
pw() { awk -F: -v r="$1" '$4 == r { print $5 }' "$pgpass"; }
owner_pw=$(pw orrery_owner)
manager_pw=$(pw orrery)
# The statements go on standard input: no password in any process's arguments.
run env PGPASSFILE="$pgpass" PGOPTIONS="-c client_min_messages=warning" \
  psql -h 127.0.0.1 -p "$port" -U postgres -d postgres \
  -v ON_ERROR_STOP=1 -qtA >/dev/null <<SQL
SELECT 'CREATE ROLE orrery_owner' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orrery_owner')
\gexec
SELECT 'CREATE ROLE orrery' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orrery')
\gexec
ALTER ROLE orrery_owner LOGIN NOSUPERUSER NOCREATEROLE PASSWORD '$owner_pw';
ALTER ROLE orrery LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '$manager_pw';
SELECT 'CREATE DATABASE orrery OWNER orrery_owner' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'orrery')
\gexec
GRANT pg_read_all_settings TO orrery_owner;
REVOKE ALL ON DATABASE orrery FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE orrery TO orrery;
SQL
if [[ $want == owner ]]; then
  echo "postgresql://orrery_owner:$owner_pw@127.0.0.1:$port/orrery"
else
  echo "postgresql://orrery:$manager_pw@127.0.0.1:$port/orrery"
fi

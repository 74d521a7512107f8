#!/usr/bin/env bash
# Start a local PostgreSQL for the test suite (Debian packages) and print its SQLAlchemy URL.
# Installs postgresql with apt-get when missing; creates role 'regenheart' and database
# 'regenheart_test' (the tests create and drop their own databases beside it).
set -euo pipefail
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! command -v pg_lsclusters >/dev/null 2>&1; then
  $SUDO apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$version main$"; then
  $SUDO pg_createcluster "$version" main >&2
fi
pg_lsclusters -h | grep -q "^$version *main .* online" || $SUDO pg_ctlcluster "$version" main start >&2
port=$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
as_postgres "psql -p $port -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='regenheart'\"" | grep -q 1 ||
  as_postgres "psql -p $port -qc \"CREATE ROLE regenheart LOGIN CREATEDB PASSWORD 'regenheart'\"" >&2
as_postgres "psql -p $port -qtAc \"SELECT 1 FROM pg_database WHERE datname='regenheart_test'\"" | grep -q 1 ||
  as_postgres "createdb -p $port -O regenheart regenheart_test" >&2
echo "postgresql+psycopg://regenheart:regenheart@127.0.0.1:$port/regenheart_test"

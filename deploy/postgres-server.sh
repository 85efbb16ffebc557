#!/usr/bin/env bash
# A Prefect server backed by PostgreSQL on this machine, in one command:
#
#   deploy/postgres-server.sh --host 127.0.0.1 --port 4200
#
# First run: creates a PostgreSQL cluster (initdb) in $PREFECT_PG_DIR with a `prefect` role and
# database. Every run: starts PostgreSQL on 127.0.0.1:$PREFECT_PG_PORT (TCP only, password auth),
# runs `prefect server start <your arguments>` in the foreground with
# PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://prefect:…@127.0.0.1:<port>/prefect,
# and stops PostgreSQL when the server exits (Ctrl-C, SIGTERM).
#
# Environment (all optional):
#   PREFECT_PG_DIR       cluster (data/), log (postgres.log) and generated password; default
#                        ${PREFECT_HOME:-~/.prefect}/postgres, or /var/lib/prefect/postgres as root
#   PREFECT_PG_PORT      PostgreSQL port on 127.0.0.1 (default 5433)
#   PREFECT_PG_PASSWORD  password of the `prefect` role; default: generated at the first run and
#                        kept in $PREFECT_PG_DIR/password (mode 600). Never printed.
#   PG_BIN               directory holding initdb and pg_ctl (default: PATH, else the newest
#                        /usr/lib/postgresql/<version>/bin)
# initdb and pg_ctl refuse to run as root: as root, they run as the `postgres` user (runuser),
# which owns $PREFECT_PG_DIR. Needs PostgreSQL >= 13 (tested with 15) and asyncpg in the Python
# that runs `prefect` (a Prefect dependency).
set -euo pipefail

die() { echo "postgres-server.sh: $*" >&2; exit 1; }

if [[ -n "${PG_BIN:-}" ]]; then
  pg_bin="$PG_BIN"
elif command -v initdb >/dev/null 2>&1; then
  pg_bin="$(dirname "$(command -v initdb)")"
else
  pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
fi
[[ -n "$pg_bin" && -x "$pg_bin/initdb" && -x "$pg_bin/pg_ctl" ]] ||
  die "PostgreSQL's initdb/pg_ctl not found (set PG_BIN, or install PostgreSQL: apt-get install -y postgresql)"

prefect_bin="$(command -v prefect || true)"
[[ -n "$prefect_bin" ]] || die "prefect is not on PATH (activate the environment dars is installed in)"
python_bin="$(dirname "$prefect_bin")/python"
[[ -x "$python_bin" ]] || python_bin=python3
"$python_bin" -c "import asyncpg" 2>/dev/null ||
  die "asyncpg is not installed in $python_bin (pip install asyncpg; Prefect needs it for PostgreSQL)"

if [[ "$(id -u)" == 0 ]]; then
  default_dir=/var/lib/prefect/postgres
  as_pg() { runuser -u postgres -- "$@"; }
else
  default_dir="${PREFECT_HOME:-$HOME/.prefect}/postgres"
  as_pg() { "$@"; }
fi
dir="${PREFECT_PG_DIR:-$default_dir}"
port="${PREFECT_PG_PORT:-5433}"
data="$dir/data"

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
data="$dir/data"
if [[ "$(id -u)" == 0 ]]; then
  chown postgres: "$dir"
  as_pg test -w "$dir" ||
    die "user postgres cannot write $dir (a parent directory is private?); set PREFECT_PG_DIR to a directory it can reach"
fi

password="${PREFECT_PG_PASSWORD:-}"
if [[ -z "$password" ]]; then
  if [[ ! -s "$dir/password" ]]; then
    (umask 077 && "$python_bin" -c "import secrets; print(secrets.token_hex(16))" >"$dir/password")
  fi
  password="$(<"$dir/password")"
fi

if [[ ! -f "$data/PG_VERSION" ]]; then
  pwfile="$dir/.initdb-password"
  (umask 077 && printf '%s\n' "$password" >"$pwfile")
  [[ "$(id -u)" == 0 ]] && chown postgres: "$pwfile"
  as_pg "$pg_bin/initdb" -D "$data" -U prefect --pwfile="$pwfile" --auth-host=scram-sha-256 \
    --auth-local=scram-sha-256 -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
    { rm -f "$pwfile"; die "initdb failed; see $dir/initdb.log"; }
  rm -f "$pwfile"
fi

stop_postgres() { as_pg "$pg_bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true; }
as_pg "$pg_bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 120 \
  -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null ||
  die "PostgreSQL did not start on 127.0.0.1:$port; see $dir/postgres.log"
trap stop_postgres EXIT

url="postgresql+asyncpg://prefect:${password}@127.0.0.1:${port}/prefect"
# Create the database on first use (the role owns the cluster's `postgres` database to connect to).
PG_URL="$url" "$python_bin" - <<'EOF' || die "cannot create database prefect; see $dir/postgres.log"
import asyncio, os
import asyncpg

async def main() -> None:
    url = os.environ["PG_URL"].replace("postgresql+asyncpg", "postgresql")
    conn = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = 'prefect'"):
            await conn.execute("CREATE DATABASE prefect")
    finally:
        await conn.close()

asyncio.run(main())
EOF

echo "postgres-server.sh: PostgreSQL on 127.0.0.1:$port (data in $data); starting prefect server" >&2
PREFECT_API_DATABASE_CONNECTION_URL="$url" "$prefect_bin" server start "$@" &
server=$!
# Forward Ctrl-C/SIGTERM to the server, wait for it, then the EXIT trap stops PostgreSQL.
trap 'kill -TERM "$server" 2>/dev/null || true' INT TERM
status=0
wait "$server" || status=$?
# `wait` returns early when a trapped signal arrives: wait for the server to be gone.
while kill -0 "$server" 2>/dev/null; do wait "$server" || status=$?; done
exit "$status"

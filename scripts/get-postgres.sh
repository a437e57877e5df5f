#!/usr/bin/env bash
# PostgreSQL 15's server binaries, for the test that runs Prefect's server on PostgreSQL under load.
# Debian installs them under /usr/lib/postgresql/15/bin, off PATH: link initdb, pg_ctl and postgres into
# /usr/local/bin. Idempotent: does nothing when initdb and pg_ctl are already on PATH.
set -euo pipefail
if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "get-postgres: initdb/pg_ctl missing; install Debian's postgresql-15 as root (the load test is skipped)" >&2
  exit 0
fi
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql-15 >/dev/null
fi
for tool in initdb pg_ctl postgres; do ln -sf "/usr/lib/postgresql/15/bin/$tool" "/usr/local/bin/$tool"; done

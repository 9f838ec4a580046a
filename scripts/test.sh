#!/usr/bin/env bash
# Run every test: unit tests and the end-to-end tests against the real binary.
# The noisy-neighbour test compares latencies, so it runs alone after the others.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-guests.sh
# The PostgreSQL backend's conformance test starts a private server (initdb + pg_ctl on
# 127.0.0.1): it needs PostgreSQL's programs, from Debian's packages if missing.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update && apt-get install -y postgresql
  else
    echo "test.sh: PostgreSQL is needed (e.g. apt-get install postgresql)" >&2
    exit 1
  fi
fi
# One command for every crate: built apart, their shared dependencies would be compiled
# twice with different features.
cargo test -p dwell-types -p dwell-storage -p dwell-core -p dwell-storage-postgres \
  -p dwell-executor -p dwell "$@" -- --skip noisy
cargo test -p dwell --test e2e "$@" -- noisy --test-threads 1 --nocapture

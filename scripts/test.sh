#!/usr/bin/env bash
# Run every test: unit tests, the storage conformance suite on redb and on PostgreSQL,
# and the end-to-end tests against the real binary — twice, once on the embedded redb
# store and once on a private PostgreSQL server (started here, stopped at the end).
# The noisy-neighbour tests compare latencies, so they run alone after the others.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-guests.sh
echo "== test.sh: guests built at $SECONDS s"
# PostgreSQL's programs (from Debian's packages if missing) and a private server: the
# backend's conformance test starts its own, the engine's storage-fault test and the
# second end-to-end run use this one.
scripts/pg.sh install
pgdir=$(mktemp -d /tmp/dwell-test-pg.XXXXXX)
stop_pg() { scripts/pg.sh stop "$pgdir" >/dev/null 2>&1 || true; rm -rf "$pgdir"; }
trap stop_pg EXIT
url=$(scripts/pg.sh start "$pgdir")
# One command for every crate: built apart, their shared dependencies would be compiled
# twice with different features.
DWELL_TEST_PG_SERVER=$url cargo test -p dwell-types -p dwell-storage -p dwell-core \
  -p dwell-storage-redb -p dwell-storage-postgres -p dwell-executor -p dwell-tls \
  -p dwell-engine -p dwell-http -p dwell-testkit -p dwell "$@" -- --skip noisy
echo "== test.sh: unit tests and the end-to-end suite on redb done at $SECONDS s"
cargo test -p dwell --test e2e "$@" -- noisy --test-threads 1 --nocapture

echo "== the end-to-end suite on PostgreSQL (at $SECONDS s)"
DWELL_TEST_POSTGRES=$url cargo test -p dwell --test e2e "$@" -- --skip noisy
echo "== test.sh: the noisy tests on PostgreSQL (at $SECONDS s)"
DWELL_TEST_POSTGRES=$url cargo test -p dwell --test e2e "$@" -- noisy --test-threads 1 --nocapture
echo "== test.sh: done at $SECONDS s"

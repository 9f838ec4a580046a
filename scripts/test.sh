#!/usr/bin/env bash
# Run every test: unit tests and the end-to-end tests against the real binary.
# The noisy-neighbour test compares latencies, so it runs alone after the others.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-guests.sh
cargo test -p dwell-types -p dwell-executor "$@"
cargo test -p dwell "$@" -- --skip noisy
cargo test -p dwell --test e2e "$@" -- noisy --test-threads 1 --nocapture

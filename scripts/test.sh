#!/usr/bin/env bash
# Run every test: unit tests and the end-to-end tests against the real binary.
# The noisy-neighbour test compares latencies, so it runs alone after the others.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-guests.sh
# One command for every crate: built apart, their shared dependencies would be compiled
# twice with different features.
cargo test -p dwell-types -p dwell-storage -p dwell-core -p dwell-executor -p dwell "$@" -- --skip noisy
cargo test -p dwell --test e2e "$@" -- noisy --test-threads 1 --nocapture

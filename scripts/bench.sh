#!/usr/bin/env bash
# Build the release server, the benchmark and the guests, then run the benchmark:
#   scripts/bench.sh                     quick run (about a minute)
#   scripts/bench.sh --full              the issue's sizes (many minutes)
#   scripts/bench.sh --only events,sync  some scenarios; `--help` lists every option
# Prints a markdown table and writes target/bench.json (change with --json FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-guests.sh
cargo build --release -p dwell -p dwell-bench --bins
exec target/release/dwell-bench "$@"

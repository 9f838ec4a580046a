#!/usr/bin/env bash
# Build everything and run Dwell on 127.0.0.1:8080 (data in ./data) with the user-facing
# example modules deployed: counter, checkin, payment, trip. Extra arguments go to
# `dwell serve`, e.g. `--allow-http 127.0.0.1:9000 --allow-private-net` to let the
# examples reach fake services on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-guests.sh
cargo build --release -p dwell
deploys=()
for name in counter checkin payment trip; do
  deploys+=(--deploy "$name=target/guests/wasm32-wasip2/guest/$name.wasm")
done
exec target/release/dwell serve "${deploys[@]}" "$@"

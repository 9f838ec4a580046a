#!/usr/bin/env bash
# Build everything and run Dwell on 127.0.0.1:8080 (data in ./data) with every example
# module deployed. Extra arguments go to `dwell serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-guests.sh
cargo build --release -p dwell
deploys=()
for wasm in target/guests/wasm32-wasip2/guest/*.wasm; do
  name=$(basename "$wasm" .wasm)
  deploys+=(--deploy "$name=$wasm")
done
exec target/release/dwell serve "${deploys[@]}" "$@"

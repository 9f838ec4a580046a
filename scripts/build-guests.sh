#!/usr/bin/env bash
# Build the example process modules (Wasm components) into target/guests/wasm32-wasip2/guest/.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
guests=()
for dir in examples/*/; do
  [ -f "$dir/Cargo.toml" ] && guests+=(-p "$(basename "$dir")")
done
cargo build --profile guest --target wasm32-wasip2 --target-dir target/guests "${guests[@]}"

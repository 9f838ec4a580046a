#!/usr/bin/env bash
# Run every test: unit tests and the end-to-end tests against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-guests.sh
cargo test -p dwell "$@"

#!/usr/bin/env bash
# Build the guests, a release `dwell` and `dwell-chaos`, then run the crash loop: the real
# server SIGKILLed many times under mixed load, then every promise checked.
#   scripts/chaos.sh                 20 kills (what CI runs)
#   scripts/chaos.sh --kills 300     a long run; `--help` lists every option
#   scripts/chaos.sh --self-test     a short run with faults put in on purpose, which must
#                                    all be caught (proves the checker is not vacuous)
# Exits non-zero on any violation.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-guests.sh
cargo build --release -p dwell --bin dwell -p chaos
if [ "${1:-}" = "--self-test" ]; then
  shift
  exec target/release/dwell-chaos --kills 4 --inject double,lost,forged-callback "$@"
fi
exec target/release/dwell-chaos "$@"

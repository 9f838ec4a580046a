#!/usr/bin/env bash
# Build the guests, `dwell` and `dwell-chaos`, then run the crash loop: the real server
# SIGKILLed many times under mixed load, then every promise checked.
#   scripts/chaos.sh                 20 kills against a release build
#   scripts/chaos.sh --kills 300     a long run; `--help` lists every option
#   scripts/chaos.sh --self-test     a short run with faults put in on purpose, which must
#                                    all be caught (proves the checker is not vacuous)
# CHAOS_PROFILE=debug uses the debug build (what CI does: the tests built it already).
# Exits non-zero on any violation.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${CHAOS_PROFILE:-release}
scripts/build-guests.sh
if [ "$profile" = release ]; then
  cargo build --release -p dwell --bin dwell -p chaos --bin dwell-chaos
else
  cargo build -p dwell --bin dwell -p chaos --bin dwell-chaos
fi
bin=(target/"$profile"/dwell-chaos --dwell target/"$profile"/dwell)
if [ "${1:-}" = "--self-test" ]; then
  shift
  exec "${bin[@]}" --kills 4 --inject double,lost,forged-callback "$@"
fi
exec "${bin[@]}" "$@"

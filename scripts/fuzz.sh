#!/usr/bin/env bash
# Fuzz: build the cargo-fuzz targets in fuzz/ and run each for a while.
#
#   scripts/fuzz.sh [seconds per target, default 60] [target ...]
#
# Targets: codec, module, store_model (fuzz/README.md says what each checks). A crash or a
# violated property stops the run with an error; libFuzzer's input is then in
# fuzz/artifacts/<target>/ (replay it: cargo fuzz run <target> <file>). What a run finds
# is kept in fuzz/target/corpus/<target>/ for the next run; the seeds in fuzz/corpus/ stay
# as they are. Needs cargo-fuzz (installed if missing) and a nightly compiler: the
# `nightly` toolchain when rustup has it, else stable with RUSTC_BOOTSTRAP=1
# (FUZZ_TOOLCHAIN=stable forces the latter).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(codec module store_model)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
if [ "${FUZZ_TOOLCHAIN:-}" != stable ] && rustup run nightly rustc --version >/dev/null 2>&1; then
  cargo=(cargo +nightly)
else
  echo "fuzz.sh: building with stable and RUSTC_BOOTSTRAP=1 (no nightly toolchain)" >&2
  export RUSTC_BOOTSTRAP=1
  cargo=(cargo)
fi
# No sanitizer: Dwell has no unsafe code, and the targets check properties, not memory
# errors; this keeps builds and runs fast and works the same with stable.
fuzz=("${cargo[@]}" fuzz)
opts=(--fuzz-dir fuzz --sanitizer none)
# FUZZ_QUICK=1 (CI): a development build (fuzz/Cargo.toml: opt-level 1, many codegen
# units) — several times quicker to build from scratch, slower per run, enough for a
# short run of each target. Long runs use the optimised default.
[ "${FUZZ_QUICK:-}" = 1 ] && opts+=(--dev)

# The example components are the module target's best seeds (copied, not committed).
seeds=fuzz/target/seeds/module
mkdir -p "$seeds"
# A quick run leaves them out: each takes seconds to compile, and libFuzzer runs every
# seed before it looks at the clock.
if [ "${FUZZ_QUICK:-}" != 1 ]; then
  if ! compgen -G "target/guests/wasm32-wasip2/guest/*.wasm" >/dev/null; then
    scripts/build-guests.sh
  fi
  cp target/guests/wasm32-wasip2/guest/*.wasm "$seeds"/
fi

# One build for all targets (the runs below find it up to date).
"${fuzz[@]}" build "${opts[@]}"

for t in "${targets[@]}"; do
  work=fuzz/target/corpus/$t
  mkdir -p "$work"
  extra=()
  [ "$t" = module ] && extra=("$seeds")
  echo "== fuzz $t for ${secs}s"
  "${fuzz[@]}" run "${opts[@]}" "$t" "$work" "fuzz/corpus/$t" "${extra[@]}" -- \
    -max_total_time="$secs" -timeout=60 -rss_limit_mb=4096 -print_final_stats=1
done

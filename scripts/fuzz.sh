#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer) of every parser that meets the network, on stable Rust:
# the targets in fuzz/ built with the compiler's coverage instrumentation, in a target
# directory of their own.
#
#   scripts/fuzz.sh TARGET [libFuzzer flags]    one target: bgp arp_ndp bfd gossip_frame gossip_payload
#   scripts/fuzz.sh all [libFuzzer flags]       each in turn
#
# The test command runs `all -max_total_time=5`; the bench `TARGET -runs=100000000`. A crash
# stops the run with the input saved under fuzz/artifacts/TARGET/ and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=(bgp arp_ndp bfd gossip_frame gossip_payload)
target=${1:?usage: scripts/fuzz.sh TARGET|all [libFuzzer flags]}
shift

export CARGO_TARGET_DIR=${FERROLB_FUZZ_TARGET_DIR:-$PWD/target/fuzz}
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# With --target, RUSTFLAGS reach the targets' code only, not build scripts and proc macros
# (which cannot link the coverage hooks), as cargo-fuzz does.
HOST=$(rustc -vV | sed -n 's/^host: //p')
echo "==> building the fuzz targets (instrumented; the first build takes minutes)"
cargo build --release --manifest-path fuzz/Cargo.toml --bins --target "$HOST"

run() {
  local t=$1
  shift
  local corpus=$CARGO_TARGET_DIR/corpus/$t
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  echo "==> fuzzing $t $*"
  "$CARGO_TARGET_DIR/$HOST/release/$t" -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 "$@" "$corpus"
}

if [[ $target == all ]]; then
  for t in "${TARGETS[@]}"; do run "$t" "$@"; done
else
  run "$target" "$@"
fi

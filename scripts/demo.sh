#!/usr/bin/env bash
# The ferrolb demo. Until the network-namespace lab lands, it shows the allocator on an example
# MetalLB configuration: `ferrolb migrate` converts it, `ferrolb plan` shows what the controller
# would assign.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install a Rust toolchain (1.89 or newer) via rustup" >&2
  exit 1
fi
cargo build -q --release -p ferrolb
bin=target/release/ferrolb
echo "==> ferrolb migrate examples/metallb-config.yaml (MetalLB -> ferrolb; notes on stderr)"
"$bin" migrate examples/metallb-config.yaml | sed -n '1,20p'
echo "..."
echo
echo "==> ferrolb plan examples/metallb-config.yaml (what the controller would assign)"
"$bin" plan examples/metallb-config.yaml

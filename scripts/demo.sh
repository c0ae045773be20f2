#!/usr/bin/env bash
# The ferrolb demo: builds ferrolb, starts the lab (testbed/topology.yaml as network
# namespaces: three nodes with speakers, FRR and BIRD routers, clients, fake-apiserver, two
# controllers), applies examples/lab/ and shows each Service's address, who announces it and
# how, and what clients got through it over L2 and over BGP. Then removes the lab.
#   --keep   leave the lab running and print how to reach it (remove it with: testbed down)
# Run as root on Debian/Ubuntu; installs the system packages it needs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# iproute2 builds the namespaces; frr and bird2 are the routers; nftables (libnftables) is
# what the speakers forward with; kubectl applies the examples.
PACKAGES=(iproute2 frr bird2 nftables kubectl)
. scripts/packages.sh
ensure_packages "${PACKAGES[@]}"

# FERROLB_BIN_DIR: use binaries built elsewhere (the test that runs this script does).
if [[ -n "${FERROLB_BIN_DIR:-}" ]]; then
  bin="$FERROLB_BIN_DIR"
else
  if ! command -v cargo >/dev/null; then
    echo "cargo not found: install a Rust toolchain (1.89 or newer) via rustup" >&2
    exit 1
  fi
  echo "==> building (release)"
  cargo build -q --release -p ferrolb -p fake-apiserver -p ferrolb-testbed
  bin=target/release
fi
exec "$bin/testbed" demo --examples examples/lab "$@"

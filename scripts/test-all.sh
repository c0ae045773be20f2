#!/usr/bin/env bash
# Runs every ferrolb test: formatting, lints, unit, property and integration tests.
# Run as root on Debian/Ubuntu; installs the system packages the tests need when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use (real peers, tools). Installed only when missing.
# kubectl drives fake-apiserver in its tests; iproute2 builds the network-namespace labs;
# frr, bird2 and gobgpd are real BGP peers for ferrolb-bgp and the speaker; ping makes a
# client resolve an address in the speaker lab; nftables (nft and libnftables) is what
# ferrolb-dataplane programs and the tests inspect.
# openssl makes the keys and certificates of the lab's real control plane. buildah and
# debootstrap build the image without a registry (scripts/build-image.sh). user-mode-linux (and
# kmod's insmod) boots a kernel with VRF devices for the BGP-in-a-VRF test, which this kernel
# may lack.
PACKAGES=(iproute2 iputils-ping kubectl frr bird2 gobgpd nftables openssl buildah debootstrap user-mode-linux kmod)
. scripts/packages.sh
ensure_packages "${PACKAGES[@]}"
# The Kubernetes schemas (1.30-1.33) the install manifests are validated against, offline.
ensure_pip_tool kubernetes-validate

if ! command -v kubectl >/dev/null; then
  echo "kubectl not found after installing packages" >&2
  exit 1
fi

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install a Rust toolchain (1.89 or newer, with rustfmt and clippy) via rustup" >&2
  exit 1
fi

# The real control plane (kube-apiserver, kube-controller-manager, etcd) for the e2e suite,
# built from Go modules into a cache outside the repository the first time (about 11 minutes
# on 2 cores; then instant). Debian's Go is older than Kubernetes needs; with GOTOOLCHAIN=auto
# it fetches the right toolchain from the module proxy.
if ! command -v go >/dev/null; then
  ensure_packages golang-go
  export GOTOOLCHAIN=auto
fi
echo "==> control plane from Go modules (built once, cached)"
FERROLB_CONTROL_PLANE_BIN=$(bash scripts/build-control-plane.sh)
export FERROLB_CONTROL_PLANE_BIN
# helm (the chart's tests) and promtool (the alerts' tests), from their Go modules, cached.
echo "==> helm and promtool from Go modules (built once, cached)"
FERROLB_TOOLS_BIN=$(bash scripts/build-tools.sh)
export FERROLB_TOOLS_BIN

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test"
cargo test --workspace --all-targets
echo "==> the end-to-end suite again, on kube-apiserver (the suite above ran on fake-apiserver)"
FERROLB_LAB_API=kube-apiserver cargo test -p ferrolb-testbed --test e2e
echo "==> fuzzing: 5 s of each parser that meets the network (BGP, ARP/NDP, BFD, gossip)"
./scripts/fuzz.sh all -max_total_time=5

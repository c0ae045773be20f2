#!/usr/bin/env bash
# Builds the peer load balancers for the side-by-side benchmark from the Go
# module proxy, at pinned versions, into a cache outside the repo:
#
#   ${FERROLB_CACHE:-$HOME/.cache/ferrolb}/peers/metallb-<v>_kube-vip-<v>/bin/
#       metallb-controller  metallb-speaker  kube-vip
#   .../metallb-crds/*.yaml   (config/crd/bases of the same MetalLB version)
#   .../metallb-native.yaml   (its install manifest: the lab takes its RBAC)
#
# MetalLB has no replace or exclude directives in its go.mod, so `go install
# <pkg>@<version>` builds it against its OWN go.mod/go.sum, exactly the
# dependency set upstream tested (the script refuses a version that grows
# them). kube-vip is built from a module of ours that requires it alone
# (testbed/peers/kube-vip), since the proxy refuses its version list; one
# shared module for both would be wrong: MVS would lift MetalLB's k8s.io/*
# (v0.34.x) to kube-vip's (v0.36.x).
#
# go install (not go build -o) is used because it stamps the module version
# into the binary's build info (`go version -m BIN` shows it); each binary is
# installed into a private GOBIN and moved into place only once linked.
#
# Idempotent like build-control-plane.sh: marker .complete is written last; a
# killed build is resumed. Progress on stderr; last stdout line is the bin dir:
#   BIN=$(scripts/build-peers.sh)
# A cold build takes several minutes per binary on 2 cores; on a shared
# machine run it as `nice -n 19 scripts/build-peers.sh`.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Pinned versions (override from the environment only for experiments).
# MetalLB: newest v0.15.x served by the proxy (v0.15.3, 2025-12-04; note the
# proxy's /@v/list omits it but serves its .info/.mod/.zip). kube-vip: v1.2.2
# (2026-07-29); v1.2.3 and v1.1.x/v1.0.1-4 are refused (403) by the proxy.
metallb_version="${METALLB_VERSION:-v0.15.3}"
kube_vip_version="${KUBE_VIP_VERSION:-v1.2.2}"

metallb_mod=go.universe.tf/metallb
kube_vip_mod=github.com/kube-vip/kube-vip

out_dir="${FERROLB_CACHE:-$HOME/.cache/ferrolb}/peers/metallb-${metallb_version}_kube-vip-${kube_vip_version}"
bin_dir="$out_dir/bin"
crd_dir="$out_dir/metallb-crds"
marker="$out_dir/.complete"

if [[ -f $marker && -f $out_dir/metallb-native.yaml ]]; then
  echo "==> peers metallb ${metallb_version} / kube-vip ${kube_vip_version} already built" >&2
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || { echo "build-peers: go not found in PATH" >&2; exit 1; }
mkdir -p "$bin_dir" "$crd_dir"

# Static, stripped, path-independent binaries, as the upstream images build
# them (both Dockerfiles use CGO_ENABLED=0). GOWORK=off: never pick up a
# go.work from the caller's directory. GOTOOLCHAIN=local: fail loudly instead
# of downloading a toolchain if a module's `go` line is newer than ours.
export CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath -buildvcs=false"
cd "$out_dir" # neutral directory: go install pkg@version ignores any module here anyway

go_version=$(go env GOVERSION) # e.g. go1.26.8
go_version=${go_version#go}

# Downloads module@version (zip + go.mod) and checks it can be go-installed.
# Prints the module's source directory in the module cache.
fetch_module() { # module version
  local mod=$1 version=$2 dir gomod need
  echo "==> fetching $mod $version" >&2
  dir=$(go mod download -json "$mod@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  if [[ -z $dir || ! -f $dir/go.mod ]]; then
    echo "build-peers: cannot download $mod@$version from $(go env GOPROXY)" >&2
    exit 1
  fi
  gomod="$dir/go.mod"
  if awk '$1 == "replace" || $1 == "exclude" { found = 1 } END { exit !found }' "$gomod"; then
    echo "build-peers: $mod@$version has replace/exclude directives; go install refuses it." >&2
    echo "build-peers: build it from a wrapper module instead (see testbed/k8s/go.mod)." >&2
    exit 1
  fi
  need=$(awk '$1 == "go" { print $2; exit }' "$gomod")
  if [[ -n $need && $(printf '%s\n%s\n' "$need" "$go_version" | sort -V | head -n1) != "$need" ]]; then
    echo "build-peers: $mod@$version needs go >= $need, have $go_version" >&2
    exit 1
  fi
  echo "$dir"
}

# Commit the proxy recorded for a tag (for the version stamps upstream sets).
origin_hash() { # module version
  go list -m -f '{{with .Origin}}{{.Hash}}{{end}}' "$1@$2"
}

. "$repo/scripts/go-install.sh"

# --- MetalLB -----------------------------------------------------------------
metallb_dir=$(fetch_module "$metallb_mod" "$metallb_version")
metallb_commit=$(origin_hash "$metallb_mod" "$metallb_version")
# Same -X stamps as controller/Dockerfile and speaker/Dockerfile.
metallb_ldflags="-s -w"
metallb_ldflags+=" -X go.universe.tf/metallb/internal/version.gitCommit=${metallb_commit:-unknown}"
metallb_ldflags+=" -X go.universe.tf/metallb/internal/version.gitBranch=${metallb_version}"

go_install_bin metallb-controller "$metallb_mod/controller" "$metallb_version" "$metallb_ldflags"
go_install_bin metallb-speaker "$metallb_mod/speaker" "$metallb_version" "$metallb_ldflags"

# The CRDs, without the kustomize conversion-webhook patch for bgppeers (which
# needs the controller's webhook; the lab runs it with --webhook-mode=disabled).
echo "==> copying MetalLB CRDs ($metallb_version config/crd/bases)" >&2
cp -f "$metallb_dir"/config/crd/bases/*.yaml "$crd_dir/"
chmod u+w "$crd_dir"/*.yaml # the module cache is read-only
# The install manifest, for its ServiceAccounts, Roles and bindings.
cp -f "$metallb_dir"/config/manifests/metallb-native.yaml "$out_dir/"
chmod u+w "$out_dir/metallb-native.yaml"

# --- kube-vip ----------------------------------------------------------------
# Built from testbed/peers/kube-vip, a module that requires kube-vip alone: the proxy
# refuses kube-vip's version list (403), which `go install pkg@version` reads for
# deprecations, while it serves the version itself.
kube_vip_mod_dir="$repo/testbed/peers/kube-vip"
pinned=$(awk -v m="$kube_vip_mod" '$1 == "require" && $2 == m { print $3; exit }' "$kube_vip_mod_dir/go.mod")
if [[ $pinned != "$kube_vip_version" ]]; then
  echo "build-peers: $kube_vip_mod_dir/go.mod pins $pinned, not $kube_vip_version" >&2
  exit 1
fi
fetch_module "$kube_vip_mod" "$kube_vip_version" >/dev/null
kube_vip_commit=$(origin_hash "$kube_vip_mod" "$kube_vip_version")
# Same -X stamps as kube-vip's Makefile (LDFLAGS).
kube_vip_ldflags="-s -w -X main.Version=${kube_vip_version} -X main.Build=${kube_vip_commit:-unknown}"
if [[ -x $bin_dir/kube-vip ]]; then
  echo "==> kube-vip already built" >&2
else
  echo "==> building kube-vip from $kube_vip_mod $kube_vip_version (a few minutes on 2 cores)" >&2
  start=$SECONDS
  (cd "$kube_vip_mod_dir" && go build -ldflags "$kube_vip_ldflags" \
    -o "$out_dir/.kube-vip.partial" "$kube_vip_mod")
  mv -f "$out_dir/.kube-vip.partial" "$bin_dir/kube-vip"
  echo "==> built kube-vip in $((SECONDS - start))s" >&2
fi

# --- check -------------------------------------------------------------------
for name in metallb-controller metallb-speaker kube-vip; do
  go version -m "$bin_dir/$name" | awk -v n="$name" '$1 == "mod" { print "==> " n ": " $2 " " $3 }' >&2
done
"$bin_dir/kube-vip" version >&2 || true

touch "$marker"
echo "==> peers ready in $bin_dir" >&2
echo "$bin_dir"

#!/usr/bin/env bash
# Builds the real Kubernetes control plane (kube-apiserver,
# kube-controller-manager) and etcd from the Go module proxy, at the versions
# pinned in testbed/k8s/go.mod, into a cache outside the repo:
#
#   ${FERROLB_CACHE:-$HOME/.cache/ferrolb}/control-plane/<k8s>-<etcd>/bin/
#
# Idempotent: a finished build (marker file .complete, written last) is reused;
# a killed one is resumed (each binary is moved into place only once linked).
# Progress goes to stderr; the last line on stdout is the bin directory, so
#   BIN=$(scripts/build-control-plane.sh)
# works. Needs only Go (see testbed/k8s/go.mod for the version) and the module
# proxy. A cold build takes tens of minutes on 2 cores; on a shared machine run
# it as `nice -n 19 scripts/build-control-plane.sh`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod_dir="$here/../testbed/k8s"
mod_dir=$(cd "$mod_dir" && pwd)

# Version of a required module, read from go.mod without touching the network.
required_version() {
  awk -v m="$1" '
    $1 == "require" && $2 == m { print $3; exit }
    $1 == m && $2 ~ /^v/ { print $2; exit }
  ' "$mod_dir/go.mod"
}

k8s_version=$(required_version k8s.io/kubernetes)
etcd_version=$(required_version go.etcd.io/etcd/server/v3)
if [[ -z $k8s_version || -z $etcd_version ]]; then
  echo "build-control-plane: cannot read versions from $mod_dir/go.mod" >&2
  exit 1
fi

# Every staging replace must match the Kubernetes version: v1.X.Y -> v0.X.Y.
staging_version="v0.${k8s_version#v1.}"
bad_replaces=$(awk -v want="$staging_version" \
  '$2 == "=>" && $3 ~ /^k8s\.io\// && $4 != want { print $1 " => " $3 " " $4 }' \
  "$mod_dir/go.mod")
if [[ -n $bad_replaces ]]; then
  echo "build-control-plane: replaces in testbed/k8s/go.mod not at $staging_version:" >&2
  echo "$bad_replaces" >&2
  exit 1
fi

out_dir="${FERROLB_CACHE:-$HOME/.cache/ferrolb}/control-plane/${k8s_version}-${etcd_version}"
bin_dir="$out_dir/bin"
marker="$out_dir/.complete"

if [[ -f $marker ]]; then
  echo "==> control plane ${k8s_version} / etcd ${etcd_version} already built" >&2
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || { echo "build-control-plane: go not found in PATH" >&2; exit 1; }
mkdir -p "$bin_dir"

# Static, stripped, path-independent binaries, as the upstream release builds.
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath -buildvcs=false"

cd "$mod_dir"

# The version stamp Kubernetes' hack/lib/version.sh puts in: kube-apiserver
# --version and GET /version (which kubectl compares) read it.
build_date=$(go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
minor=${k8s_version#v1.}
minor=${minor%%.*}
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version"
  k8s_ldflags+=" -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  k8s_ldflags+=" -X $pkg.buildDate=$build_date"
done

build() { # name version package ldflags
  local name=$1 version=$2 pkg=$3 ldflags=$4 start
  if [[ -x $bin_dir/$name ]]; then
    echo "==> $name already built" >&2
    return
  fi
  echo "==> building $name $version (several minutes on 2 cores)" >&2
  start=$SECONDS
  go build -ldflags "$ldflags" -o "$bin_dir/.$name.tmp" "$pkg"
  mv -f "$bin_dir/.$name.tmp" "$bin_dir/$name"
  echo "==> built $name in $((SECONDS - start))s" >&2
}

build kube-apiserver "$k8s_version" k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build kube-controller-manager "$k8s_version" k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build etcd "$etcd_version" ./etcd "-s -w"

for name in kube-apiserver kube-controller-manager etcd; do
  "$bin_dir/$name" --version >&2
done
touch "$marker"
echo "==> control plane ready in $bin_dir" >&2
echo "$bin_dir"

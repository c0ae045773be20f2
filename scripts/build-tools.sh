#!/usr/bin/env bash
# Builds the operator tools the chart and alert tests use, from the Go module proxy at pinned
# versions, into a cache outside the repository:
#
#   ${FERROLB_CACHE:-$HOME/.cache/ferrolb}/tools/helm-<v>_promtool-<v>/bin/{helm,promtool}
#
# Both modules build with `go install pkg@version` against their own go.mod (the script stops
# if a version has replace directives). Idempotent: the marker .complete is written last and a
# killed build is resumed. Progress on stderr; the last stdout line is the bin directory:
#   BIN=$(scripts/build-tools.sh)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

helm_version="${HELM_VERSION:-v3.22.0}"
# Prometheus tags its Go module v0.<minor>.<patch> for release 3.<minor>.<patch>.
prometheus_version="${PROMETHEUS_VERSION:-v0.316.0}"

out_dir="${FERROLB_CACHE:-$HOME/.cache/ferrolb}/tools/helm-${helm_version}_promtool-${prometheus_version}"
bin_dir="$out_dir/bin"
marker="$out_dir/.complete"
if [[ -f $marker ]]; then
  echo "==> helm ${helm_version} / promtool ${prometheus_version} already built" >&2
  echo "$bin_dir"
  exit 0
fi
command -v go >/dev/null || { echo "build-tools: go not found in PATH" >&2; exit 1; }
mkdir -p "$bin_dir"
export CGO_ENABLED=0 GOWORK=off
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath -buildvcs=false"
cd "$out_dir"

. "$repo/scripts/go-install.sh"

# The version stamps helm's Makefile sets, so `helm version` tells the truth.
go_install_bin helm helm.sh/helm/v3/cmd/helm "$helm_version" \
  "-s -w -X helm.sh/helm/v3/internal/version.version=${helm_version}"
go_install_bin promtool github.com/prometheus/prometheus/cmd/promtool "$prometheus_version" "-s -w"

"$bin_dir/helm" version --short >&2
"$bin_dir/promtool" --version 2>&1 | head -n1 >&2 || true
touch "$marker"
echo "==> tools ready in $bin_dir" >&2
echo "$bin_dir"

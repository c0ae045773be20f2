# Sourced by the build scripts: go_install_bin NAME PACKAGE VERSION LDFLAGS installs
# PACKAGE@VERSION as $bin_dir/NAME (skipped when there), through a private GOBIN under
# $out_dir so a killed build never leaves a partial binary in place.
go_install_bin() { # name package version ldflags
  local name=$1 pkg=$2 version=$3 ldflags=$4 start stage
  if [[ -x $bin_dir/$name ]]; then
    echo "==> $name already built" >&2
    return
  fi
  echo "==> building $name from $pkg@$version (a few minutes on 2 cores)" >&2
  start=$SECONDS
  stage="$out_dir/.gobin-$name"
  rm -rf "$stage"
  mkdir -p "$stage"
  GOBIN="$stage" go install -ldflags "$ldflags" "$pkg@$version"
  # go install names the binary after the package's last path element.
  mv -f "$stage/${pkg##*/}" "$bin_dir/$name"
  rm -rf "$stage"
  echo "==> built $name in $((SECONDS - start))s" >&2
}

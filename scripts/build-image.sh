#!/usr/bin/env bash
# Builds ferrolb's image without a registry or a Docker engine: a Debian bookworm base made by
# debootstrap from Debian's archive (the same mirror apt uses), imported with buildah (cached),
# then the Dockerfile's `prebuilt` target with a binary built outside:
#
#   cargo build --release -p ferrolb && scripts/build-image.sh [BINARY]
#
# BINARY defaults to target/release/ferrolb. The image is tagged ${FERROLB_IMAGE:-localhost/ferrolb:dev}
# in buildah's local storage; the last stdout line is its name. Progress on stderr. As root.
# With a registry, `docker build .` (or `buildah bud .`) builds the default target instead,
# compiling in the Rust image.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary=$(realpath "${1:-$repo/target/release/ferrolb}")
image=${FERROLB_IMAGE:-localhost/ferrolb:dev}
base=localhost/ferrolb-base:bookworm
cache="${FERROLB_CACHE:-$HOME/.cache/ferrolb}/image"
[[ -x $binary ]] || { echo "build-image: no binary at $binary (cargo build --release -p ferrolb)" >&2; exit 1; }
command -v buildah >/dev/null || { echo "build-image: buildah not found (apt-get install buildah)" >&2; exit 1; }
# Overlay storage cannot sit on an overlay root (as in a container); vfs always works.
if [[ -z ${STORAGE_DRIVER:-} ]] && [[ $(stat -f -c %T /var/lib 2>/dev/null) == overlayfs ]]; then
  export STORAGE_DRIVER=vfs
fi

if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  rootfs="$cache/bookworm-minbase"
  if [[ ! -f $cache/.rootfs-complete ]]; then
    command -v debootstrap >/dev/null || { echo "build-image: debootstrap not found (apt-get install debootstrap)" >&2; exit 1; }
    mirror=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    echo "==> debootstrap bookworm (minbase) from $mirror (a minute or two)" >&2
    rm -rf "$rootfs"
    mkdir -p "$cache"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >&2
    # As debian:bookworm-slim: no package lists or caches left in the image.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
    touch "$cache/.rootfs-complete"
  fi
  echo "==> importing the base as $base" >&2
  container=$(buildah from scratch)
  mount=$(buildah mount "$container")
  tar -C "$rootfs" -c . | tar -C "$mount" -x
  buildah umount "$container" >/dev/null
  buildah config --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$container"
  buildah commit --rm "$container" "$base" >&2
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/target/release"
cp "$binary" "$context/target/release/ferrolb"
cp "$repo/Dockerfile" "$context/"
echo "==> buildah bud --target prebuilt (base $base)" >&2
# chroot isolation: no OCI runtime needed (podman's crun cannot set its limits here).
buildah bud --isolation chroot --network host --layers --target prebuilt \
  --build-arg BASE_IMAGE="$base" -t "$image" "$context" >&2
echo "==> built $image" >&2
echo "$image"

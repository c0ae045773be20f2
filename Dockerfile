# One image for both roles (`ferrolb controller`, `ferrolb speaker`) and the kubectl plugin.
#   docker build -t registry.example/ferrolb:0.1.0 .
#   (cd manifests && kustomize edit set image ferrolb=registry.example/ferrolb:0.1.0)
# The runtime is Debian slim rather than distroless: the speaker's nftables forwarding loads
# libnftables at run time, which distroless images do not carry. The binary links only glibc
# and libgcc_s besides (a test checks this against the list below).
#
# Without a registry, `scripts/build-image.sh` builds the `prebuilt` target with buildah from a
# Debian base made by debootstrap and a binary built outside (the test command does this).
ARG RUST_IMAGE=rust:1.95-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS runtime
# libnftables1: `ferrolb speaker --forwarding nftables`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libnftables1 \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s ferrolb /usr/local/bin/kubectl-ferrolb
# The controller runs as this user; the speaker's DaemonSet runs it as root with only
# NET_RAW and NET_ADMIN (capabilities are not effective for other users).
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/ferrolb"]

# The runtime with a binary from the build context (target/release/ferrolb).
FROM runtime AS prebuilt
COPY target/release/ferrolb /usr/local/bin/ferrolb

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ferrolb \
 && strip target/release/ferrolb

# The default: the runtime with the binary compiled in the Rust image.
FROM runtime
COPY --from=build /src/target/release/ferrolb /usr/local/bin/ferrolb

#!/usr/bin/env bash
# Build a Debian bookworm base image without any registry: debootstrap a minimal root file system from
# Debian's package mirror and `podman import` it. It stands in for debian:bookworm-slim where no image
# registry is reachable; the Dockerfiles take it through `--build-arg BASE_IMAGE=<tag>`.
#   usage: deploy/docker/base-image.sh [TAG] [MIRROR]
set -euo pipefail
tag="${1:-localhost/flexrl-base:bookworm}"
mirror="${2:-http://deb.debian.org/debian}"
root="$(mktemp -d "${TMPDIR:-/tmp}/flexrl-rootfs.XXXXXX")"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
# The apt sources of the mirror debootstrap used, so `apt-get install` works in the Dockerfiles.
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" >"$root/etc/apt/sources.list"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | podman import --quiet --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "$tag"

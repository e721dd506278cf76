#!/usr/bin/env bash
# Build the training image with podman (base: debootstrap + podman import, no registry) and run flexrl in
# it as Kubernetes would: non-root, read-only root file system, the workspace as a volume.
#   usage: deploy/docker/image-test.sh          (from the repository root, after `make wheelhouse`)
set -euo pipefail
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/docker/containers.conf}"
base="${BASE_IMAGE:-localhost/flexrl-base:bookworm}"
tag="${IMAGE:-localhost/flexrl-train:test}"
podman image exists "$base" || deploy/docker/base-image.sh "$base"
podman build --quiet --format docker -f deploy/docker/Dockerfile --target train --build-arg BASE_IMAGE="$base" \
    -t "$tag" build >/dev/null
ws="$(mktemp -d "${TMPDIR:-/tmp}/flexrl-image-test.XXXXXX")"
trap 'rm -rf "$ws"' EXIT
chown 10001:10001 "$ws"  # the image's user; Kubernetes does this with fsGroup
run() { podman run --rm --read-only --tmpfs /tmp --tmpfs /home/flexrl/.cache -v "$ws:/workspace" "$tag" "$@"; }
run --help | grep -q "commands:"
run train experiment=quick skill.total_steps=512 ppo.n_envs=2 ppo.n_steps=128 ppo.batch_size=128 \
    ppo.eval_every=0 skill.eval_episodes=2 checkpoint_every=256 tracking=none
run eval episodes=2 bar=0
run runs list | tee "$ws/runs.txt"
grep -q finished "$ws/runs.txt"
ls "$ws"/quick/*/checkpoints/reach.zip "$ws"/quick/*/metrics.json >/dev/null
echo "image-test: $tag trained and evaluated in the container; run directories complete"

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
tiny=(experiment=quick skill.total_steps=512 ppo.n_envs=2 ppo.n_steps=128 ppo.batch_size=128 ppo.eval_every=0
      skill.eval_episodes=2 checkpoint_every=256 tracking=none)
# Trial 1 of a 2-point sweep, as a pod of the Indexed Job runs it (its ConfigMap: one file per index).
mkdir "$ws/trials"
printf '%s\n' "${tiny[@]}" ppo.gamma=0.95 >"$ws/trials/0"
printf '%s\n' "${tiny[@]}" ppo.gamma=0.97 >"$ws/trials/1"
run() { podman run --rm --read-only --tmpfs /tmp --tmpfs /home/flexrl/.cache -v "$ws:/workspace" "$tag" "$@"; }
run --help | grep -q "commands:"
run train "${tiny[@]}"
podman run --rm --read-only --tmpfs /tmp --tmpfs /home/flexrl/.cache -v "$ws:/workspace" -e JOB_COMPLETION_INDEX=1 \
    "$tag" k8s trial --trials /workspace/trials --run-root /workspace/quick/sweep-test
grep -q "ppo.gamma=0.97" "$ws/quick/sweep-test/1/meta.json"
run eval episodes=2 bar=0
run runs list | tee "$ws/runs.txt"
grep -q finished "$ws/runs.txt"
ls "$ws"/quick/*/checkpoints/reach.safetensors "$ws"/quick/*/metrics.json "$ws"/quick/sweep-test/1/metrics.json >/dev/null
echo "image-test: $tag trained, ran sweep trial 1 and evaluated in the container; run directories complete"

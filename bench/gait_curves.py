"""A gait run's curves in one PNG: its evaluations (the walk and start bars) and reward terms over training,
and the trained gait's velocity tracking (speed along the command and sideways drift against the commanded
speed, on the exported numpy policy).

    MUJOCO_GL=egl python bench/gait_curves.py RUN [--gait DIR] [--out docs/images/ant_gait.png]
                                              [--speeds 0.2,0.3,...,1.0] [--seed 50000]

``RUN`` is a ``flexrl train skill=locomotion robot=ant`` run directory (``curve.json``, TensorBoard events
under ``tb/``); ``--gait`` the policy to measure (default: the run's ``checkpoints/gait``). Prints the tracking
table it plots.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from flexrl.robots.gait import GaitPolicy
from flexrl.robots.gait_training import evaluate_gait
from flexrl.runs.atomic import atomic_write
from flexrl.runs.tracking import load_curve

TERMS = ("reward/track", "reward/progress", "rollout/ep_len_mean")


def scalars(run: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The training rollouts' curves of a run, as trained.

    Args:
        run: a training run directory; its TensorBoard events lie under ``tb/`` (one folder per process: a
            resumed run has several).

    Returns:
        (steps, values) of each of :data:`TERMS` found. A resumed run trains again the steps after its last
        checkpoint, so an earlier process's points at or after the step where a later one started are dropped.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events: dict[str, list[tuple[float, int, float]]] = {t: [] for t in TERMS}
    for path in (run / "tb").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in set(TERMS) & set(acc.Tags()["scalars"]):
            events[tag] += [(e.wall_time, e.step, e.value) for e in acc.Scalars(tag)]
    out = {}
    for tag, points in events.items():
        kept: list[tuple[int, float]] = []
        for _, step, value in sorted(points):  # in the order they were written
            while kept and kept[-1][0] >= step:  # a resume went back: what came after its checkpoint is stale
                kept.pop()
            kept.append((step, value))
        if kept:
            out[tag] = (np.array([k for k, _ in kept]), np.array([v for _, v in kept]))
    return out


def tracking(gait: GaitPolicy, speeds: list[float], seed: int) -> list[tuple[float, float, float, int, int]]:
    """How a gait tracks each commanded speed.

    Args:
        gait: the exported policy.
        speeds: commanded speeds (m/s).
        seed: the first body's seed.

    Returns:
        (commanded speed, mean speed along it, mean drift, stalled bodies of 96, falls of 108) per speed.
    """
    rows = []
    for s in speeds:
        r = evaluate_gait(gait.act, episodes=108, steps=200, seed=seed, speed=s)
        rows.append((s, float(np.mean(r.along)), float(np.mean(r.drift)), r.stalled, r.falls))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--gait", type=Path, default=None, help="the gait to measure (default: the run's own)")
    p.add_argument("--out", type=Path, default=Path("docs/images/ant_gait.png"))
    p.add_argument("--speeds", default="0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0")
    p.add_argument("--seed", type=int, default=50_000)
    args = p.parse_args()
    try:
        curve = load_curve(args.run)
    except ValueError as err:
        p.error(str(err))
    if not curve:
        p.error(f"{args.run}: no evaluations (curve.json); allowed: a flexrl training run directory")
    try:
        speeds = [float(s) for s in args.speeds.split(",")]
    except ValueError:
        speeds = []
    if not speeds or not all(0 < s <= 1 for s in speeds):
        p.error(f"--speeds {args.speeds!r}: allowed: comma-separated speeds in (0, 1] m/s")
    own = args.run / "checkpoints" / "gait"
    try:
        run_gait = GaitPolicy.load(str(own)) if (own / "gait.json").is_file() else None
        gait = GaitPolicy.load(str(args.gait)) if args.gait else run_gait
    except (FileNotFoundError, ValueError) as err:
        p.error(str(err))
    if gait is None:
        p.error(f"{args.run} has no final gait yet (an interrupted or running run); pass --gait DIR to measure one")
    refined_from = run_gait.meta.get("refined_from") if run_gait else None
    rows = tracking(gait, speeds, args.seed)
    print("| told (m/s) | along (m/s) | drift (m/s) | stalled (of 96) | falls (of 108) |\n|---|---|---|---|---|")
    for s, along, drift, stalled, falls in rows:
        print(f"| {s:g} | {along:.2f} | {drift:.2f} | {stalled} | {falls} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_eval, ax_reward, ax_track) = plt.subplots(1, 3, figsize=(15, 4.2))
    steps = np.array([c["steps"] for c in curve]) / 1e6
    for bar in ("walk", "start"):
        ax_eval.plot(steps, [c["success"].get(bar, np.nan) for c in curve], marker="o", label=f"{bar} bar")
    minutes = [c["wall_seconds"] / 60 for c in curve]
    for x, m in list(zip(steps, minutes))[1::3]:
        ax_eval.annotate(f"{m:.0f} min", (x, 0.03), fontsize=7, ha="center", color="gray")
    ax_eval.set(xlabel="env steps (M)", ylabel="share of headings / bodies", ylim=(-0.02, 1.05),
                title="evaluations during training")
    terms = scalars(args.run)
    for tag, (x, y) in terms.items():
        if tag.startswith("reward/"):
            ax_reward.plot(x / 1e6, y, label=tag.split("/")[1] + " (per step)")
    if "rollout/ep_len_mean" in terms:
        twin = ax_reward.twinx()
        x, y = terms["rollout/ep_len_mean"]
        twin.plot(x / 1e6, y, color="gray", alpha=0.6, label="episode length")
        twin.set_ylabel("mean episode length (steps; falls end them)")
        twin.legend(loc="lower right", fontsize=7)
    ax_reward.set(xlabel="env steps (M)", ylabel="reward term", title="reward terms (training rollouts)")
    for ax in (ax_eval, ax_reward):
        if refined_from:
            ax.axvline(refined_from / 1e6, color="k", ls="--", lw=0.8, label="narrow kernel from here")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
    told = [r[0] for r in rows]
    ax_track.plot([0, 1], [0, 1], color="gray", ls=":", label="perfect tracking")
    ax_track.plot(told, [r[1] for r in rows], marker="o", label="speed along the command")
    ax_track.plot(told, [r[2] for r in rows], marker="s", label="sideways drift")
    ax_track.axhline(0.5, color="tab:red", lw=0.8, ls="--", label="walk bar at 1 m/s (0.5)")
    ax_track.set(xlabel="commanded speed (m/s)", ylabel="m/s", xlim=(0, 1.05), ylim=(0, 1.1),
                 title=f"velocity tracking (96 bodies, seed {args.seed})")
    ax_track.grid(alpha=0.3)
    ax_track.legend(loc="upper left", fontsize=7)
    last = curve[-1]
    measured = f"; tracking of {args.gait}" if args.gait else ""
    fig.suptitle(f"gait run {args.run.name}: {last['steps']:,} steps, {last['wall_seconds'] / 60:.1f} min of training "
                 f"at its last evaluation{measured}")
    fig.tight_layout()
    atomic_write(args.out, lambda tmp: fig.savefig(tmp, format="png", dpi=100), suffix=".png")
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()

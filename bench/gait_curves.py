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
import json
from pathlib import Path

import numpy as np

from flexrl.robots.gait import GaitPolicy
from flexrl.robots.gait_training import evaluate_gait
from flexrl.runs.atomic import atomic_write

TERMS = ("reward/track", "reward/progress", "rollout/ep_len_mean")


def scalars(run: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(steps, values) of each of :data:`TERMS` in the run's TensorBoard events (every event file, in step order)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {t: [] for t in TERMS}
    for events in sorted((run / "tb").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in set(TERMS) & set(acc.Tags()["scalars"]):
            out[tag] += [(e.step, e.value) for e in acc.Scalars(tag)]
    return {t: (np.array([s for s, _ in sorted(v)]), np.array([x for _, x in sorted(v)])) for t, v in out.items() if v}


def tracking(gait: GaitPolicy, speeds: list[float], seed: int) -> list[tuple[float, float, float, int, int]]:
    """(commanded speed, mean speed along it, mean drift, stalled bodies, falls) per speed, 108 bodies each."""
    rows = []
    for s in speeds:
        r = evaluate_gait(gait.act, episodes=108, steps=200, seed=seed, speed=s)
        rows.append((s, float(np.mean(r.along)), float(np.mean(r.drift)), r.stalled, r.falls))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--gait", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("docs/images/ant_gait.png"))
    p.add_argument("--speeds", default="0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0")
    p.add_argument("--seed", type=int, default=50_000)
    args = p.parse_args()
    curve_file = args.run / "curve.json"
    if not curve_file.is_file():
        p.error(f"{args.run}: no curve.json; allowed: a flexrl training run directory")
    try:
        speeds = [float(s) for s in args.speeds.split(",")]
    except ValueError:
        p.error(f"--speeds {args.speeds!r}: allowed: comma-separated speeds in (0, 1] m/s")
    if not all(0 < s <= 1 for s in speeds):
        p.error(f"--speeds {args.speeds!r}: allowed: comma-separated speeds in (0, 1] m/s")
    curve = json.loads(curve_file.read_text())
    gait = GaitPolicy.load(str(args.gait or args.run / "checkpoints" / "gait"))
    refined_from = gait.meta.get("refined_from")
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
                 title=f"velocity tracking, 96 walking bodies (seed {args.seed})")
    ax_track.grid(alpha=0.3)
    ax_track.legend(loc="upper left", fontsize=7)
    fig.suptitle(f"gait run {args.run.name}: {gait.meta.get('steps', 0):,} steps, "
                 f"{gait.meta.get('wall_seconds', 0) / 60:.1f} min of training")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, lambda tmp: fig.savefig(tmp, format="png", dpi=100), suffix=".png")
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()

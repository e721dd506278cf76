"""Aggregate benchmark episodes into per-task and per-category figures; write JSON, markdown and PNG."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from flexrl.bench.evaluate import EpisodeResult
from flexrl.bench.tasks import CATEGORIES
from flexrl.runs.atomic import atomic_write, write_json, write_text


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a success rate (sensible at 0% and 100% too)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _rate(results: list[EpisodeResult]) -> dict[str, Any]:
    k, n = sum(r.success for r in results), len(results)
    lo, hi = wilson(k, n)
    return {"successes": k, "episodes": n, "success": k / n if n else 0.0, "ci95": [round(lo, 4), round(hi, 4)]}


def summarise(planner: str, results: list[EpisodeResult], wall_seconds: float) -> dict[str, Any]:
    """Every figure of one planner's evaluation."""
    by_task: dict[str, list[EpisodeResult]] = defaultdict(list)
    by_cat: dict[str, list[EpisodeResult]] = defaultdict(list)
    for r in results:
        by_task[r.task].append(r)
        by_cat[r.category].append(r)
    latencies = [x for r in results for x in r.latencies_ms] or [0.0]
    reactions = [x for r in results for x in r.reactions]
    decisions = sum(r.decisions for r in results)
    solvable = [r for r in results if r.solvable]
    return {
        "planner": planner,
        "episodes": len(results),
        "wall_seconds": round(wall_seconds, 2),
        "episodes_per_minute": round(60 * len(results) / wall_seconds, 2) if wall_seconds else None,
        "overall": _rate(results),
        "solvable": _rate(solvable),
        "categories": {c: _rate(by_cat[c]) for c in CATEGORIES if c in by_cat},
        "tasks": {t: {"category": rs[0].category, **_rate(rs)} for t, rs in by_task.items()},
        "decisions": decisions,
        "invalid_decisions": sum(r.invalid for r in results),
        "invalid_rate": (sum(r.invalid for r in results) / decisions) if decisions else 0.0,
        "fallbacks": sum(r.fallbacks for r in results),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 2),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 2),
        "reaction_steps_p50": float(np.percentile([x["steps"] for x in reactions], 50)) if reactions else None,
        "reaction_ms_p50": round(float(np.percentile([x["wall_ms"] for x in reactions], 50)), 2) if reactions else None,
        "tokens": sum(r.tokens for r in results),
    }


def markdown(summaries: list[dict[str, Any]]) -> str:
    """The report's tables: categories x planners, then the operational figures."""
    names = [s["planner"] for s in summaries]
    cell = lambda r: f"{100 * r['success']:.0f}% [{100 * r['ci95'][0]:.0f}-{100 * r['ci95'][1]:.0f}]"  # noqa: E731
    lines = ["| category | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for cat in CATEGORIES:
        if all(cat not in s["categories"] for s in summaries):
            continue
        row = [cell(s["categories"][cat]) if cat in s["categories"] else "-" for s in summaries]
        lines.append(f"| {cat} | " + " | ".join(row) + " |")
    lines.append("| **solvable tasks** | " + " | ".join(cell(s["solvable"]) for s in summaries) + " |")
    lines.append("| **all tasks** | " + " | ".join(cell(s["overall"]) for s in summaries) + " |")
    lines += ["", "| planner | episodes | invalid decisions | fallbacks | decision latency p50 / p95 | reaction (steps, ms p50) | tokens | episodes/min |",
              "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        reaction = f"{s['reaction_steps_p50']:.0f}, {s['reaction_ms_p50']:.0f}" if s["reaction_steps_p50"] is not None else "-"
        lines.append(f"| {s['planner']} | {s['episodes']} | {s['invalid_decisions']}/{s['decisions']} | {s['fallbacks']} | "
                     f"{s['latency_ms_p50']:.0f} / {s['latency_ms_p95']:.0f} ms | {reaction} | {s['tokens']} | {s['episodes_per_minute']} |")
    return "\n".join(lines) + "\n"


def plot(summaries: list[dict[str, Any]], path: str | Path) -> Path:
    """Per-category success with 95% intervals, one bar per planner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = [c for c in CATEGORIES if any(c in s["categories"] for s in summaries)]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(cats)), 4))
    width = 0.8 / max(len(summaries), 1)
    for i, s in enumerate(summaries):
        xs = np.arange(len(cats)) + i * width
        rates = [s["categories"].get(c, {"success": 0, "ci95": [0, 0]}) for c in cats]
        ys = [r["success"] for r in rates]
        err = [[y - r["ci95"][0] for y, r in zip(ys, rates)], [r["ci95"][1] - y for y, r in zip(ys, rates)]]
        ax.bar(xs, ys, width, yerr=err, capsize=2, label=s["planner"])
    ax.set_xticks(np.arange(len(cats)) + width * (len(summaries) - 1) / 2, cats, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("episode success (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), suffix=".png")
    plt.close(fig)
    return Path(path)


def write_report(directory: str | Path, summaries: list[dict[str, Any]], episodes: dict[str, list[EpisodeResult]]) -> dict[str, Path]:
    """``report.json`` (summaries and every episode), ``report.md`` and ``success.png`` in ``directory``."""
    directory = Path(directory)
    data = {"summaries": summaries, "episodes": {k: [asdict(r) for r in v] for k, v in episodes.items()}}
    return {
        "json": write_json(directory / "report.json", data),
        "markdown": write_text(directory / "report.md", markdown(summaries)),
        "png": plot(summaries, directory / "success.png"),
    }

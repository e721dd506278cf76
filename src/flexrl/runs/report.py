"""``flexrl runs list|show|compare``: runs as tables, lineage, learning curves in one PNG."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import json

from flexrl.runs.run_dir import RunDir, find_runs
from flexrl.runs.tracking import load_curve


def resolve_run(workspace: str | Path, ref: str) -> RunDir:
    """A run given by its directory or its id (``<run-id>``, ``<sweep>/<trial>`` or ``<experiment>/<run-id>``)."""
    if (Path(ref) / "meta.json").is_file():
        return RunDir.open(ref)
    matches = [r for r in find_runs(workspace)
               if ref in (r.meta.get("id"), f"{r.meta.get('experiment')}/{r.meta.get('id')}")]
    if len(matches) != 1:
        found = "no run" if not matches else f"{len(matches)} runs"
        raise FileNotFoundError(f"{found} with id {ref!r} in {workspace}; `flexrl runs list` shows the ids")
    return matches[0]


def _metrics(run: RunDir) -> dict[str, Any]:
    path = run.path / "metrics.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def _headline(metrics: dict[str, Any]) -> str:
    if "success_min" in metrics:
        return f"success {metrics['success_min']:.0%} @ {metrics.get('steps', '?')} steps"
    if "task_success" in metrics:
        return f"task {'ok' if metrics['task_success'] else 'failed'}, {metrics.get('decisions', '?')} decisions"
    if "success" in metrics and isinstance(metrics["success"], dict):
        return "success " + ", ".join(f"{k} {v:.0%}" for k, v in metrics["success"].items())
    return "-"


def _duration(meta: dict[str, Any]) -> str:
    if not meta.get("start"):
        return "-"
    seconds = (meta.get("end") or time.time()) - meta["start"]
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain-text table with aligned columns."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def list_runs(workspace: str | Path, experiment: str | None = None) -> str:
    """Every run (or one experiment's) as a table, oldest first."""
    runs = [r for r in find_runs(workspace) if experiment in (None, r.meta.get("experiment"))]
    if not runs:
        return f"no runs in {workspace}"
    rows = [[r.meta.get("experiment", "?"), r.meta.get("id", r.path.name), r.meta.get("kind", "-"), r.status(),
             str(r.meta.get("seed", "-")), time.strftime("%Y-%m-%d %H:%M", time.localtime(r.meta.get("start", 0))),
             _duration(r.meta), _headline(_metrics(r))] for r in runs]
    return table(rows, ["experiment", "id", "kind", "status", "seed", "start", "duration", "result"])


def lineage(workspace: str | Path, run: RunDir) -> list[RunDir]:
    """The run and its ancestors (``parent`` links), newest first; stops at a missing or repeated parent."""
    chain, seen = [run], {str(run.path.resolve())}
    while chain[-1].meta.get("parent"):
        try:
            parent = resolve_run(workspace, chain[-1].meta["parent"])
        except FileNotFoundError:
            break
        if str(parent.path.resolve()) in seen:
            break
        seen.add(str(parent.path.resolve()))
        chain.append(parent)
    return chain


def show_run(workspace: str | Path, ref: str) -> str:
    """One run: metadata, resumptions, lineage, final metrics."""
    run = resolve_run(workspace, ref)
    m = run.meta
    git = m.get("git") or {}
    lines = [
        f"run        {m.get('experiment')}/{m.get('id')}  ({run.path})",
        f"kind       {m.get('kind', '-')}",
        f"status     {run.status()}",
        f"command    {' '.join(m.get('command') or [])}",
        f"git        {git.get('commit') or '-'}{' (dirty)' if git.get('dirty') else ''}",
        f"seed       {m.get('seed')}   host {m.get('host')}   duration {_duration(m)}",
        "versions   " + ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items()),
    ]
    for r in m.get("resumes", []):
        lines.append(f"resumed    {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r['time']))} "
                     f"(was {r['previous_status']}) from step {m.get('resumed_from_step', '?')}")
    chain = lineage(workspace, run)
    lines.append("lineage    " + " <- ".join(f"{r.meta.get('experiment')}/{r.meta.get('id')}" for r in chain))
    metrics = _metrics(run)
    if metrics:
        lines.append("metrics    " + json.dumps({k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}))
        if isinstance(metrics.get("success"), dict):
            lines.append("success    " + ", ".join(f"{k} {v:.1%}" for k, v in metrics["success"].items()))
    return "\n".join(lines)


def compare_runs(workspace: str | Path, refs: list[str], png: str | Path | None = None) -> str:
    """Final metrics side by side; with ``png``, the runs' learning curves in one plot."""
    runs = [resolve_run(workspace, ref) for ref in refs]
    keys = ["steps", "wall_seconds", "success_min", "objective"]
    rows = []
    for r in runs:
        metrics = _metrics(r)
        rows.append([f"{r.meta.get('experiment')}/{r.meta.get('id')}", r.status(), *(str(metrics.get(k, "-")) for k in keys)])
    text = table(rows, ["run", "status", *keys])
    if png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from flexrl.runs.atomic import atomic_write

        fig, ax = plt.subplots(figsize=(7, 4))
        for r in runs:
            curve = load_curve(r.path)
            if curve:
                ax.plot([p["steps"] for p in curve], [min(p["success"].values()) for p in curve], marker="o",
                        label=f"{r.meta.get('experiment')}/{r.meta.get('id')}")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("lowest skill success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        atomic_write(png, lambda tmp: fig.savefig(tmp, format="png", dpi=110), suffix=".png")
        plt.close(fig)
        text += f"\nlearning curves: {png}"
    return text

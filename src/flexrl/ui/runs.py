"""The runs browser's reading side: every run in a workspace, one run's files, and a file inside a run.

Only files inside the workspace are read (a path that leaves it is refused), JSON and YAML are parsed with
safe loaders, and nothing read here executes code.
"""

from __future__ import annotations

import json
from pathlib import Path

from flexrl.runs.run_dir import RunDir, find_runs

FILE_TYPES = {".mp4": "video/mp4", ".gif": "image/gif", ".png": "image/png", ".json": "application/json",
              ".jsonl": "application/x-ndjson", ".md": "text/markdown", ".yaml": "text/yaml", ".txt": "text/plain",
              ".log": "text/plain", ".csv": "text/csv"}
"""What a run's files may be served as; other files are not served."""
MAX_EVENTS = 400


def _relative(run: RunDir, workspace: Path) -> str:
    return run.path.resolve().relative_to(workspace.resolve()).as_posix()


def list_runs(workspace: str | Path) -> list[dict]:
    """Every run under ``workspace``, newest first: id, path (relative), experiment, kind, status, times."""
    workspace = Path(workspace)
    if not workspace.is_dir():
        return []
    out = []
    for run in reversed(find_runs(workspace)):
        m = run.meta
        out.append({"path": _relative(run, workspace), "id": m.get("id"), "experiment": m.get("experiment"),
                    "kind": m.get("kind") or "train", "status": run.status(), "start": m.get("start"),
                    "end": m.get("end"), "planner": m.get("planner"), "tags": m.get("tags") or []})
    return out


def run_path(workspace: str | Path, relative: str) -> Path:
    """The directory of the run at ``relative`` inside ``workspace``.

    Raises:
        ValueError: one line, when the path leaves the workspace or holds no run.
    """
    root = Path(workspace).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not (path / "meta.json").is_file():
        raise ValueError(f"run {relative[:80]!r}; allowed: a run's path inside the workspace (see /api/runs)")
    return path


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _text(path: Path, limit: int = 200_000) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:limit] if path.is_file() else None
    except OSError:
        return None


def run_detail(workspace: str | Path, relative: str) -> dict:
    """One run's meta, config, metrics, learning curve, benchmark report, last events and media files."""
    path = run_path(workspace, relative)
    events = []
    log = path / "events.jsonl"
    if log.is_file():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines()[-MAX_EVENTS:]:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                   if p.is_file() and p.suffix in FILE_TYPES and len(p.relative_to(path).parts) <= 3)
    return {"path": relative, "meta": RunDir.open(path).meta, "config": _text(path / "config.yaml"),
            "metrics": _json(path / "metrics.json"), "curve": _json(path / "curve.json"),
            "report": _json(path / "report.json"), "report_md": _text(path / "report.md"), "events": events,
            "files": files}


def run_file(workspace: str | Path, relative: str, name: str) -> tuple[Path, str]:
    """(path, media type) of file ``name`` of the run at ``relative``.

    Raises:
        ValueError: one line, when the file leaves the run, does not exist or is not of a served type.
    """
    root = run_path(workspace, relative)
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file() or path.suffix not in FILE_TYPES:
        raise ValueError(f"file {name[:80]!r}; allowed: a file of the run of type {', '.join(FILE_TYPES)}")
    return path, FILE_TYPES[path.suffix]

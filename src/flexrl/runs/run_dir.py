"""Run directories: ``<workspace>/<experiment>/<run-id>/`` with ``meta.json`` kept current."""

from __future__ import annotations

import os
import platform
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexrl import __version__
from flexrl.runs.atomic import write_json

STATUSES = ("running", "finished", "failed", "interrupted")


def _git_state() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if commit.returncode:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "flexrl": __version__}
    for pkg in ("torch", "mujoco", "gymnasium", "stable-baselines3", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


@dataclass
class RunDir:
    """One run's directory and metadata.

    Attributes:
        path: the directory.
        meta: the content of ``meta.json``; call :meth:`save_meta` after changing it.
    """

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, workspace: str | Path, experiment: str, seed: int, parent: str | None = None) -> "RunDir":
        """Make a fresh run directory with ``meta.json`` (status "running")."""
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        path = Path(workspace) / experiment / run_id
        path.mkdir(parents=True)
        meta = {
            "id": run_id, "experiment": experiment, "parent": parent, "command": sys.argv,
            "git": _git_state(), "versions": _versions(), "seed": seed, "host": socket.gethostname(),
            "pid": os.getpid(), "start": time.time(), "end": None, "status": "running",
        }
        run = cls(path, meta)
        run.save_meta()
        return run

    def save_meta(self) -> None:
        """Write ``meta.json`` atomically."""
        write_json(self.path / "meta.json", self.meta)

    def finish(self, status: str) -> None:
        """Record the final status and end time."""
        if status not in STATUSES:
            raise ValueError(f"status={status!r}; allowed: {', '.join(STATUSES)}")
        self.meta.update(status=status, end=time.time())
        self.save_meta()

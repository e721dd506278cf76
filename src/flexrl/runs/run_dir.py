"""Run directories: ``<workspace>/<experiment>/<run-id>/`` with ``meta.json`` kept current.

``meta.json`` records what is needed to reproduce and judge a run: id, parent run, command, git commit
and dirty flag, package versions, seed, host, pid, start/end and status. Every write is atomic, and
:func:`recorded_status` turns a crash, Ctrl-C or SIGTERM into a recorded status. A SIGKILL cannot be
caught: such a run keeps "running" in its file, and :meth:`RunDir.status` reports it as "killed" once
its process is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from flexrl import __version__
from flexrl.runs.atomic import write_json

STATUSES = ("running", "finished", "failed", "interrupted")
META = "meta.json"


def new_run_id() -> str:
    """A sortable, collision-safe run id: ``YYYYmmdd-HHMMSS-<6 hex>``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


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
    for pkg in ("torch", "mujoco", "gymnasium", "stable-baselines3", "transformers", "hydra-core"):
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
    def create(
        cls,
        path: str | Path,
        experiment: str,
        seed: int,
        parent: str | None = None,
        command: list[str] | None = None,
        run_id: str | None = None,
        **extra: Any,
    ) -> "RunDir":
        """Start a run at ``path`` (which may exist, e.g. made by Hydra, but must hold no run yet).

        ``run_id`` defaults to the directory name; sweep trials use ``<sweep>/<trial>``.
        """
        path = Path(path)
        if (path / META).exists():
            raise FileExistsError(f"{path} already holds a run; resume it or choose another directory")
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "id": run_id or path.name, "experiment": experiment, "parent": parent, "command": command or sys.argv,
            "git": _git_state(), "versions": _versions(), "seed": seed, "host": socket.gethostname(),
            "pid": os.getpid(), "start": time.time(), "end": None, "status": "running", **extra,
        }
        run = cls(path, meta)
        run.save_meta()
        return run

    @classmethod
    def new(cls, workspace: str | Path, experiment: str, seed: int, **kwargs: Any) -> "RunDir":
        """Start a run in a fresh ``<workspace>/<experiment>/<run-id>``."""
        return cls.create(Path(workspace) / experiment / new_run_id(), experiment, seed, **kwargs)

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """Open an existing run; FileNotFoundError (one line) when ``path`` holds none."""
        path = Path(path)
        if not (path / META).is_file():
            raise FileNotFoundError(f"no run at {path} (no {META}); `flexrl runs list` shows the runs")
        try:
            meta = json.loads((path / META).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path / META} is not valid JSON ({str(err).splitlines()[0]}); the run cannot be opened") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{path / META} holds a {type(meta).__name__}, not a run's metadata object")
        return cls(path, meta)

    def save_meta(self) -> None:
        """Write ``meta.json`` atomically."""
        write_json(self.path / META, self.meta)

    def reopen(self, command: list[str] | None = None) -> None:
        """Mark a resumed run as running again, in this process, and count the resumption."""
        self.meta.setdefault("resumes", []).append({"time": time.time(), "previous_status": self.status(),
                                                     "command": command or sys.argv})
        self.meta.update(status="running", end=None, pid=os.getpid(), host=socket.gethostname())
        self.save_meta()

    def finish(self, status: str) -> None:
        """Record the final status and end time."""
        if status not in STATUSES:
            raise ValueError(f"status={status!r}; allowed: {', '.join(STATUSES)}")
        self.meta.update(status=status, end=time.time())
        self.save_meta()

    def status(self) -> str:
        """The recorded status, or "killed" for a "running" run whose process on this host is gone."""
        status = self.meta.get("status", "unknown")
        if status == "running" and self.meta.get("host") == socket.gethostname() and not _alive(self.meta.get("pid")):
            return "killed"
        return status


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def recorded_status(run: RunDir) -> Iterator[RunDir]:
    """Run the body and record how it ended: finished, interrupted (Ctrl-C, SIGTERM) or failed.

    SIGTERM is turned into KeyboardInterrupt while the body runs (main thread only), so cleanup code
    in the body runs for both.
    """
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None
    status = "failed"
    try:
        yield run
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        run.finish(status)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def find_runs(workspace: str | Path) -> list[RunDir]:
    """Every run under ``workspace`` (any depth: sweep trials sit one level deeper), oldest first."""
    runs = []
    for meta in Path(workspace).rglob(META):
        try:
            runs.append(RunDir.open(meta.parent))
        except (OSError, ValueError):  # unreadable or not a run's metadata: not listed
            continue
    return sorted(runs, key=lambda r: r.meta.get("start") or 0)

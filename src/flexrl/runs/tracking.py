"""Metrics of a run: the learning curve in ``curve.json`` always, MLflow when configured.

TensorBoard is written by SB3's logger (``<run>/tb``); this module adds what SB3 does not keep: a
machine-readable curve for ``flexrl runs compare`` and, optionally, an MLflow run (a local SQLite
store by default, a shared server by ``mlflow_uri``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flexrl.runs.atomic import write_json
from flexrl.runs.config import TrackingConfig
from flexrl.runs.run_dir import RunDir

CURVE = "curve.json"


def load_curve(run_path: str | Path) -> list[dict[str, Any]]:
    """The learning curve of a run: a list of ``{"steps", "wall_seconds", "success": {...}}``."""
    path = Path(run_path) / CURVE
    if not path.is_file():
        return []
    try:
        curve = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({str(err).splitlines()[0]}); move it aside to start the curve anew") from None
    if not isinstance(curve, list) or not all(isinstance(p, dict) and isinstance(p.get("steps"), int) for p in curve):
        raise ValueError(f"{path} is not a list of {{\"steps\": ..., \"success\": ...}} points")
    return curve


class Tracker:
    """Record a run's metrics.

    Args:
        run: the run directory.
        cfg: which trackers are on.
        workspace: root of the workspace (home of the default MLflow store).
        params: flat hyperparameters to log once.
    """

    def __init__(self, run: RunDir, cfg: TrackingConfig, workspace: str | Path, params: dict[str, Any]) -> None:
        self.run, self.cfg = run, cfg
        self.curve = load_curve(run.path)
        self._mlflow = None
        if cfg.mlflow:
            try:
                import mlflow
            except ImportError as err:
                raise ImportError("MLflow tracking needs the 'track' extra: pip install 'flexrl[track]'") from err
            uri = cfg.mlflow_uri or f"sqlite:///{Path(workspace).resolve() / 'mlflow.db'}"
            mlflow.set_tracking_uri(uri)
            mlflow.set_experiment(run.meta.get("experiment", "default"))
            existing = run.meta.get("mlflow_run_id")
            active = mlflow.start_run(run_id=existing) if existing else mlflow.start_run(run_name=run.meta["id"])
            if not existing:
                mlflow.log_params({k: str(v)[:250] for k, v in params.items()})
                run.meta["mlflow_run_id"] = active.info.run_id
                run.save_meta()
            self._mlflow = mlflow

    def truncate(self, steps: int) -> None:
        """Drop the points after ``steps`` (a resumed run trains those steps again and re-evaluates them)."""
        kept = [p for p in self.curve if p["steps"] <= steps]
        if len(kept) != len(self.curve):
            self.curve = kept
            write_json(self.run.path / CURVE, self.curve)

    def log(self, steps: int, wall_seconds: float, success: dict[str, float]) -> None:
        """Add a point to the learning curve (rewritten atomically) and to MLflow."""
        self.curve.append({"steps": steps, "wall_seconds": wall_seconds, "success": success})
        write_json(self.run.path / CURVE, self.curve)
        if self._mlflow is not None:
            metrics = {f"success_{k}": v for k, v in success.items()}
            metrics["success_min"] = min(success.values())
            metrics["wall_seconds"] = wall_seconds
            self._mlflow.log_metrics(metrics, step=steps)

    def close(self, status: str, final: dict[str, Any] | None = None) -> None:
        """End the MLflow run with the run's status and final figures."""
        if self._mlflow is None:
            return
        if final:
            self._mlflow.log_metrics({k: float(v) for k, v in final.items() if isinstance(v, (int, float))})
        self._mlflow.end_run(status={"finished": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED"))
        self._mlflow = None

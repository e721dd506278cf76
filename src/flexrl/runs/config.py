"""Plain configuration of where runs live and how they are tracked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class ExperimentConfig:
    """Where a run lives and how it is seeded.

    Attributes:
        name: experiment name: runs go to ``<workspace>/<name>/<run-id>/``.
        workspace: root directory of all runs.
        seed: seed of layouts, environments and networks.
        tags: free-form labels stored in ``meta.json``.
    """

    name: str = "default"
    workspace: str = "workspace"
    seed: int = 0
    tags: list[str] = field(default_factory=list)


@dataclass
class TrackingConfig:
    """Experiment tracking.

    Attributes:
        tensorboard: write TensorBoard logs (SB3's logger plus flexrl's metrics) to ``<run>/tb``.
        mlflow: also log params and metrics to MLflow (the ``track`` extra).
        mlflow_uri: MLflow tracking URI; None: a local SQLite store, ``<workspace>/mlflow.db``.
        progress: show progress bars.
    """

    tensorboard: bool = True
    mlflow: bool = False
    mlflow_uri: Optional[str] = None
    progress: bool = True

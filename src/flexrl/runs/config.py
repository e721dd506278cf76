"""Plain configuration of where runs live and how they are tracked."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""Experiment names: one directory level inside the workspace, no separators, no leading dot."""


def check_seed(name: str, value: object, source: str = "") -> None:
    """Raise a one-line ValueError unless ``value`` is a seed numpy and SB3 accept: an integer in [0, 2**32).

    ``source`` says where the value came from when another key set it, e.g. " (experiment.seed sets it)".
    """
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
        raise ValueError(f"{name}={value!r}{source}; allowed: an integer in [0, 2**32)")


def check_count(name: str, value: object, minimum: int = 1) -> None:
    """Raise a one-line ValueError unless ``value`` is an integer (not a bool) >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        allowed = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name}={value!r}; allowed: {allowed}")


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

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.fullmatch(self.name):
            raise ValueError(f"experiment.name={self.name!r}; allowed: 1-100 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit (a directory directly inside the workspace)")
        if not isinstance(self.workspace, str) or not self.workspace.strip():
            raise ValueError(f"experiment.workspace={self.workspace!r}; allowed: a directory path")
        check_seed("experiment.seed", self.seed)


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

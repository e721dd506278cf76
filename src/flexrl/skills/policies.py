"""Loading trained policy families and running them: SB3 PPO checkpoints, deterministic actions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

FAMILIES = ("reach", "avoid")


def pretrained_dir() -> Path:
    """The checkpoints shipped inside the package."""
    return Path(str(resources.files("flexrl.skills") / "pretrained"))


@dataclass
class PolicySet:
    """One loaded PPO policy per family; ``act`` maps a batch of policy inputs to actions."""

    models: dict

    def act(self, family: str, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions for one observation (dim,) or a batch (n, dim)."""
        action, _ = self.models[family].predict(obs, deterministic=True)
        return action

    @classmethod
    def load(cls, directory: str | Path | None = None, families: tuple[str, ...] = FAMILIES,
             sources: dict[str, str] | None = None) -> "PolicySet":
        """Load ``<family>.zip`` for each family from ``directory`` (default: the shipped checkpoints).

        Args:
            directory: a directory holding ``<family>.zip`` for every family.
            families: the families to load.
            sources: per-family directories that replace ``directory`` for those families, e.g.
                ``{"reach": "workspace/skills/<run-id>/checkpoints"}`` from a ``flexrl train`` run.

        Raises:
            FileNotFoundError: one line naming the missing checkpoint and how to make it.
        """
        from stable_baselines3 import PPO

        sources = sources or {}
        unknown = sorted(set(sources) - set(FAMILIES))
        if unknown:
            raise ValueError(f"policies for unknown skill family {unknown[0]!r}; allowed: {', '.join(FAMILIES)}")
        models = {}
        for family in families:
            where = Path(sources[family]) if family in sources else Path(directory) if directory else pretrained_dir()
            path = where / f"{family}.zip"
            if not path.is_file():
                raise FileNotFoundError(f"no checkpoint for skill family {family!r} at {path}; "
                                        f"train one with `flexrl train skill={family}` (it writes <run>/checkpoints/{family}.zip)")
            models[family] = PPO.load(path, device="cpu")
        return cls(models)


def checkpoint_meta(directory: str | Path | None = None) -> dict[str, dict]:
    """The metadata written beside each checkpoint (steps, success, wall time, hyperparameters)."""
    directory = Path(directory) if directory else pretrained_dir()
    return {f: json.loads((directory / f"{f}.json").read_text()) for f in FAMILIES if (directory / f"{f}.json").is_file()}

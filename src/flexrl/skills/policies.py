"""Loading trained policy families and running them: weights-only checkpoints, deterministic actions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from flexrl.skills.checkpoint import CheckpointError, load_policy
from flexrl.skills.goals import POLICY_OBS_DIMS
from flexrl.skills.library import STAND

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
        if family == STAND:
            return np.zeros((*np.shape(obs)[:-1], 2), dtype=np.float32)
        action, _ = self.models[family].predict(obs, deterministic=True)
        return action

    def with_model(self, family: str, model) -> "PolicySet":
        """A copy that also answers ``family`` with ``model`` (anything with SB3's ``predict(obs, deterministic)``)."""
        if family in self.models or family == STAND:
            raise ValueError(f"policy family {family!r} is taken; allowed: a name not in {sorted([*self.models, STAND])}")
        return PolicySet({**self.models, family: model})

    @classmethod
    def load(cls, directory: str | Path | None = None, families: tuple[str, ...] = FAMILIES,
             sources: dict[str, str] | None = None, robot=None) -> "PolicySet":
        """Load the weights-only policy ``<family>.safetensors`` + ``.json`` of each family.

        Nothing is unpickled: an SB3 zip in its place is refused with the command that converts it.

        Args:
            directory: a directory holding a policy of every family (default: the shipped ones: ``robot``'s own,
                :attr:`~flexrl.robots.base.Robot.skill_policies`, where it has them, else the orb's).
            families: the families to load.
            sources: per-family directories that replace ``directory`` for those families, e.g.
                ``{"reach": "workspace/skills/<run-id>/checkpoints"}`` from a ``flexrl train`` run.
            robot: the body the policies drive (a robot, its config or name; None: the orb).

        Raises:
            FileNotFoundError: one line naming the missing policy and how to make it.
            CheckpointError: one line naming a malformed, tampered or pickled checkpoint.
        """
        sources = sources or {}
        unknown = sorted(set(sources) - set(FAMILIES))
        if unknown:
            raise ValueError(f"policies for unknown skill family {unknown[0]!r}; allowed: {', '.join(FAMILIES)}")
        models = {}
        default = robot_policies_dir(robot) or pretrained_dir()
        for family in families:
            where = Path(sources[family]) if family in sources else Path(directory) if directory else default
            if not (where / f"{family}.safetensors").is_file():
                zipped = where / f"{family}.zip"
                if zipped.is_file():
                    raise CheckpointError(f"{zipped} is an SB3 zip, which runs pickled code when loaded; flexrl loads "
                                          f"weights-only policies. Convert it: `flexrl convert {zipped} --name {family} --out DIR`")
                raise FileNotFoundError(f"no policy for skill family {family!r} at {where / family}.safetensors; "
                                        f"train one with `flexrl train skill={family}` (it writes <run>/checkpoints/"
                                        f"{family}.safetensors)")
            policy = load_policy(where, family)
            if policy.observation_space.shape != (POLICY_OBS_DIMS[family],):
                raise CheckpointError(f"{where / family}.json describes {policy.observation_space.shape[0]}-dim "
                                      f"observations; the {family} family's policies take {POLICY_OBS_DIMS[family]}")
            models[family] = policy
        return cls(models)


def robot_policies_dir(robot=None) -> Path | None:
    """The shipped policy families of ``robot`` trained with its own body in the loop, or None (the orb's)."""
    if robot is None:
        return None
    from flexrl.robots import make_robot

    own = make_robot(robot).skill_policies
    return Path(own) if own else None


def checkpoint_meta(directory: str | Path | None = None) -> dict[str, dict]:
    """The metadata written beside each checkpoint (steps, success, wall time, hyperparameters)."""
    directory = Path(directory) if directory else pretrained_dir()
    return {f: json.loads((directory / f"{f}.json").read_text()) for f in FAMILIES if (directory / f"{f}.json").is_file()}

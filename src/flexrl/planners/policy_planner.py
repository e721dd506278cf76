"""The end-to-end planner: a policy conditioned on the instruction's embedding acts itself (``planner=policy``).

It plugs into the runner as every planner does: it "decides" when an instruction arrives (and at the
start), by embedding the instruction (cached per text) into the policy's code, and returns a decision
whose :attr:`~flexrl.planners.base.Decision.skill` is a :class:`ConditionedSkill`. That skill never ends:
each step its policy input is the world features and the code, and the policy set answers it through the
policy (:func:`policies_for`). There is no skill choice to show, no ``done`` and no ``cannot``: the
benchmark judges it by what the robot does, like every planner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flexrl.data.features import world_features
from flexrl.data.policy import ConditionedPolicy
from flexrl.planners.base import Decision, PlanContext
from flexrl.skills.library import ActiveSkill, SkillCall, Status

FAMILY = "conditioned"
"""The policy family name the conditioned policy answers in a :class:`~flexrl.skills.policies.PolicySet`."""
CALL = SkillCall("policy")
"""How the runner's log, console and video name what the conditioned policy does."""


@dataclass
class ConditionedSkill(ActiveSkill):
    """The conditioned policy acting on one instruction, until the next one."""

    code: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    columns: list[int] = field(default_factory=list)

    def policy_input(self, world) -> np.ndarray:
        """The world features the policy reads (``steps`` is the instruction's clock), then the code."""
        return np.concatenate([world_features(world, self.steps)[self.columns], self.code]).astype(np.float32)

    def update(self, world) -> Status:
        self.steps += 1
        return Status.RUNNING

    def criterion(self, world) -> tuple[str, str]:
        return "none: the instruction-conditioned policy acts until the next instruction", f"{self.steps} steps"


class PolicyPlanner:
    """Embeds each instruction once and hands the conditioned policy a :class:`ConditionedSkill`.

    Args:
        policy: the trained conditioned policy.
        embedder: the embedder it was trained with (default: built from the policy's description).
    """

    name = "policy"

    def __init__(self, policy: ConditionedPolicy, embedder=None) -> None:
        from flexrl.data.embeddings import make_embedder

        self.policy = policy
        self.embedder = embedder or make_embedder(policy.embedder)
        trained = policy.info.get("embedder_id")
        if trained and embedder is None and self.embedder.name != trained:
            raise ValueError(f"the policy was trained on {trained} embeddings; {policy.embedder!r} now gives "
                             f"{self.embedder.name}: retrain it with `flexrl train-offline`")

    @classmethod
    def load(cls, directory: str | Path | None = None) -> "PolicyPlanner":
        """The policy saved in ``directory`` (a ``flexrl train-offline`` run's ``checkpoints``; None: the shipped one)."""
        return cls(ConditionedPolicy.load(directory or shipped_policy_dir(), "policy"))

    def decide(self, context: PlanContext) -> Decision:
        start = time.perf_counter()
        text = context.instruction.text if context.instruction else ""
        code = self.policy.projection(self.embedder.embed([text]))[0]
        skill = ConditionedSkill(CALL, FAMILY, 10**9, code=code, columns=self.policy.columns)
        return Decision(CALL, {}, (time.perf_counter() - start) * 1e3, self.name, skill=skill)


def shipped_policy_dir() -> Path:
    """The conditioned policy shipped inside the package."""
    from importlib import resources

    return Path(str(resources.files("flexrl.data") / "pretrained"))


def policies_for(planner, policies):
    """``policies``, with the conditioned policy joined when ``planner`` is a :class:`PolicyPlanner`."""
    return policies.with_model(FAMILY, planner.policy) if isinstance(planner, PolicyPlanner) else policies

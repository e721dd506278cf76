"""Reference planners: the oracle (upper bound) and random (lower bound)."""

from __future__ import annotations

import time

import numpy as np

from flexrl.planners.base import Decision, PlanContext
from flexrl.skills.library import SkillCall

STOP = SkillCall("stop")


class OraclePlanner:
    """Chooses the instruction's machine-readable intent; ``stop`` when there is none or it is not valid here.

    It sees the structured world and the intent, never the instruction's words, so it bounds what any
    planner using these skills can achieve.
    """

    name = "oracle"

    def decide(self, context: PlanContext) -> Decision:
        start = time.perf_counter()
        instruction = context.instruction
        call = STOP
        if instruction is not None and instruction.intent:
            try:
                wanted = SkillCall.parse(instruction.intent)
            except ValueError:
                wanted = STOP
            call = wanted if wanted in context.candidates else STOP
        scores = {str(c): float(c == call) for c in context.candidates}
        return Decision(call, scores, (time.perf_counter() - start) * 1e3, self.name)


class RandomPlanner:
    """Chooses uniformly among the candidates (seeded)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def decide(self, context: PlanContext) -> Decision:
        start = time.perf_counter()
        call = context.candidates[int(self.rng.integers(len(context.candidates)))]
        scores = {str(c): float(c == call) for c in context.candidates}
        return Decision(call, scores, (time.perf_counter() - start) * 1e3, self.name)

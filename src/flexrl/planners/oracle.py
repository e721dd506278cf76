"""Reference planners: the oracle (upper bound) and random (lower bound)."""

from __future__ import annotations

import time

import numpy as np

from flexrl.planners.base import Decision, Instruction, PlanContext
from flexrl.skills.library import REACH_RADIUS, SkillCall

STOP = SkillCall("stop")
SEQUENCE_SEPARATOR = ";"
# A go_to step of a sequence counts as done once the agent is this close to its target.
_DONE_RADIUS = REACH_RADIUS + 0.15


class OraclePlanner:
    """Chooses the instruction's machine-readable intent; ``stop`` when there is none or it is not valid here.

    An intent may be a sequence, ``"go_to(red_pad); go_to(blue_pad)"``: the oracle runs its steps in order,
    moving on once a ``go_to`` step's target is reached, and holds the last. It sees the structured
    world and the intent, never the instruction's words, so it bounds what any planner using these
    skills can achieve.
    """

    name = "oracle"

    def __init__(self) -> None:
        self._progress: dict[Instruction, int] = {}

    def fork(self, seed: int = 0) -> "OraclePlanner":
        """A fresh oracle (sequence progress is per episode)."""
        return OraclePlanner()

    def decide(self, context: PlanContext) -> Decision:
        start = time.perf_counter()
        instruction = context.instruction
        call = STOP
        if instruction is not None and instruction.intent:
            call = self._wanted(instruction, context)
            call = call if call in context.candidates else STOP
        scores = {str(c): float(c == call) for c in context.candidates}
        return Decision(call, scores, (time.perf_counter() - start) * 1e3, self.name)

    def _wanted(self, instruction: Instruction, context: PlanContext) -> SkillCall:
        try:
            steps = [SkillCall.parse(part.strip()) for part in instruction.intent.split(SEQUENCE_SEPARATOR)]
        except ValueError:
            return STOP
        done = self._progress.get(instruction, 0)
        while done < len(steps) and _reached(steps[done], context):
            done += 1
            if len(steps) == 1:  # a single intent is kept, not finished
                done = 0
                break
        self._progress[instruction] = done
        return steps[min(done, len(steps) - 1)]  # a finished sequence holds its last step


def _reached(call: SkillCall, context: PlanContext) -> bool:
    if call.name != "go_to" or not call.args:
        return False
    try:
        target = context.world.position_of(call.args[0])
    except ValueError:
        return False
    return float(np.linalg.norm(context.world.agent.pos - target)) <= _DONE_RADIUS


class RandomPlanner:
    """Chooses uniformly among the candidates (seeded)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def fork(self, seed: int = 0) -> "RandomPlanner":
        """A fresh random planner for one episode, seeded by it (results do not depend on episode order)."""
        return RandomPlanner(seed)

    def decide(self, context: PlanContext) -> Decision:
        start = time.perf_counter()
        call = context.candidates[int(self.rng.integers(len(context.candidates)))]
        scores = {str(c): float(c == call) for c in context.candidates}
        return Decision(call, scores, (time.perf_counter() - start) * 1e3, self.name)

"""Reference planners: the oracle (upper bound) and random (lower bound)."""

from __future__ import annotations

import time

import numpy as np

from flexrl.planners.base import Decision, Outcome, PlanContext
from flexrl.skills.library import VERDICTS, SkillCall

STOP = SkillCall("stop")
DONE = SkillCall("done")
CANNOT = SkillCall("cannot")
SEQUENCE_SEPARATOR = ";"
DURATIVE = ("follow", "avoid")
"""Skills that never complete an instruction: once their last step holds, the oracle keeps them going."""


def oracle_call(intent: str | None, progress: tuple[Outcome, ...], candidates: tuple[SkillCall, ...]) -> SkillCall:
    """The call that follows ``intent`` given what has been done under it (the skills' success detectors).

    An intent is one call or a sequence ``"go_to(red_pad); go_to(blue_pad)"``: the steps the progress
    shows succeeded, in order (other outcomes in between are ignored), are done, and the next one is
    wanted. When every step is done the instruction is complete: ``done``, except after ``follow`` or
    ``avoid``, which go on until another instruction. ``cannot`` (or ``done``) as the intent is itself the
    answer; an intent that is not a valid call here, or none at all, gets ``cannot`` (``stop`` where the
    candidates have no verdict calls).
    """
    refuse = CANNOT if CANNOT in candidates else STOP
    if not intent:
        return refuse
    try:
        steps = [SkillCall.parse(part.strip()) for part in intent.split(SEQUENCE_SEPARATOR)]
    except ValueError:
        return refuse
    if any(step not in candidates for step in steps):
        return refuse
    completed = 0
    for outcome in progress:
        if completed < len(steps) and outcome.success and outcome.call == steps[completed]:
            completed += 1
    if completed < len(steps):
        return steps[completed]
    last = steps[-1]
    if last.name in DURATIVE or last.name in VERDICTS or DONE not in candidates:
        return last
    return DONE


class OraclePlanner:
    """Chooses what the instruction's machine-readable intent asks for, step by step (:func:`oracle_call`).

    It sees the structured intent and the outcomes of the skills run under it, never the instruction's
    words, so it bounds what any planner using these skills can achieve; ``flexrl distill`` uses it as the
    teacher.
    """

    name = "oracle"

    def fork(self, seed: int = 0) -> "OraclePlanner":
        """A fresh oracle (it keeps no state: progress comes with the context)."""
        return OraclePlanner()

    def decide(self, context: PlanContext) -> Decision:
        start = time.perf_counter()
        instruction = context.instruction
        if instruction is None:  # nothing asked yet
            call = STOP
        else:
            call = oracle_call(instruction.intent, context.progress, context.candidates)
        scores = {str(c): float(c == call) for c in context.candidates}
        return Decision(call, scores, (time.perf_counter() - start) * 1e3, self.name)


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

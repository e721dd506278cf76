"""DAgger: the student drives simulated episodes, the oracle labels every state it visits.

Episodes are generated, never read from the benchmark: a seeded random layout and ball mode, a grammar
instruction at step 0 and, in some episodes, a second one mid-run. They run through the benchmark's lockstep driver (:func:`flexrl.bench.evaluate.evaluate`) with
the real skills and physics; at every decision the student's choice is taken and the oracle's answer
for the same context (its intent, the progress so far) is recorded as a new training example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from flexrl.bench.evaluate import evaluate
from flexrl.bench.tasks import Task, TimedInstruction
from flexrl.distill.data import KIND_WEIGHTS, Example
from flexrl.distill.grammar import HELD_OUT, Grammar
from flexrl.distill.student import Student
from flexrl.planners.base import Decision, PlanContext
from flexrl.planners.menu_prompt import for_context
from flexrl.planners.oracle import oracle_call
from flexrl.skills.policies import PolicySet

BALL_MODES = ("still", "drift", "chase")


def episodes(n: int, seed: int) -> tuple[list[Task], dict[str, str]]:
    """``n`` generated tasks (one seed each) and the grammar kind of each instruction text."""
    rng = np.random.default_rng(seed)
    grammar = Grammar()
    tasks, kinds = [], {}
    for i in range(n):
        first = _trainable(grammar, rng, KIND_WEIGHTS)
        schedule = [TimedInstruction(0, first.text, first.intent)]
        kinds[first.text] = first.kind
        if rng.random() < 0.35:
            second = _trainable(grammar, rng, {**KIND_WEIGHTS, "switch": 3.0})
            schedule.append(TimedInstruction(int(rng.integers(60, 160)), second.text, second.intent))
            kinds[second.text] = second.kind
        layout = {"ball_mode": str(rng.choice(BALL_MODES))}
        tasks.append(Task(f"dagger-{seed}-{i}", "generated", 240, layout, tuple(schedule)))
    return tasks, kinds


def _trainable(grammar: Grammar, rng: np.random.Generator, weights: dict[str, float]):
    """A grammar instruction from a template that is not held out (held-out templates never reach training)."""
    while True:
        g = grammar.sample(rng, weights=weights)
        if g.template not in HELD_OUT:
            return g


@dataclass
class LabellingStudent:
    """A planner that decides with the student and records the oracle's label of every context it sees."""

    student: Student
    name: str = "student"
    visited: list[tuple[PlanContext, str, str]] = field(default_factory=list)

    def decide(self, context: PlanContext) -> Decision:
        return self.decide_batch([context])[0]

    def decide_batch(self, contexts: Sequence[PlanContext]) -> list[Decision]:
        encoded = [self.student.encode_prompt(for_context(c)) for c in contexts]
        picks = self.student.predict(encoded)
        out = []
        for context, pick in zip(contexts, picks):
            call = self.student.candidates[pick]
            if call not in context.candidates:  # a different arena than the menu's: never expected
                call = context.candidates[-1]
            ins = context.instruction
            wanted = oracle_call(ins.intent if ins else None, context.progress, context.candidates)
            self.visited.append((context, str(call), str(wanted)))
            out.append(Decision(call, {}, 0.0, self.name))
        return out


def run_round(student: Student, policies: PolicySet, n_episodes: int, seed: int, round_name: str,
              n_envs: int = 16) -> tuple[list[Example], dict]:
    """Roll the student out; returns the oracle-labelled visited states and the round's figures."""
    tasks, kinds = episodes(n_episodes, seed)
    planner = LabellingStudent(student)
    evaluate(tasks, [seed], planner, policies, n_envs=n_envs)
    examples = []
    for context, chosen, wanted in planner.visited:
        ins = context.instruction
        text = ins.text if ins else "none"
        kind = kinds.get(text, "unknown")
        examples.append(Example(text, ins.intent if ins else "cannot", "dagger", kind,
                                tuple((str(o.call), o.success, o.text) for o in context.progress), wanted,
                                "train", source=round_name))
    agree = [chosen == wanted for _, chosen, wanted in planner.visited]
    per_kind: dict[str, list[bool]] = {}
    for ex, ok in zip(examples, agree):
        per_kind.setdefault(ex.kind, []).append(ok)
    figures = {"episodes": n_episodes, "decisions": len(agree), "agreement": round(float(np.mean(agree)), 4) if agree else None,
               "agreement_by_kind": {k: round(float(np.mean(v)), 3) for k, v in sorted(per_kind.items())}}
    return examples, figures

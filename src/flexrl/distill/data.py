"""Oracle-labelled planning examples from the simulator, and the dataset files that hold them.

An example is what the planner sees at a decision (the instruction, the arena's pads, the outcomes of the
skills run under the instruction so far, the candidate calls) and the oracle's call for it. The calls
are the arena's (every layout has the same objects); progress states are sampled along each intent (before, between
and after its steps, with failed attempts and off-plan skills mixed in), so the student sees the states a
closed-loop run passes through. :mod:`flexrl.distill.dagger` adds the states the student itself visits.

Files: ``<split>.jsonl`` (one example per line) and ``datasheet.json`` (counts per kind, template, label
and split; what made it). JSON Lines, readable by ``datasets.load_dataset("json", ...)`` and pandas.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from flexrl.distill.grammar import HELD_OUT, Generated, Grammar
from flexrl.envs.registration import make_arena
from flexrl.planners.base import Outcome
from flexrl.planners.menu_prompt import MenuPrompt, build
from flexrl.planners.oracle import SEQUENCE_SEPARATOR, oracle_call
from flexrl.runs.atomic import write_json, write_text
from flexrl.skills.library import OUTCOMES, SkillCall, Status, candidate_calls

KIND_WEIGHTS = {"move": 1.8, "goto_pad": 1.6, "goto_ball": 0.7, "follow": 1.0, "avoid": 1.0, "stop": 0.9,
                "sequence": 2.2, "negation": 0.7, "distractor": 1.0, "switch": 0.7, "cannot": 1.6}
"""How often each kind of request is drawn (sequences have the most states to learn)."""


@dataclass(frozen=True)
class Example:
    """One decision with the oracle's answer.

    Attributes:
        instruction: normalised instruction text.
        intent: the oracle's intent for it.
        template: grammar template id ("dagger" for states the student visited).
        kind: kind of request.
        progress: outcomes so far, each ``[call, success, text]``.
        label: the oracle's call.
        split: "train", "val" or "held_out" (templates kept out of training).
        source: "grammar" or "dagger-<round>".
    """

    instruction: str
    intent: str
    template: str
    kind: str
    progress: tuple[tuple[str, bool, str], ...]
    label: str
    split: str
    source: str = "grammar"

    def outcomes(self) -> tuple[Outcome, ...]:
        """The progress as planner outcomes."""
        return tuple(Outcome(SkillCall.parse(c), bool(ok), text) for c, ok, text in self.progress)

    def prompt(self, candidates: tuple[SkillCall, ...]) -> MenuPrompt:
        """The menu prompt of this example."""
        return build(self.instruction, self.outcomes(), candidates)

    def to_json(self) -> dict:
        return {**asdict(self), "progress": [list(p) for p in self.progress]}

    @classmethod
    def from_json(cls, row: dict) -> "Example":
        return cls(**{**row, "progress": tuple(tuple(p) for p in row["progress"])})


def arena_calls(seed: int = 0) -> tuple[SkillCall, ...]:
    """The candidate calls of the arena (every layout has the same objects, so the same calls)."""
    env = make_arena()
    try:
        env.reset(seed=seed)
        return tuple(candidate_calls(env.world_state()))
    finally:
        env.close()


def _outcome(call: SkillCall, success: bool) -> tuple[str, bool, str]:
    status = Status.SUCCESS if success else Status.TIMEOUT
    return str(call), success, OUTCOMES.get((call.name, status), status.value)


def sample_progress(rng: np.random.Generator, intent: str, candidates: tuple[SkillCall, ...]) -> list[tuple[str, bool, str]]:
    """A plausible progress state under ``intent``: some steps done, maybe a failed try or an off-plan skill."""
    motor = [c for c in candidates if c.name not in ("done", "cannot")]
    steps = [] if intent == "cannot" else [SkillCall.parse(p.strip()) for p in intent.split(SEQUENCE_SEPARATOR)]
    done = int(rng.integers(0, len(steps) + 1)) if steps else 0
    if len(steps) == 1:  # a first decision most often; then once done, sometimes again and again
        done = 0 if rng.random() < 0.55 else (1 if rng.random() < 0.75 else int(rng.integers(2, 4)))
    progress = []
    for i in range(done):
        step = steps[min(i, len(steps) - 1)]
        if rng.random() < 0.12:
            progress.append(_outcome(step, False))  # a failed try first
        progress.append(_outcome(step, True))
    if steps and done < len(steps) and rng.random() < 0.2:
        progress.append(_outcome(steps[done], False))  # the current step failed once
    if rng.random() < (0.3 if not steps else 0.12):  # an off-plan skill somewhere (a student's mistake)
        wrong = motor[int(rng.integers(len(motor)))]
        progress.insert(int(rng.integers(len(progress) + 1)), _outcome(wrong, bool(rng.random() < 0.7)))
    return progress


def label(intent: str, progress: Iterable[tuple[str, bool, str]], candidates: tuple[SkillCall, ...]) -> str:
    """The oracle's call for this state."""
    outcomes = tuple(Outcome(SkillCall.parse(c), ok, t) for c, ok, t in progress)
    return str(oracle_call(intent, outcomes, candidates))


def generate(n: int, seed: int, val_share: float = 0.05) -> list[Example]:
    """``n`` grammar examples (the held-out templates' among them, split apart), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    candidates = arena_calls()
    grammar = Grammar()
    out: list[Example] = []
    for _ in range(n):
        g: Generated = grammar.sample(rng, weights=KIND_WEIGHTS)
        progress = sample_progress(rng, g.intent, candidates)
        split = "held_out" if g.template in HELD_OUT else ("val" if rng.random() < val_share else "train")
        out.append(Example(g.text, g.intent, g.template, g.kind, tuple(progress),
                           label(g.intent, progress, candidates), split))
    return out


def write_dataset(directory: Path, examples: list[Example], made_by: dict) -> dict:
    """Write ``<split>.jsonl`` files and ``datasheet.json`` (atomically); returns the datasheet."""
    directory.mkdir(parents=True, exist_ok=True)
    by_split: dict[str, list[Example]] = {}
    for ex in examples:
        by_split.setdefault(ex.split, []).append(ex)
    for split, rows in by_split.items():
        write_text(directory / f"{split}.jsonl", "".join(json.dumps(r.to_json()) + "\n" for r in rows))
    sheet = {
        "format": "flexrl-planner-data/1",
        "files": {split: f"{split}.jsonl" for split in by_split},
        "examples": len(examples),
        "splits": {k: len(v) for k, v in sorted(by_split.items())},
        "kinds": dict(Counter(e.kind for e in examples).most_common()),
        "templates": dict(Counter(e.template for e in examples).most_common()),
        "labels": dict(Counter(e.label for e in examples).most_common()),
        "sources": dict(Counter(e.source for e in examples).most_common()),
        "held_out_templates": sorted(HELD_OUT),
        "made_by": made_by,
        "notes": "Instructions from flexrl.distill.grammar (never the benchmark suite); labels from the oracle "
                 "(flexrl.planners.oracle.oracle_call) over sampled progress states and, for dagger rows, the "
                 "states the student planner visited in simulated episodes.",
    }
    write_json(directory / "datasheet.json", sheet)
    return sheet


def read_split(directory: Path, split: str) -> list[Example]:
    """The examples of one split ([] when the file is absent)."""
    path = directory / f"{split}.jsonl"
    if not path.is_file():
        return []
    return [Example.from_json(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]

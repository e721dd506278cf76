"""The planner interface: ``decide(context) -> Decision``, where a decision is always a valid skill call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from flexrl.envs.world import WorldState
from flexrl.skills.library import SkillCall


@dataclass(frozen=True)
class Instruction:
    """A natural-language instruction, with an optional machine-readable intent.

    Attributes:
        text: what the user said (already sanitised by the instruction channel).
        intent: the skill call that fulfils it, when known (tasks and schedules give one; the oracle reads it).
        source: where it came from: "initial", "schedule", "stdin", "http".
    """

    text: str
    intent: str | None = None
    source: str = "initial"


@dataclass(frozen=True)
class Outcome:
    """What came of a skill run under the current instruction, as its success detector saw it.

    Attributes:
        call: the skill call that ran.
        success: whether its success criterion was met.
        text: the outcome in words ("reached", "lost the ball"; ``flexrl.skills.library.OUTCOMES``).
    """

    call: SkillCall
    success: bool
    text: str

    def __str__(self) -> str:
        return f"{self.call}: {self.text}"


@dataclass(frozen=True)
class PlanContext:
    """What a planner may look at when deciding.

    Attributes:
        world: the structured world state (the oracle reads it; the LLM only gets ``observation``).
        observation: the encoded observation text.
        instructions: every instruction so far, oldest first; the last one is current.
        candidates: the valid skill calls to choose from.
        current: the skill running now, if any.
        step: control step.
        progress: the outcomes of the skills run under the current instruction, oldest first (earlier
            instructions' outcomes are not here: showing them made the model ignore switches).
        observation_fixed: how many leading characters of ``observation`` stay the same through the
            episode (e.g. the pads, which never move; see :func:`flexrl.encoders.fixed_prefix`). A planner
            may cache them with its prompt prefix; 0 says nothing is known to be fixed. The cut should
            fall just before a space, so that what follows starts a word; the LLM planner ignores other cuts.
    """

    world: WorldState
    observation: str
    instructions: tuple[Instruction, ...]
    candidates: tuple[SkillCall, ...]
    current: SkillCall | None = None
    step: int = 0
    observation_fixed: int = 0
    progress: tuple[Outcome, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.observation_fixed <= len(self.observation):
            raise ValueError(
                f"observation_fixed={self.observation_fixed!r}; allowed: 0 to the observation's length ({len(self.observation)})"
            )

    @property
    def instruction(self) -> Instruction | None:
        """The instruction in force."""
        return self.instructions[-1] if self.instructions else None


@dataclass(frozen=True)
class Decision:
    """A planner's choice.

    Attributes:
        call: the chosen skill call; always one of the context's candidates.
        scores: score of every candidate (higher is better), by call text.
        latency_ms: wall time of the decision.
        planner: which planner decided.
        rationale: optional free text (never parsed).
        fallback: why the planner fell back (LLM failure), or None.
        tokens: prompt + scored tokens processed, where known.
        skill: a running skill the planner supplies itself instead of the library's skill for ``call`` (an
            instruction-conditioned policy acts through one); ``call`` then names it and need not be a candidate.
    """

    call: SkillCall
    scores: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    planner: str = ""
    rationale: str | None = None
    fallback: str | None = None
    tokens: int = 0
    skill: Any = None

    @property
    def margin(self) -> float:
        """Score gap between the chosen call and the runner-up (0 with fewer than two scores)."""
        vals = sorted(self.scores.values(), reverse=True)
        return vals[0] - vals[1] if len(vals) > 1 else 0.0


class Planner(Protocol):
    """Anything that turns a context into a valid decision."""

    name: str

    def decide(self, context: PlanContext) -> Decision:
        """Choose one of ``context.candidates``."""
        ...


"""Plain configuration of the planner, and the planner it builds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from flexrl.llm.config import LLMConfig
from flexrl.planners.base import Planner
from flexrl.skills.library import SKILLS, SkillCall

PLANNERS = ("llm", "oracle", "random", "policy")
CALL_SCORING = ("whole", "naming_word", "distinguishing")
PROMPTS = ("auto", "chat", "menu")


@dataclass
class PlannerConfig:
    """Which planner decides, and how the LLM planner prompts and scores (the only planner with settings).

    Every default here is the shipped one: the ``planner`` config group's YAML files set only ``name``
    (tests/config/test_defaults.py checks that they restate no default differently).

    Attributes:
        name: "llm", "oracle" (reads the instruction's intent: an upper bound), "random" (a lower bound) or
            "policy" (an instruction-conditioned policy that acts itself: ``flexrl train-offline``).
        policy: the conditioned policy's directory, for ``name=policy`` (None: the one shipped with flexrl).
        calibrate: subtract each call's score under a content-free prompt (instruction and observation "N/A").
        history: how many earlier instructions the prompt shows. 0: shown as "Earlier instruction: ...",
            they made SmolLM2-135M keep obeying the first instruction after a mid-run switch (switch tasks
            0% with history 2, 95% with 0; docs/bench.md). Raise it for models that use the context well.
        calls: how much of each call is scored: "whole", "naming_word" (an argument of several words stops
            at the word that names it: "go_to(red" for "go_to(red_pad)"; 23 option tokens per decision
            instead of 59, 201 ms instead of 353 ms, about the same agreement with the oracle, but 4 points
            lower on the benchmark suite than whole calls: use "whole" when accuracy matters more than the
            250 ms target) or "distinguishing" (every call cut after the word that sets it apart: fewer
            tokens still, but the embedded model chose worse). See docs/benchmarks.md.
        affordance_weight: weight of the affordance scores (e.g. skill value functions), when an affordance
            function is given.
        examples: few-shot examples added to the system text, instruction -> skill call
            (``{"Avoid the ball!": "avoid(ball)"}``).
        prompt: "chat" (system text with the skills, whole calls scored, calibrated: the untrained model's),
            "menu" (the short prompt ``flexrl distill`` trains on: calls under letters, one letter scored;
            ``flexrl.planners.menu_prompt``) or "auto": the format the LLM's adapter was trained on, "chat"
            without an adapter.
    """

    name: str = "llm"
    calibrate: bool = True
    history: int = 0
    calls: str = "naming_word"
    affordance_weight: float = 1.0
    examples: dict[str, str] = field(default_factory=dict)
    prompt: str = "auto"
    policy: Optional[str] = None

    def __post_init__(self) -> None:
        if self.prompt not in PROMPTS:
            raise ValueError(f"planner.prompt={self.prompt!r}; allowed: {', '.join(PROMPTS)}")
        if self.name not in PLANNERS:
            raise ValueError(f"planner={self.name!r}; allowed: {', '.join(PLANNERS)}")
        if not isinstance(self.calibrate, bool):
            raise ValueError(f"planner.calibrate={self.calibrate!r}; allowed: true or false")
        if not (isinstance(self.history, int) and not isinstance(self.history, bool) and self.history >= 0):
            raise ValueError(f"planner.history={self.history!r}; allowed: an integer >= 0")
        if self.calls not in CALL_SCORING:
            raise ValueError(f"planner.calls={self.calls!r}; allowed: {', '.join(CALL_SCORING)}")
        weight = self.affordance_weight
        if not (isinstance(weight, (int, float)) and not isinstance(weight, bool) and math.isfinite(weight)):
            raise ValueError(f"planner.affordance_weight={weight!r}; allowed: a finite number")
        for instruction, call in self.examples.items():
            if not (isinstance(instruction, str) and instruction.strip() and isinstance(call, str)):
                raise ValueError(f"planner.examples entry {instruction!r}: {call!r}; allowed: instruction text: skill call")
            try:
                name = SkillCall.parse(call).name
            except ValueError:
                name = None
            if name not in SKILLS:
                raise ValueError(f"planner.examples[{instruction!r}]={call!r}; allowed: a call of {', '.join(SKILLS)}")


def build_planner(cfg: PlannerConfig, llm: LLMConfig | None = None, seed: int = 0) -> Planner:
    """The configured planner; an LLM loads here, before any episode, so a bad model fails early."""
    if cfg.name == "oracle":
        from flexrl.planners.oracle import OraclePlanner

        return OraclePlanner()
    if cfg.name == "policy":
        from flexrl.planners.policy_planner import PolicyPlanner

        return PolicyPlanner.load(cfg.policy)
    if cfg.name == "random":
        from flexrl.planners.oracle import RandomPlanner

        return RandomPlanner(seed)
    from flexrl.llm.config import build_backend
    from flexrl.planners.llm_planner import LLMPlanner

    return LLMPlanner(build_backend(llm or LLMConfig()), cfg)

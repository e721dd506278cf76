"""Plain configuration of the planner, and the planner it builds."""

from __future__ import annotations

from dataclasses import dataclass

from flexrl.llm.config import LLMConfig
from flexrl.planners.base import Planner

PLANNERS = ("llm", "oracle", "random")


@dataclass
class PlannerConfig:
    """Which planner decides, and how the LLM planner prompts and scores.

    Attributes:
        name: "llm", "oracle" (reads the instruction's intent: an upper bound) or "random" (a lower bound).
        calibrate: subtract each call's score under a content-free prompt (LLM planner).
        history: earlier instructions shown in the prompt (LLM planner).
        calls: how much of each skill call is scored: "whole", "naming_word" or "distinguishing" (LLM planner;
            see :class:`~flexrl.planners.llm_planner.LLMPlannerConfig`).
        affordance_weight: weight of affordance scores when an affordance function is given (LLM planner).
    """

    name: str = "llm"
    calibrate: bool = True
    history: int = 2
    calls: str = "naming_word"
    affordance_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in PLANNERS:
            raise ValueError(f"planner={self.name!r}; allowed: {', '.join(PLANNERS)}")
        from flexrl.planners.llm_planner import check_call_scoring

        check_call_scoring(self.calls)


def build_planner(cfg: PlannerConfig, llm: LLMConfig | None = None, seed: int = 0) -> Planner:
    """The configured planner; an LLM loads here, before any episode, so a bad model fails early."""
    if cfg.name == "oracle":
        from flexrl.planners.oracle import OraclePlanner

        return OraclePlanner()
    if cfg.name == "random":
        from flexrl.planners.oracle import RandomPlanner

        return RandomPlanner(seed)
    from flexrl.llm.config import build_backend
    from flexrl.planners.llm_planner import LLMPlanner, LLMPlannerConfig

    settings = LLMPlannerConfig(calibrate=cfg.calibrate, history=cfg.history, affordance_weight=cfg.affordance_weight,
                                calls=cfg.calls)
    return LLMPlanner(build_backend(llm or LLMConfig()), settings)

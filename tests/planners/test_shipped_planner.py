"""The shipped planner: the embedded model with the distilled adapter, deciding for real (no fakes)."""

import pytest

from flexrl.envs import ArenaEnv
from flexrl.llm.config import LLMConfig, build_backend
from flexrl.planners import menu_prompt
from flexrl.planners.base import Instruction, Outcome, PlanContext
from flexrl.planners.config import PlannerConfig
from flexrl.planners.llm_planner import LLMPlanner
from flexrl.skills.library import SkillCall, candidate_calls


@pytest.fixture(scope="module")
def planner():
    backend = build_backend(LLMConfig(device="cpu", adapter="shipped"))
    assert backend.adapter_card is not None and backend.adapter_card.prompt == menu_prompt.FORMAT
    return LLMPlanner(backend, PlannerConfig())


def _decide(planner, text, progress=()):
    env = ArenaEnv()
    env.reset(seed=5)
    world = env.world_state()
    env.close()
    outcomes = tuple(Outcome(SkillCall.parse(call), True, words) for call, words in progress)
    context = PlanContext(world, "obs", (Instruction(text),), tuple(candidate_calls(world)), progress=outcomes)
    return str(planner.decide(context).call)


@pytest.mark.slow
def test_it_picks_skills_starts_sequences_finishes_and_refuses(planner):
    assert planner.format == "menu"
    assert _decide(planner, "Avoid the ball!") == "avoid(ball)"
    assert _decide(planner, "Touch the red pad, then the blue pad") == "go_to(red_pad)"
    assert _decide(planner, "Touch the red pad, then the blue pad", [("go_to(red_pad)", "reached")]) == "go_to(blue_pad)"
    assert _decide(planner, "Touch the red pad, then the blue pad",
                   [("go_to(red_pad)", "reached"), ("go_to(blue_pad)", "reached")]) == "done"
    assert _decide(planner, "Follow the ball", [("follow(ball)", "kept close")]) == "follow(ball)"  # durative: goes on
    assert _decide(planner, "Go to the green pad", [("go_to(green_pad)", "reached")]) == "done"
    assert _decide(planner, "Go to the purple pad") == "cannot"

"""The oracle's intent grammar: sequences advance on success detectors, done and cannot."""

import numpy as np
import pytest

from flexrl.envs.arena_env import ArenaEnv
from flexrl.planners.base import Instruction, Outcome, PlanContext
from flexrl.planners.oracle import OraclePlanner, oracle_call
from flexrl.skills.library import SkillCall, candidate_calls


@pytest.fixture(scope="module")
def calls():
    env = ArenaEnv()
    env.reset(seed=0)
    out = tuple(candidate_calls(env.world_state()))
    env.close()
    return out


def won(call: str, success: bool = True) -> Outcome:
    return Outcome(SkillCall.parse(call), success, "reached" if success else "did not reach it")


def test_a_sequence_moves_on_only_after_each_step_succeeded_in_order(calls):
    intent = "go_to(red_pad); go_to(blue_pad)"
    assert str(oracle_call(intent, (), calls)) == "go_to(red_pad)"
    assert str(oracle_call(intent, (won("go_to(red_pad)", False),), calls)) == "go_to(red_pad)"  # retried
    assert str(oracle_call(intent, (won("go_to(blue_pad)"),), calls)) == "go_to(red_pad)"  # out of order
    assert str(oracle_call(intent, (won("go_to(red_pad)"),), calls)) == "go_to(blue_pad)"
    assert str(oracle_call(intent, (won("go_to(red_pad)"), won("go_to(blue_pad)")), calls)) == "done"


def test_a_repeated_step_counts_twice(calls):
    intent = "move(north); move(north)"
    assert str(oracle_call(intent, (won("move(north)"),), calls)) == "move(north)"
    assert str(oracle_call(intent, (won("move(north)"), won("move(north)")), calls)) == "done"


def test_follow_and_avoid_go_on_and_goals_finish_with_done(calls):
    assert str(oracle_call("avoid(ball)", (won("avoid(ball)"),), calls)) == "avoid(ball)"
    assert str(oracle_call("follow(ball)", (won("follow(ball)"),), calls)) == "follow(ball)"
    assert str(oracle_call("stop", (won("stop"),), calls)) == "done"
    assert str(oracle_call("go_to(ball)", (won("go_to(ball)"),), calls)) == "done"


def test_cannot_answers_impossible_or_missing_intents(calls):
    assert str(oracle_call("cannot", (), calls)) == "cannot"
    assert str(oracle_call("go_to(purple_pad)", (), calls)) == "cannot"
    assert str(oracle_call(None, (), calls)) == "cannot"
    without_verdicts = tuple(c for c in calls if c.name not in ("done", "cannot"))
    assert str(oracle_call(None, (), without_verdicts)) == "stop"
    assert str(oracle_call("go_to(red_pad)", (won("go_to(red_pad)"),), without_verdicts)) == "go_to(red_pad)"


def test_the_planner_reads_progress_from_the_context(calls):
    env = ArenaEnv()
    env.reset(seed=1)
    world = env.world_state()
    env.close()
    ins = Instruction("Touch the red pad, then the blue pad", "go_to(red_pad); go_to(blue_pad)")
    ctx = lambda progress: PlanContext(world, "obs", (ins,), calls, progress=progress)  # noqa: E731
    oracle = OraclePlanner()
    assert str(oracle.decide(ctx(())).call) == "go_to(red_pad)"
    decision = oracle.decide(ctx((won("go_to(red_pad)"),)))
    assert str(decision.call) == "go_to(blue_pad)"
    assert decision.scores["go_to(blue_pad)"] == 1.0 and sum(decision.scores.values()) == 1.0
    assert str(oracle.decide(PlanContext(world, "obs", (), calls)).call) == "stop"
    assert np.isfinite(decision.latency_ms)

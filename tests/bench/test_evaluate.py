"""The oracle solves tasks of every category; batched and sequential evaluation agree episode by episode."""

from __future__ import annotations

import pytest

from flexrl.bench.evaluate import evaluate
from flexrl.bench.report import markdown, summarise, wilson, write_report
from flexrl.bench.tasks import CATEGORIES, default_suite, load_tasks
from flexrl.planners.oracle import OraclePlanner, RandomPlanner
from flexrl.skills.policies import PolicySet


@pytest.fixture(scope="module")
def tasks():
    return load_tasks([default_suite()])


@pytest.fixture(scope="module")
def policies():
    return PolicySet.load()


def _one_per_category(tasks):
    return [next(t for t in tasks if t.category == c) for c in CATEGORIES]


def test_oracle_succeeds_on_a_task_of_each_category(tasks, policies):
    results = evaluate(_one_per_category(tasks), [0], OraclePlanner(), policies, n_envs=9)
    failed = [(r.task, r.seed, r.calls) for r in results if not r.success]
    assert not failed
    assert all(r.invalid == 0 for r in results)


def test_batched_and_sequential_evaluation_agree(tasks, policies):
    chosen = _one_per_category(tasks)[1:5]
    for planner in (OraclePlanner(), RandomPlanner(5)):
        batched = evaluate(chosen, [3, 4], planner, policies, n_envs=8, batched=True)
        sequential = evaluate(chosen, [3, 4], planner, policies, batched=False)
        assert [(r.task, r.seed, r.success, r.calls, r.steps) for r in batched] == \
               [(r.task, r.seed, r.success, r.calls, r.steps) for r in sequential]


def test_random_is_far_below_the_oracle_and_the_report_is_written(tasks, policies, tmp_path):
    chosen = _one_per_category(tasks)
    oracle = evaluate(chosen, [7], OraclePlanner(), policies)
    random = evaluate(chosen, [7], RandomPlanner(), policies)
    summaries = [summarise("oracle", oracle, 1.0), summarise("random", random, 1.0)]
    assert summaries[0]["overall"]["success"] - summaries[1]["overall"]["success"] >= 0.3
    paths = write_report(tmp_path, summaries, {"oracle": oracle, "random": random})
    assert "| literal_motion |" in paths["markdown"].read_text()
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert "oracle" in markdown(summaries)


def test_wilson_interval():
    lo, hi = wilson(10, 10)
    assert 0.69 < lo < 0.73 and hi == 1.0
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and 0.27 < hi < 0.31


def test_the_observer_records_the_action_the_body_was_given_after_the_brake(tasks, policies):
    """On a body that brakes before the ball, a recorded action never walks towards a ball it is about to
    touch (what the body was given), and the episode does come that close."""
    import numpy as np

    from flexrl.envs.world import SkillScale
    from flexrl.robots.orb import Orb
    from flexrl.skills.library import brake_before_ball

    class BrakingOrb(Orb):
        skill_scale = SkillScale(brake=0.8)

    class Observer:
        def __init__(self):
            self.actions, self.runs = [], []

        def action(self, task, seed, action):
            self.actions.append(np.array(action))

        def finished(self, result, runner):
            self.runs.append(runner)

    observer = Observer()
    follow = next(t for t in tasks if t.category == "follow_ball")
    evaluate([follow], [0], OraclePlanner(), policies, n_envs=1, robot=BrakingOrb(), observer=observer)
    (runner,) = observer.runs
    worlds = runner.trajectory[: len(observer.actions)]  # the world each action was given in
    assert len(observer.actions) == len(runner.trajectory) - 1
    braking = [w for w, a in zip(worlds, observer.actions) if not np.array_equal(brake_before_ball(w, np.array([1.0, 0.0])), [1.0, 0.0])
               or not np.array_equal(brake_before_ball(w, np.array([-1.0, 0.0])), [-1.0, 0.0])]
    assert braking, "the episode never came near enough to the ball to brake"
    assert all(np.allclose(brake_before_ball(w, a), a) for w, a in zip(worlds, observer.actions))

"""planner=policy: an instruction-conditioned policy acts through the runner and the benchmark."""

import numpy as np
import pytest

from flexrl.agent.event_log import EventLog
from flexrl.agent.instructions import InstructionChannel
from flexrl.agent.runner import AgentConfig, AgentRunner
from flexrl.bench.evaluate import evaluate
from flexrl.data.embeddings import make_embedder
from flexrl.data.policy import ConditionedPolicy, Projection
from flexrl.data.tasks import generate_tasks
from flexrl.envs.registration import make_arena
from flexrl.planners.base import Instruction
from flexrl.planners.policy_planner import CALL, FAMILY, PolicyPlanner, policies_for
from flexrl.skills.policies import PolicySet


class CountingEmbedder:
    name, dim = "hashing", 64

    def __init__(self):
        self.inner, self.texts = make_embedder("hashing"), []

    def embed(self, texts):
        self.texts += texts
        return self.inner.embed(texts)


def _planner(embedder=None):
    embedder = embedder or CountingEmbedder()
    texts = ["go to the red pad", "avoid the ball", "stop", "follow the ball"]
    policy = ConditionedPolicy.new(Projection.fit(embedder.embed(texts), 4), [32], "hashing", seed=0)
    return PolicyPlanner(policy, embedder)


def _runner(planner, schedule=()):
    channel = InstructionChannel(Instruction("go to the red pad"), [(s, Instruction(t)) for s, t in schedule])
    return AgentRunner(make_arena(), planner, policies_for(planner, PolicySet.load()), channel,
                       AgentConfig(max_steps=60, record_video=False), EventLog(None))


def test_the_policy_acts_every_step_and_decides_on_instructions_only():
    planner = _planner()
    planner.embedder.texts.clear()
    runner = _runner(planner, [(30, "avoid the ball")])
    summary = runner.run(seed=0)
    assert summary["steps"] == 60 and summary["invalid_decisions"] == 0 and summary["fallbacks"] == 0
    assert runner.decision_steps == [0, 30] and all(d.call == CALL for d in runner.decisions)
    assert planner.embedder.texts == ["go to the red pad", "avoid the ball"]
    moved = np.linalg.norm(runner.trajectory[-1].agent.pos - runner.trajectory[0].agent.pos)
    assert moved > 0.01  # the untrained policy still pushes: its actions reach the body


def test_actions_are_the_policys():
    planner = _planner()
    runner = _runner(planner)
    episode = runner.episode(seed=1)
    decision_request = next(episode)
    request = episode.send((planner.decide(decision_request.context), 0.0))
    assert request.family == FAMILY
    expected, _ = planner.policy.predict(request.policy_input)
    assert np.allclose(policies_for(planner, PolicySet.load()).act(FAMILY, request.policy_input), expected)


def test_an_embedding_failure_keeps_the_running_policy():
    class Flaky(CountingEmbedder):
        def embed(self, texts):
            if texts == ["avoid the ball"]:
                raise RuntimeError("embedder down")
            return super().embed(texts)

    runner = _runner(_planner(Flaky()), [(20, "avoid the ball")])
    summary = runner.run(seed=2)
    assert summary["steps"] == 60 and summary["fallbacks"] == 1
    assert runner.decisions[-1].call == CALL and runner.decisions[-1].skill is not None


def test_the_family_name_cannot_shadow_a_skill_family():
    with pytest.raises(ValueError, match="taken"):
        PolicySet.load().with_model("reach", object())


def test_benchmark_runs_the_policy_in_lockstep():
    planner = _planner()
    results = evaluate(generate_tasks(3, seed=5), [0], planner, policies_for(planner, PolicySet.load()), n_envs=3)
    assert len(results) == 3 and all(r.invalid == 0 and r.calls and set(r.calls) == {"policy"} for r in results)


def test_the_shipped_policy_loads_with_its_embedder_and_acts():
    planner = PolicyPlanner.load()
    assert planner.policy.info["algorithm"] == "bc" and planner.embedder.name == planner.policy.info["embedder_id"]
    runner = _runner(planner, [(30, "Avoid the ball!")])
    summary = runner.run(seed=3)
    assert summary["steps"] == 60 and summary["fallbacks"] == 0 and runner.decision_steps == [0, 30]

"""Non-finite scores are a fault: the planner raises, the runner and the bench fall back, count and log it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flexrl.agent.event_log import EventLog
from flexrl.agent.instructions import InstructionChannel
from flexrl.agent.runner import AgentConfig, AgentRunner
from flexrl.bench.evaluate import evaluate
from flexrl.bench.tasks import Task, TimedInstruction
from flexrl.encoders import EncoderConfig, encode
from flexrl.envs import ArenaEnv
from flexrl.llm.base import LLMError, OptionScore
from flexrl.planners.base import Decision, Instruction, PlanContext
from flexrl.planners.config import PlannerConfig
from flexrl.planners.llm_planner import LLMPlanner, NonFiniteScoreError
from flexrl.skills.library import candidate_calls
from flexrl.skills.policies import PolicySet

NAN, INF = float("nan"), float("inf")


class PoisonedBackend:
    """Scores the first option ``bad`` for prompts containing ``poison`` (None: every prompt; ``first_only``:
    the first such prompt only), and every other option a finite score."""

    name = "poisoned"

    def __init__(self, bad: float = NAN, poison: str | None = None, first_only: bool = False) -> None:
        self.bad, self.poison, self.first_only, self.hits = bad, poison, first_only, 0

    def chat_prompt(self, system, user):
        return f"<sys>{system}</sys><user>{user}</user>"

    def score_options(self, prompt, options, cache_prefix=None):
        hit = (self.poison is None or self.poison in prompt) and not (self.first_only and self.hits)
        self.hits += hit
        return [OptionScore(self.bad if hit and i == 0 else -1.0 - i, 1) for i in range(len(options))]

    def generate(self, prompt, max_new_tokens):
        return ""


def _context(text: str, seed: int = 0) -> PlanContext:
    env = ArenaEnv()
    env.reset(seed=seed)
    world = env.world_state()
    return PlanContext(world, encode(world, EncoderConfig()), (Instruction(text),), tuple(candidate_calls(world)))


def _reject(constant):
    raise ValueError(f"non-standard JSON constant {constant}")


def _strict(path: Path) -> list[dict]:
    return [json.loads(line, parse_constant=_reject) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
@pytest.mark.parametrize("calibrate", [True, False])
def test_a_non_finite_score_is_an_llm_error_naming_the_backend_and_option(bad, calibrate):
    ctx = _context("Go north")
    with pytest.raises(NonFiniteScoreError) as info:
        LLMPlanner(PoisonedBackend(bad), PlannerConfig(calibrate=calibrate)).decide(ctx)
    assert isinstance(info.value, LLMError)
    what = "content-free" if calibrate else "decision"  # the calibration is checked before it is kept
    assert str(info.value) == (f"poisoned gave non-finite {what} scores ({ctx.candidates[0]}={bad}); "
                               "allowed: finite numbers (corrupted model weights?)")


def test_a_non_finite_calibration_is_not_kept():
    # the content-free prompt is scored first; its NaN must not poison every later decision
    backend, ctx = PoisonedBackend(poison="N/A", first_only=True), _context("Go north")
    planner = LLMPlanner(backend)
    with pytest.raises(NonFiniteScoreError, match="content-free"):
        planner.decide(ctx)
    assert isinstance(planner.decide(ctx), Decision)


def test_a_non_finite_affordance_is_a_fault_too():
    planner = LLMPlanner(PoisonedBackend(poison="never"), affordance=lambda c, call: NAN if call.name == "stop" else 0.0)
    with pytest.raises(NonFiniteScoreError, match=r"stop=nan"):
        planner.decide(_context("Go north"))


def test_decide_batch_returns_the_fault_in_place_and_decides_the_others():
    planner = LLMPlanner(PoisonedBackend(poison="Go north"))
    outcomes = planner.decide_batch([_context("Stop", 0), _context("Go north", 1), _context("Stop", 2)])
    assert [type(o) for o in outcomes] == [Decision, NonFiniteScoreError, Decision]


def test_the_runner_falls_back_counts_and_logs_strict_json(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    runner = AgentRunner(ArenaEnv(), LLMPlanner(PoisonedBackend()), PolicySet.load(),
                         InstructionChannel(Instruction("Go north", "move(north)")),
                         AgentConfig(max_steps=60, record_video=False), log)
    summary = runner.run(seed=0)
    log.close()
    events = _strict(tmp_path / "events.jsonl")
    fallbacks = [e for e in events if e["type"] == "fallback"]
    assert summary["decisions"] >= 1 and summary["fallbacks"] == summary["decisions"] == len(fallbacks)
    assert all(e["error"].startswith("NonFiniteScoreError: poisoned gave non-finite") for e in fallbacks)
    # the fallback keeps the running skill (stop at the start), never the NaN's arbitrary pick
    assert all(e["call"] == "stop" and e["margin"] == 0.0 for e in events if e["type"] == "decision")


@pytest.mark.parametrize("batched", [True, False])
def test_the_bench_counts_faults_per_episode(tmp_path, batched):
    def task(id_, text, intent):
        return Task(id_, "literal_motion", 40, {}, (TimedInstruction(0, text, intent),))

    tasks = [task("north", "Go north", "move(north)"), task("halt", "Stop", "stop")]
    planner = LLMPlanner(PoisonedBackend(poison="Go north"))
    results = evaluate(tasks, [0], planner, PolicySet.load(), n_envs=2, batched=batched, events_dir=tmp_path)
    north, halt = results
    assert north.decisions >= 1 and north.fallbacks == north.decisions
    assert halt.decisions >= 1 and halt.fallbacks == 0
    assert any(e["type"] == "fallback" and "NonFiniteScoreError" in e["error"] for e in _strict(tmp_path / "north-0.jsonl"))
    assert not any(e["type"] == "fallback" for e in _strict(tmp_path / "halt-0.jsonl"))

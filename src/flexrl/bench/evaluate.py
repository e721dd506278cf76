"""Evaluate a planner on tasks x seeds: sequentially, or over N environments in lockstep with batched work.

Batched mode steps N episodes together (each is an :meth:`AgentRunner.episode` generator): at every
tick the decisions all pending episodes need go to the planner at once (``decide_batch`` when it has
one: one batched LLM call per tick), and the skill actions of all episodes go through one policy
forward pass per skill family. Sequential mode runs ``AgentRunner.run`` one episode after another.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from flexrl.agent.event_log import EventLog
from flexrl.agent.instructions import InstructionChannel
from flexrl.agent.runner import ActionRequest, AgentConfig, AgentRunner, DecisionRequest
from flexrl.agent.sanitise import sanitise
from flexrl.bench.predicates import Segment
from flexrl.bench.tasks import Task
from flexrl.encoders.text import EncoderConfig
from flexrl.envs.arena_env import ArenaEnv
from flexrl.envs.registration import make_arena
from flexrl.planners.base import Decision, PlanContext, Planner
from flexrl.robots import make_robot
from flexrl.skills.policies import PolicySet


@dataclass
class EpisodeResult:
    """One task episode, judged by the task's predicates over the world-state trajectory."""

    task: str
    category: str
    seed: int
    solvable: bool
    success: bool
    segments: list[bool | None]
    steps: int
    decisions: int
    invalid: int
    fallbacks: int
    latencies_ms: list[float]
    reactions: list[dict[str, Any]]
    tokens: int
    calls: list[str] = field(default_factory=list)


class EpisodeObserver(Protocol):
    """Sees every action and every finished episode of a batched evaluation (e.g. to record a dataset)."""

    def action(self, task: str, seed: int, action: np.ndarray) -> None:
        """The action sent to the environment of episode (``task``, ``seed``) this step."""

    def finished(self, result: EpisodeResult, runner: AgentRunner) -> None:
        """An episode ended; ``runner`` holds its trajectory, decisions and instructions."""


def judge(task: Task, trajectory: list, arrivals: list[int], decided: list[tuple[int, str]] = ()) -> list[bool | None]:
    """Each instruction's checks over its segment of the trajectory (None: not judged).

    ``decided`` is ``(step, call)`` of every decision; a segment carries the calls decided in it.
    """
    verdicts: list[bool | None] = []
    bounds = [*arrivals, len(trajectory) - 1]
    for i, (ins, start, end) in enumerate(zip(task.instructions, bounds, bounds[1:])):
        if not ins.success:
            verdicts.append(None)
            continue
        stop = arrivals[i + 1] if i + 1 < len(arrivals) else float("inf")
        calls = [call for step, call in decided if start <= step < stop]
        segment = Segment(trajectory[start:end + 1], calls)
        verdicts.append(all(check(segment) for check in ins.success))
    return verdicts


class _Episode:
    """One task episode's runner and its bookkeeping."""

    def __init__(self, task: Task, seed: int, env: ArenaEnv, planner: Planner, policies: PolicySet,
                 encoder: EncoderConfig, events_dir: Path | None) -> None:
        self.task, self.seed, self.planner = task, seed, planner
        self.options, schedule = task.sample(seed)
        # Tasks are written in the orb's metres and steps; a larger, slower robot gets them scaled.
        scale = env.robot.skill_scale
        self.options = {k: tuple(c * scale.length for c in v) if isinstance(v, tuple) else v for k, v in self.options.items()}
        if "agent" in self.options:  # no closer to a wall than the body is ever placed (the orb's tasks stay inside)
            lim = env.half_size - scale.wall
            self.options["agent"] = tuple(float(np.clip(c, -lim, lim)) for c in self.options["agent"])
        schedule = [(round(step * scale.time), text, intent) for step, text, intent in schedule]
        self.arrivals = [step for step, _, _ in schedule]
        instructions = [(step, sanitise(text, "schedule", intent).instruction) for step, text, intent in schedule]
        channel = InstructionChannel(instructions[0][1], instructions[1:])
        log = EventLog(events_dir / f"{task.id}-{seed}.jsonl" if events_dir else None)
        config = AgentConfig(max_steps=round(task.steps * scale.time), encoder=encoder, record_video=False)
        self.runner = AgentRunner(env, planner, policies, channel, config, log)

    def result(self, summary: dict) -> EpisodeResult:
        self.runner.log.close()
        decisions = self.runner.decisions
        decided = [(step, str(d.call)) for step, d in zip(self.runner.decision_steps, decisions)]
        verdicts = judge(self.task, self.runner.trajectory, self.arrivals, decided)
        judged = [v for v in verdicts if v is not None]
        return EpisodeResult(
            self.task.id, self.task.category, self.seed, self.task.solvable, bool(judged) and all(judged), verdicts,
            summary["steps"], len(decisions), summary["invalid_decisions"], summary["fallbacks"],
            [round(d.latency_ms, 2) for d in decisions], summary["reactions"][1:], sum(d.tokens or 0 for d in decisions),
            [str(d.call) for d in decisions],
        )


def _planner_for(planner: Planner, seed: int) -> Planner:
    fork = getattr(planner, "fork", None)
    return fork(seed) if fork else planner


def decide_all(planner: Planner, contexts: list[PlanContext]) -> list[Decision | BaseException]:
    """Every context's decision (or the error raised for it): one ``decide_batch`` call when the planner has one."""
    batch = getattr(planner, "decide_batch", None)
    if batch is not None and len(contexts) > 1:
        try:
            return list(batch(contexts))
        except Exception as err:  # an LLM failure never crashes a run: every episode falls back
            return [err] * len(contexts)
    out: list[Decision | BaseException] = []
    for context in contexts:
        try:
            out.append(planner.decide(context))
        except Exception as err:
            out.append(err)
    return out


def evaluate(
    tasks: list[Task],
    seeds: list[int],
    planner: Planner,
    policies: PolicySet,
    n_envs: int = 16,
    batched: bool = True,
    encoder: EncoderConfig | None = None,
    events_dir: str | Path | None = None,
    on_episode: Callable[[EpisodeResult], None] | None = None,
    robot=None,
    observer: EpisodeObserver | None = None,
) -> list[EpisodeResult]:
    """Run every task with every seed with ``robot`` (a robot, its config or name; None: the orb); results in
    (task, seed) order. An ``observer`` sees each action and each finished episode (batched mode only)."""
    if observer is not None and not batched:
        raise ValueError("an observer needs batched=True (it sees the actions of the lockstep driver)")
    encoder = encoder or EncoderConfig()
    make_robot(robot).check()  # a robot that cannot act fails here, in one line, not mid-benchmark
    events = Path(events_dir) if events_dir else None
    if events:
        events.mkdir(parents=True, exist_ok=True)
    jobs = [(task, seed) for task in tasks for seed in seeds]
    results: dict[tuple[str, int], EpisodeResult] = {}

    def done(ep: _Episode, summary: dict) -> None:
        r = ep.result(summary)
        results[(r.task, r.seed)] = r
        if observer is not None:
            observer.finished(r, ep.runner)
        if on_episode:
            on_episode(r)

    if not batched:
        env = make_arena(robot)
        for task, seed in jobs:
            ep = _Episode(task, seed, env, _planner_for(planner, seed), policies, encoder, events)
            done(ep, ep.runner.run(seed, ep.options))
        env.close()
    else:
        _lockstep(jobs, planner, policies, encoder, events, max(1, n_envs), done, robot, observer)
    return [results[(task.id, seed)] for task, seed in jobs]


def _lockstep(jobs, planner, policies, encoder, events, n_envs, done, robot, observer=None) -> None:
    envs = [make_arena(robot) for _ in range(min(n_envs, len(jobs)))]
    free, queue = list(envs), list(jobs)
    live: list[_Slot] = []
    while queue or live:
        while queue and free:
            task, seed = queue.pop(0)
            ep = _Episode(task, seed, free.pop(), _planner_for(planner, seed), policies, encoder, events)
            gen = ep.runner.episode(seed, ep.options)
            live.append(_Slot(ep, gen, next(gen), ep.runner.env))
        _decide_tick([x for x in live if isinstance(x.request, DecisionRequest)])
        _act_tick([x for x in live if isinstance(x.request, ActionRequest)], policies, done, observer)
        for slot in [x for x in live if x.request is None]:
            live.remove(slot)
            free.append(slot.env)
    for env in envs:
        env.close()


@dataclass
class _Slot:
    episode: _Episode
    generator: Any
    request: DecisionRequest | ActionRequest | None
    env: ArenaEnv


def _decide_tick(waiting: list[_Slot]) -> None:
    """All pending decisions, one batch per planner instance; each episode waited the batch's wall time."""
    groups: dict[int, list[_Slot]] = {}
    for slot in waiting:
        groups.setdefault(id(slot.episode.planner), []).append(slot)
    for group in groups.values():
        start = time.perf_counter()
        outcomes = decide_all(group[0].episode.planner, [x.request.context for x in group])
        latency = (time.perf_counter() - start) * 1e3
        for slot, outcome in zip(group, outcomes):
            slot.request = slot.generator.send((outcome, latency))  # the action request of the new skill


def _act_tick(waiting: list[_Slot], policies: PolicySet, done, observer=None) -> None:
    """One policy forward pass per skill family for every episode's action this step."""
    families: dict[str, list[_Slot]] = {}
    for slot in waiting:
        families.setdefault(slot.request.family, []).append(slot)
    for family, group in families.items():
        actions = policies.act(family, np.stack([x.request.policy_input for x in group]))
        for slot, action in zip(group, actions):
            stopped = None
            try:
                slot.request = slot.generator.send(action)
            except StopIteration as stop:
                slot.request, stopped = None, stop
            if observer is not None:  # what the body was given, after the skill's brake
                observer.action(slot.episode.task.id, slot.episode.seed, slot.episode.runner.applied_action)
            if stopped is not None:
                done(slot.episode, stopped.value)

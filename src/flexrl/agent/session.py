"""One agent run from configuration to run directory: the work behind ``flexrl run``.

:class:`RunConfig` is both the library's settings of a run and the Hydra schema of ``flexrl run``; it
checks itself when built (ports, schedule steps, intents against the arena), so a bad value is one line
before any run directory exists.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Optional, TextIO

import yaml

from flexrl.agent.event_log import EventLog
from flexrl.agent.instructions import InstructionChannel, ScheduledInstruction, parse_schedule_item
from flexrl.agent.intents import IntentChecker, arena_world
from flexrl.agent.runner import VERDICT_CAPTIONS, AgentConfig, AgentRunner
from flexrl.agent.sanitise import sanitise
from flexrl.envs.registration import make_arena
from flexrl.envs.config import EnvConfig, RobotConfig
from flexrl.llm.config import LLMConfig
from flexrl.local_http import check_port
from flexrl.planners.base import Planner
from flexrl.planners.config import PlannerConfig, build_planner
from flexrl.planners.policy_planner import policies_for
from flexrl.runs.atomic import write_json, write_text
from flexrl.runs.config import ExperimentConfig
from flexrl.runs.run_dir import RunDir, new_run_id, recorded_status
from flexrl.skills.policies import PolicySet
from flexrl.web.guard import check_exposure

DEMO_INSTRUCTION = "Go to the ball"
DEMO_INTENT = "go_to(ball)"
DEMO_SCHEDULE = ("150:Avoid the ball! => avoid(ball)",)
UI_PORT = 8765
"""The control room's port when ``ui=true`` and no ``http_port`` is given."""
TOKEN_ENV = "FLEXRL_UI_TOKEN"


@dataclass
class RunConfig:
    """``flexrl run``: one LLM-driven agent episode, in its own run directory.

    Attributes:
        env: ball behaviour.
        robot: the agent's body.
        llm: the LLM planner's model.
        planner: which planner decides.
        agent: episode settings; the ``encoder`` group fills ``agent.encoder``.
        experiment: name, workspace, seed (of the layout and the planner).
        instruction: the first instruction (None: the demo's "Go to the ball", judged by go_to(ball);
            empty: no first instruction, with a note in the event log).
        intent: the skill call that fulfils the first instruction, e.g. ``go_to(red_pad)``, or a sequence
            ``go_to(red_pad); go_to(blue_pad)`` (read by the oracle; the verdict). None or empty: the
            instruction is not judged; an instruction given without its intent gets no verdict.
        schedule: instructions injected mid-run, "STEP:TEXT" or "STEP:TEXT => INTENT", STEP in
            [0, agent.max_steps) (None: the demo's "Avoid the ball!" at step 150, judged by avoid(ball),
            when the episode is that long).
        stdin: read live instructions from standard input.
        http_port: accept POST /instruction on 127.0.0.1:PORT (0: any free port, printed at start; None: off,
            or :data:`UI_PORT` with ``ui``).
        http_host: the address the run's HTTP app binds; off loopback ``http_token`` is required.
        http_token: the token every HTTP request must carry (None: the FLEXRL_UI_TOKEN environment variable,
            if set).
        ui: serve the control room's page on the run's HTTP app and pace the episode at real time
            (20 control steps/s) so that it can be watched.
        checkpoints: directory with a checkpoint of every skill family (None: the shipped ones).
        policies: per-family checkpoint directories that replace ``checkpoints`` for those families,
            e.g. ``+policies.avoid=workspace/default/<run-id>/checkpoints`` after ``flexrl train skill=avoid``.

    Raises:
        ValueError: one line naming the bad value and what is allowed.
    """

    env: EnvConfig = field(default_factory=EnvConfig)
    robot: RobotConfig = field(default_factory=RobotConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    experiment: ExperimentConfig = field(default_factory=lambda: ExperimentConfig(name="demo"))
    instruction: Optional[str] = None
    intent: Optional[str] = None
    schedule: Optional[list[str]] = None
    stdin: bool = False
    http_port: Optional[int] = None
    http_host: str = "127.0.0.1"
    http_token: Optional[str] = None
    ui: bool = False
    checkpoints: Optional[str] = None
    policies: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_port(self.http_port, "http_port", optional=True)
        if self.http_token is None:
            self.http_token = os.environ.get(TOKEN_ENV) or None
        check_exposure(self.http_host, self.http_token)
        self.timeline(IntentChecker(arena_world(self.robot)))

    def timeline(self, intents: IntentChecker) -> list[ScheduledInstruction]:
        """The first instruction (at step 0) and the schedule, parsed and checked; not yet sanitised.

        Raises:
            ValueError: one line naming the bad item and what is allowed.
        """
        intent = self.intent or None
        if self.instruction is None:
            first = ScheduledInstruction(0, DEMO_INSTRUCTION, intent or DEMO_INTENT, "initial")
        else:
            first = ScheduledInstruction(0, self.instruction, intent, "initial")
        if intent is not None:
            try:
                intents.parse(intent)
            except ValueError as err:
                raise ValueError(f"intent={intent!r}: {err}") from None
        out = [first]
        last = self.agent.max_steps - 1
        for item in DEMO_SCHEDULE if self.schedule is None else self.schedule:
            scheduled = parse_schedule_item(item)
            if not 0 <= scheduled.step <= last:
                if self.schedule is None:  # the demo's, in an episode too short for it
                    continue
                raise ValueError(f"schedule item {item!r}: step {scheduled.step}; allowed: 0 to {last} "
                                 f"(agent.max_steps={self.agent.max_steps})")
            if scheduled.intent is not None:
                try:
                    intents.parse(scheduled.intent)
                except ValueError as err:
                    raise ValueError(f"schedule item {item!r}: intent {scheduled.intent!r}: {err}") from None
            out.append(scheduled)
        return out


def run_agent(
    cfg: RunConfig,
    planner: Planner | None = None,
    stdin: TextIO | BinaryIO | None = None,
    on_decision: Callable | None = None,
    on_step: Callable | None = None,
    on_serving: Callable[[str], None] | None = None,
    run_dir: str | Path | None = None,
    resolved_config: str | None = None,
) -> tuple[RunDir, dict]:
    """Run one episode and write its run directory: config, meta, events, video, summary.

    Args:
        cfg: the run's settings.
        planner: decides (None: built from ``cfg.planner``).
        stdin: the stream of live instructions when ``cfg.stdin`` is set.
        on_decision: hook called after every decision (live display).
        on_step: hook called after every control step.
        on_serving: called with the URL of ``POST /instruction`` once the HTTP server listens (and then with
            the control room's page, ending in "/", with ``ui``).
        run_dir: the run's directory (None: a fresh ``<workspace>/<experiment>/<run-id>``).
        resolved_config: the full resolved config text to store as ``config.yaml`` (None: ``cfg``'s fields).

    A Ctrl-C or SIGTERM ends the run as "interrupted", an exception as "failed"; both keep what was written.

    Raises:
        ValueError: one line, when the HTTP port cannot be served (before the run directory is made).
    """
    planner = planner or build_planner(cfg.planner, cfg.llm, cfg.experiment.seed)
    policies = policies_for(planner, PolicySet.load(cfg.checkpoints, sources=cfg.policies, robot=cfg.robot))
    view = extend = None
    size = {}
    if cfg.ui:
        from flexrl.ui.live import LiveView, Pacer
        from flexrl.ui.routes import add_ui_routes

        view, pacer, size = LiveView(), Pacer(), {"width": 480, "height": 360}
        extend = lambda app: add_ui_routes(app, view, cfg.experiment.workspace)  # noqa: E731
        on_decision, on_step = _both(on_decision, view.on_decision), _both(on_step, lambda step: pacer.tick())
    env = make_arena(cfg.robot, ball_mode=cfg.env.ball_mode, ball_speed=cfg.env.ball_speed,
                     render_mode="rgb_array" if cfg.agent.record_video or cfg.ui else None, **size)
    channel = log = None
    try:
        env.robot.check()  # e.g. a legged robot without its gait: one line before any run directory exists
        intents = IntentChecker(env.world_state())
        arrivals = [(s.step, sanitise(s.text, s.source, s.intent)) for s in cfg.timeline(intents)]
        port = UI_PORT if cfg.ui and cfg.http_port is None else cfg.http_port
        channel = InstructionChannel(schedule=arrivals, stdin=stdin if cfg.stdin else None, http_port=port,
                                     intents=intents, http_host=cfg.http_host, http_token=cfg.http_token, extend=extend)
        if channel.http_url is not None and on_serving is not None:
            on_serving(channel.http_url)
            if cfg.ui:
                on_serving(f"{channel.http_base_url}/")
        exp = cfg.experiment
        path = Path(run_dir) if run_dir else Path(exp.workspace) / exp.name / new_run_id()
        run = RunDir.create(path, exp.name, exp.seed, kind="run", planner=planner.name, tags=list(exp.tags))
        write_text(run.path / "config.yaml", resolved_config or yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
        log = EventLog(run.path / "events.jsonl")
        with recorded_status(run):
            runner = AgentRunner(env, planner, policies, channel, cfg.agent, log, on_decision, on_step,
                                 on_frame=view.on_frame if view is not None else None)
            if view is not None:
                view.new_episode(status="running", seed=exp.seed, run=str(run.path), max_steps=cfg.agent.max_steps,
                                 planner=planner.name)
                runner.on_step = _both(runner.on_step, lambda step: view.on_step(step, runner))
            backend = getattr(planner, "backend", None)
            if hasattr(backend, "on_fault") and backend.on_fault is None:  # a resilient backend: faults become events
                backend.on_fault = lambda fault: log.emit("llm_fault", runner.step, **fault.fields())
            summary = runner.run(exp.seed)
            if runner.video is not None:
                summary["media"] = [str(p.relative_to(run.path)) for p in runner.video.save(run.path / "media" / "episode")]
            summary["planner"] = planner.name
            write_json(run.path / "metrics.json", summary)
            if view is not None:
                view.set_state(status="finished")
        return run, summary
    finally:
        if log is not None:
            log.close()
        if channel is not None:
            channel.close()
        env.close()


def _both(first: Callable | None, second: Callable) -> Callable:
    """A hook calling ``first`` (if any), then ``second``, with the same arguments."""
    def hook(*args):
        if first is not None:
            first(*args)
        second(*args)
    return hook


def print_decision(write: Callable[[str], None] = print) -> Callable:
    """A live-display hook: one line per decision, the observation under it."""
    def hook(step, context, decision) -> None:
        ins = context.instruction.text if context.instruction else "-"
        flag = f"  FALLBACK ({decision.fallback})" if decision.fallback else ""
        verdict = VERDICT_CAPTIONS.get(decision.call.name, "")
        write(f"[step {step:4d}] {ins!r} -> {decision.call}{verdict}  margin {decision.margin:5.2f}  "
              f"{decision.latency_ms:6.0f} ms{flag}")
        if context.progress:
            write(f"             done so far: {'; '.join(map(str, context.progress))}")
        write(f"             observation: {context.observation}")
    return hook


def stdin_stream() -> BinaryIO:
    """Standard input as bytes, for live instructions: undecodable lines are noted, not fatal."""
    return sys.stdin.buffer

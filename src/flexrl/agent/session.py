"""One agent run from configuration to run directory: the work behind ``flexrl run``."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

import yaml

from flexrl.agent.event_log import EventLog
from flexrl.agent.instructions import InstructionChannel, sanitise
from flexrl.agent.runner import AgentConfig, AgentRunner
from flexrl.envs.arena_env import ArenaEnv
from flexrl.envs.config import EnvConfig, RobotConfig
from flexrl.llm.config import LLMConfig
from flexrl.planners.base import Planner
from flexrl.planners.config import PlannerConfig, build_planner
from flexrl.runs.atomic import write_json, write_text
from flexrl.runs.run_dir import RunDir, new_run_id, recorded_status
from flexrl.skills.policies import PolicySet


@dataclass
class ScheduledInstruction:
    """An instruction delivered at a control step, with its optional intent (for the oracle and judging)."""

    step: int
    text: str
    intent: str | None = None


@dataclass
class RunConfig:
    """Everything an agent run needs.

    Attributes:
        instruction: the first instruction.
        intent: the skill call that fulfils the first instruction (optional; used by the oracle and the judge).
        schedule: instructions injected mid-run.
        planner: which planner decides.
        llm: the LLM planner's model.
        env: ball behaviour.
        robot: the agent's body.
        seed: layout and planner seed.
        agent: episode settings.
        workspace: root of run directories.
        experiment: sub-directory of the workspace.
        run_dir: the run's directory (None: a fresh ``<workspace>/<experiment>/<run-id>``).
        stdin: read live instructions from standard input.
        http_port: accept live instructions on 127.0.0.1:port (None: off).
        checkpoints: skill checkpoints directory (None: the shipped ones).
        policies: per-family checkpoint directories that replace ``checkpoints`` for those families.
        resolved_config: the full resolved config text to store as ``config.yaml`` (None: this dataclass).
    """

    instruction: str = "Go to the ball"
    intent: str | None = "go_to(ball)"
    schedule: list[ScheduledInstruction] = field(default_factory=lambda: [ScheduledInstruction(150, "Avoid the ball!", "avoid(ball)")])
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    robot: RobotConfig = field(default_factory=RobotConfig)
    seed: int = 0
    agent: AgentConfig = field(default_factory=lambda: AgentConfig(max_steps=300))
    workspace: str = "workspace"
    experiment: str = "demo"
    run_dir: str | None = None
    stdin: bool = False
    http_port: int | None = None
    checkpoints: str | None = None
    policies: dict[str, str] = field(default_factory=dict)
    resolved_config: str | None = None


def run_agent(
    cfg: RunConfig,
    planner: Planner | None = None,
    stdin: TextIO | None = None,
    on_decision: Callable | None = None,
    on_step: Callable | None = None,
) -> tuple[RunDir, dict]:
    """Run one episode and write its run directory: config, meta, events, video, summary.

    A Ctrl-C or SIGTERM ends the run as "interrupted", an exception as "failed"; both keep what was written.
    """
    planner = planner or build_planner(cfg.planner, cfg.llm, cfg.seed)
    policies = PolicySet.load(cfg.checkpoints, sources=cfg.policies)
    env = ArenaEnv(spec=cfg.robot.spec(), ball_mode=cfg.env.ball_mode, ball_speed=cfg.env.ball_speed,
                   render_mode="rgb_array" if cfg.agent.record_video else None)
    first = sanitise(cfg.instruction, "initial", cfg.intent).instruction
    schedule = [(s.step, sanitise(s.text, "schedule", s.intent).instruction) for s in cfg.schedule]
    channel = InstructionChannel(first, [(k, i) for k, i in schedule if i is not None],
                                 stdin=stdin if cfg.stdin else None, http_port=cfg.http_port)
    path = Path(cfg.run_dir) if cfg.run_dir else Path(cfg.workspace) / cfg.experiment / new_run_id()
    run = RunDir.create(path, cfg.experiment, cfg.seed, kind="run", planner=planner.name)
    write_text(run.path / "config.yaml", cfg.resolved_config or yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    log = EventLog(run.path / "events.jsonl")
    try:
        with recorded_status(run):
            runner = AgentRunner(env, planner, policies, channel, cfg.agent, log, on_decision, on_step)
            backend = getattr(planner, "backend", None)
            if hasattr(backend, "on_fault") and backend.on_fault is None:  # a resilient backend: faults become events
                backend.on_fault = lambda fault: log.emit("llm_fault", runner.step, **fault.fields())
            summary = runner.run(cfg.seed)
            if runner.video is not None:
                summary["media"] = [str(p.relative_to(run.path)) for p in runner.video.save(run.path / "media" / "episode")]
            summary["planner"] = planner.name
            write_json(run.path / "metrics.json", summary)
        return run, summary
    finally:
        log.close()
        channel.close()
        env.close()


def print_decision(write: Callable[[str], None] = print) -> Callable:
    """A live-display hook: one line per decision, the observation under it."""
    def hook(step, context, decision) -> None:
        ins = context.instruction.text if context.instruction else "-"
        flag = f"  FALLBACK ({decision.fallback})" if decision.fallback else ""
        write(f"[step {step:4d}] {ins!r} -> {decision.call}  margin {decision.margin:5.2f}  {decision.latency_ms:6.0f} ms{flag}")
        write(f"             observation: {context.observation}")
    return hook


def stdin_stream() -> TextIO:
    """Standard input, for live instructions."""
    return sys.stdin

"""One agent run from configuration to run directory: the work behind ``flexrl run``."""

from __future__ import annotations

import dataclasses
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

import yaml

from flexrl.agent.event_log import EventLog
from flexrl.agent.instructions import InstructionChannel, sanitise
from flexrl.agent.runner import AgentConfig, AgentRunner
from flexrl.envs.arena_env import ArenaEnv
from flexrl.planners.base import Instruction, Planner
from flexrl.runs.atomic import write_json, write_text
from flexrl.runs.run_dir import RunDir
from flexrl.skills.policies import PolicySet

PLANNERS = ("llm", "oracle", "random")


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
        planner: "llm", "oracle" or "random".
        model: a Hugging Face directory or a .gguf file; None: the embedded SmolLM2-135M-Instruct.
        model_cache: where dequantised GGUF weights are cached (None: ~/.cache/flexrl/models).
        threads: torch threads for the LLM (1: it shares the CPU with simulation).
        seed: layout and planner seed.
        ball_mode: "still", "drift", "chase" or "random".
        ball_speed: m/s of a moving ball.
        agent: episode settings.
        workspace: root of run directories.
        experiment: sub-directory of the workspace.
        stdin: read live instructions from standard input.
        http_port: accept live instructions on 127.0.0.1:port (None: off).
        checkpoints: skill checkpoints directory (None: the shipped ones).
    """

    instruction: str = "Go to the ball"
    intent: str | None = "go_to(ball)"
    schedule: list[ScheduledInstruction] = field(default_factory=lambda: [ScheduledInstruction(150, "Avoid the ball!", "avoid(ball)")])
    planner: str = "llm"
    model: str | None = None
    model_cache: str | None = None
    threads: int = 1
    seed: int = 0
    ball_mode: str = "drift"
    ball_speed: float = 0.3
    agent: AgentConfig = field(default_factory=lambda: AgentConfig(max_steps=300))
    workspace: str = "workspace"
    experiment: str = "demo"
    stdin: bool = False
    http_port: int | None = None
    checkpoints: str | None = None

    def __post_init__(self) -> None:
        if self.planner not in PLANNERS:
            raise ValueError(f"planner={self.planner!r}; allowed: {', '.join(PLANNERS)}")


def build_planner(cfg: RunConfig) -> Planner:
    """The configured planner; the LLM loads here, before the episode starts, so a bad model fails early."""
    if cfg.planner == "oracle":
        from flexrl.planners.oracle import OraclePlanner

        return OraclePlanner()
    if cfg.planner == "random":
        from flexrl.planners.oracle import RandomPlanner

        return RandomPlanner(cfg.seed)
    from flexrl.llm.transformers_backend import TransformersBackend
    from flexrl.planners.llm_planner import LLMPlanner

    return LLMPlanner(TransformersBackend(model=cfg.model, cache_dir=cfg.model_cache, threads=cfg.threads))


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
    planner = planner or build_planner(cfg)
    run = RunDir.create(cfg.workspace, cfg.experiment, cfg.seed)
    write_text(run.path / "config.yaml", yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    env = ArenaEnv(ball_mode=cfg.ball_mode, ball_speed=cfg.ball_speed, render_mode="rgb_array" if cfg.agent.record_video else None)
    first = sanitise(cfg.instruction, "initial", cfg.intent).instruction
    schedule = [(s.step, sanitise(s.text, "schedule", s.intent).instruction) for s in cfg.schedule]
    channel = InstructionChannel(first, [(k, i) for k, i in schedule if i is not None],
                                 stdin=stdin if cfg.stdin else None, http_port=cfg.http_port)
    log = EventLog(run.path / "events.jsonl")
    runner = AgentRunner(env, planner, PolicySet.load(cfg.checkpoints), channel, cfg.agent, log, on_decision, on_step)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _main_thread() else None
    status = "failed"
    try:
        summary = runner.run(cfg.seed)
        if runner.video is not None:
            summary["media"] = [str(p.relative_to(run.path)) for p in runner.video.save(run.path / "media" / "episode")]
        summary["planner"] = planner.name
        write_json(run.path / "metrics.json", summary)
        status = "finished"
        return run, summary
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        run.finish(status)
        log.close()
        channel.close()
        env.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


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

"""``flexrl ui``'s episodes: a control loop on its own thread, paced at real time, steered from the page.

The loop drives :meth:`~flexrl.agent.runner.AgentRunner.episode` itself, so it can pause between control
steps, end an episode on reset, and rebuild the planner, robot or ball on the page's choice. Each episode
is a run directory in the workspace (``<workspace>/ui/<run-id>``: config, events, metrics), so the runs
browser lists it. Frames for the page are rendered at 480x360 in the loop; they are not kept as video.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from flexrl.agent.event_log import EventLog
from flexrl.agent.instructions import InstructionChannel
from flexrl.agent.intents import IntentChecker
from flexrl.agent.runner import DecisionRequest, AgentRunner
from flexrl.agent.sanitise import Arrival, sanitise
from flexrl.agent.session import RunConfig
from flexrl.envs.config import EnvConfig, RobotConfig
from flexrl.envs.registration import make_arena
from flexrl.llm.config import LLMConfig
from flexrl.planners.config import PlannerConfig, build_planner
from flexrl.planners.policy_planner import policies_for
from flexrl.runs.atomic import write_json, write_text
from flexrl.runs.run_dir import RunDir, new_run_id
from flexrl.skills.policies import PolicySet
from flexrl.ui.live import LiveView, Pacer

FRAME_SIZE = (480, 360)
GROUPS = {"planner": PlannerConfig, "llm": LLMConfig, "robot": RobotConfig, "env": EnvConfig}
"""The config groups the page chooses from, and the schema each of their files fills."""
ACTIONS = ("start", "pause", "resume", "reset", "reseed")


def group_options() -> dict[str, list[str]]:
    """The choices of each config group the page offers (the files of ``flexrl/conf/<group>``)."""
    root = resources.files("flexrl.conf")
    return {g: sorted(p.name[:-5] for p in (root / g).iterdir() if p.name.endswith(".yaml")) for g in GROUPS}


def load_group(group: str, name: str):
    """The config of ``<group>/<name>.yaml`` as its schema's dataclass.

    Raises:
        ValueError: one line, for a group or choice that does not exist.
    """
    options = group_options()
    if group not in options:
        raise ValueError(f"setting {group!r}; allowed: {', '.join(GROUPS)}")
    if name not in options[group]:
        raise ValueError(f"{group}={name!r}; allowed: {', '.join(options[group])}")
    data = yaml.safe_load((resources.files("flexrl.conf") / group / f"{name}.yaml").read_text(encoding="utf-8")) or {}
    fields = {f.name for f in dataclasses.fields(GROUPS[group])}
    return GROUPS[group](**{k: v for k, v in data.items() if k in fields})


class LiveSession:
    """Runs episodes for the page, one after the other, until :meth:`close`.

    Args:
        cfg: the first episode's settings (planner, llm, robot, env, agent, experiment, instruction ...).
        view: where frames, decisions and state go.
        realtime: pace the loop at 20 control steps per second (False: as fast as it goes, for benchmarks).
        choices: the group choices ``cfg`` was made from (shown on the page), e.g. ``{"planner": "llm"}``.
    """

    def __init__(self, cfg: RunConfig, view: LiveView, realtime: bool = True, choices: dict[str, str] | None = None) -> None:
        self.cfg, self.view, self.realtime = cfg, view, realtime
        self.choices = {"planner": cfg.planner.name, "llm": "embedded", "robot": cfg.robot.name, "env": cfg.env.ball_mode,
                        **(choices or {})}
        self.seed = cfg.experiment.seed
        self._commands: queue.Queue[tuple[str, dict]] = queue.Queue()
        self._channel: InstructionChannel | None = None
        self._inbox: list[Arrival] = []  # what arrives between episodes goes to the next one
        self._inbox_lock = threading.Lock()
        self._closed = threading.Event()
        self._built: tuple | None = None
        self.planner = self.env = self.policies = None
        self.runs: list[str] = []
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._loop, daemon=True, name="flexrl-ui-loop")

    def start(self) -> "LiveSession":
        self._thread.start()
        return self

    # ------------------------------------------------------------------ from the app's threads
    def submit(self, arrival: Arrival) -> None:
        """An instruction (or a note) from the page or ``POST /instruction``, for the episode on show."""
        with self._inbox_lock:
            if self._channel is not None:
                self._channel.put(arrival)
            else:
                self._inbox.append(arrival)

    def control(self, action: str, seed: int | None = None, **settings: str) -> dict:
        """Queue a control action for the loop; returns what was queued.

        Raises:
            ValueError: one line, for an unknown action, a bad seed or a setting that does not exist.
        """
        if action not in ACTIONS:
            raise ValueError(f"action={action!r}; allowed: {', '.join(ACTIONS)}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31):
            raise ValueError(f"seed={seed!r}; allowed: an integer from 0 to 2**31-1")
        for group, name in settings.items():
            load_group(group, name)  # refuses a bad one here, in one line
        self._commands.put((action, {"seed": seed, **settings}))
        return {"queued": action, "seed": seed, **settings}

    def close(self) -> None:
        self._closed.set()
        self._commands.put(("close", {}))
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------ the loop's thread
    def _loop(self) -> None:
        action, args = "start", {}
        while not self._closed.is_set():
            if action in ("start", "reset", "reseed"):
                self._apply(action, args)
                try:
                    self._build()
                except Exception as err:  # noqa: BLE001 (a bad choice must not end the page's loop)
                    self.errors.append(f"{type(err).__name__}: {err}")
                    self.view.set_state(status="error", error=self.errors[-1])
                    action, args = self._commands.get()
                    continue
                action, args = self._episode()
            elif action == "close":
                return
            else:  # pause, resume with no episode on: wait for a start or reset
                action, args = self._commands.get()

    def _apply(self, action: str, args: dict) -> None:
        if action == "reseed":
            self.seed = args["seed"] if args.get("seed") is not None else self.seed + 1
        elif args.get("seed") is not None:
            self.seed = args["seed"]
        changes = {g: args[g] for g in GROUPS if args.get(g)}
        if changes:
            self.choices.update(changes)
            self.cfg = dataclasses.replace(self.cfg, **{g: load_group(g, n) for g, n in changes.items()})

    def _build(self) -> None:
        key = (self.choices["planner"], self.choices["llm"], self.choices["robot"], self.choices["env"])
        if self._built == key:
            return
        self.view.set_state(status="loading", choices=dict(self.choices))
        cfg = self.cfg
        if self.env is not None:
            self.env.close()
        self.planner = build_planner(cfg.planner, cfg.llm, cfg.experiment.seed)
        self.policies = policies_for(self.planner, PolicySet.load(cfg.checkpoints, sources=cfg.policies, robot=cfg.robot))
        self.env = make_arena(cfg.robot, ball_mode=cfg.env.ball_mode, ball_speed=cfg.env.ball_speed,
                              render_mode="rgb_array", width=FRAME_SIZE[0], height=FRAME_SIZE[1])
        self.env.robot.check()
        self._built = key

    def _episode(self) -> tuple[str, dict]:
        """Run one episode; returns the command that ended it (or the first after it finished)."""
        cfg, env = self.cfg, self.env
        env.reset(seed=self.seed)
        intents = IntentChecker(env.world_state())
        arrivals = [(s.step, sanitise(s.text, s.source, s.intent)) for s in cfg.timeline(intents)]
        channel = InstructionChannel(schedule=arrivals, intents=intents)
        exp = cfg.experiment
        run = RunDir.create(Path(exp.workspace) / "ui" / new_run_id(), "ui", self.seed, kind="run",
                            planner=self.planner.name, tags=["ui"], choices=dict(self.choices))
        write_text(run.path / "config.yaml", yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
        log = EventLog(run.path / "events.jsonl")
        agent = dataclasses.replace(cfg.agent, record_video=False)
        runner = AgentRunner(env, self.planner, self.policies, channel, agent, log, on_decision=self.view.on_decision,
                             on_frame=self.view.on_frame)
        runner.on_step = lambda step: self.view.on_step(step, runner)
        with self._inbox_lock:
            for arrival in self._inbox:
                channel.put(arrival)
            self._inbox.clear()
            self._channel = channel
        self.runs.append(str(run.path))
        self.view.new_episode(status="running", seed=self.seed, run=str(run.path), choices=dict(self.choices),
                              max_steps=agent.max_steps, planner=self.planner.name)
        episode = runner.episode(self.seed)
        status, ending = "interrupted", None
        try:
            request, pacer = next(episode), Pacer()
            while True:
                ending, paused_s = self._between_steps()
                pacer.shift(paused_s)
                if ending is not None:
                    break
                if isinstance(request, DecisionRequest):
                    start = time.perf_counter()
                    try:
                        outcome: Any = self.planner.decide(request.context)
                    except Exception as err:  # noqa: BLE001 (an LLM failure never crashes a run)
                        outcome = err
                    request = episode.send((outcome, (time.perf_counter() - start) * 1e3))
                    continue
                request = episode.send(self.policies.act(request.family, request.policy_input))
                if self.realtime:
                    pacer.tick()
        except StopIteration as done:
            status = "finished"
            write_json(run.path / "metrics.json", done.value)
        finally:
            episode.close()
            log.close()
            run.finish(status)
            with self._inbox_lock:
                self._channel = None
        self.view.set_state(status="finished" if status == "finished" else "stopped")
        return ending or self._commands.get()

    def _between_steps(self) -> tuple[tuple[str, dict] | None, float]:
        """Handle the commands that arrived; a pause waits here. Returns a command that ends the episode
        (or None) and the seconds spent paused."""
        paused_at = None
        while True:
            try:
                action, args = self._commands.get(timeout=0.2) if paused_at else self._commands.get_nowait()
            except queue.Empty:
                if paused_at is None:
                    return None, 0.0
                continue
            if action == "pause" and paused_at is None:
                paused_at = time.perf_counter()
                self.view.set_state(status="paused")
            elif action == "resume" and paused_at is not None:
                self.view.set_state(status="running")
                return None, time.perf_counter() - paused_at
            elif action in ("start", "reset", "reseed", "close"):
                return (action, args), 0.0

"""The agent loop: world -> text -> planner -> skill, re-deciding on instructions, skill ends and events.

Per control step: poll the instruction channel; re-decide immediately on a new instruction, when the
running skill ends, or on a configured world event; otherwise the running skill's policy acts. A planner
failure never stops the run: the runner keeps the current skill (or stops) and logs the fallback.

The loop is closed: when a skill ends, its success detector's verdict ("go_to(red_pad): reached") joins
the progress of the current instruction, which the next decision's context carries
(``PlanContext.progress``); a new instruction starts with no progress. ``done`` and ``cannot`` hold the
agent until the next instruction; a ``cannot`` is logged with the planner's reason, or the instruction.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

import numpy as np

from flexrl.agent.event_log import EventLog
from flexrl.agent.instructions import InstructionChannel
from flexrl.agent.intents import IntentChecker
from flexrl.agent.video import VideoRecorder, annotate
from flexrl.encoders.text import EncoderConfig, EventTracker, encode, fixed_prefix
from flexrl.envs.arena_env import ArenaEnv
from flexrl.planners.base import Decision, Instruction, Outcome, PlanContext, Planner
from flexrl.skills.library import ActiveSkill, SkillCall, Status, candidate_calls, start_skill
from flexrl.skills.policies import PolicySet

WORLD_EVENTS = ("ball_hit", "pad_reached")
VERDICT_CAPTIONS = {"done": " (instruction complete)", "cannot": " (no skill can follow it)"}
"""What the console line and the video caption add to a verdict call."""


class InvalidDecisionError(RuntimeError):
    """A planner returned a call outside the candidates; counted, logged, and replaced by the fallback."""


@dataclass
class AgentConfig:
    """How an agent episode runs.

    Attributes:
        max_steps: control steps in the episode (20 per simulated second).
        encoder: how the world is written into the prompt.
        redecide_on: world events that trigger a re-decision besides instructions and skill ends
            ("ball_hit", "pad_reached").
        record_video: render and keep annotated frames.
        min_skill_steps: a skill that succeeds sooner keeps running (holding its goal) until this many steps,
            so a re-chosen skill that is already satisfied cannot make the planner decide every step.
    """

    max_steps: int = 300
    min_skill_steps: int = 20
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    redecide_on: tuple[str, ...] = ()
    record_video: bool = True

    def __post_init__(self) -> None:
        bad = [e for e in self.redecide_on if e not in WORLD_EVENTS]
        if bad:
            raise ValueError(f"redecide_on={bad}; allowed: {', '.join(WORLD_EVENTS)}")
        if not (isinstance(self.max_steps, int) and self.max_steps > 0):
            raise ValueError(f"agent.max_steps={self.max_steps!r}; allowed: a positive integer")
        if not (isinstance(self.min_skill_steps, int) and self.min_skill_steps >= 0):
            raise ValueError(f"agent.min_skill_steps={self.min_skill_steps!r}; allowed: an integer >= 0")


@dataclass(frozen=True)
class DecisionRequest:
    """The episode needs a decision for this context."""

    context: PlanContext


@dataclass(frozen=True)
class ActionRequest:
    """The episode needs the action of policy family ``family`` for ``policy_input``."""

    family: str
    policy_input: np.ndarray


@dataclass
class Segment:
    """The stretch of an episode under one instruction, judged by the instruction's intent."""

    instruction: Instruction
    start_step: int
    judge: ActiveSkill | None = None
    reached: bool = False

    def satisfied(self) -> bool | None:
        """Whether the intent's success criterion was met (None without an intent)."""
        if self.judge is None:
            return None
        return self.reached or self.judge.holds_at_end()


class AgentRunner:
    """Runs one episode of planner + skills in the arena.

    Args:
        env: the arena (with ``render_mode="rgb_array"`` for video).
        planner: any :class:`~flexrl.planners.base.Planner`.
        policies: the skill policy families.
        channel: where instructions come from.
        config: episode settings.
        log: the events log.
        on_decision: hook called after every decision (live display).
        on_step: hook called after every control step.
        on_frame: hook called with every annotated frame (a live view); the env must render (``rgb_array``).

    While an episode runs, :attr:`world` and :attr:`active` hold the latest world state and running skill.
    """

    def __init__(
        self,
        env: ArenaEnv,
        planner: Planner,
        policies: PolicySet,
        channel: InstructionChannel,
        config: AgentConfig,
        log: EventLog,
        on_decision: Callable[[int, PlanContext, Decision], None] | None = None,
        on_step: Callable[[int], None] | None = None,
        on_frame: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        self.env, self.planner, self.policies, self.channel = env, planner, policies, channel
        self.config, self.log = config, log
        self.on_decision, self.on_step, self.on_frame = on_decision, on_step, on_frame
        self.world = None
        self.active: ActiveSkill | None = None
        self.applied_action: np.ndarray | None = None
        """The last action the body was given: the policy's, after the running skill's brake (``shield``)."""
        self.video = VideoRecorder(fps=env.metadata["render_fps"]) if config.record_video else None
        self.instructions: list[Instruction] = []
        self.segments: list[Segment] = []
        self.decisions: list[Decision] = []
        self.decision_steps: list[int] = []
        self.progress: list[Outcome] = []
        self.invalid_decisions = 0
        self.reactions: list[dict] = []
        self.step = 0  # the control step being run (for hooks that log, e.g. LLM faults)

    # ------------------------------------------------------------------------------ decisions
    def _context(self, step: int, world, current: ActiveSkill | None) -> PlanContext:
        observation = encode(world, self.config.encoder, self.tracker.recent)
        return PlanContext(world, observation, tuple(self.instructions), tuple(candidate_calls(world)),
                           current.call if current else None, step,
                           observation_fixed=len(fixed_prefix(world, self.config.encoder)),
                           progress=tuple(self.progress))

    def _apply(self, step: int, context: PlanContext, outcome: Decision | BaseException, latency_ms: float,
               current: ActiveSkill | None, reason: str) -> ActiveSkill:
        """Validate the planner's outcome (a decision or the error it raised) and start its skill.

        An error or an invalid call never crashes a run: the running skill is kept (or ``stop``).
        """
        decision = outcome if isinstance(outcome, Decision) else None
        error = outcome if isinstance(outcome, BaseException) else None
        if decision is not None and decision.skill is None and decision.call not in context.candidates:
            self.invalid_decisions += 1
            error = InvalidDecisionError(f"{decision.call} is not a valid skill call here")
        if error is not None:
            own = None  # a skill the planner supplied itself (not a library call) is kept as it is
            if current is None:
                keep = SkillCall("stop")
            elif current.call in context.candidates:
                keep = current.call
            else:
                own, keep = current, current.call
            decision = Decision(keep, {}, latency_ms, self.planner.name, fallback=f"{type(error).__name__}: {error}", skill=own)
            self.log.emit("fallback", step, error=decision.fallback, kept=str(keep))
        self.decisions.append(decision)
        self.decision_steps.append(step)
        instruction = context.instruction.text if context.instruction else None
        self.log.emit("decision", step, reason=reason, instruction=instruction, progress=[str(o) for o in context.progress],
                      observation=context.observation, call=str(decision.call), scores=decision.scores, margin=decision.margin,
                      latency_ms=round(decision.latency_ms, 2), planner=decision.planner, tokens=decision.tokens)
        if decision.call.name == "cannot":
            self.log.emit("cannot", step, instruction=instruction,
                          why=decision.rationale or f"no skill call here can follow {instruction!r}")
        if self.on_decision:
            self.on_decision(step, context, decision)
        active = decision.skill if decision.skill is not None else start_skill(decision.call, context.world)
        self.log.emit("skill_start", step, call=str(decision.call))
        return active

    def _receive(self, step: int, world) -> list[dict]:
        """Take new instructions; returns pending reaction records (filled when the next skill starts)."""
        pending = []
        for arrival in self.channel.poll(step):
            if arrival.note:
                self.log.emit("note", step, note=arrival.note)
            if arrival.instruction is None:
                continue
            ins, judge = self._judged(step, arrival.instruction, world)
            self.instructions.append(ins)
            self.progress = []  # progress is the current instruction's only
            self.log.emit("instruction", step, text=ins.text, intent=ins.intent, source=ins.source)
            self.segments.append(Segment(ins, step, judge))
            pending.append({"text": ins.text, "arrival_step": step, "arrival_wall": time.perf_counter()})
        return pending

    def _judged(self, step: int, ins: Instruction, world) -> tuple[Instruction, ActiveSkill | None]:
        """The instruction as the planner gets it, and the skill that judges it (None: no verdict).

        An invalid intent, from whatever source, never stops a run: the instruction is kept without it
        (its text still guides the LLM planner) and a note says why. A sequence intent guides the oracle
        but gets no verdict here (``flexrl bench`` judges sequences with its own predicates).
        """
        if ins.intent is None:
            return ins, None
        try:
            calls = IntentChecker(world).parse(ins.intent)
        except ValueError as err:
            self.log.emit("note", step, note=f"{ins.source} instruction: intent {ins.intent!r:.80} dropped: {err}")
            return dataclasses.replace(ins, intent=None), None
        if len(calls) > 1:
            self.log.emit("note", step, note=f"{ins.source} instruction: sequence intent {ins.intent!r} is not judged")
            return ins, None
        judge = start_skill(calls[0], world)
        judge.timeout = 10**9  # a judge watches the whole segment
        return ins, judge

    # ------------------------------------------------------------------------------ the loop
    def run(self, seed: int, reset_options: dict | None = None) -> dict:
        """Run one episode, deciding with the planner and acting with the policies; returns the summary."""
        episode = self.episode(seed, reset_options)
        request = next(episode)
        while True:
            try:
                if isinstance(request, DecisionRequest):
                    start = time.perf_counter()
                    try:
                        outcome: Decision | BaseException = self.planner.decide(request.context)
                    except Exception as err:  # an LLM failure never crashes a run
                        outcome = err
                    request = episode.send((outcome, (time.perf_counter() - start) * 1e3))
                else:
                    request = episode.send(self.policies.act(request.family, request.policy_input))
            except StopIteration as done:
                return done.value

    def episode(self, seed: int, reset_options: dict | None = None) -> Generator[DecisionRequest | ActionRequest, Any, dict]:
        """One episode as a generator, so a driver can batch decisions and actions across many episodes.

        Yields a :class:`DecisionRequest` (send back ``(decision or exception, latency_ms)``) whenever the
        planner must decide, and an :class:`ActionRequest` (send back the action) every control step.
        Returns the summary.
        """
        self.env.reset(seed=seed, options=reset_options)
        self.progress = []
        self.tracker = EventTracker(pad_radius=self.env.spec_.pad_radius)
        world = self.world = self.env.world_state()
        self.tracker.update(world)
        self.trajectory = [world]
        active: ActiveSkill | None = None
        redecide = "start"
        step = 0
        for step in range(self.config.max_steps):
            self.step = step
            pending = self._receive(step, world)
            if pending:
                redecide = "instruction"
            if active is None or redecide:
                context = self._context(step, world, active)
                outcome, latency_ms = yield DecisionRequest(context)
                if isinstance(outcome, Decision):
                    outcome = dataclasses.replace(outcome, latency_ms=latency_ms)
                active = self.active = self._apply(step, context, outcome, latency_ms, active, redecide or "skill_end")
                now = time.perf_counter()
                for p in pending:
                    rec = {"text": p["text"], "steps": step - p["arrival_step"], "wall_ms": round((now - p["arrival_wall"]) * 1e3, 2)}
                    self.reactions.append(rec)
                    self.log.emit("reaction", step, **rec)
                redecide = None
            action = yield ActionRequest(active.policy, active.policy_input(world))
            self.applied_action = active.shield(world, action)
            _, _, terminated, _, info = self.env.step(self.applied_action)
            world = self.world = self.env.world_state()
            self.trajectory.append(world)
            for seg in self.segments[-1:]:
                if seg.judge is not None and seg.judge.update(world) is Status.SUCCESS:
                    seg.reached = True
            for text in self.tracker.update(world):
                kind = "ball_hit" if "ball" in text else "pad_reached"
                self.log.emit("world_event", step, event=kind, text=text)
                if kind in self.config.redecide_on:
                    redecide = kind
            status = active.update(world)
            if status is Status.SUCCESS and active.steps < self.config.min_skill_steps:
                status = Status.RUNNING
            if status is not Status.RUNNING:
                outcome = Outcome(active.call, status is Status.SUCCESS, active.outcome(status))
                self.progress.append(outcome)
                self.log.emit("skill_end", step, call=str(active.call), status=status.value, steps=active.steps,
                              outcome=outcome.text)
                active = None
            self.active = active
            if self.video is not None or self.on_frame is not None:
                self._frame(active)
            if self.on_step:
                self.on_step(step)
            if terminated:
                self.log.emit("note", step, note="simulation unstable; episode ended" if info.get("unstable")
                              else "the robot fell; episode ended" if info.get("fell") else "episode ended")
                break
        return self.summary(step + 1)

    def _frame(self, active: ActiveSkill | None) -> None:
        ins = self.instructions[-1].text if self.instructions else "-"
        call = active.call if active else (self.decisions[-1].call if self.decisions else None)
        skill = f"{call}{VERDICT_CAPTIONS.get(call.name, '')}" if call else "-"
        frame = annotate(self.env.render(), [f"instruction: {ins}", f"skill: {skill}"])
        if self.video is not None:
            self.video.add(frame)
        if self.on_frame is not None:
            self.on_frame(frame)

    def summary(self, steps: int) -> dict:
        """Task success, decision counts, latency and reaction figures of the episode."""
        lat = np.array([d.latency_ms for d in self.decisions]) if self.decisions else np.zeros(1)
        segments = [
            {"instruction": s.instruction.text, "intent": s.instruction.intent, "start_step": s.start_step, "satisfied": s.satisfied()}
            for s in self.segments
        ]
        judged = [s["satisfied"] for s in segments if s["satisfied"] is not None]
        return {
            "steps": steps,
            "decisions": len(self.decisions),
            "invalid_decisions": self.invalid_decisions,
            "fallbacks": sum(d.fallback is not None for d in self.decisions),
            "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p95": float(np.percentile(lat, 95)),
            "reactions": self.reactions,
            "segments": segments,
            "task_success": all(judged) if judged else None,
            "final_instruction_satisfied": segments[-1]["satisfied"] if segments else None,
        }

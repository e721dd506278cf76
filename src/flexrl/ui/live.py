"""What the page shows of a live episode, shared between the control loop's thread and the web app.

The loop hands over every annotated frame, decision and step (:meth:`LiveView.on_frame`,
:meth:`on_decision`, :meth:`on_step`); the app reads a JSON snapshot and the latest frame as JPEG, encoded
once per frame whatever the number of viewers, and only while someone watches.
"""

from __future__ import annotations

import io
import threading
import time
from collections import deque

import numpy as np
from PIL import Image

JPEG_QUALITY = 80
MAX_DECISIONS = 100
CONTROL_HZ = 20
MAX_BACKLOG_S = 0.5
"""After a stall (a slow decision), the loop runs unpaced to catch up at most this far behind real time."""


class Pacer:
    """Paces a control loop at ``hz`` steps per wall-clock second: :meth:`tick` after each step sleeps the rest.

    A step that comes late (after an LLM decision) is not slept for, so the loop catches up, but never by
    more than :data:`MAX_BACKLOG_S` (no fast-forward after a long stall); :meth:`shift` discounts a pause.
    """

    def __init__(self, hz: float = CONTROL_HZ) -> None:
        self.hz, self.t0, self.steps = hz, time.perf_counter(), 0

    def tick(self) -> None:
        self.steps += 1
        delay = self.t0 + self.steps / self.hz - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -MAX_BACKLOG_S:
            self.t0 -= delay + MAX_BACKLOG_S

    def shift(self, seconds: float) -> None:
        self.t0 += seconds


def decision_record(step: int, context, decision) -> dict:
    """A decision as the page shows it: instruction, observation, every candidate's score, the call."""
    ins = context.instruction
    scores = {str(c): decision.scores.get(str(c)) for c in context.candidates}
    return {"step": step, "instruction": ins.text if ins else None, "intent": ins.intent if ins else None,
            "observation": context.observation, "progress": [str(o) for o in context.progress],
            "scores": scores, "call": str(decision.call), "latency_ms": round(decision.latency_ms, 1),
            "planner": decision.planner, "fallback": decision.fallback, "margin": decision.margin,
            "rationale": getattr(decision, "rationale", None), "time": time.time()}


class LiveView:
    """The latest frame, decisions and state of the episode on show (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._frame_no = 0
        self._jpeg: tuple[int, bytes] = (0, b"")
        self._decisions: deque[dict] = deque(maxlen=MAX_DECISIONS)
        self._decision_no = 0
        self._state: dict = {"status": "idle", "step": 0, "episode": 0}
        self._rate: deque[float] = deque(maxlen=40)
        self.viewers = 0

    # ------------------------------------------------------------------ fed by the control loop
    def on_frame(self, frame: np.ndarray) -> None:
        with self._lock:
            self._frame = frame
            self._frame_no += 1

    def on_decision(self, step: int, context, decision) -> None:
        record = decision_record(step, context, decision)
        with self._lock:
            self._decision_no += 1
            record["n"] = self._decision_no
            self._decisions.append(record)

    def on_step(self, step: int, runner=None) -> None:
        """One control step done; ``runner`` (an AgentRunner) gives the instruction, skill and progress."""
        now = time.perf_counter()
        update = {"step": step + 1}
        if runner is not None:
            update.update(instruction=runner.instructions[-1].text if runner.instructions else None,
                          progress=[str(o) for o in runner.progress], skill=None, criterion=None, standing=None)
            active, world = runner.active, runner.world
            if active is not None and world is not None:
                criterion, standing = active.criterion(world)
                update.update(skill=str(active.call), criterion=criterion, standing=standing)
            elif runner.decisions:
                update["skill"] = str(runner.decisions[-1].call)
        with self._lock:
            self._rate.append(now)
            self._state.update(update)

    def set_state(self, **fields) -> None:
        """Episode-level fields: status ("running", "paused", "finished" ...), episode number, settings."""
        with self._lock:
            if fields.get("status") == "running" and self._state.get("status") != "running":
                self._rate.clear()
            self._state.update(fields)

    def new_episode(self, **fields) -> None:
        """Forget the previous episode's decisions and state."""
        with self._lock:
            self._decisions.clear()
            self._rate.clear()
            self._state = {"status": "starting", "step": 0, "episode": self._state.get("episode", 0) + 1, **fields}

    # ------------------------------------------------------------------ read by the app
    @property
    def frame_no(self) -> int:
        return self._frame_no

    def snapshot(self, since: int = 0) -> dict:
        """The state, the decisions numbered above ``since``, the frame count and the control rate."""
        with self._lock:
            rate = self._rate
            steps_per_s = (len(rate) - 1) / (rate[-1] - rate[0]) if len(rate) > 1 and rate[-1] > rate[0] else None
            return {**self._state, "frame": self._frame_no, "viewers": self.viewers,
                    "steps_per_s": round(steps_per_s, 1) if steps_per_s else None,
                    "decisions": [d for d in self._decisions if d["n"] > since]}

    def jpeg(self) -> tuple[int, bytes]:
        """(frame number, JPEG bytes) of the latest frame; encoded once per frame. (0, b"") before any."""
        with self._lock:
            no, frame = self._frame_no, self._frame
            if frame is None or self._jpeg[0] == no:
                return self._jpeg
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        with self._lock:
            if self._jpeg[0] < no:
                self._jpeg = (no, buffer.getvalue())
            return self._jpeg

"""World state -> text, for the planner's prompt.

Three forms: absolute coordinates ("(units: dm) Red pad: (-40, 10), ..., Agent: (15, 30), Ball: (20, 25)"),
egocentric bearings ("ball: 0.4 m north-east, approaching") and the compact egocentric form
("ball 4 NE, red pad 12 W, ... (dm)"), which says the same in fewer tokens (about 35 against 60
for the absolute form with SmolLM2's tokenizer): the planner's language model reads every token of
it at each decision, while the skills do the geometry. Recent events are appended by :class:`EventTracker`. Units and rounding are configuration.

The absolute form writes what never moves (the unit, the pads) first: :func:`fixed_prefix` is that
leading text, the same at every decision of an episode, so a planner can cache it with the rest of
its prompt prefix and read only the agent and the ball anew (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flexrl.envs.world import WorldState

UNITS = {"m": 1.0, "dm": 10.0, "cm": 100.0}
_BEARINGS = ["east", "north-east", "north", "north-west", "west", "south-west", "south", "south-east"]
_ABBREVIATIONS = dict(zip(_BEARINGS, ["E", "NE", "N", "NW", "W", "SW", "S", "SE"]))


@dataclass
class EncoderConfig:
    """How the world is written down.

    Attributes:
        kind: "compact", "absolute" or "egocentric".
        units: "m", "dm" or "cm".
        decimals: digits after the point (0 gives integers).
        include_velocity: add the ball's velocity (absolute form) or whether it approaches (egocentric forms).
        fixed_first: absolute form: the unit and the pads (which never move) before the agent and the ball,
            so that the text's leading part stays the same through an episode; False gives the older
            "Agent: ..., Ball: ..., Red pad: ... (units: dm)".
    """

    kind: str = "absolute"
    units: str = "dm"
    decimals: int = 0
    include_velocity: bool = False
    fixed_first: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ENCODERS:
            raise ValueError(f"encoder kind={self.kind!r}; allowed: {', '.join(ENCODERS)}")
        if self.units not in UNITS:
            raise ValueError(f"encoder units={self.units!r}; allowed: {', '.join(UNITS)}")
        if not (isinstance(self.decimals, int) and 0 <= self.decimals <= 4):
            raise ValueError(f"encoder decimals={self.decimals!r}; allowed: an integer in [0, 4]")


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _num(x: float, cfg: EncoderConfig) -> str:
    v = round(x * UNITS[cfg.units], cfg.decimals)
    return f"{int(v)}" if cfg.decimals == 0 else f"{v:.{cfg.decimals}f}"


def bearing(vec: np.ndarray) -> str:
    """Compass word for a planar vector (+y north)."""
    ang = math.degrees(math.atan2(vec[1], vec[0])) % 360
    return _BEARINGS[int((ang + 22.5) // 45) % 8]


def _point(p: np.ndarray, cfg: EncoderConfig) -> str:
    return f"({_num(p[0], cfg)}, {_num(p[1], cfg)})"


def _pads(world: WorldState, cfg: EncoderConfig) -> list[str]:
    return [f"{_label(n)}: {_point(p, cfg)}" for n, p in world.pads.items()]


def _movers(world: WorldState, cfg: EncoderConfig) -> list[str]:
    ball = f"Ball: {_point(world.ball.pos, cfg)}"
    if cfg.include_velocity:
        ball += f" moving {_point(world.ball.vel, cfg)}/s"
    return [f"Agent: {_point(world.agent.pos, cfg)}", ball]


def encode_absolute(world: WorldState, cfg: EncoderConfig) -> str:
    """"(units: dm) Red pad: (x, y), ..., Agent: (x, y), Ball: (x, y)" in the configured units.

    With ``fixed_first`` off: "Agent: (x, y), Ball: (x, y), Red pad: (x, y), ... (units: dm)".
    """
    if not cfg.fixed_first:
        return ", ".join(_movers(world, cfg) + _pads(world, cfg)) + f" (units: {cfg.units})"
    return f"{fixed_prefix(world, cfg)} {', '.join(_movers(world, cfg))}"


def fixed_prefix(world: WorldState, cfg: EncoderConfig) -> str:
    """The leading text of the observation that no motion changes ("" when there is none).

    The absolute form with ``fixed_first``: the unit and the pads, up to the comma before the agent (just
    "(units: dm)" when there are no pads), so the text after it starts a new word (" Agent: ...") and
    tokenises as it does in the whole text.
    The egocentric forms measure everything from the agent: nothing in them is fixed.
    """
    if cfg.kind != "absolute" or not cfg.fixed_first:
        return ""
    pads = _pads(world, cfg)
    return f"(units: {cfg.units})" + (f" {', '.join(pads)}," if pads else "")


def _relative(world: WorldState, cfg: EncoderConfig) -> list[tuple[str, str, str, str]]:
    """Per object, from the agent: label, distance, compass word, and the ball's approach if configured."""
    out = []
    for name in world.object_names:
        rel = world.position_of(name) - world.agent.pos
        motion = ""
        if cfg.include_velocity and name == "ball":
            closing = -float(np.dot(world.ball.vel - world.agent.vel, rel)) / (np.linalg.norm(rel) + 1e-9)
            motion = "approaching" if closing > 0.1 else "moving away" if closing < -0.1 else ""
        out.append((_label(name).lower(), _num(float(np.linalg.norm(rel)), cfg), bearing(rel), motion))
    return out


def encode_egocentric(world: WorldState, cfg: EncoderConfig) -> str:
    """"ball: 0.4 m north-east, approaching; red pad: 1.2 m west; ..." from the agent's point of view."""
    return "; ".join(
        f"{label}: {distance} {cfg.units} {direction}" + (f", {motion}" if motion else "")
        for label, distance, direction, motion in _relative(world, cfg)
    )


def encode_compact(world: WorldState, cfg: EncoderConfig) -> str:
    """"ball 4 NE approaching, red pad 12 W, ... (dm)": the egocentric form, the unit said once."""
    parts = (
        " ".join(filter(None, (label, distance, _ABBREVIATIONS[direction], motion)))
        for label, distance, direction, motion in _relative(world, cfg)
    )
    return ", ".join(parts) + f" ({cfg.units})"


ENCODERS = {"compact": encode_compact, "absolute": encode_absolute, "egocentric": encode_egocentric}


class EventTracker:
    """Turns consecutive world states into event sentences ("you reached the red pad").

    Events fire on the transition, not while a condition holds; a repeat of the latest event is not
    added again, and events older than ``expire_steps`` drop out of ``recent``.
    """

    def __init__(self, pad_radius: float = 0.25, keep: int = 3, expire_steps: int = 60) -> None:
        self.pad_radius, self.keep, self.expire_steps = pad_radius, keep, expire_steps
        self._recent: list[tuple[int, str]] = []
        self._on_pad: set[str] = set()
        self._touching = False
        self._step = 0

    @property
    def recent(self) -> list[str]:
        """The latest events, oldest first."""
        return [text for step, text in self._recent if self._step - step <= self.expire_steps]

    def update(self, world: WorldState) -> list[str]:
        """Record ``world``; return the events that just happened."""
        self._step = world.step
        events = []
        if world.touching_ball and not self._touching:
            events.append("the ball hit you")
        self._touching = world.touching_ball
        on_pad = {n for n, p in world.pads.items() if np.linalg.norm(world.agent.pos - p) <= self.pad_radius}
        events += [f"you reached the {_label(n).lower()}" for n in sorted(on_pad - self._on_pad)]
        self._on_pad = on_pad
        for text in events:
            if not self._recent or self._recent[-1][1] != text:
                self._recent.append((world.step, text))
            else:
                self._recent[-1] = (world.step, text)
        self._recent = self._recent[-self.keep :]
        return events


def encode(world: WorldState, cfg: EncoderConfig, recent_events: list[str] | None = None) -> str:
    """The observation text: the configured form, then recent events if any."""
    text = ENCODERS[cfg.kind](world, cfg)
    if recent_events:
        text += ". Recent events: " + "; ".join(recent_events) + "."
    return text

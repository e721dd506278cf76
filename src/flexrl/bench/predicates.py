"""Success predicates over a trajectory of world states, never over the planner's text.

Each predicate judges one instruction's segment: the world states from the step the instruction
arrived to the step the next one arrived (or the episode ended). Thresholds default to the skills' own
success criteria (``flexrl.skills.library``), so an oracle that picks the right skill can pass. Every
distance and step count, given or default, is in the orb's units and scaled by the robot's
``WorldState.scale`` (lengths by ``length``, steps by ``time``, stillness by ``still``), so one task file
judges every robot. One
predicate, ``refused``, reads the skill calls decided in the segment (structured calls, not text): a
request no skill can follow is answered by ``cannot``.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import numpy as np

from flexrl.envs.world import COMPASS, WorldState
from flexrl.skills.library import REACH_RADIUS, TOUCH_MARGIN, follow_radius, target_limit

Trajectory = Sequence[WorldState]


class Segment(list):
    """A segment's world states, with the skill calls decided in it (``calls``, in order)."""

    def __init__(self, states, calls=()) -> None:
        super().__init__(states)
        self.calls: tuple[str, ...] = tuple(calls)


def _distance(world: WorldState, name: str) -> float:
    return float(np.linalg.norm(world.agent.pos - world.position_of(name)))


def _reach_radius(world: WorldState, target: str) -> float:
    length = world.scale.length
    return world.touch_distance + TOUCH_MARGIN * length if target == "ball" else REACH_RADIUS * length


def _length(seg: Trajectory) -> float:
    return seg[0].scale.length if len(seg) else 1.0


def _steps(seg: Trajectory, steps: int) -> int:
    return round(steps * seg[0].scale.time) if len(seg) else steps


def reached(seg: Trajectory, target: str, radius: float | None = None, stay: bool = True) -> bool:
    """The agent came within ``radius`` of ``target`` (default: the go_to skill's criterion) and, with
    ``stay``, is still within twice that at the segment's end (wandering onto it on the way does not count)."""
    r = lambda w: radius * w.scale.length if radius else _reach_radius(w, target)  # noqa: E731
    if not any(_distance(w, target) <= r(w) for w in seg):
        return False
    return not stay or _distance(seg[-1], target) <= 2 * r(seg[-1])


def reached_in_order(seg: Trajectory, targets: list[str], radius: float | None = None, stay: bool = True) -> bool:
    """The agent reached each target in the given order (and, with ``stay``, ends at the last one)."""
    r = lambda w, t: radius * w.scale.length if radius else _reach_radius(w, t)  # noqa: E731
    i = 0
    for w in seg:
        if i < len(targets) and _distance(w, targets[i]) <= r(w, targets[i]):
            i += 1
    if i < len(targets):
        return False
    return not stay or _distance(seg[-1], targets[-1]) <= 2 * r(seg[-1], targets[-1])


def moved(seg: Trajectory, direction: str, min_distance: float = 0.5) -> bool:
    """The agent's displacement along ``direction`` reached ``min_distance`` (or it got to that wall)."""
    d = np.asarray(COMPASS[direction])
    start, length = seg[0].agent.pos, _length(seg)
    for w in seg:
        if float(np.dot(w.agent.pos - start, d)) >= min_distance * length:
            return True
    end = seg[-1]
    limit = target_limit(end) - 0.15 * length  # as near that wall as a move's target may lie, less a margin
    at_wall = any(abs(c) >= limit and np.sign(c) == np.sign(dc) and dc != 0 for c, dc in zip(end.agent.pos, d))
    return bool(at_wall and float(np.dot(end.agent.pos - start, d)) >= 0)


def kept_away(seg: Trajectory, target: str = "ball", min_distance: float = 0.5, grace: int = 40, share: float = 0.9) -> bool:
    """After ``grace`` steps to react, the agent stayed at least ``min_distance`` from ``target`` in ``share`` of steps."""
    late = seg[_steps(seg, grace):]
    if not late:
        return False
    return float(np.mean([_distance(w, target) >= min_distance * w.scale.length for w in late])) >= share


def followed(seg: Trajectory, target: str = "ball", radius: float | None = None, grace: int = 60, share: float = 0.7) -> bool:
    """After ``grace`` steps to catch up, the agent stayed within ``radius`` of ``target`` (default: the follow
    skill's criterion) in ``share`` of steps."""
    late = seg[_steps(seg, grace):]
    if not late:
        return False
    r = lambda w: radius * w.scale.length if radius else follow_radius(w, target)  # noqa: E731
    return float(np.mean([_distance(w, target) <= r(w) for w in late])) >= share


def stopped(seg: Trajectory, max_speed: float = 0.05, hold: int = 20) -> bool:
    """The agent was still (speed below ``max_speed``, or the robot's own still speed if that is more) over
    the segment's last ``hold`` steps."""
    if not len(seg):
        return False
    hold = _steps(seg, hold)
    return len(seg) >= hold and all(w.agent.speed < max(max_speed, w.scale.still) for w in seg[-hold:])


def stayed_near_start(seg: Trajectory, radius: float = 0.4) -> bool:
    """The agent ended within ``radius`` of where the segment began (did not wander off)."""
    return float(np.linalg.norm(seg[-1].agent.pos - seg[0].agent.pos)) <= radius * _length(seg)


def never_touched(seg: Trajectory, target: str = "ball") -> bool:
    """The agent never touched ``target`` (the ball)."""
    return not any(w.touching_ball for w in seg) if target == "ball" else not reached(seg, target)


def refused(seg: Trajectory) -> bool:
    """The planner answered ``cannot`` and never chose a skill instead (every call decided in the segment)."""
    calls = getattr(seg, "calls", ())
    return bool(calls) and all(call == "cannot" for call in calls)


PREDICATES: dict[str, Callable[..., bool]] = {
    f.__name__: f
    for f in (reached, reached_in_order, moved, kept_away, followed, stopped, stayed_near_start, never_touched, refused)
}


def parameters(name: str) -> dict[str, inspect.Parameter]:
    """A predicate's parameters besides the segment."""
    return dict(list(inspect.signature(PREDICATES[name]).parameters.items())[1:])


def required(name: str) -> set[str]:
    """The parameters a task must give."""
    return {k for k, p in parameters(name).items() if p.default is inspect.Parameter.empty}

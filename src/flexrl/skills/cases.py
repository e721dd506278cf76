"""Situations to practise and evaluate each skill in: a skill call plus the layout it starts from.

Training envs and the success evaluation draw from the same samplers, so a skill is trained on the
situations it is judged on.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from flexrl.envs.arena_env import BALL_MODES
from flexrl.envs.world import COMPASS, WorldState
from flexrl.skills.library import SkillCall, target_limit

Case = tuple[SkillCall, dict[str, Any]]


def _moving_ball(rng: np.random.Generator, modes: tuple[str, ...] = BALL_MODES) -> dict[str, Any]:
    return {"ball_mode": str(rng.choice(modes)), "ball_speed": float(rng.uniform(0.2, 0.6))}


def _near(rng: np.random.Generator, world: WorldState, point: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """A point ``lo``-``hi`` from ``point`` (in the orb's metres: scaled by the robot's ``length``)."""
    length = world.scale.length
    ang = rng.uniform(0, 2 * np.pi)
    lim = world.half_size - world.scale.wall
    return np.clip(point + rng.uniform(lo, hi) * length * np.array([np.cos(ang), np.sin(ang)]), -lim, lim)


def move_case(rng, world) -> Case:
    return SkillCall("move", (str(rng.choice(list(COMPASS))),)), {}


def go_to_case(rng, world) -> Case:
    u = rng.random()
    if u < 0.5:
        return SkillCall("go_to", (str(rng.choice(list(world.pads))),)), {}
    if u < 0.85:
        return SkillCall("go_to", ("ball",)), _moving_ball(rng)
    lim = min(world.half_size - 0.3, target_limit(world))
    x, y = rng.uniform(-lim, lim, size=2)
    return SkillCall("go_to", (f"({x:.2f}, {y:.2f})",)), {}


def follow_case(rng, world) -> Case:
    return SkillCall("follow", ("ball",)), _moving_ball(rng, ("drift", "chase"))


def avoid_case(rng, world) -> Case:
    if rng.random() < 0.8:
        target, options = "ball", _moving_ball(rng)
    else:
        target, options = str(rng.choice(list(world.pads))), {}
    if rng.random() < 0.5:  # start close: fleeing is the hard part
        options["agent"] = _near(rng, world, world.position_of(target), 0.35, 1.0)
    return SkillCall("avoid", (target,)), options


def stop_case(rng, world) -> Case:
    # a running start: the agent must brake and come back to where it was told to stop
    return SkillCall("stop"), {"agent_velocity": rng.uniform(-1.5, 1.5, size=2), "agent": world.agent.pos * 0.7}


CASES: dict[str, Callable[[np.random.Generator, WorldState], Case]] = {
    "move": move_case,
    "go_to": go_to_case,
    "follow": follow_case,
    "avoid": avoid_case,
    "stop": stop_case,
}

FAMILY_MIX: dict[str, dict[str, float]] = {
    "reach": {"go_to": 0.5, "move": 0.2, "follow": 0.15, "stop": 0.15},
    "avoid": {"avoid": 1.0},
}
"""How often each skill is practised when training a policy family."""


def sample_case(skill: str, rng: np.random.Generator, world: WorldState) -> Case:
    """A call of ``skill`` and the reset options of its starting layout."""
    return CASES[skill](rng, world)

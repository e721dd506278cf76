"""The robot-level observation of a language-conditioned policy: the world state as one fixed vector.

Positions are divided by the arena's half size and velocities by the robot's speed scale, so that the
orb and the ant see the same numbers for the same situation in their own arenas. Pads have fixed slots
(one per colour), so the vector means the same in every episode.
"""

from __future__ import annotations

import numpy as np

from flexrl.envs.arena_env import VEL_SCALE
from flexrl.envs.arena_model import PAD_COLOURS
from flexrl.envs.world import WorldState

STEPS_SCALE = 100.0
"""Steps since the instruction are given in hundreds (of the robot's time-scaled steps), capped at 3."""

NAMES = (
    "agent_x", "agent_y", "agent_vx", "agent_vy", "heading_cos", "heading_sin",
    "ball_dx", "ball_dy", "ball_vx", "ball_vy",
    *(f"{pad}_{axis}" for pad in PAD_COLOURS for axis in ("dx", "dy")),
    "since_instruction",
)
"""What each entry of :func:`world_features` is (relative positions are object minus agent)."""
DIM = len(NAMES)


def world_features(world: WorldState, since_instruction: int = 0) -> np.ndarray:
    """The world as a (``DIM``,) float32 vector; ``since_instruction`` is control steps since it arrived."""
    h = world.half_size
    scale = world.scale
    vel = VEL_SCALE * scale.length / scale.time
    agent = world.agent.pos
    parts = [agent / h, world.agent.vel / vel, [np.cos(world.agent_heading), np.sin(world.agent_heading)],
             (world.ball.pos - agent) / h, world.ball.vel / vel]
    parts += [(world.pads[name] - agent) / h for name in PAD_COLOURS]
    parts.append([min(since_instruction / (STEPS_SCALE * scale.time), 3.0)])
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts]).astype(np.float32)

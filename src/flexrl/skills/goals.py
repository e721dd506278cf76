"""Goal-conditioned policy inputs: how a policy family sees the world given its goal.

Two policy families serve every skill. ``reach`` steers the agent onto a (possibly moving) goal point;
``avoid`` keeps it away from a (possibly moving) threat. Inputs are egocentric and scaled so that one
policy generalises over every target, direction and layout.
"""

from __future__ import annotations

import numpy as np

from flexrl.envs.arena_env import VEL_SCALE
from flexrl.envs.world import WorldState

POLICY_OBS_DIMS = {"reach": 6, "avoid": 8}


def reach_obs(world: WorldState, goal_pos: np.ndarray, goal_vel: np.ndarray) -> np.ndarray:
    """[goal - agent, agent velocity, goal velocity], scaled."""
    h = world.half_size
    return np.concatenate(
        [(goal_pos - world.agent.pos) / h, world.agent.vel / VEL_SCALE, goal_vel / VEL_SCALE]
    ).astype(np.float32)


def avoid_obs(world: WorldState, threat_pos: np.ndarray, threat_vel: np.ndarray) -> np.ndarray:
    """[agent - threat, threat velocity, agent velocity, agent position (for the walls)], scaled."""
    h = world.half_size
    return np.concatenate(
        [(world.agent.pos - threat_pos) / h, threat_vel / VEL_SCALE, world.agent.vel / VEL_SCALE, world.agent.pos / h]
    ).astype(np.float32)

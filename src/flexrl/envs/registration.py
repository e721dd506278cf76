"""Versioned Gymnasium ids. A change of reward or dynamics is a new ``-vN``.

Time limits live here, not in the envs (Gymnasium's convention).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym

if TYPE_CHECKING:
    from flexrl.envs.arena_env import ArenaEnv
    from flexrl.envs.config import RobotConfig
    from flexrl.robots.base import Robot

ARENA_ID = "flexrl/Arena-v0"

ENV_IDS = {
    ARENA_ID: ("flexrl.envs.arena_env:ArenaEnv", 500),
    "flexrl/GoTo-v0": ("flexrl.skills.training_env:GoToTrainingEnv", 100),
    "flexrl/Avoid-v0": ("flexrl.skills.training_env:AvoidTrainingEnv", 100),
}


def register_envs() -> None:
    """Register every flexrl env id once (idempotent)."""
    for env_id, (entry_point, max_steps) in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point, max_episode_steps=max_steps)


def make_arena(robot: "Robot | RobotConfig | str | None" = None, **kwargs: Any) -> "ArenaEnv":
    """The arena holding ``robot`` (a robot, its config or its name; None: the orb), made through its
    Gymnasium id: the one way flexrl makes it, so a run, its training, its evaluation and its benchmark all
    hold the body the config names. ``kwargs`` are :class:`~flexrl.envs.arena_env.ArenaEnv`'s.

    The env is returned unwrapped: flexrl's runners count steps themselves and read ``world_state()``.
    """
    register_envs()
    return gym.make(ARENA_ID, robot=robot, disable_env_checker=True, **kwargs).unwrapped

"""Versioned Gymnasium ids. A change of reward or dynamics is a new ``-vN``.

Time limits live here, not in the envs (Gymnasium's convention).
"""

from __future__ import annotations

import gymnasium as gym

ENV_IDS = {
    "flexrl/Arena-v0": ("flexrl.envs.arena_env:ArenaEnv", 500),
    "flexrl/GoTo-v0": ("flexrl.skills.training_env:GoToTrainingEnv", 100),
    "flexrl/Avoid-v0": ("flexrl.skills.training_env:AvoidTrainingEnv", 100),
}


def register_envs() -> None:
    """Register every flexrl env id once (idempotent)."""
    for env_id, (entry_point, max_steps) in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point, max_episode_steps=max_steps)

"""Arena environments (``import flexrl`` registers their ``flexrl/...`` Gymnasium ids)."""

from flexrl.envs.arena_env import ArenaEnv
from flexrl.envs.registration import register_envs
from flexrl.envs.world import COMPASS, BodyState, WorldState


__all__ = ["ArenaEnv", "BodyState", "COMPASS", "WorldState", "register_envs"]

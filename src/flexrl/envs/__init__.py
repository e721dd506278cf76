"""Arena environments. Importing this package registers the ``flexrl/...`` env ids with Gymnasium."""

from flexrl.envs.arena_env import ArenaEnv
from flexrl.envs.registration import register_envs
from flexrl.envs.world import COMPASS, BodyState, WorldState

register_envs()

__all__ = ["ArenaEnv", "BodyState", "COMPASS", "WorldState", "register_envs"]

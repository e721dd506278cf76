"""Arena environments (``import flexrl`` registers their ``flexrl/...`` Gymnasium ids).

The names below load on first use (PEP 562), so registering the ids does not import MuJoCo.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"ArenaEnv": "flexrl.envs.arena_env", "BodyState": "flexrl.envs.world", "COMPASS": "flexrl.envs.world",
            "WorldState": "flexrl.envs.world", "register_envs": "flexrl.envs.registration",
            "make_arena": "flexrl.envs.registration"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'flexrl.envs' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

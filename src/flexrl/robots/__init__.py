"""Robots: the bodies the arena can hold (see :mod:`flexrl.robots.base` for the extension point).

A robot is named by ``robot=<name>`` in every command; :data:`ROBOTS` maps each name to its class, which is
imported on first use (so naming the robots does not import MuJoCo).
"""

from __future__ import annotations

import importlib
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flexrl.envs.config import RobotConfig
    from flexrl.robots.base import Robot

ROBOTS: dict[str, str] = {"orb": "flexrl.robots.orb:Orb", "ant": "flexrl.robots.ant:Ant"}
"""Robot name -> ``module:Class`` (a :class:`~flexrl.robots.base.Robot` subclass)."""


def robot_class(name: str) -> type["Robot"]:
    """The class of robot ``name``.

    Raises:
        ValueError: one line naming the robot and the known ones.
    """
    if name not in ROBOTS:
        raise ValueError(f"robot={name!r}; allowed: {', '.join(ROBOTS)}")
    module, cls = ROBOTS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_robot(robot: "Robot | RobotConfig | str | None" = None) -> "Robot":
    """A robot from its config (the settings its class takes), its name (defaults) or itself; None is the orb."""
    from flexrl.robots.base import Robot

    if isinstance(robot, Robot):
        return robot
    if robot is None or isinstance(robot, str):
        return robot_class(robot or "orb")()
    settings: dict[str, Any] = {k: v for k, v in asdict(robot).items() if v is not None}
    name = settings.pop("name")
    cls = robot_class(name)
    stray = [k for k in settings if k not in cls.SETTINGS]
    if stray:
        raise ValueError(f"robot.{stray[0]}={settings[stray[0]]!r} does not apply to robot={name}; "
                         f"its settings: {', '.join(cls.SETTINGS)}")
    return cls(**settings)

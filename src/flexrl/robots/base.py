"""The robot extension point: a body in the arena, how a skill's planar action drives it, how its pose is read.

Everything above the env (skills, encoders, planners, the benchmark, the runner, the video) sees only
:class:`~flexrl.envs.world.WorldState` and planar skill actions in [-1, 1]^2 (a world-frame push towards
where the skill wants to go). A robot turns that action into its own actuator commands (the orb applies it as
a force; a legged robot feeds it to its gait policy as a velocity command) and reads its planar position,
velocity and heading back. A new robot is one module with a :class:`Robot` subclass plus a line in
:data:`flexrl.robots.ROBOTS` and a ``conf/robot/<name>.yaml``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from flexrl.envs.world import SkillScale

if TYPE_CHECKING:
    import mujoco


@dataclass(frozen=True)
class BodyParts:
    """The robot's pieces of the arena's MJCF.

    Attributes:
        body: the ``<body name="agent">`` element (placed in the worldbody).
        actuators: ``<actuator>`` children.
        defaults: ``<default class="...">`` elements the body uses (never the top-level default: the
            arena's own geoms keep theirs).
        option: attributes of the arena's ``<option>`` the body needs (integrator, timestep).
    """

    body: str
    actuators: str
    defaults: str = ""
    option: str = 'integrator="implicitfast"'


class Robot(ABC):
    """A body in the arena.

    Attributes:
        name: the ``robot=`` option.
        radius: its footprint radius, metres (contacts with the ball, layout separation).
        top_speed: planar speed at full action, m/s (time budgets scale with it).
        arena_scale: the arena's size relative to the orb's 4 m square (floor, ball and pads scale with it).
    """

    name: str = ""
    SETTINGS: tuple[str, ...] = ()
    """The :class:`~flexrl.envs.config.RobotConfig` fields the constructor takes."""
    radius: float = 0.1
    top_speed: float = 1.5
    arena_scale: float = 1.0
    has_heading: bool = False
    """Whether the body has a front (its heading is drawn at reset); the orb has none."""
    legged: bool = False
    """Whether the body walks with a learned gait (``flexrl train skill=locomotion``)."""
    camera: str = "top"
    """The camera videos are rendered from: the arena's overhead ``top``, or one the body brings."""
    skill_policies: str | None = None
    """A directory with the robot's own skill policy families (trained with its body in the loop); None:
    the orb's shipped ones drive it."""
    skill_scale: SkillScale = SkillScale()
    """How its skills are judged relative to the orb's criteria: radii, time budgets, standing still."""

    @abstractmethod
    def parts(self) -> BodyParts:
        """The MJCF of the body."""

    @abstractmethod
    def bind(self, model: mujoco.MjModel) -> None:
        """Look up the addresses the robot needs in the compiled arena (called once per model)."""

    @abstractmethod
    def place(self, data: mujoco.MjData, xy: np.ndarray, velocity: np.ndarray | None, heading: float) -> None:
        """Put the body at ``xy`` (m) facing ``heading`` (radians from east), at rest or moving at ``velocity``."""

    @abstractmethod
    def planar(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray, float]:
        """Position (x, y), velocity (vx, vy) and heading (radians from east) of the body."""

    @abstractmethod
    def act(self, data: mujoco.MjData, action: np.ndarray) -> None:
        """Set the actuators for one control step from a planar action in [-1, 1]^2 (finite, clipped)."""

    def check(self) -> None:
        """Raise a one-line error when the robot cannot act (a legged robot without its gait); a no-op here."""

    def fallen(self, data: mujoco.MjData) -> bool:
        """Whether the body has fallen over (a wheeled or point body never does)."""
        return False

"""The structured, named world state that encoders, skills and task checkers read.

Nothing downstream of the env indexes raw observation arrays: they read a `WorldState`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COMPASS: dict[str, tuple[float, float]] = {
    "north": (0.0, 1.0),
    "north_east": (np.sqrt(0.5), np.sqrt(0.5)),
    "east": (1.0, 0.0),
    "south_east": (np.sqrt(0.5), -np.sqrt(0.5)),
    "south": (0.0, -1.0),
    "south_west": (-np.sqrt(0.5), -np.sqrt(0.5)),
    "west": (-1.0, 0.0),
    "north_west": (-np.sqrt(0.5), np.sqrt(0.5)),
}
"""Compass directions in the arena frame: +y is north, +x is east."""


@dataclass(frozen=True)
class BodyState:
    """Planar position and velocity of one object, in metres and metres per second."""

    pos: np.ndarray
    vel: np.ndarray

    @property
    def speed(self) -> float:
        """Magnitude of the planar velocity."""
        return float(np.linalg.norm(self.vel))


@dataclass(frozen=True)
class SkillScale:
    """How a robot's skills are judged, relative to the orb's criteria in :mod:`flexrl.skills.library`.

    Attributes:
        length: success radii, distances and wall margins are the orb's times this (a 1 m ant in an arena
            2.5 times the orb's is judged at 2.5 times the radii).
        time: skill time budgets are the orb's times this (the arena's scale over the robot's speed
            relative to the orb's).
        still: planar speed (m/s) under which the body counts as stopped.
        wall: the closest to a wall a task places the body's centre (m).
        standoff: how far from a moving object's centre ``follow`` aims (m): 0 for the orb, which may push
            the ball; a legged body keeps its feet off it (stepping on the ball tips it over).
        stands: whether the body holds still by itself when given no push (a legged gait's stand): then
            ``stop``, ``done`` and ``cannot`` push it none, instead of steering it back to where it stopped.
        brake: seconds ahead a body brakes before the ball: every skill but touching the ball drops the part
            of its action that walks towards the ball when, at the speed they close, body and ball would
            touch within this time (or are within a margin of touching). 0: never (the orb may push the
            ball); a legged body walking into the ball tips over.
        reach: how far from its centre the body keeps its limbs' reach off a wall (m): a braking body also
            drops the part of its action that walks towards a wall closer than this (plus a margin) within
            ``brake`` seconds (a leg that kicks a wall throws a legged body over, and one pressed against it
            cannot walk); skill targets lie no closer to a wall. 0: no wall brake.
    """

    length: float = 1.0
    time: float = 1.0
    still: float = 0.05
    wall: float = 0.2
    standoff: float = 0.0
    stands: bool = False
    brake: float = 0.0
    reach: float = 0.0


@dataclass(frozen=True)
class WorldState:
    """A snapshot of the arena.

    Attributes:
        agent: the agent body.
        ball: the ball.
        pads: coloured goal pads by name (e.g. ``"red_pad"``), positions only: pads never move.
        half_size: half the side of the square floor; walls stand at +-half_size.
        step: control steps since reset.
        touching_ball: whether agent and ball are in contact this step.
        touch_distance: centre distance at which agent and ball touch.
        agent_heading: the way the agent's body faces, radians from east (0 for a body without a front).
        scale: how the robot's skills are judged (its :attr:`~flexrl.robots.base.Robot.skill_scale`).
    """

    agent: BodyState
    ball: BodyState
    pads: dict[str, np.ndarray]
    half_size: float
    step: int = 0
    touching_ball: bool = False
    touch_distance: float = 0.24
    agent_heading: float = 0.0
    scale: SkillScale = SkillScale()

    @property
    def object_names(self) -> list[str]:
        """Every object a skill may refer to by name."""
        return ["ball", *self.pads]

    def position_of(self, name: str) -> np.ndarray:
        """Position of a named object (``"ball"``, ``"agent"`` or a pad name)."""
        if name == "ball":
            return self.ball.pos
        if name == "agent":
            return self.agent.pos
        if name in self.pads:
            return self.pads[name]
        allowed = ", ".join(["agent", *self.object_names])
        raise ValueError(f"unknown object {name!r}; known objects: {allowed}")

    def velocity_of(self, name: str) -> np.ndarray:
        """Velocity of a named object; pads are static."""
        if name == "ball":
            return self.ball.vel
        if name == "agent":
            return self.agent.vel
        self.position_of(name)  # validates the name
        return np.zeros(2)

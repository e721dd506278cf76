"""Plain configuration of the arena and the agent's body, as entry points pass them in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from flexrl.robots import ROBOTS


@dataclass
class EnvConfig:
    """The arena's ball behaviour in agent runs.

    Attributes:
        ball_mode: "still", "drift", "chase" or "random" (one of the others per episode).
        ball_speed: speed of a moving ball, m/s.
    """

    ball_mode: str = "drift"
    ball_speed: float = 0.3

    def __post_init__(self) -> None:
        from flexrl.envs.arena_env import BALL_MODES

        if self.ball_mode not in (*BALL_MODES, "random"):
            raise ValueError(f"ball_mode={self.ball_mode!r}; allowed: {', '.join((*BALL_MODES, 'random'))}")
        if not 0 <= self.ball_speed <= 5:
            raise ValueError(f"ball_speed={self.ball_speed!r}; allowed: 0 to 5 m/s")


@dataclass
class RobotConfig:
    """The agent's body (:mod:`flexrl.robots`); each robot takes the settings it names in ``SETTINGS`` and
    refuses the others (None: unset, the robot's default).

    Attributes:
        name: the robot ("orb": a sphere on two slide joints driven by two planar motors; "ant").
        radius: the orb's radius, metres.
        force: the orb's force in newtons at action magnitude 1 on each axis.
        damping: linear damping of the orb's slide joints; with ``force`` it sets the top speed.
        gait: a legged robot's gait checkpoint directory (None: the shipped one).
    """

    name: str = "orb"
    radius: Optional[float] = None
    force: Optional[float] = None
    damping: Optional[float] = None
    gait: Optional[str] = None

    def __post_init__(self) -> None:
        if self.name not in ROBOTS:
            raise ValueError(f"robot.name={self.name!r}; allowed: {', '.join(ROBOTS)}")
        for key in ("radius", "force", "damping"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, (int, float)) or not 0 < value < float("inf")):
                raise ValueError(f"robot.{key}={value!r}; allowed: a finite positive number")

"""The Ant: Gymnasium's four-legged MuJoCo model (MIT, installed with gymnasium; nothing is downloaded).

Its body, actuators and default class come from gymnasium's ``ant.xml`` as installed, renamed into the arena
(root body ``agent``, free joint ``agent_root``, joints and motors prefixed ``ant_``). A skill's planar action
becomes a velocity command for the gait policy (``gait``: a checkpoint written by ``flexrl train
skill=locomotion robot=ant``); :meth:`Ant.act_joints` drives the eight motors directly (gait training).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flexrl.envs.world import SkillScale
from flexrl.robots.base import BodyParts, Robot
from flexrl.robots.gait import GaitPolicy, body_commands, headings, observations, rotations

if TYPE_CHECKING:
    import mujoco

STAND_HEIGHT = 0.55
"""Torso height (m) the ant is placed at, legs in Gymnasium's initial pose."""
STALL_COMMAND, STALL_SPEED, STALL_STEPS, RECOVER_STEPS = 0.5, 0.1, 20, 10
"""Stall recovery: a body told to walk at >= 0.5 m/s (or at its ``min_walk``, if slower) that moves under
0.1 m/s for 20 control steps (1 s) is told to stop for 10 steps, then to walk again. The first gait stalled
in 14-19% of starts (docs/robots.md)."""
LIFT_FROM = 0.1
"""Commands under this speed (m/s) are left as they are: the gait stands for them (see :attr:`Ant.min_walk`)."""
FALL_HEIGHT = 0.26
"""The ant has fallen when its torso is below this height (m) ..."""
FALL_UP = 0.3
"""... or its torso's up axis has tipped below this z component (about 73 degrees from vertical)."""
JOINTS = ("hip_1", "ankle_1", "hip_2", "ankle_2", "hip_3", "ankle_3", "hip_4", "ankle_4")
"""The leg joints in observation order (the motors follow ant.xml's order, read by name at bind)."""


def _asset() -> Path:
    import gymnasium.envs.mujoco as gym_mujoco

    return Path(gym_mujoco.__file__).parent / "assets" / "ant.xml"


@lru_cache(maxsize=1)
def _ant_parts() -> tuple[str, str, str]:
    """(body, actuators, default class) XML of the Ant, renamed for the arena."""
    root = ET.parse(_asset()).getroot()
    default = root.find("default")
    default.set("class", "ant")
    torso = root.find("worldbody/body[@name='torso']")
    torso.set("name", "agent")
    torso.set("childclass", "ant")
    torso.set("pos", f"0 0 {STAND_HEIGHT}")
    for camera in torso.findall("camera"):
        torso.remove(camera)
    # Follows the body from the south-south-west, looking down at 35 degrees: the legs and the gait show.
    ET.SubElement(torso, "camera", name="track", mode="trackcom", pos="-1.2 -3.6 2.6", xyaxes="0.95 -0.32 0 0.18 0.56 0.81")
    for element in torso.iter():
        if element.tag == "joint":
            element.set("name", "agent_root" if element.get("type") == "free" else f"ant_{element.get('name')}")
        elif element.tag in ("geom", "body") and element is not torso and element.get("name"):
            element.set("name", f"ant_{element.get('name')}")
    torso.find("geom").set("rgba", "0.45 0.2 0.75 1")
    motors = root.findall("actuator/motor")
    for motor in motors:
        motor.set("name", f"ant_{motor.get('joint')}")
        motor.set("joint", f"ant_{motor.get('joint')}")
    text = lambda e: ET.tostring(e, encoding="unicode")  # noqa: E731
    return text(torso), "".join(text(m) for m in motors), text(default)


class Ant(Robot):
    """Gymnasium's Ant steered by a command-conditioned gait policy.

    Args:
        gait: a gait checkpoint directory (None: the shipped one, when it exists).
    """

    name = "ant"
    SETTINGS = ("gait",)
    radius = 0.6
    """The footprint: the feet reach 0.63 m from the torso's centre standing (the torso alone is 0.25 m)."""
    top_speed = 1.0
    arena_scale = 2.5
    skill_policies = str(Path(__file__).parent / "pretrained" / "ant_skills")
    """The reach family fine-tuned from the orb's with the gait in the loop (200k steps: follow 70% -> 86%);
    avoid is the orb's (fine-tuning it gave 83% against 89%). docs/robots.md."""
    skill_scale = SkillScale(length=2.5, time=2.5 * 1.5 / 0.8, still=0.1, wall=1.2, standoff=0.65, stands=True,
                             brake=0.8, reach=1.0)
    """Radii and distances scale with the arena; time budgets with the arena over the speed (the orb's
    1.5 m/s against the gait's 0.8 m/s along a 1 m/s command, docs/robots.md); a standing ant's torso sways
    a little, so still is under 0.1 m/s; its feet reach 0.63 m standing but up to 1.18 m as it walks (99% of
    the time within 1.11 m, bench/ant_reach.py), so it brakes before a wall its legs would reach within
    0.8 s (``reach`` 1 m) and starts at least 1.2 m from one; it follows a ball 1.1 m from its centre (the
    feet touch it at 0.93 m; follow is judged within 1.57 m), and brakes 0.8 s before walking into the ball."""
    min_walk = 0.45
    """A command slower than this (m/s), but not under :data:`LIFT_FROM`, is raised to it: the gait barely
    moves under slow commands (0.3 m/s gives 0.16), so a navigation policy that creeps away from a chasing
    ball would stand still (avoid 88% -> 94% on 100 episodes, docs/robots.md)."""
    has_heading = True
    legged = True
    camera = "track"

    def __init__(self, gait: str | None = None) -> None:
        self.gait_path = gait
        self._gait: GaitPolicy | None = None
        self._stalled = self._recovering = 0

    def parts(self) -> BodyParts:
        body, actuators, default = _ant_parts()
        return BodyParts(body, actuators, default, option='integrator="RK4"')

    def bind(self, model: "mujoco.MjModel") -> None:
        """Addresses: ``root_q``/``root_v`` (the free joint's qpos and dof), ``joint_q``/``joint_v`` (the legs'),
        ``motors`` (actuator ids), all in :data:`JOINTS` order; ``rest``: Gymnasium's initial leg pose."""
        root = model.joint("agent_root").id
        self.root_q, self.root_v = int(model.jnt_qposadr[root]), int(model.jnt_dofadr[root])
        self.joint_q = np.array([model.jnt_qposadr[model.joint(f"ant_{j}").id] for j in JOINTS])
        self.joint_v = np.array([model.jnt_dofadr[model.joint(f"ant_{j}").id] for j in JOINTS])
        self.motors = np.array([model.actuator(f"ant_{j}").id for j in JOINTS])
        # Gymnasium's initial pose of the legs (init_qpos, in ant.xml's joint order).
        self.rest = np.array([0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0])

    # ------------------------------------------------------------------ pose
    def place(self, data: "mujoco.MjData", xy: np.ndarray, velocity: np.ndarray | None, heading: float) -> None:
        self._stalled = self._recovering = 0
        q, v = self.root_q, self.root_v
        data.qpos[q : q + 3] = [xy[0], xy[1], STAND_HEIGHT]
        data.qpos[q + 3 : q + 7] = [math.cos(heading / 2), 0.0, 0.0, math.sin(heading / 2)]
        data.qpos[self.joint_q] = self.rest
        data.qvel[v : v + 6] = 0.0
        if velocity is not None:
            data.qvel[v : v + 2] = velocity
        data.qvel[self.joint_v] = 0.0

    def planar(self, data: "mujoco.MjData") -> tuple[np.ndarray, np.ndarray, float]:
        q, v = self.root_q, self.root_v
        return data.qpos[q : q + 2].copy(), data.qvel[v : v + 2].copy(), float(headings(data.qpos[None, q + 3 : q + 7])[0])

    def up_z(self, data: "mujoco.MjData") -> float:
        """The z component of the torso's up axis (1 upright, below 0 upside down)."""
        return float(rotations(data.qpos[None, self.root_q + 3 : self.root_q + 7])[0, 2, 2])

    def fallen(self, data: "mujoco.MjData") -> bool:
        return bool(fallen(data.qpos[None, self.root_q : self.root_q + 7])[0])

    def fallen_many(self, root_q: np.ndarray) -> np.ndarray:
        """:meth:`fallen` for a batch of free-joint positions (n, 7) (gait training and evaluation)."""
        return fallen(root_q)

    # ------------------------------------------------------------------ actuation
    def act_joints(self, data: "mujoco.MjData", torques: np.ndarray) -> None:
        """Drive the eight leg motors directly (in :data:`JOINTS` order, each in [-1, 1])."""
        data.ctrl[self.motors] = np.clip(torques, -1.0, 1.0)

    def check(self) -> None:
        """Load the gait policy (FileNotFoundError, one line, when there is none)."""
        if self._gait is None:
            self._gait = GaitPolicy.load(self.gait_path)

    def act(self, data: "mujoco.MjData", action: np.ndarray) -> None:
        self.check()
        command = self.command(action)
        speed = float(np.linalg.norm(data.qvel[self.root_v : self.root_v + 2]))
        if self._recovering > 0:  # a stalled gait stands (the stop command) before it is asked to walk again
            self._recovering -= 1
            command = np.zeros(2)
        elif np.linalg.norm(command) >= min(STALL_COMMAND, self.min_walk or STALL_COMMAND) and speed < STALL_SPEED:
            self._stalled += 1
            if self._stalled >= STALL_STEPS:
                self._stalled, self._recovering = 0, RECOVER_STEPS
        else:
            self._stalled = 0
        self.act_joints(data, self._gait.act(self.gait_observation(data, command)))

    def command(self, action: np.ndarray) -> np.ndarray:
        """The world-frame velocity (m/s) a planar action asks for: its direction at up to ``top_speed``
        (a diagonal action at full push is no faster than a straight one), and at least ``min_walk`` unless
        it is slower than :data:`LIFT_FROM`."""
        a = np.asarray(action, dtype=float)
        command = a * self.top_speed / max(1.0, float(np.linalg.norm(a)))
        speed = float(np.linalg.norm(command))
        if LIFT_FROM <= speed < self.min_walk:
            command = command * (self.min_walk / speed)
        return command

    def gait_observation(self, data: "mujoco.MjData", world_velocity: np.ndarray) -> np.ndarray:
        """The gait policy's observation (:func:`flexrl.robots.gait.observations`) for a world-frame command."""
        q, v = self.root_q, self.root_v
        root_q = data.qpos[None, q : q + 7]
        command = body_commands(np.asarray(world_velocity, dtype=float)[None], headings(root_q[:, 3:7]))
        return observations(root_q, data.qvel[None, v : v + 6], data.qpos[None, self.joint_q],
                            data.qvel[None, self.joint_v], command)[0]


def fallen(root_q: np.ndarray) -> np.ndarray:
    """Which of a batch of Ant torsos (free-joint positions (n, 7)) have fallen: too low or tipped over.
    The one rule the arena, gait training and gait evaluation share."""
    return (root_q[:, 2] < FALL_HEIGHT) | (rotations(root_q[:, 3:7])[:, 2, 2] < FALL_UP)

"""The orb: a sphere on two slide joints driven by two planar motors (the shipped skills were trained on it)."""

from __future__ import annotations

import mujoco
import numpy as np

from flexrl.robots.base import BodyParts, Robot


class Orb(Robot):
    """A point-mass agent: the planar action is the force on each axis (``force`` newtons at 1).

    Args:
        radius: metres.
        force: newtons at action magnitude 1 on each axis.
        damping: linear damping of the slide joints; with ``force`` it sets the top speed.
    """

    name = "orb"
    SETTINGS = ("radius", "force", "damping")

    def __init__(self, radius: float = 0.1, force: float = 6.0, damping: float = 4.0) -> None:
        self.radius, self.force, self.damping = float(radius), float(force), float(damping)
        self.top_speed = self.force / self.damping

    def parts(self) -> BodyParts:
        body = f"""
    <body name="agent" pos="0 0 {self.radius}">
      <joint name="agent_x" type="slide" axis="1 0 0" damping="{self.damping}"/>
      <joint name="agent_y" type="slide" axis="0 1 0" damping="{self.damping}"/>
      <geom name="agent" type="sphere" size="{self.radius}" mass="1" rgba="0.45 0.2 0.75 1"/>
    </body>"""
        actuators = f"""
    <motor name="force_x" joint="agent_x" gear="{self.force}" ctrlrange="-1 1" ctrllimited="true"/>
    <motor name="force_y" joint="agent_y" gear="{self.force}" ctrlrange="-1 1" ctrllimited="true"/>"""
        return BodyParts(body, actuators)

    def bind(self, model: mujoco.MjModel) -> None:
        self._q = model.jnt_qposadr[model.joint("agent_x").id]
        self._v = model.jnt_dofadr[model.joint("agent_x").id]
        self._ctrl = model.actuator("force_x").id

    def place(self, data: mujoco.MjData, xy: np.ndarray, velocity: np.ndarray | None, heading: float) -> None:
        data.qpos[self._q : self._q + 2] = xy
        data.qvel[self._v : self._v + 2] = 0.0 if velocity is None else velocity

    def planar(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray, float]:
        return data.qpos[self._q : self._q + 2].copy(), data.qvel[self._v : self._v + 2].copy(), 0.0

    def act(self, data: mujoco.MjData, action: np.ndarray) -> None:
        data.ctrl[self._ctrl : self._ctrl + 2] = action

"""The arena as an MJCF string: a walled floor, a robot (:mod:`flexrl.robots`), a ball and coloured pads.

The robot brings its own body, actuators, default classes and physics options; the rest of the world is
the same for every robot, scaled by the robot's ``arena_scale``.
"""

from __future__ import annotations

from dataclasses import dataclass

from flexrl.robots.base import BodyParts

PAD_COLOURS: dict[str, tuple[float, float, float]] = {
    "red_pad": (0.85, 0.15, 0.15),
    "green_pad": (0.15, 0.7, 0.2),
    "blue_pad": (0.15, 0.3, 0.9),
    "yellow_pad": (0.9, 0.8, 0.1),
}


@dataclass(frozen=True)
class ArenaSpec:
    """Geometry and physics constants of the arena.

    Attributes:
        half_size: half the side of the square floor, metres.
        ball_radius: radius of the ball, metres.
        pad_radius: radius of the flat goal pads, metres.
        timestep: physics step, seconds.
    """

    half_size: float = 2.0
    ball_radius: float = 0.12
    pad_radius: float = 0.25
    timestep: float = 0.01


def arena_xml(spec: ArenaSpec, robot: BodyParts) -> str:
    """Build the whole arena model around the robot's parts.

    Pads are visual only (no collisions); their positions are rewritten at every reset.
    Offscreen quality settings (no shadows, no multisampling) keep software rendering fast.
    """
    h = spec.half_size
    wall_t = 0.05
    walls = "\n".join(
        f'<geom name="wall_{n}" type="box" pos="{x} {y} 0.15" size="{sx} {sy} 0.15" rgba="0.45 0.45 0.5 1"/>'
        for n, x, y, sx, sy in [
            ("north", 0, h + wall_t, h + 2 * wall_t, wall_t),
            ("south", 0, -h - wall_t, h + 2 * wall_t, wall_t),
            ("east", h + wall_t, 0, wall_t, h),
            ("west", -h - wall_t, 0, wall_t, h),
        ]
    )
    pads = "\n".join(
        f'<geom name="{name}" type="cylinder" pos="0 0 0.002" size="{spec.pad_radius} 0.002" '
        f'rgba="{r} {g} {b} 1" contype="0" conaffinity="0"/>'
        for name, (r, g, b) in PAD_COLOURS.items()
    )
    # Negative solref values set stiffness and damping directly: the ball bounces off walls.
    return f"""
<mujoco model="flexrl_arena">
  <option timestep="{spec.timestep}" {robot.option}/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <global offwidth="640" offheight="480"/>
  </visual>
  <default>{robot.defaults}
  </default>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.82 0.82 0.78" rgb2="0.74 0.74 0.7" width="64" height="64"/>
    <material name="floor" texture="grid" texrepeat="4 4" reflectance="0"/>
  </asset>
  <worldbody>
    <light pos="0 0 6" dir="0 0 -1" directional="true" castshadow="false"/>
    <camera name="top" pos="0 0 {2.9 * h:.3f}" xyaxes="1 0 0 0 1 0" fovy="45"/>
    <geom name="floor" type="plane" size="{h + 0.2} {h + 0.2} 0.1" material="floor"/>
    {walls}
    {pads}
    {robot.body}
    <body name="ball" pos="0.5 0.5 {spec.ball_radius}">
      <freejoint name="ball"/>
      <geom name="ball" type="sphere" size="{spec.ball_radius}" mass="0.3" rgba="0.95 0.5 0.05 1"
            solref="-3000 -4" friction="0.6 0.005 0.0001"/>
    </body>
  </worldbody>
  <actuator>{robot.actuators}
  </actuator>
</mujoco>
"""

"""`ArenaEnv`: the MuJoCo arena as a Gymnasium environment with a named world state."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from flexrl.envs.arena_model import PAD_COLOURS, ArenaSpec, arena_xml
from flexrl.envs.world import BodyState, WorldState
from flexrl.robots import make_robot

if TYPE_CHECKING:
    from flexrl.envs.config import RobotConfig
    from flexrl.robots.base import Robot

BALL_MODES = ("still", "drift", "chase")
VEL_SCALE = 2.0
"""Velocities are divided by this in observations (the orb tops out near 1.5 m/s)."""


def check_point(name: str, value: Any, half_size: float, margin: float = 0.0) -> np.ndarray:
    """Validate a user-given arena coordinate and return it as a float array.

    Raises:
        ValueError: one line naming the bad value and the allowed range.
    """
    lim = half_size - margin
    try:
        p = np.asarray(value, dtype=float).reshape(2)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a point; expected two numbers (x, y) in [-{lim:g}, {lim:g}] m") from None
    if not np.all(np.isfinite(p)) or np.any(np.abs(p) > lim):
        raise ValueError(f"{name}={value!r} is outside the arena; x and y must be finite and in [-{lim:g}, {lim:g}] m")
    return p


def scaled_spec(scale: float) -> ArenaSpec:
    """The default arena with its floor, ball and pads scaled (a robot's ``arena_scale``)."""
    base = ArenaSpec()
    return dataclasses.replace(base, half_size=base.half_size * scale, ball_radius=base.ball_radius * scale,
                               pad_radius=base.pad_radius * scale)


class ArenaEnv(gym.Env):
    """A walled floor with a robot, a ball and coloured pads.

    The action is a planar push in [-1, 1]^2 that the robot turns into its actuator commands (the orb: a
    force). The observation is the world state flattened and scaled (agent pos/vel, ball pos/vel, pad
    positions); use :meth:`world_state` for named access. The base env has no task: its reward is 0.
    Skill training envs add goals and rewards on top. Make it with :func:`flexrl.envs.make_arena`.

    Args:
        robot: the body (:mod:`flexrl.robots`): a robot, its config or its name; None is the orb.
        spec: arena geometry and physics (None: the default arena scaled by the robot's ``arena_scale``).
        frame_skip: physics steps per control step (0.01 s * 5 = 20 Hz control).
        ball_mode: "still", "drift" (keeps rolling at ``ball_speed``, bouncing off walls),
            "chase" (rolls towards the agent at up to ``ball_speed``) or "random" (one of the three per episode).
        ball_speed: target speed of a drifting or chasing ball, m/s for the orb; a robot whose skills are judged
            at a larger scale (``Robot.skill_scale``) gets it times ``length / time`` (the ant: 0.53), as it
            does ``agent_velocity`` and ``ball_velocity``, so a task is as hard for every robot.
        min_separation: minimum distance between sampled object positions, m.
        render_mode: "rgb_array" or None.
        width: render width in pixels.
        height: render height in pixels.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        robot: "Robot | RobotConfig | str | None" = None,
        spec: ArenaSpec | None = None,
        frame_skip: int = 5,
        ball_mode: str = "still",
        ball_speed: float = 0.5,
        min_separation: float = 0.6,
        render_mode: str | None = None,
        width: int = 320,
        height: int = 240,
    ) -> None:
        if ball_mode not in (*BALL_MODES, "random"):
            raise ValueError(f"ball_mode={ball_mode!r}; allowed: {', '.join((*BALL_MODES, 'random'))}")
        if not (isinstance(ball_speed, (int, float)) and math.isfinite(ball_speed) and 0 <= ball_speed <= 3):
            raise ValueError(f"ball_speed={ball_speed!r}; allowed: a number in [0, 3] m/s")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}; allowed: None, 'rgb_array'")
        self.robot = make_robot(robot)
        self.spec_ = spec or scaled_spec(self.robot.arena_scale)
        self.frame_skip = int(frame_skip)
        self.ball_mode = ball_mode
        self.ball_speed = float(ball_speed)
        self.min_separation = float(min_separation)
        self.render_mode = render_mode
        self.width, self.height = int(width), int(height)

        self.model = mujoco.MjModel.from_xml_string(arena_xml(self.spec_, self.robot.parts()))
        self.data = mujoco.MjData(self.model)
        self.robot.bind(self.model)
        self._ball_body = self.model.body("ball").id
        self._ball_qpos = self.model.jnt_qposadr[self.model.joint("ball").id]
        self._ball_qvel = self.model.jnt_dofadr[self.model.joint("ball").id]
        self._pad_geoms = {name: self.model.geom(name).id for name in PAD_COLOURS}
        self._renderer: mujoco.Renderer | None = None
        self._episode_ball_mode = "still"
        self._episode_ball_speed = self.ball_speed
        scale = self.robot.skill_scale
        self._speed_scale = scale.length / scale.time
        self._step = 0
        self._world: WorldState | None = None

        n_obs = 8 + 2 * len(PAD_COLOURS)
        self.observation_space = spaces.Box(-10.0, 10.0, shape=(n_obs,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    # ----------------------------------------------------------------------------------- state
    @property
    def half_size(self) -> float:
        """Half the side of the floor, metres."""
        return self.spec_.half_size

    @property
    def dt(self) -> float:
        """Seconds per control step."""
        return self.model.opt.timestep * self.frame_skip

    @property
    def episode_ball_mode(self) -> str:
        """The ball mode in force this episode (resolves "random")."""
        return self._episode_ball_mode

    def world_state(self) -> WorldState:
        """The named state of the arena now (built once per step: skills, rewards and encoders share it)."""
        if self._world is None:
            self._world = self._build_world_state()
        return self._world

    def _build_world_state(self) -> WorldState:
        d = self.data
        pos, vel, heading = self.robot.planar(d)
        agent = BodyState(pos, vel)
        bq, bv = self._ball_qpos, self._ball_qvel
        ball = BodyState(d.qpos[bq : bq + 2].copy(), d.qvel[bv : bv + 2].copy())
        pads = {name: self.model.geom_pos[g, :2].copy() for name, g in self._pad_geoms.items()}
        touch = self.robot.radius + self.spec_.ball_radius + 0.02
        touching = float(np.linalg.norm(agent.pos - ball.pos)) <= touch
        return WorldState(agent, ball, pads, self.half_size, self._step, touching, touch, heading, self.robot.skill_scale)

    def _obs(self) -> np.ndarray:
        w = self.world_state()
        h = self.half_size
        parts = [w.agent.pos / h, w.agent.vel / VEL_SCALE, w.ball.pos / h, w.ball.vel / VEL_SCALE]
        parts += [p / h for p in w.pads.values()]
        return np.concatenate(parts).astype(np.float32)

    # ----------------------------------------------------------------------------------- layout
    def _sample_layout(self) -> dict[str, np.ndarray]:
        margin = max(0.35, self.robot.skill_scale.wall)
        lim = self.half_size - margin
        names = ["agent", "ball", *PAD_COLOURS]
        for _ in range(1000):
            pts = self.np_random.uniform(-lim, lim, size=(len(names), 2))
            dists = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(len(names)) * 1e9
            if dists.min() >= self.min_separation:
                break
        return dict(zip(names, pts))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset to a layout sampled from the seed.

        Options (all optional) pin parts of the layout: ``agent``, ``ball``, any pad name (x, y);
        ``ball_velocity`` and ``agent_velocity`` (vx, vy); ``agent_heading`` (radians from east); ``ball_mode``;
        ``ball_speed`` (this episode only).
        """
        super().reset(seed=seed)
        options = dict(options or {})
        mujoco.mj_resetData(self.model, self.data)
        layout = self._sample_layout()
        known = {"agent", "ball", *PAD_COLOURS, "ball_velocity", "ball_mode", "ball_speed", "agent_velocity", "agent_heading"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; allowed: {', '.join(sorted(known))}")
        for name in ["agent", "ball", *PAD_COLOURS]:
            if name in options:
                margin = max(0.1, self.robot.radius) if name == "agent" else 0.1  # a body's feet stay off the walls
                layout[name] = check_point(name, options[name], self.half_size, margin=margin)
        mode = options.get("ball_mode", self.ball_mode)
        if mode == "random":
            mode = BALL_MODES[int(self.np_random.integers(len(BALL_MODES)))]
        if mode not in BALL_MODES:
            raise ValueError(f"ball_mode={mode!r}; allowed: {', '.join((*BALL_MODES, 'random'))}")
        self._episode_ball_mode = mode
        self._episode_ball_speed = float(options.get("ball_speed", self.ball_speed))
        if not (math.isfinite(self._episode_ball_speed) and 0 <= self._episode_ball_speed <= 3):
            raise ValueError(f"ball_speed={self._episode_ball_speed!r}; allowed: a number in [0, 3] m/s")
        self._episode_ball_speed *= self._speed_scale

        velocity = check_point("agent_velocity", options["agent_velocity"], 3.0) if "agent_velocity" in options else None
        if velocity is not None:
            velocity = velocity * self._speed_scale
        heading = options.get("agent_heading")
        if heading is None:  # drawn only for bodies with a front, so the orb's episodes stay as they were
            heading = float(self.np_random.uniform(-np.pi, np.pi)) if self.robot.has_heading else 0.0
        elif not (isinstance(heading, (int, float)) and math.isfinite(heading)):
            raise ValueError(f"agent_heading={heading!r}; allowed: a finite angle in radians from east")
        self.robot.place(self.data, layout["agent"], velocity, float(heading))
        bq, bv = self._ball_qpos, self._ball_qvel
        self.data.qpos[bq : bq + 3] = [*layout["ball"], self.spec_.ball_radius]
        self.data.qpos[bq + 3 : bq + 7] = [1, 0, 0, 0]
        if "ball_velocity" in options:
            self.data.qvel[bv : bv + 2] = check_point("ball_velocity", options["ball_velocity"], 3.0) * self._speed_scale
        elif mode == "drift":
            ang = self.np_random.uniform(0, 2 * np.pi)
            self.data.qvel[bv : bv + 2] = self._episode_ball_speed * np.array([np.cos(ang), np.sin(ang)])
        for name, g in self._pad_geoms.items():
            self.model.geom_pos[g, :2] = layout[name]
        mujoco.mj_forward(self.model, self.data)
        self._step = 0
        self._world = None
        return self._obs(), {"ball_mode": mode}

    # ----------------------------------------------------------------------------------- dynamics
    def _ball_force(self) -> np.ndarray:
        """Force that steers the ball towards its mode's target velocity (zero when still)."""
        mode = self._episode_ball_mode
        speed_target = self._episode_ball_speed
        if mode == "still" or speed_target == 0:
            return np.zeros(2)
        bv = self._ball_qvel
        vel = self.data.qvel[bv : bv + 2]
        if mode == "chase":
            bq = self._ball_qpos
            to_agent = self.world_state().agent.pos - self.data.qpos[bq : bq + 2]
            direction = to_agent / (np.linalg.norm(to_agent) + 1e-9)
        else:
            speed = np.linalg.norm(vel)
            direction = vel / speed if speed > 1e-3 else np.array([1.0, 0.0])
        return 1.5 * (speed_target * direction - vel)

    def step(self, action):
        """Apply a planar force for one control step.

        A non-finite action is treated as no force. A simulation that becomes unstable (NaN state)
        ends the episode with ``info["unstable"] = True`` instead of raising; a robot that falls
        (:meth:`~flexrl.robots.base.Robot.fallen`) ends it with ``info["fell"] = True``.
        """
        a = np.asarray(action, dtype=float).reshape(2)
        a = np.clip(np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
        self.robot.act(self.data, a)
        force = self._ball_force()
        self.data.xfrc_applied[self._ball_body, :2] = force
        warnings_before = self._instability_warnings()
        for _ in range(self.frame_skip):
            mujoco.mj_step(self.model, self.data)
        self._step += 1
        self._world = None
        info: dict[str, Any] = {"ball_mode": self._episode_ball_mode}
        # MuJoCo resets a diverged state by itself and only counts a warning: read the counters.
        diverged = self._instability_warnings() > warnings_before
        if diverged or not (np.all(np.isfinite(self.data.qpos)) and np.all(np.isfinite(self.data.qvel))):
            info["unstable"] = True
            mujoco.mj_resetData(self.model, self.data)
            mujoco.mj_forward(self.model, self.data)
            self._world = None
            return self._obs(), 0.0, True, False, info
        if self.robot.fallen(self.data):  # a legged body on its back: the episode is over
            info["fell"] = True
            return self._obs(), 0.0, True, False, info
        return self._obs(), 0.0, False, False, info

    def _instability_warnings(self) -> int:
        w = self.data.warning
        return sum(int(w[k].number) for k in (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL, mujoco.mjtWarning.mjWARN_BADQACC))

    # ----------------------------------------------------------------------------------- rendering
    def render(self) -> np.ndarray | None:
        """An RGB frame from the robot's camera (the orb: overhead; the Ant: following it at an angle), or None
        without a render mode."""
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            try:
                self._renderer = mujoco.Renderer(self.model, self.height, self.width)
            except mujoco.FatalError as err:
                raise RuntimeError(f"no OpenGL context for offscreen rendering ({err}); set MUJOCO_GL=egl (or osmesa) before starting Python") from None
            for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX):
                self._renderer.scene.flags[flag] = 0
        self._renderer.update_scene(self.data, camera=self.robot.camera)
        return self._renderer.render()

    def close(self) -> None:
        """Release the renderer."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

"""Gait training: many Ants on an open floor, stepped together in C, behind Stable-Baselines3's VecEnv.

Each control step hands every body's full physics state and motor commands to ``mujoco.rollout`` (one C call
for the whole batch, ``frame_skip`` physics steps each) and computes observations and rewards for the batch
in numpy: no Python loop per body or per physics step. The bodies are the arena's Ant (same MJCF, defaults
and physics options as in the arena), on the arena's floor made large and with the ball parked far away.

Commands are world-frame planar velocities of any direction and a speed up to the robot's top speed (some
are "stop"), redrawn within an episode at a random phase per body, shown to the policy in the torso's frame. With ``ball_every`` set, each body also meets the arena's ball
(its size and mass for this robot) every so many steps: rolled at it from any side, or lying or rolling
slowly across its path, as in the arena where a chasing ball runs into the legs and a followed ball is
stepped on. The gait does not see the ball: it learns to keep its feet when it is hit. The reward tracks
the command (the legged-locomotion recipe):
``w_track * exp(-|v - v_cmd|^2 / sigma) + w_progress * (v . v_cmd/|v_cmd|, capped at |v_cmd|) + alive
- w_ctrl * |a|^2``, floored at 0 so that falling (which ends the episode) never pays.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces
from mujoco import rollout
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from flexrl.envs.arena_env import scaled_spec
from flexrl.envs.arena_model import arena_xml
from flexrl.robots.ant import Ant
from flexrl.robots.gait import OBS_DIM, body_commands, headings, observations


@dataclass
class GaitTask:
    """Commands, reward and episode settings of gait training.

    Attributes:
        max_speed: commanded speeds are drawn uniformly up to this (m/s): the Ant's ``top_speed``, everything
            its skills can ask for.
        stop_share: share of commands that are exactly "stop" (zero velocity).
        resample: steps between command draws (each body's first after a random share of it).
        episode_steps: steps before an episode is cut (truncation, not failure).
        sigma: width of the tracking kernel, (m/s)^2.
        w_track: weight of the tracking kernel.
        w_progress: weight of speed along the command.
        alive: reward per step upright.
        w_ctrl: weight of the control cost.
        frame_skip: physics steps per control step (0.01 s * 5 = 20 Hz, as in the arena).
        ball_every: steps between a body's balls (each body's first after a random share of it); 0: no ball.
        ball_speed: top speed of a ball rolled at a body (m/s); drawn uniformly from a fifth of it up.
        refine_sigma: once every bar is met, training narrows the tracking kernel to this width and goes on
            for ``refine_steps`` steps instead of stopping: a wide kernel teaches walking, a narrow one
            then teaches slow commands (trained from scratch, the narrow kernel walked slower).
        refine_steps: env steps trained with the narrow kernel; 0: no refining (``refine_sigma`` unused).
        refine_learning_rate: PPO's learning rate while refining (0: unchanged).
    """

    max_speed: float = 1.0
    stop_share: float = 0.15
    resample: int = 150
    episode_steps: int = 1000
    sigma: float = 0.25
    w_track: float = 1.0
    w_progress: float = 1.0
    alive: float = 0.05
    w_ctrl: float = 0.05
    frame_skip: int = 5
    ball_every: int = 0
    ball_speed: float = 1.0
    refine_sigma: float = 0.0
    refine_steps: int = 0
    refine_learning_rate: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.ball_every, int) or isinstance(self.ball_every, bool) or self.ball_every < 0:
            raise ValueError(f"gait.ball_every={self.ball_every!r}; allowed: an integer >= 0 (0: no ball)")
        if not isinstance(self.ball_speed, (int, float)) or not 0 < self.ball_speed <= 3:
            raise ValueError(f"gait.ball_speed={self.ball_speed!r}; allowed: a number in (0, 3] m/s")
        if not isinstance(self.refine_sigma, (int, float)) or self.refine_sigma < 0 or (
                not isinstance(self.refine_steps, int) or isinstance(self.refine_steps, bool) or self.refine_steps < 0
                or (self.refine_steps and not self.refine_sigma)):
            raise ValueError(f"gait.refine_sigma={self.refine_sigma!r} with gait.refine_steps={self.refine_steps!r}; "
                             "allowed: gait.refine_steps=0 (no refining), or a width > 0 (m/s)^2 and an integer "
                             "number of steps > 0")
        if not isinstance(self.refine_learning_rate, (int, float)) or not 0 <= self.refine_learning_rate < 1:
            raise ValueError(f"gait.refine_learning_rate={self.refine_learning_rate!r}; allowed: a number in [0, 1) "
                             "(0: the run's own)")

    def refined(self) -> "GaitTask":
        """This task with the refining kernel (:attr:`refine_sigma`) in place of :attr:`sigma`."""
        return dataclasses.replace(self, sigma=self.refine_sigma)


class GaitVecEnv(VecEnv):
    """``n_envs`` Ants learning to walk on command, stepped together by ``mujoco.rollout``.

    A body whose physics diverges (MuJoCo then resets it in place, so its clock stops) ends its episode
    with ``info["unstable"]`` and no reward for that step, like a fall.

    Args:
        robot: the legged body (None: the Ant).
        n_envs: bodies stepped together.
        seed: seeds command draws and initial noise.
        task: commands, reward and episode settings.
        threads: rollout threads (1 when sharing the machine).
        batched: step every body in one ``mujoco.rollout`` call (False: ``mj_step`` per body from Python,
            the way a Gymnasium env steps; for measuring what batching gains).
    """

    render_mode = None

    def __init__(self, n_envs: int = 64, seed: int = 0, task: GaitTask | None = None, threads: int = 1,
                 batched: bool = True, robot: Ant | None = None) -> None:
        self.batched = batched
        self.robot = robot or Ant()
        self.spec = dataclasses.replace(scaled_spec(self.robot.arena_scale), half_size=200.0)
        self.model = mujoco.MjModel.from_xml_string(arena_xml(self.spec, self.robot.parts()))
        self.robot.bind(self.model)
        self.task = task or GaitTask()
        task = self.task
        self.datas = [mujoco.MjData(self.model) for _ in range(max(1, threads))]
        self.spec_state = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self.nstate = mujoco.mj_stateSize(self.model, self.spec_state)
        nq, nv = self.model.nq, self.model.nv
        self._qpos = slice(1, 1 + nq)
        self._qvel = slice(1 + nq, 1 + nq + nv)
        ball = self.model.joint("ball")
        self._ball_q = int(self.model.jnt_qposadr[ball.id])
        self._ball_v = int(self.model.jnt_dofadr[ball.id])
        self.ball_countdown = np.zeros(n_envs, dtype=np.int64)
        self.state = np.zeros((n_envs, self.nstate))
        self.commands = np.zeros((n_envs, 2))
        self.steps = np.zeros(n_envs, dtype=np.int64)
        self.countdown = np.zeros(n_envs, dtype=np.int64)
        self.returns = np.zeros(n_envs)
        self.rng = np.random.default_rng(seed)
        self._actions = np.zeros((n_envs, 8))
        self._models = [self.model] * n_envs
        self._out = np.empty((n_envs, task.frame_skip, self.nstate))
        self._template = self._initial_state()
        super().__init__(n_envs, spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32),
                         spaces.Box(-1.0, 1.0, (8,), np.float32))

    # ------------------------------------------------------------------ state
    def _initial_state(self) -> np.ndarray:
        data = mujoco.MjData(self.model)
        data.qpos[self._ball_q : self._ball_q + 3] = [150.0, 150.0, self.spec.ball_radius]  # far from every body
        data.qpos[self._ball_q + 3] = 1.0
        self.robot.place(data, np.zeros(2), None, 0.0)
        mujoco.mj_forward(self.model, data)
        out = np.empty(self.nstate)
        mujoco.mj_getState(self.model, data, out, self.spec_state)
        return out

    def _reset_bodies(self, idx: np.ndarray) -> None:
        if idx.size == 0:
            return
        r = self.robot
        s = np.repeat(self._template[None], idx.size, 0)
        qpos, qvel = s[:, self._qpos], s[:, self._qvel]
        yaw = self.rng.uniform(-np.pi, np.pi, idx.size)
        qpos[:, r.root_q + 3] = np.cos(yaw / 2)
        qpos[:, r.root_q + 6] = np.sin(yaw / 2)
        qpos[:, r.joint_q] += self.rng.uniform(-0.1, 0.1, (idx.size, 8))
        qvel[:, r.joint_v] = self.rng.normal(0, 0.1, (idx.size, 8))
        self.state[idx] = s
        self.steps[idx] = 0
        self.returns[idx] = 0.0
        self._draw_commands(idx)
        self.countdown[idx] = self.rng.integers(1, self.task.resample + 1, idx.size)  # a random phase per body
        if self.task.ball_every:
            self.ball_countdown[idx] = self.rng.integers(1, self.task.ball_every + 1, idx.size)

    def _launch_balls(self, idx: np.ndarray) -> None:
        """Put each body's ball near it: half rolled straight at it from 1.2-2 m, half lying or rolling slowly
        1-2 m ahead on its commanded path (a stopped body's path points anywhere)."""
        if idx.size == 0:
            return
        n, rng, r = idx.size, self.rng, self.robot
        torso = self.state[idx][:, self._qpos][:, r.root_q : r.root_q + 2]
        bearing = rng.uniform(-np.pi, np.pi, n)
        toward = np.stack([np.cos(bearing), np.sin(bearing)], 1)
        cmd = self.commands[idx]
        speed = np.linalg.norm(cmd, axis=1, keepdims=True)
        path = np.where(speed > 0, cmd / np.maximum(speed, 1e-9), toward)
        aimed = rng.random(n) < 0.5
        across = np.stack([-path[:, 1], path[:, 0]], 1) * rng.uniform(-0.4, 0.4, (n, 1))
        offset = np.where(aimed[:, None], toward * rng.uniform(1.2, 2.0, (n, 1)), path * rng.uniform(1.0, 2.0, (n, 1)) + across)
        drift = rng.uniform(-np.pi, np.pi, n)
        velocity = np.where(aimed[:, None], -toward * rng.uniform(0.2, 1.0, (n, 1)) * self.task.ball_speed,
                            np.stack([np.cos(drift), np.sin(drift)], 1) * rng.uniform(0.0, 0.3, (n, 1)))
        q, v = 1 + self._ball_q, 1 + self.model.nq + self._ball_v
        self.state[idx, q : q + 2] = torso + offset
        self.state[idx, q + 2] = self.spec.ball_radius
        self.state[idx, q + 3 : q + 7] = [1.0, 0.0, 0.0, 0.0]
        self.state[idx, v : v + 6] = 0.0
        self.state[idx, v : v + 2] = velocity

    def _draw_commands(self, idx: np.ndarray) -> None:
        t = self.task
        angle = self.rng.uniform(-np.pi, np.pi, idx.size)
        speed = self.rng.uniform(0.0, t.max_speed, idx.size)
        speed[self.rng.random(idx.size) < t.stop_share] = 0.0
        self.commands[idx] = np.stack([np.cos(angle), np.sin(angle)], 1) * speed[:, None]

    def _parts(self) -> tuple[np.ndarray, ...]:
        r = self.robot
        qpos, qvel = self.state[:, self._qpos], self.state[:, self._qvel]
        root_q, root_v = qpos[:, r.root_q : r.root_q + 7], qvel[:, r.root_v : r.root_v + 6]
        return root_q, root_v, qpos[:, r.joint_q], qvel[:, r.joint_v]

    def _obs(self) -> np.ndarray:
        root_q, root_v, joint_q, joint_v = self._parts()
        return observations(root_q, root_v, joint_q, joint_v, body_commands(self.commands, headings(root_q[:, 3:7])))

    @property
    def qpos(self) -> np.ndarray:
        """Every body's generalised positions (n_envs, nq): a view, writes change the bodies."""
        return self.state[:, self._qpos]

    @property
    def qvel(self) -> np.ndarray:
        """Every body's generalised velocities (n_envs, nv): a view, writes change the bodies."""
        return self.state[:, self._qvel]

    def set_commands(self, commands: np.ndarray) -> None:
        """Fix every body's world-frame command (n_envs, 2) until the next draw."""
        self.commands[:] = commands

    def observe(self) -> np.ndarray:
        """The observations now (after :meth:`set_commands`)."""
        return self._obs()

    def positions(self) -> np.ndarray:
        """Every torso's planar position (n_envs, 2)."""
        return self.qpos[:, self.robot.root_q : self.robot.root_q + 2]

    @property
    def dt(self) -> float:
        """Seconds per control step."""
        return self.task.frame_skip * self.model.opt.timestep

    def velocities(self) -> np.ndarray:
        """Every torso's planar world-frame velocity (n_envs, 2)."""
        return self.qvel[:, self.robot.root_v : self.robot.root_v + 2]

    # ------------------------------------------------------------------ VecEnv
    def reset(self) -> np.ndarray:
        self._reset_bodies(np.arange(self.num_envs))
        return self._obs()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.clip(np.nan_to_num(np.asarray(actions, dtype=float)), -1.0, 1.0)

    def step_wait(self):
        t, r = self.task, self.robot
        control = np.zeros((self.num_envs, 1, self.model.nu))
        control[:, 0, r.motors] = self._actions
        clock = self.state[:, 0].copy()
        if self.batched:
            rollout.rollout(self._models, self.datas, self.state, np.repeat(control, t.frame_skip, 1),
                            nstep=t.frame_skip, state=self._out, skip_checks=True)
            self.state = self._out[:, -1].copy()
        else:
            data = self.datas[0]
            for i in range(self.num_envs):
                mujoco.mj_setState(self.model, data, self.state[i], self.spec_state)
                data.ctrl[:] = control[i, 0]
                mujoco.mj_step(self.model, data, t.frame_skip)
                mujoco.mj_getState(self.model, data, self.state[i], self.spec_state)
        self.steps += 1
        self.countdown -= 1
        unstable = ~np.isclose(self.state[:, 0], clock + t.frame_skip * self.model.opt.timestep)
        root_q, root_v, _, _ = self._parts()
        v = root_v[:, 0:2]
        cmd = self.commands
        speed = np.linalg.norm(cmd, axis=1)
        unit = np.where(speed[:, None] > 0, cmd / np.maximum(speed, 1e-9)[:, None], 0.0)
        along = np.minimum(np.sum(v * unit, axis=1), speed)
        track = np.exp(-np.sum((v - cmd) ** 2, axis=1) / t.sigma)
        ctrl = np.sum(self._actions ** 2, axis=1)
        terms = {"track": t.w_track * track, "progress": t.w_progress * along, "alive": np.full(self.num_envs, t.alive),
                 "ctrl": -t.w_ctrl * ctrl}
        total = sum(terms.values())
        fell = self.robot.fallen_many(root_q) | unstable
        reward = np.where(fell, 0.0, np.maximum(0.0, total))
        floor = reward - total  # what the floor (and a fall) added: the terms plus it are the reward
        cut = (self.steps >= t.episode_steps) & ~fell
        self.returns += reward
        resample = (self.countdown <= 0) & ~fell & ~cut
        self._draw_commands(np.flatnonzero(resample))
        self.countdown[resample] = t.resample
        if t.ball_every:
            self.ball_countdown -= 1
            launch = (self.ball_countdown <= 0) & ~fell & ~cut
            self._launch_balls(np.flatnonzero(launch))
            self.ball_countdown[launch] = t.ball_every
        obs = self._obs()
        done = fell | cut
        infos: list[dict[str, Any]] = [{"reward_terms": {**{k: float(v[i]) for k, v in terms.items()}, "floor": float(floor[i])}}
                                       for i in range(self.num_envs)]
        for i in np.flatnonzero(done):
            infos[i].update({"terminal_observation": obs[i].copy(), "TimeLimit.truncated": bool(cut[i]),
                             "episode": {"r": float(self.returns[i]), "l": int(self.steps[i])}, "fell": bool(fell[i] and not unstable[i]),
                             "unstable": bool(unstable[i])})
        if done.any():
            self._reset_bodies(np.flatnonzero(done))
            obs = self._obs()
        return obs, reward.astype(np.float32), done, infos

    def close(self) -> None:
        pass

    def seed(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)
        return [seed] * self.num_envs

    # SB3's VecEnv attribute plumbing: one process, no sub-envs to reach.
    def get_attr(self, attr_name, indices=None):
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name, value, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name, *args, indices=None, **kwargs):
        raise NotImplementedError(f"GaitVecEnv has no sub-environments to call {method_name!r} on")

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._indices(indices))

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)


class GaitGymEnv(gym.Env):
    """One body of gait training as a plain Gymnasium env stepped by ``mj_step`` from Python: the same task,
    for SB3's default recipe over ``DummyVecEnv`` (the baseline the batched env is measured against)."""

    metadata = {"render_modes": []}

    def __init__(self, seed: int = 0, task: GaitTask | None = None) -> None:
        self._vec = GaitVecEnv(1, seed=seed, task=task, batched=False)
        self.observation_space, self.action_space = self._vec.observation_space, self._vec.action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._vec.seed(seed)
        # The shared MjData's solver warm start (not part of the stepped state) must not carry over from the
        # last episode: a seeded reset then steps the same, to the last bit (Gymnasium's determinism check).
        mujoco.mj_resetData(self._vec.model, self._vec.datas[0])
        return self._vec.reset()[0], {}

    def step(self, action):
        obs, reward, done, infos = self._vec.step(np.asarray(action)[None])
        info = infos[0]
        if done[0]:
            obs = info["terminal_observation"][None]
        truncated = bool(info.get("TimeLimit.truncated", False))
        return obs[0], float(reward[0]), bool(done[0]) and not truncated, truncated, info

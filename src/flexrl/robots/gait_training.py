"""Training the Ant's gait with PPO: the model, its evaluation and its export (``flexrl train skill=locomotion
robot=ant`` runs these inside a training run directory, with its checkpoints, resume and curves).

The env is :class:`~flexrl.robots.gait_env.GaitVecEnv` (bodies stepped together in C) under SB3's
``VecNormalize``. Its statistics are part of the policy: the export writes them into ``gait.json`` and the
resume state carries them as JSON (never pickled).

The evaluation commands each body one of eight headings at full speed (or "stop") for a fixed time and
measures, in the world frame, the displacement along the command and across it over the last three
quarters of the episode divided by that time, the displacement under "stop" and falls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flexrl.robots.gait_env import GaitTask, GaitVecEnv

HEADINGS = 8
WALK_BAR = 0.5
"""m/s along the command: the bar a heading must meet."""
DRIFT_BAR = 0.2
"""m/s across the command at most."""
STOP_BAR = 0.2
"""metres a stopped body may move."""
START_BAR = 0.05
"""share of the bodies told to walk that may stall (under 0.2 m/s along the command) at most: a skill needs
every start to walk, which the per-heading means do not show."""


def make_gait_model(ppo, robot=None, tensorboard_dir: str | Path | None = None, threads: int = 1,
                    task: GaitTask | None = None):
    """A fresh PPO model on a normalised batched gait env of ``robot`` (None: the Ant) with ``ppo``'s settings
    and ``task``'s commands, reward and balls (None: the defaults)."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(ppo.threads)
    env = VecNormalize(GaitVecEnv(ppo.n_envs, seed=ppo.seed, threads=threads, robot=robot, task=task), gamma=ppo.gamma)
    return PPO("MlpPolicy", env, n_steps=ppo.n_steps, batch_size=ppo.batch_size, n_epochs=ppo.n_epochs,
               learning_rate=ppo.learning_rate, gamma=ppo.gamma, gae_lambda=ppo.gae_lambda, ent_coef=ppo.ent_coef,
               policy_kwargs={"net_arch": list(ppo.net_arch), "log_std_init": -0.5}, seed=ppo.seed, device="cpu",
               verbose=0, tensorboard_log=str(tensorboard_dir) if tensorboard_dir else None)


def refiner(model, task: GaitTask):
    """What narrows a gait model's tracking kernel to ``task.refine_sigma`` (and sets its learning rate to
    ``task.refine_learning_rate``, unless 0) once its bars are met: ``gait.refine_*`` of a training run."""
    from stable_baselines3.common.utils import ConstantSchedule

    def refine() -> None:
        model.get_env().venv.task = task.refined()
        if task.refine_learning_rate:
            model.lr_schedule = ConstantSchedule(task.refine_learning_rate)

    return refine


def training_state(model) -> dict[str, float]:
    """What a gait model trains with now: its tracking kernel's width and its learning rate (they change
    when :func:`refiner`'s function is called)."""
    return {"sigma": float(model.get_env().venv.task.sigma), "learning_rate": float(model.lr_schedule(1.0))}


PARENT_OBS_COUNT = 1e6
"""Weight of a parent gait's observation statistics in a fine-tune: they move slowly, so the actor's inputs
do not shift under it while the new task's observations come in."""
PARENT_LOG_STD = -1.3
"""Exploration of a fine-tune whose parent gait did not record its own (the first gait ended its training
at -1.07 to -1.44 per motor, the shipped one records -1.31; a fresh run starts at -0.5, which shook the
parent's walking apart)."""


def load_parent_gait(model, gait) -> None:
    """Start a gait model from a trained gait (:class:`~flexrl.robots.gait.GaitPolicy`, weights-only): its
    actor layers and observation statistics. The value network starts fresh (the export holds the actor
    only) and the return statistics are the new env's own.

    Raises:
        ValueError: one line when the gait's layers do not fit the model's ``net_arch``.
    """
    import torch

    from flexrl.robots.gait import actor_linears

    policy = model.policy
    linears = actor_linears(policy)
    shapes = [tuple(w.shape) for w, _ in gait.weights]
    if shapes != [tuple(layer.weight.shape) for layer in linears]:
        raise ValueError(f"parent gait layers {shapes} do not fit ppo.net_arch (layers "
                         f"{[tuple(layer.weight.shape) for layer in linears]}); allowed: the parent's net_arch")
    with torch.no_grad():
        for layer, (w, b) in zip(linears, gait.weights):
            layer.weight.copy_(torch.as_tensor(w))
            layer.bias.copy_(torch.as_tensor(b))
        policy.log_std.fill_(float(gait.meta.get("log_std", PARENT_LOG_STD)))
    env = model.get_env()
    env.obs_rms.mean, env.obs_rms.var = gait.obs_mean.astype(np.float64), gait.obs_var.astype(np.float64)
    env.obs_rms.count = PARENT_OBS_COUNT


def normaliser_state(model) -> dict[str, Any]:
    """The ``VecNormalize`` statistics of a gait model as JSON-ready lists."""
    env = model.get_env()
    return {"obs_mean": env.obs_rms.mean.tolist(), "obs_var": env.obs_rms.var.tolist(), "obs_count": float(env.obs_rms.count),
            "ret_mean": float(env.ret_rms.mean), "ret_var": float(env.ret_rms.var), "ret_count": float(env.ret_rms.count)}


def restore_normaliser(model, state: dict[str, Any]) -> None:
    """Put saved statistics (:func:`normaliser_state`) back into a gait model's ``VecNormalize``."""
    env = model.get_env()
    env.obs_rms.mean, env.obs_rms.var = np.asarray(state["obs_mean"]), np.asarray(state["obs_var"])
    env.obs_rms.count = state["obs_count"]
    env.ret_rms.mean, env.ret_rms.var, env.ret_rms.count = state["ret_mean"], state["ret_var"], state["ret_count"]


@dataclass
class GaitEval:
    """What :func:`evaluate_gait` measured.

    Attributes:
        along: mean speed along the command per heading (m/s), east first, counter-clockwise.
        drift: mean absolute speed across the command per heading (m/s).
        stop_travel: largest displacement of a stopped body (m).
        falls: bodies that fell, of ``episodes``.
        episodes: bodies evaluated (walking and stopped).
        stalled: bodies told to walk that stayed up but moved slower than 0.2 m/s along the command (the
            per-heading means hide them).
    """

    along: list[float]
    drift: list[float]
    stop_travel: float
    falls: int
    episodes: int
    stalled: int = 0

    def success(self) -> dict[str, float]:
        """Per skill, the share of the bar met: ``walk`` (headings meeting speed and drift), ``start`` (few
        stalls), ``stop``, ``upright``."""
        walk = np.mean([a >= WALK_BAR and d <= DRIFT_BAR for a, d in zip(self.along, self.drift)])
        walkers = self.episodes - self.episodes // (HEADINGS + 1)
        return {"walk": float(walk), "start": float(self.stalled <= START_BAR * walkers),
                "stop": float(self.stop_travel <= STOP_BAR), "upright": 1.0 - self.falls / max(1, self.episodes)}


def evaluate_gait(act, episodes: int = 40, steps: int = 200, seed: int = 10_000, speed: float = 1.0,
                  ball_every: int = 0) -> GaitEval:
    """Run ``act`` (raw gait observations (n, d) -> motor commands (n, 8)) on ``episodes`` bodies: most walk in
    one of eight headings at ``speed``, a ninth of them (at least one) stop; with ``ball_every``, each meets
    a ball that often (:class:`~flexrl.robots.gait_env.GaitTask`)."""
    n = max(episodes, HEADINGS + 1)
    env = GaitVecEnv(n, seed=seed, task=GaitTask(resample=10**9, episode_steps=10**9, ball_every=ball_every))
    obs = env.reset()
    kind = np.arange(n) % (HEADINGS + 1)  # 0..7 headings, 8 stop
    angle = kind * 2 * np.pi / HEADINGS
    commands = np.where(kind[:, None] < HEADINGS, np.stack([np.cos(angle), np.sin(angle)], 1) * speed, 0.0)
    env.set_commands(commands)
    obs = env.observe()
    start, fell = None, np.zeros(n, dtype=bool)
    for t in range(steps):
        obs, _, done, infos = env.step(act(obs))
        fell |= np.array([bool(info.get("fell") or info.get("unstable")) for info in infos])
        if t == steps // 4 - 1:
            start = env.positions().copy()
        if done.any():
            env.set_commands(commands)  # a reset body drew a new command: give it its own back
            obs = env.observe()
    travel = env.positions() - start
    mean_vel = travel / ((steps - steps // 4) * env.dt)
    unit = np.stack([np.cos(angle), np.sin(angle)], 1)
    along = np.sum(mean_vel * unit, 1)
    across = np.abs(mean_vel[:, 0] * -unit[:, 1] + mean_vel[:, 1] * unit[:, 0])
    walking = kind < HEADINGS
    per_heading = [(float(np.mean(along[(kind == h) & ~fell])) if np.any((kind == h) & ~fell) else 0.0,
                    float(np.mean(across[(kind == h) & ~fell])) if np.any((kind == h) & ~fell) else 1.0)
                   for h in range(HEADINGS)]
    stopped = ~walking & ~fell
    stop_travel = float(np.linalg.norm(travel[stopped], axis=1).max()) if stopped.any() else float("inf")
    stalled = int(np.sum(walking & ~fell & (along < 0.2)))
    return GaitEval([a for a, _ in per_heading], [d for _, d in per_heading], stop_travel, int(fell.sum()), n, stalled)


def model_actor(model):
    """A gait model as ``act`` for :func:`evaluate_gait`: normalise with its env's statistics, mean action."""
    env = model.get_env()

    def act(obs: np.ndarray) -> np.ndarray:
        action, _ = model.predict(env.normalize_obs(obs), deterministic=True)
        return np.clip(action, -1.0, 1.0)

    return act


def export_model(model, directory: str | Path, info: dict[str, Any]) -> Path:
    """Export a gait model with its observation statistics (:func:`flexrl.robots.gait.export_gait`)."""
    from flexrl.robots.gait import export_gait

    env = model.get_env()
    return export_gait(model.policy, env.obs_rms.mean, env.obs_rms.var, env.clip_obs, directory, info)

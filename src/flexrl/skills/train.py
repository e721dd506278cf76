"""Training a skill policy family with Stable-Baselines3 PPO.

The recipe that makes this fast on a 2-core CPU: 8 envs stepped in-process (DummyVecEnv; subprocesses
cost more than this cheap env), long rollouts against large minibatches, a small network, and torch on
one thread. Observations are scaled by hand in :mod:`flexrl.skills.goals`, so VecNormalize is not
needed and a final policy is weights-only: safetensors plus a JSON of its network and how it was made
(:mod:`flexrl.skills.checkpoint`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from flexrl.runs.config import check_seed
from flexrl.skills.checkpoint import export_policy
from flexrl.skills.evaluate import evaluate_family
from flexrl.skills.policies import FAMILIES, PolicySet

ENV_IDS = {"reach": "flexrl/GoTo-v0", "avoid": "flexrl/Avoid-v0"}
LOCOMOTION = "locomotion"
"""The gait of a legged robot (:mod:`flexrl.robots.gait_training`): trained like a skill family."""
TRAINABLE = (*FAMILIES, LOCOMOTION)


@dataclass
class PPOConfig:
    """PPO hyperparameters and budget for one policy family.

    Attributes:
        total_steps: environment steps before training stops (unless the success target is met first).
        n_envs: environments stepped in one process.
        n_steps: rollout length per env between updates.
        batch_size: minibatch size of the PPO update.
        n_epochs: passes over each rollout.
        learning_rate: Adam step size.
        gamma: discount factor.
        gae_lambda: GAE smoothing.
        ent_coef: entropy bonus.
        net_arch: hidden layer widths of the policy and value networks.
        threads: torch threads (1: small networks get slower with more on a shared CPU).
        eval_every: environment steps between success evaluations (0: never).
        eval_episodes: episodes per skill in each evaluation.
        target_success: stop once every skill of the family reaches this success rate (1.1: never stop early).
        seed: seed of envs and networks.
    """

    total_steps: int = 200_000
    n_envs: int = 8
    n_steps: int = 256
    batch_size: int = 256
    n_epochs: int = 5
    learning_rate: float = 1e-3
    gamma: float = 0.97
    gae_lambda: float = 0.95
    ent_coef: float = 0.0
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    threads: int = 1
    eval_every: int = 20_480
    eval_episodes: int = 40
    target_success: float = 0.97
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a one-line ValueError on a value PPO would reject deep inside, or silently misuse."""
        for name in ("total_steps", "n_envs", "n_steps", "batch_size", "n_epochs", "threads", "eval_episodes"):
            _check(name, getattr(self, name), lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                   "a positive integer")
        _check("eval_every", self.eval_every, lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0: never)")
        check_seed("ppo.seed", self.seed, " (experiment.seed sets it)")
        _check("learning_rate", self.learning_rate, lambda v: 0 < v < 1, "a number in (0, 1)")
        _check("gamma", self.gamma, lambda v: 0 < v <= 1, "a number in (0, 1]")
        _check("gae_lambda", self.gae_lambda, lambda v: 0 <= v <= 1, "a number in [0, 1]")
        _check("ent_coef", self.ent_coef, lambda v: 0 <= v <= 1, "a number in [0, 1]")
        _check("target_success", self.target_success, lambda v: 0 <= v <= 1.1, "a number in [0, 1.1] (above 1: never stop early)")
        _check("net_arch", list(self.net_arch), lambda v: 1 <= len(v) <= 8 and all(isinstance(w, int) and 1 <= w <= 4096 for w in v),
               "1 to 8 layer widths, each an integer in [1, 4096]")
        if (self.n_envs * self.n_steps) % self.batch_size:
            raise ValueError(f"batch_size={self.batch_size} must divide n_envs*n_steps={self.n_envs * self.n_steps}")


def _check(name: str, value, ok: Callable[[Any], bool], allowed: str) -> None:
    try:
        good = ok(value) and (not isinstance(value, float) or math.isfinite(value))
    except TypeError:
        good = False
    if not good:
        raise ValueError(f"ppo.{name}={value!r}; allowed: {allowed}")


@dataclass
class SkillConfig:
    """The skill policy family a training run learns, with the family's default budget.

    Attributes:
        family: "reach" (move, go_to, follow, stop), "avoid", or "locomotion" (a legged robot's gait).
        total_steps: environment-step budget of the family.
        eval_episodes: episodes per skill in each success evaluation.
    """

    family: str = "reach"
    total_steps: int = 150_000
    eval_episodes: int = 40

    def __post_init__(self) -> None:
        if self.family not in TRAINABLE:
            raise ValueError(f"skill family={self.family!r}; allowed: {', '.join(TRAINABLE)}")
        for name in ("total_steps", "eval_episodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"skill.{name}={value!r}; allowed: a positive integer")


def default_config(family: str) -> PPOConfig:
    """The shipped recipe of each family. Avoid is judged on more episodes: its success is noisier."""
    if family == "avoid":
        return PPOConfig(total_steps=250_000, eval_episodes=100)
    return PPOConfig(total_steps=150_000, eval_episodes=40)


@dataclass
class TrainResult:
    """What a training run produced."""

    family: str
    steps: int
    wall_seconds: float
    success: dict[str, float]
    checkpoint: Path
    model: PPO
    """The trained model (its envs closed): what the weights-only checkpoint must reproduce."""


@dataclass
class EvalPoint:
    """One success evaluation during training: a point of the learning curve."""

    steps: int
    wall_seconds: float
    success: dict[str, float]


class SuccessEvalCallback(BaseCallback):
    """Every ``eval_every`` env steps, measure the family's skill success; stop once the target is met.

    Args:
        family: the policy family being trained.
        cfg: PPO settings (evaluation cadence, episodes, target).
        on_eval: called with each :class:`EvalPoint` (tracking, checkpoints).
        wall_offset: seconds already trained before this process (a resumed run).
        robot: the body the skills are judged on: the one being trained (None: the orb).
        refine: called once when the target is first met; training then goes on for ``refine_steps`` steps
            (whatever the evaluations say) instead of stopping. None: stop at once.
        refine_steps: steps trained after ``refine`` was called.

    Attributes:
        refine_from: the step at which ``refine`` was called (None: not yet); kept across a resume.
    """

    def __init__(self, family: str, cfg: PPOConfig, on_eval: Callable[[EvalPoint], None] | None = None,
                 wall_offset: float = 0.0, robot=None, refine: Callable[[], None] | None = None,
                 refine_steps: int = 0) -> None:
        super().__init__()
        self.family, self.cfg, self.on_eval, self.robot = family, cfg, on_eval, robot
        self.refine, self.refine_steps = refine, refine_steps
        self.refine_from: int | None = None
        self.last_eval = 0
        self.success: dict[str, float] = {}
        self.started = time.perf_counter() - wall_offset

    def wall_seconds(self) -> float:
        """Training seconds so far, including those before a resume."""
        return time.perf_counter() - self.started

    def _on_step(self) -> bool:
        if self.refine_from is not None and self.num_timesteps - self.refine_from >= self.refine_steps:
            return False
        if not self.cfg.eval_every or self.num_timesteps - self.last_eval < self.cfg.eval_every:
            return True
        self.last_eval = self.num_timesteps
        self.success = evaluate_model(self.model, self.family, self.cfg.eval_episodes, self.robot)
        for k, v in self.success.items():
            self.logger.record(f"eval/success_{k}", v)
        self.logger.record("eval/success_min", min(self.success.values()))
        self.logger.record("time/wall_seconds", self.wall_seconds())
        if self.on_eval is not None:
            self.on_eval(EvalPoint(int(self.num_timesteps), round(self.wall_seconds(), 2), dict(self.success)))
        if min(self.success.values()) < self.cfg.target_success or self.refine_from is not None:
            return True
        if self.refine is None:
            return False
        self.refine_from = int(self.num_timesteps)
        self.refine()
        return True


def evaluate_model(model: PPO, family: str, episodes: int, robot=None) -> dict[str, float]:
    """Success rate per skill of a model being trained: the family's skills on ``robot``, or the gait's bars."""
    if family == LOCOMOTION:
        from flexrl.robots.gait_training import evaluate_gait, model_actor

        return evaluate_gait(model_actor(model), episodes).success()
    results = evaluate_family(PolicySet({family: model}), family, episodes, robot=robot)
    return {k: r.success_rate for k, r in results.items()}


class RewardTermsCallback(BaseCallback):
    """Log the rollout mean of every reward term the training env reports in ``info["reward_terms"]``.

    Sums are kept in plain floats and handed to the logger once per rollout: per-step logger calls
    cost more than the terms are worth.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sums: dict[str, float] = {}
        self.count = 0

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            terms = info.get("reward_terms")
            if terms:
                self.count += 1
                for key, value in terms.items():
                    self.sums[key] = self.sums.get(key, 0.0) + value
        return True

    def _on_rollout_end(self) -> None:
        for key, total in self.sums.items():
            self.logger.record(f"reward/{key}", total / max(self.count, 1))
        self.sums, self.count = {}, 0


def make_model(family: str, cfg: PPOConfig, robot=None, tensorboard_dir: str | Path | None = None, gait=None) -> PPO:
    """A fresh PPO model of ``family`` on its vectorised training env holding ``robot`` (None: the orb);
    ``gait`` is the gait's training task (:class:`~flexrl.robots.gait_env.GaitTask`, locomotion only)."""
    if family not in TRAINABLE:
        raise ValueError(f"unknown skill family {family!r}; allowed: {', '.join(TRAINABLE)}")
    cfg.validate()
    check_body(family, robot)
    if family == LOCOMOTION:
        from flexrl.robots import make_robot
        from flexrl.robots.gait_training import make_gait_model

        return make_gait_model(cfg, make_robot(robot), tensorboard_dir, task=gait)
    torch.set_num_threads(cfg.threads)
    env = make_vec_env(ENV_IDS[family], n_envs=cfg.n_envs, seed=cfg.seed, vec_env_cls=DummyVecEnv,
                       env_kwargs={"robot": robot} if robot is not None else None)
    return PPO(
        "MlpPolicy", env, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
        learning_rate=cfg.learning_rate, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef,
        policy_kwargs={"net_arch": list(cfg.net_arch)}, seed=cfg.seed, device="cpu", verbose=0,
        tensorboard_log=str(tensorboard_dir) if tensorboard_dir else None,
    )


def check_body(family: str, robot) -> None:
    """Refuse, in one line, a family the robot cannot train (a gait for a body without legs; a skill policy
    for a legged body without its gait).

    Raises:
        ValueError, FileNotFoundError: naming the family, the robot and what is allowed.
    """
    from flexrl.robots import ROBOTS, make_robot, robot_class

    body = make_robot(robot)
    if family == LOCOMOTION and not body.legged:
        legged = [name for name in ROBOTS if robot_class(name).legged]
        raise ValueError(f"skill=locomotion with robot={body.name!r}: only a legged robot has a gait to learn; "
                         f"allowed: {', '.join(f'robot={name}' for name in legged)}")
    if family != LOCOMOTION:
        body.check()  # a legged body trains skills on top of its gait: it must have one


def train_family(family: str, cfg: PPOConfig, out_dir: str | Path, tensorboard_dir: str | Path | None = None) -> TrainResult:
    """Train ``family`` from scratch and write the weights-only ``<out_dir>/<family>.safetensors`` + ``.json``."""
    start = time.perf_counter()
    model = make_model(family, cfg, tensorboard_dir=tensorboard_dir)
    callback = SuccessEvalCallback(family, cfg)
    model.learn(total_timesteps=cfg.total_steps, callback=callback, tb_log_name=family)
    wall = time.perf_counter() - start
    ckpt = export_policy(model.policy, out_dir, family, {"family": family, "steps": int(model.num_timesteps),
                                                          "wall_seconds": round(wall, 2),
                                                          "success_at_last_eval": callback.success, "ppo": asdict(cfg)})
    model.get_env().close()
    return TrainResult(family, int(model.num_timesteps), wall, callback.success, ckpt, model)

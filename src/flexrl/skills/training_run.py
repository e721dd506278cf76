"""A skill training run inside a run directory: checkpoints, resume, lineage, tracking.

``train_in_run`` is the work behind ``flexrl train``. Checkpoints (``checkpoints/last.zip`` + ``.json``)
are written atomically every ``checkpoint_every`` env steps and on Ctrl-C/SIGTERM, so a run killed at
any moment, SIGKILL included, resumes from the last one and loses at most one interval. The final
policy is ``checkpoints/<family>.zip``, loadable by ``PolicySet.load(<run>/checkpoints)``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from tqdm import tqdm

from flexrl.envs.config import RobotConfig
from flexrl.runs.atomic import write_json
from flexrl.runs.config import ExperimentConfig, TrackingConfig
from flexrl.runs.run_dir import RunDir
from flexrl.runs.tracking import Tracker
from flexrl.skills.evaluate import evaluate_family
from flexrl.skills.policies import PolicySet
from flexrl.skills.train import (
    EvalPoint, PPOConfig, RewardTermsCallback, SkillConfig, SuccessEvalCallback, make_model, save_checkpoint,
)

LAST = "last"


@dataclass
class TrainingRunConfig:
    """Everything ``flexrl train`` needs.

    Attributes:
        skill: the family and its budget.
        ppo: PPO hyperparameters (``total_steps`` is the budget actually used).
        robot: the agent's body.
        experiment: name, workspace, seed.
        tracking: TensorBoard, MLflow, progress bars.
        checkpoint_every: environment steps between checkpoints (0: only at the end and on interrupt).
        parent: a training run directory whose final policy initialises this one (fine-tuning).
        time_weight: objective = lowest skill success - time_weight * wall minutes (what sweeps optimise).
    """

    skill: SkillConfig = field(default_factory=SkillConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    robot: RobotConfig = field(default_factory=RobotConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    checkpoint_every: int = 20_480
    parent: Optional[str] = None
    time_weight: float = 0.05


class _CheckpointCallback(BaseCallback):
    def __init__(self, every: int, save) -> None:
        super().__init__()
        self.every, self.save = every, save
        self.last = 0

    def _init_callback(self) -> None:
        self.last = self.num_timesteps

    def _on_step(self) -> bool:
        if self.every and self.num_timesteps - self.last >= self.every:
            self.last = self.num_timesteps
            self.save()
        return True


class _ProgressCallback(BaseCallback):
    def __init__(self, total: int, label: str) -> None:
        super().__init__()
        self.total, self.label = total, label

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, initial=self.num_timesteps, unit="step", desc=self.label, dynamic_ncols=True)

    def _on_step(self) -> bool:
        self.bar.update(self.num_timesteps - self.bar.n)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def train_in_run(cfg: TrainingRunConfig, run: RunDir, resume: bool = False) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) the family in ``run``; return the final metrics.

    The caller records the run's status (see :func:`flexrl.runs.run_dir.recorded_status`).
    """
    family, ppo = cfg.skill.family, cfg.ppo
    ckpt_dir = run.path / "checkpoints"
    tb_dir = run.path / "tb" if cfg.tracking.tensorboard else None
    model = make_model(family, ppo, cfg.robot.spec(), tb_dir)
    state: dict[str, Any] = {}
    if resume and (ckpt_dir / f"{LAST}.zip").is_file():
        env = model.get_env()
        model = PPO.load(ckpt_dir / f"{LAST}.zip", env=env, device="cpu",
                         tensorboard_log=str(tb_dir) if tb_dir else None)
        state = json.loads((ckpt_dir / f"{LAST}.json").read_text()) if (ckpt_dir / f"{LAST}.json").is_file() else {}
        run.meta["resumed_from_step"] = int(model.num_timesteps)
        run.save_meta()
    elif cfg.parent and not resume:
        parent_ckpt = Path(cfg.parent) / "checkpoints" / f"{family}.zip"
        if not parent_ckpt.is_file():
            raise FileNotFoundError(f"parent={cfg.parent!r} has no final {family} policy at {parent_ckpt}")
        model.set_parameters(str(parent_ckpt), exact_match=True, device="cpu")

    params = {"family": family, **{f"ppo.{k}": v for k, v in asdict(ppo).items()}, "seed": ppo.seed}
    tracker = Tracker(run, cfg.tracking, cfg.experiment.workspace, params)
    evals = SuccessEvalCallback(family, ppo, wall_offset=float(state.get("wall_seconds", 0.0)))
    evals.last_eval = int(state.get("last_eval", 0))
    evals.on_eval = lambda p: tracker.log(p.steps, p.wall_seconds, p.success)

    def checkpoint() -> None:
        save_checkpoint(model, ckpt_dir, LAST, {"family": family, "wall_seconds": round(evals.wall_seconds(), 2),
                                                "last_eval": evals.last_eval, "ppo": asdict(ppo), "time": time.time()})

    callbacks = [evals, RewardTermsCallback(), _CheckpointCallback(cfg.checkpoint_every, checkpoint)]
    if cfg.tracking.progress:
        callbacks.append(_ProgressCallback(ppo.total_steps, f"train {family}"))
    status = "failed"
    try:
        remaining = max(ppo.total_steps - int(model.num_timesteps), 0)
        if remaining:
            model.learn(total_timesteps=remaining, callback=CallbackList(callbacks), tb_log_name=family,
                        reset_num_timesteps=not state and not resume)
        if evals.last_eval != model.num_timesteps or not tracker.curve:
            results = evaluate_family(PolicySet({family: model}), family, ppo.eval_episodes)
            point = EvalPoint(int(model.num_timesteps), round(evals.wall_seconds(), 2),
                              {k: r.success_rate for k, r in results.items()})
            evals.last_eval = point.steps
            tracker.log(point.steps, point.wall_seconds, point.success)
        checkpoint()
        final = tracker.curve[-1]
        success_min = min(final["success"].values())
        wall = evals.wall_seconds()
        metrics = {"family": family, "steps": int(model.num_timesteps), "wall_seconds": round(wall, 2),
                   "success": final["success"], "success_min": success_min,
                   "objective": round(success_min - cfg.time_weight * wall / 60.0, 4)}
        save_checkpoint(model, ckpt_dir, family, {"family": family, "wall_seconds": round(wall, 2),
                                                  "success_at_last_eval": final["success"], "ppo": asdict(ppo),
                                                  "run": run.meta["id"]})
        write_json(run.path / "metrics.json", metrics)
        status = "finished"
        return metrics
    except KeyboardInterrupt:
        checkpoint()
        status = "interrupted"
        raise
    finally:
        tracker.close(status)
        model.get_env().close()

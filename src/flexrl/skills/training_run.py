"""A skill training run inside a run directory: checkpoints, resume, lineage, tracking.

``train_in_run`` is the work behind ``flexrl train``. The resumable state (``checkpoints/last.json`` naming a
signed SB3 zip, :mod:`flexrl.skills.resume_state`) is saved at the first rollout boundary after every
``checkpoint_every`` env steps and on Ctrl-C/SIGTERM, so a run killed at any moment, SIGKILL included,
resumes from the last one and loses at most one interval. Saves fall on rollout boundaries (an interrupt
rewinds the step counter to the rollout it was collecting), so a resumed run ends on the same step as
an uninterrupted one. The final policy is weights-only, ``checkpoints/<family>.safetensors`` + ``.json``,
loadable by ``PolicySet.load(<run>/checkpoints)``.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from tqdm import tqdm

from flexrl.envs.config import RobotConfig
from flexrl.robots.gait_env import GaitTask
from flexrl.runs.atomic import remove_temporaries, write_json
from flexrl.runs.config import ExperimentConfig, TrackingConfig
from flexrl.runs.run_dir import RunDir
from flexrl.runs.tracking import Tracker
from flexrl.skills.checkpoint import CheckpointError, export_policy, load_policy
from flexrl.skills.resume_state import load_resume_state, save_resume_state
from flexrl.skills.train import (
    LOCOMOTION, EvalPoint, PPOConfig, RewardTermsCallback, SkillConfig, SuccessEvalCallback, evaluate_model, make_model,
)

RESUMABLE_KEYS = ("skill.total_steps", "ppo.total_steps", "checkpoint_every", "tracking.progress", "experiment.workspace")
"""Overrides a resumed run accepts; every other setting is fixed by the run's stored config.yaml."""


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
        parent: a training run directory whose final policy initialises this one (fine-tuning; a gait's
            actor and observation statistics, for locomotion).
        gait: the gait's training task (commands, reward, balls; locomotion only).
        time_weight: objective = lowest skill success - time_weight * wall minutes (what sweeps optimise).
    """

    skill: SkillConfig = field(default_factory=SkillConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    robot: RobotConfig = field(default_factory=RobotConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    checkpoint_every: int = 20_480
    parent: Optional[str] = None
    gait: GaitTask = field(default_factory=GaitTask)
    time_weight: float = 0.05

    def __post_init__(self) -> None:
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every={self.checkpoint_every!r}; allowed: an integer >= 0 (0: only at the end)")
        if not isinstance(self.time_weight, (int, float)) or not 0 <= self.time_weight < float("inf"):
            raise ValueError(f"time_weight={self.time_weight!r}; allowed: a finite number >= 0")
        never = (f"ppo.target_success={self.ppo.target_success!r}" if self.ppo.target_success > 1
                 else "ppo.eval_every=0" if not self.ppo.eval_every else None)
        if self.skill.family == LOCOMOTION and self.gait.refine_steps and never:
            raise ValueError(f"gait.refine_steps={self.gait.refine_steps!r} with {never}: refining starts when an "
                             "evaluation meets every bar, which would never happen; allowed: gait.refine_steps=0 "
                             "with it, or ppo.eval_every > 0 and ppo.target_success <= 1")


class _CheckpointCallback(BaseCallback):
    """Saves at the start of a rollout (after the last update) once ``every`` steps have passed since the last save.

    ``rollout_start`` is the step counter at the start of the rollout being collected: an interrupted run is
    saved as of then, since the steps collected after it have not been trained on.
    """

    def __init__(self, every: int, save) -> None:
        super().__init__()
        self.every, self.save = every, save
        self.last = self.rollout_start = 0

    def _init_callback(self) -> None:
        self.last = self.rollout_start = self.num_timesteps

    def _on_rollout_start(self) -> None:
        self.rollout_start = self.num_timesteps
        if self.every and self.num_timesteps - self.last >= self.every:
            self.last = self.num_timesteps
            self.save()

    def _on_step(self) -> bool:
        return True


CRITIC_WARMUP = 131_072
"""Env steps a gait fine-tune trains only its fresh value network, the parent's actor held still: advantages
from an untrained critic made the first updates unlearn walking (walk 62%, start 0% after 262k steps)."""


class _CriticWarmup(BaseCallback):
    """Keeps the actor (its layers and log std) still for the first ``steps`` env steps: a fine-tune from a
    weights-only parent has a trained actor and a fresh critic, which must learn first."""

    def __init__(self, steps: int = CRITIC_WARMUP) -> None:
        super().__init__()
        self.steps = steps

    def _set(self, trainable: bool) -> None:
        from flexrl.robots.gait import actor_linears

        policy = self.model.policy
        for param in [*(p for layer in actor_linears(policy) for p in layer.parameters()), policy.log_std]:
            param.requires_grad_(trainable)

    def _on_training_start(self) -> None:
        self.until = self.num_timesteps + self.steps
        self._set(False)

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self.until:
            self._set(True)

    def _on_step(self) -> bool:
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


def train_in_run(cfg: TrainingRunConfig, run: RunDir, signing_key: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) the family in ``run``; return the final metrics.

    The caller records the run's status (see :func:`flexrl.runs.run_dir.recorded_status`) and checks that a
    resumed run is one of this workspace's unfinished training runs (:func:`open_resumable`).

    Args:
        cfg: the run's settings.
        run: its directory.
        signing_key: the key file that signs resume checkpoints (:mod:`flexrl.runs.signing`).
        resume: continue from the last checkpoint (if one was saved) instead of starting.

    Raises:
        CheckpointError: a resume checkpoint or parent policy that is malformed, changed or not flexrl's.
    """
    family, ppo = cfg.skill.family, cfg.ppo
    workspace = cfg.experiment.workspace
    ckpt_dir = run.path / "checkpoints"
    tb_dir = run.path / "tb" if cfg.tracking.tensorboard else None
    if resume:
        remove_temporaries(run.path)  # what writes killed mid-way left behind (checkpoints/ is cleaned below)
    saved = load_resume_state(ckpt_dir, signing_key, run.meta.get("id", run.path.name)) if resume else None
    parent = parent_policy(cfg.parent, family) if cfg.parent and saved is None else None
    model = make_model(family, ppo, cfg.robot, tb_dir, gait=cfg.gait)
    state: dict[str, Any] = {}
    if saved is not None:
        data, state = saved
        model = PPO.load(io.BytesIO(data), env=model.get_env(), device="cpu",
                         tensorboard_log=str(tb_dir) if tb_dir else None)
        if family == LOCOMOTION:  # the observation statistics are part of the policy
            from flexrl.robots.gait_training import restore_normaliser

            restore_normaliser(model, state["normaliser"])
        run.meta["resumed_from_step"] = int(model.num_timesteps)
        run.save_meta()
    elif parent is not None and family == LOCOMOTION:
        from flexrl.robots.gait_training import load_parent_gait

        try:
            load_parent_gait(model, parent)
        except ValueError as err:
            raise CheckpointError(f"parent={cfg.parent!r}: {err}") from None
    elif parent is not None:
        try:
            model.policy.load_state_dict(parent.state_dict(), strict=True)
        except RuntimeError:
            raise CheckpointError(f"parent={cfg.parent!r}: its {family} policy has another network shape than "
                                  f"ppo.net_arch={list(ppo.net_arch)}") from None

    params = {"family": family, **{f"ppo.{k}": v for k, v in asdict(ppo).items()}, "seed": ppo.seed,
              **({f"gait.{k}": v for k, v in asdict(cfg.gait).items()} if family == LOCOMOTION else {})}
    tracker = Tracker(run, cfg.tracking, workspace, params)
    tracker.truncate(int(model.num_timesteps))  # evaluations after the resumed checkpoint are trained again
    refine = None
    if family == LOCOMOTION and cfg.gait.refine_steps:
        from flexrl.robots.gait_training import refiner

        refine = refiner(model, cfg.gait)
    evals = SuccessEvalCallback(family, ppo, wall_offset=float(state.get("wall_seconds", 0.0)), robot=cfg.robot,
                                refine=refine, refine_steps=cfg.gait.refine_steps)
    evals.last_eval = int(state.get("last_eval", 0))
    if state.get("refine_from") is not None and refine is not None:  # resumed while refining
        evals.refine_from = int(state["refine_from"])
        refine()
    evals.on_eval = lambda p: tracker.log(p.steps, p.wall_seconds, p.success)

    def checkpoint() -> None:
        save_resume_state(model, ckpt_dir, signing_key, run.meta.get("id", run.path.name),
                          {"family": family, "wall_seconds": round(evals.wall_seconds(), 2), "last_eval": evals.last_eval,
                           "refine_from": evals.refine_from,
                           "ppo": asdict(ppo), "time": time.time(), **_normaliser(model, family)})

    saver = _CheckpointCallback(cfg.checkpoint_every, checkpoint)
    callbacks = [evals, RewardTermsCallback(), saver]
    if parent is not None and family == LOCOMOTION:  # a fresh critic under a trained actor: it learns first
        callbacks.append(_CriticWarmup())
    if cfg.tracking.progress:
        callbacks.append(_ProgressCallback(ppo.total_steps, f"train {family}"))
    status = "failed"
    try:
        remaining = max(ppo.total_steps - int(model.num_timesteps), 0)
        if remaining:
            model.learn(total_timesteps=remaining, callback=CallbackList(callbacks), tb_log_name=family,
                        reset_num_timesteps=not state and not resume)
        if evals.last_eval != model.num_timesteps or not tracker.curve:
            point = EvalPoint(int(model.num_timesteps), round(evals.wall_seconds(), 2),
                              evaluate_model(model, family, ppo.eval_episodes, cfg.robot))
            evals.last_eval = point.steps
            tracker.log(point.steps, point.wall_seconds, point.success)
        checkpoint()
        final = tracker.curve[-1]
        success_min = min(final["success"].values())
        wall = evals.wall_seconds()
        metrics = {"family": family, "steps": int(model.num_timesteps), "wall_seconds": round(wall, 2),
                   "success": final["success"], "success_min": success_min,
                   "objective": round(success_min - cfg.time_weight * wall / 60.0, 4)}
        info = {"family": family, "steps": int(model.num_timesteps), "wall_seconds": round(wall, 2), "run": run.meta["id"],
                "success_at_last_eval": final["success"], "ppo": asdict(ppo)}
        if family == LOCOMOTION:
            from flexrl.robots.gait_training import export_model, training_state

            info.update(task=asdict(cfg.gait), parent=cfg.parent, refined_from=evals.refine_from,
                        ended_with=training_state(model))
            metrics["gait"] = str(export_model(model, ckpt_dir / "gait", info))
        else:
            export_policy(model.policy, ckpt_dir, family, info)
        write_json(run.path / "metrics.json", metrics)
        status = "finished"
        return metrics
    except KeyboardInterrupt:
        model.num_timesteps = saver.rollout_start  # the partial rollout was never trained on
        checkpoint()
        status = "interrupted"
        raise
    finally:
        tracker.close(status)
        model.get_env().close()


def open_resumable(path: str | Path, workspace: str | Path, signing_key: str | Path) -> RunDir:
    """The run at ``path`` if it may be resumed here: an unfinished training run of this workspace whose
    resume checkpoint (if any) this user's key signed for this run.

    Raises:
        FileNotFoundError, ValueError, CheckpointError: one line saying why not, and what to do instead.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"resume={str(path)!r}: no such run directory; `flexrl runs list` shows the runs")
    if not path.resolve().is_relative_to(Path(workspace).resolve()):
        raise ValueError(f"resume={str(path)!r} is outside the workspace {str(workspace)!r}: flexrl resumes only runs it "
                         "wrote there (set experiment.workspace= to the workspace that holds the run)")
    run = RunDir.open(path)
    if run.meta.get("kind") != "train":
        raise ValueError(f"resume={str(path)!r} is a {run.meta.get('kind')!r} run; only training runs resume")
    status = run.status()
    if status == "finished":
        raise ValueError(f"resume={str(path)!r} already finished; it is not trained further; fine-tune from its policy "
                         f"in a new run: flexrl train parent={path}")
    if status == "running":
        raise ValueError(f"resume={str(path)!r} is still running (pid {run.meta.get('pid')}); stop it first")
    load_resume_state(path / "checkpoints", signing_key, run.meta.get("id", path.name))
    return run


def parent_policy(parent: str, family: str):
    """The weights-only final policy of a parent run (nothing is unpickled).

    Raises:
        FileNotFoundError, CheckpointError: one line naming the missing or malformed policy.
    """
    where = Path(parent) / "checkpoints"
    if family == LOCOMOTION:
        from flexrl.robots.gait import GaitPolicy

        try:
            return GaitPolicy.load(where / "gait")
        except (FileNotFoundError, ValueError) as err:
            raise CheckpointError(f"parent={parent!r}: {str(err).replace('robot.gait=', '')}") from None
    if not (where / f"{family}.safetensors").is_file():
        raise FileNotFoundError(f"parent={parent!r} has no final {family} policy at {where / family}.safetensors")
    return load_policy(where, family)


def _normaliser(model, family: str) -> dict[str, Any]:
    """The gait's observation statistics for the resume state ({} for the other families)."""
    if family != LOCOMOTION:
        return {}
    from flexrl.robots.gait_training import normaliser_state

    return {"normaliser": normaliser_state(model)}

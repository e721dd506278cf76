"""What run bookkeeping costs: a short training run bare vs. inside a run directory.

Bare: ``train_family`` (PPO + the success evaluation, writes only the final checkpoint).
Tracked: ``train_in_run`` with meta.json, config, TensorBoard (SB3 logger plus per-term reward means),
checkpoints every ``--checkpoint-every`` steps, the learning curve, metrics. Same seed, same PPO work;
repeats alternate so drift on a shared machine hits both. Times are this process's CPU seconds
(wall time on a 2-core machine shared with other jobs swung by +-30%; the work is single-threaded).

    MUJOCO_GL=egl python bench/bookkeeping_bench.py [--steps 40960] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import flexrl.skills.training_run as training_run
from stable_baselines3.common.logger import Logger

from flexrl.runs.config import ExperimentConfig, TrackingConfig
from flexrl.runs.run_dir import RunDir, recorded_status
from flexrl.skills.train import PPOConfig, SkillConfig, train_family
from flexrl.skills.training_run import TrainingRunConfig, train_in_run


SPENT = {"seconds": 0.0}


def _timed(fn):
    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT["seconds"] += time.process_time() - start
    return wrapper


def _instrument() -> None:
    """Count the CPU time of every bookkeeping call directly: checkpoints, curve/MLflow, reward-term
    sums, TensorBoard dumps, meta writes. Immune to the noise of a shared machine."""
    training_run.save_resume_state = _timed(training_run.save_resume_state)
    training_run.export_policy = _timed(training_run.export_policy)
    training_run.Tracker.log = _timed(training_run.Tracker.log)
    training_run.RewardTermsCallback._on_step = _timed(training_run.RewardTermsCallback._on_step)
    training_run.RewardTermsCallback._on_rollout_end = _timed(training_run.RewardTermsCallback._on_rollout_end)
    training_run._CheckpointCallback._on_rollout_start = _timed(training_run._CheckpointCallback._on_rollout_start)
    Logger.dump = _timed(Logger.dump)
    RunDir.save_meta = _timed(RunDir.save_meta)
    RunDir.create = classmethod(_timed(RunDir.create.__func__))  # git state, package versions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40_960)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--checkpoint-every", type=int, default=10_240)
    a = p.parse_args()
    ppo = dict(total_steps=a.steps, eval_every=a.steps // 2, eval_episodes=20, target_success=1.1)
    _instrument()
    bare, tracked, direct = [], [], []
    for _ in range(a.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.process_time()
            SPENT["seconds"] = 0.0
            train_family("reach", PPOConfig(**ppo), tmp)
            bare.append(time.process_time() - start)
        with tempfile.TemporaryDirectory() as tmp:
            SPENT["seconds"] = 0.0
            start = time.process_time()
            cfg = TrainingRunConfig(skill=SkillConfig("reach"), ppo=PPOConfig(**ppo), experiment=ExperimentConfig(workspace=tmp),
                                    tracking=TrackingConfig(tensorboard=True, progress=False), checkpoint_every=a.checkpoint_every)
            run = RunDir.new(tmp, "bench", seed=0, kind="train")
            with recorded_status(run):
                train_in_run(cfg, run)
            tracked.append(time.process_time() - start)
            direct.append(SPENT["seconds"] / tracked[-1])
        print(f"  bare {bare[-1]:.2f} s   tracked {tracked[-1]:.2f} s (CPU); bookkeeping calls {100 * direct[-1]:.2f}% of the tracked run")
    b, t = statistics.median(bare), statistics.median(tracked)
    print(f"reach, {a.steps} env steps, checkpoint every {a.checkpoint_every}, TensorBoard on, {a.repeats} repeats (median)")
    print(f"  bare {b:.2f} CPU s, in a run directory {t:.2f} CPU s: difference {100 * (t - b) / b:+.1f}%")
    print(f"  bookkeeping calls, timed directly: {100 * statistics.median(direct):.2f}% of the tracked run's CPU time")


if __name__ == "__main__":
    main()

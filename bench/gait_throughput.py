"""Gait training throughput (issue 15): env-steps/s of PPO on the Ant, flexrl's gait recipe (bodies stepped
together by ``mujoco.rollout`` behind one SB3 VecEnv) beside SB3's default PPO recipe (``DummyVecEnv`` over
a Gymnasium env of the same task, default hyper-parameters), in one process, one after the other. Also
the bare stepping rate of each env (random actions, no learning). Bar: >= 3x. Run it alone on the machine.

    python bench/gait_throughput.py [--steps 65536] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from importlib import resources

import numpy as np
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from flexrl.robots.gait_env import GaitGymEnv, GaitVecEnv
from flexrl.robots.gait_training import make_gait_model
from flexrl.skills.train import PPOConfig



def gait_recipe() -> PPOConfig:
    """conf/ppo/gait.yaml, the recipe ``skill=locomotion`` trains with (its interpolated keys left at defaults)."""
    values = yaml.safe_load((resources.files("flexrl") / "conf" / "ppo" / "gait.yaml").read_text())
    plain = {k: v for k, v in values.items() if not (isinstance(v, str) and v.startswith("${"))}
    return PPOConfig(**{**plain, "eval_every": 0})


def stepping_rate(env, n: int, steps: int) -> float:
    env.reset()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.uniform(-1, 1, (n, 8)).astype(np.float32))
    return n * steps / (time.perf_counter() - start)


def training_rate(model, steps: int) -> float:
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return model.num_timesteps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=65_536, help="env-steps of PPO per recipe")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    batched = stepping_rate(GaitVecEnv(128), 128, 200)
    single = stepping_rate(DummyVecEnv([GaitGymEnv]), 1, 5000)
    print(f"stepping only: batched 128 bodies {batched:,.0f} steps/s; one Gymnasium env under DummyVecEnv {single:,.0f} steps/s")

    ours = training_rate(make_gait_model(gait_recipe()), args.steps)
    sb3 = training_rate(PPO("MlpPolicy", DummyVecEnv([GaitGymEnv]), device="cpu", seed=0), args.steps)
    print(f"PPO training: flexrl gait recipe {ours:,.0f} env-steps/s; SB3 default recipe (DummyVecEnv) {sb3:,.0f} "
          f"env-steps/s; ratio {ours / sb3:.1f}x (bar >= 3x)")


if __name__ == "__main__":
    main()

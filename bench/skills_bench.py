"""Foundation benchmarks (issue 2), printed in one run:

1. success of every shipped skill over N seeded episodes (bar: >= 95%);
2. training throughput (env-steps/s) of the flexrl recipe beside SB3's default PPO recipe on the same
   skill env, as a ratio (bar: >= 3x), with the raw MuJoCo control-step rate of the arena as the ceiling;
3. offscreen rendering frames/s at 320x240 (bar: >= 100).

    MUJOCO_GL=egl python bench/skills_bench.py [--episodes 100] [--train-steps 16384]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

from flexrl.envs import ArenaEnv  # noqa: E402
from flexrl.skills.evaluate import evaluate_skill  # noqa: E402
from flexrl.skills.library import SKILLS  # noqa: E402
from flexrl.skills.policies import PolicySet  # noqa: E402
from flexrl.skills.train import PPOConfig  # noqa: E402


def success(episodes: int) -> None:
    print(f"== skill success, {episodes} seeded episodes each (seeds 50000..), bar 95%")
    policies = PolicySet.load()
    for name in SKILLS:
        r = evaluate_skill(policies, name, episodes, seed=50_000)
        print(f"  {name:8s} {r.success_rate:6.1%}  ({r.successes}/{r.episodes})  {'PASS' if r.success_rate >= 0.95 else 'FAIL'}")


def _throughput(n_envs: int, n_steps: int, batch: int, epochs: int, threads: int | None, steps: int) -> float:
    if threads:
        torch.set_num_threads(threads)
    env = make_vec_env("flexrl/GoTo-v0", n_envs=n_envs, seed=0, vec_env_cls=DummyVecEnv)
    model = PPO("MlpPolicy", env, n_steps=n_steps, batch_size=batch, n_epochs=epochs, device="cpu", seed=0, verbose=0,
                **({"policy_kwargs": {"net_arch": [64, 64]}} if threads else {}))
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    rate = model.num_timesteps / (time.perf_counter() - start)
    env.close()
    return rate


def throughput(steps: int) -> None:
    print(f"== training throughput on flexrl/GoTo-v0, {steps} env-steps each")
    default_threads = torch.get_num_threads()
    sb3 = _throughput(1, 2048, 64, 10, None, steps)  # SB3's defaults: 1 env, n_steps 2048, batch 64, 10 epochs
    cfg = PPOConfig()
    ours = _throughput(cfg.n_envs, cfg.n_steps, cfg.batch_size, cfg.n_epochs, cfg.threads, steps)
    env = ArenaEnv(ball_mode="drift")
    env.reset(seed=0)
    n, start = 20_000, time.perf_counter()
    for _ in range(n):
        env.step((0.3, -0.2))
    raw = n / (time.perf_counter() - start)
    print(f"  SB3 default recipe ({default_threads} torch threads): {sb3:8.0f} env-steps/s")
    print(f"  flexrl recipe ({cfg.n_envs} envs, n_steps {cfg.n_steps}, batch {cfg.batch_size}, {cfg.n_epochs} epochs, 1 thread): {ours:8.0f} env-steps/s")
    print(f"  ratio flexrl / SB3 default: {ours / sb3:.2f}x  (bar 3x)")
    print(f"  ceiling: raw arena control steps (5 MuJoCo steps each), no learning: {raw:8.0f} steps/s")


def render(frames: int) -> None:
    env = ArenaEnv(ball_mode="drift", render_mode="rgb_array", width=320, height=240)
    env.reset(seed=0)
    env.render()
    start = time.perf_counter()
    for _ in range(frames):
        env.step((0.5, 0.5))
        env.render()
    fps = frames / (time.perf_counter() - start)
    print(f"== offscreen rendering 320x240 ({os.environ['MUJOCO_GL']}), step + render: {fps:.0f} frames/s (bar 100)")
    env.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--train-steps", type=int, default=16_384)
    p.add_argument("--frames", type=int, default=300)
    a = p.parse_args()
    render(a.frames)
    throughput(a.train_steps)
    success(a.episodes)
    np.set_printoptions()


if __name__ == "__main__":
    main()

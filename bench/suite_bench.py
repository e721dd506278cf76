"""Batched vs sequential benchmark evaluation: episodes per minute, same planner, same 16 episodes.

The 16 episodes are the first 16 tasks of the shipped suite, one seed each. Sequential runs them one
after another (``AgentRunner.run``); batched steps 16 environments together, batching planner decisions
(``decide_batch``) and skill actions. Both give the same episodes (checked here: successes must match
for deterministic planners).

    HF_HUB_OFFLINE=1 MUJOCO_GL=egl python bench/suite_bench.py [--planner llm] [--envs 16]
"""

from __future__ import annotations

import argparse
import time

import torch

from flexrl.bench.evaluate import evaluate
from flexrl.bench.tasks import default_suite, load_tasks
from flexrl.llm.config import LLMConfig
from flexrl.planners.config import PlannerConfig, build_planner
from flexrl.skills.policies import PolicySet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--planner", default="llm", choices=["llm", "oracle", "random"])
    p.add_argument("--envs", type=int, default=16)
    p.add_argument("--seed", type=int, default=1000)
    a = p.parse_args()
    torch.set_num_threads(1)
    tasks = load_tasks([default_suite()])[: a.envs]
    planner = build_planner(PlannerConfig(a.planner), LLMConfig(), seed=a.seed)
    policies = PolicySet.load()
    evaluate(tasks[:1], [a.seed], planner, policies, batched=False)  # warm caches (prefixes, calibration)
    timings, outcomes = {}, {}
    for mode in ("sequential", "batched"):
        start = time.perf_counter()
        results = evaluate(tasks, [a.seed], planner, policies, n_envs=a.envs, batched=mode == "batched")
        timings[mode] = time.perf_counter() - start
        outcomes[mode] = [(r.task, r.success) for r in results]
        decisions = sum(r.decisions for r in results)
        print(f"  {mode:10s} {timings[mode]:7.1f} s  {60 * len(results) / timings[mode]:6.1f} episodes/min  "
              f"{decisions} decisions, {sum(r.success for r in results)}/{len(results)} succeeded")
    same = outcomes["sequential"] == outcomes["batched"]
    print(f"{a.planner} planner, {len(tasks)} episodes, {a.envs} envs: batched is "
          f"{timings['sequential'] / timings['batched']:.2f}x faster (episodes/min); same outcomes: {same}")


if __name__ == "__main__":
    main()

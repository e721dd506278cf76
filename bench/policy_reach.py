"""How close an instruction-conditioned policy gets to the pad it is told to go to, against the oracle.

    MUJOCO_GL=egl .venv/bin/python bench/policy_reach.py --policy workspace/offline/<run-id>/checkpoints --seeds 12

For each seed and each colour ("Go to the red pad", "Go to the blue pad") one 160-step episode runs with
the policy and one with the oracle; it prints the median closest approach to the named pad and how many
episodes came within the go_to criterion (0.2 m) and within 0.4 m (docs/offline.md).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from flexrl.agent.event_log import EventLog
from flexrl.agent.instructions import InstructionChannel
from flexrl.agent.runner import AgentConfig, AgentRunner
from flexrl.envs.registration import make_arena
from flexrl.planners.base import Instruction
from flexrl.planners.oracle import OraclePlanner
from flexrl.planners.policy_planner import PolicyPlanner, policies_for
from flexrl.skills.policies import PolicySet

COLOURS = ("red", "blue")


def closest_approaches(planner, seeds: int) -> np.ndarray:
    """The closest distance to the named pad in each episode (seeds x colours)."""
    policies = policies_for(planner, PolicySet.load())
    out = []
    for seed in range(seeds):
        for colour in COLOURS:
            env = make_arena()
            ins = Instruction(f"Go to the {colour} pad", intent=f"go_to({colour}_pad)")
            runner = AgentRunner(env, planner, policies, InstructionChannel(ins), AgentConfig(max_steps=160, record_video=False),
                                 EventLog(None))
            runner.run(seed)
            out.append(min(np.linalg.norm(w.agent.pos - w.pads[f"{colour}_pad"]) for w in runner.trajectory))
            env.close()
    return np.array(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", default=None, help="a train-offline run's checkpoints (default: the shipped policy)")
    p.add_argument("--seeds", type=int, default=12)
    args = p.parse_args()
    torch.set_num_threads(1)
    for name, planner in [("policy", PolicyPlanner.load(args.policy)), ("oracle", OraclePlanner())]:
        d = closest_approaches(planner, args.seeds)
        print(f"{name}: closest approach median {np.median(d):.2f} m; within 0.2 m {(d <= 0.2).sum()}/{len(d)}, "
              f"within 0.4 m {(d <= 0.4).sum()}/{len(d)}")


if __name__ == "__main__":
    main()

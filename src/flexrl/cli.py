"""The ``flexrl`` command: thin entry points over the library."""

from __future__ import annotations

import argparse
import os
import sys


def _cmd_train(args: argparse.Namespace) -> int:
    import time

    import flexrl.envs  # noqa: F401  (registers the env ids)
    from flexrl.skills.policies import FAMILIES
    from flexrl.skills.train import default_config, train_family

    families = FAMILIES if args.family == "all" else (args.family,)
    start = time.perf_counter()
    for family in families:
        cfg = default_config(family)
        cfg.seed = args.seed
        if args.steps:
            cfg.total_steps = args.steps
        r = train_family(family, cfg, args.out, tensorboard_dir=args.tensorboard)
        success = ", ".join(f"{k} {v:.0%}" for k, v in r.success.items())
        print(f"{family}: {r.steps} steps in {r.wall_seconds:.1f} s; success at last eval: {success}; -> {r.checkpoint}")
    print(f"all done in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_eval_skills(args: argparse.Namespace) -> int:
    import flexrl.envs  # noqa: F401
    from flexrl.skills.evaluate import evaluate_skill
    from flexrl.skills.library import SKILLS
    from flexrl.skills.policies import PolicySet

    policies = PolicySet.load(args.checkpoints)
    worst = 1.0
    for name in SKILLS if args.skill == "all" else [args.skill]:
        r = evaluate_skill(policies, name, args.episodes, seed=args.seed)
        worst = min(worst, r.success_rate)
        print(f"{name:8s} success {r.success_rate:6.1%} ({r.successes}/{r.episodes}), mean {r.mean_steps:.0f} steps")
    return 0 if worst >= args.bar else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from flexrl.skills.library import SKILLS
    from flexrl.skills.policies import FAMILIES

    p = argparse.ArgumentParser(prog="flexrl", description="An LLM composes PPO-trained MuJoCo skills.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train skill policies from scratch with PPO")
    t.add_argument("--family", choices=["all", *FAMILIES], default="all")
    t.add_argument("--out", default="checkpoints", help="directory for <family>.zip and .json")
    t.add_argument("--steps", type=int, default=0, help="env-step budget per family (0: the family default)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--tensorboard", default=None, help="TensorBoard log directory")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("eval-skills", help="measure skill success rates over seeded episodes")
    e.add_argument("--skill", choices=["all", *SKILLS], default="all")
    e.add_argument("--episodes", type=int, default=100)
    e.add_argument("--seed", type=int, default=50_000)
    e.add_argument("--checkpoints", default=None, help="directory of checkpoints (default: the shipped ones)")
    e.add_argument("--bar", type=float, default=0.95, help="exit non-zero if any skill is below this success rate")
    e.set_defaults(func=_cmd_eval_skills)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flexrl`` console command."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

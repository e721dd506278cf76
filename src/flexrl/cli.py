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


def _cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from flexrl.agent.instructions import parse_schedule_item
    from flexrl.agent.runner import AgentConfig
    from flexrl.agent.session import RunConfig, ScheduledInstruction, print_decision, run_agent, stdin_stream
    from flexrl.llm.base import LLMError

    schedule = []
    for item in args.at if args.at is not None else ["150:Avoid the ball! => avoid(ball)"]:
        step, text = parse_schedule_item(item)
        text, _, intent = text.partition("=>")
        schedule.append(ScheduledInstruction(step, text.strip(), intent.strip() or None))
    cfg = RunConfig(
        instruction=args.instruction, intent=args.intent or None, schedule=schedule, planner=args.planner,
        model=args.model, seed=args.seed, ball_mode=args.ball_mode, ball_speed=args.ball_speed,
        agent=AgentConfig(max_steps=args.steps, record_video=not args.no_video), workspace=args.workspace,
        experiment=args.experiment, stdin=args.stdin, http_port=args.http_port, threads=args.threads,
    )
    print(f"flexrl run: planner={cfg.planner} seed={cfg.seed} steps={cfg.agent.max_steps}")
    try:
        from flexrl.agent.session import build_planner

        planner = build_planner(cfg)
    except LLMError as err:
        print(f"flexrl run: {err}", file=sys.stderr)
        return 2
    if hasattr(planner, "backend"):
        b = planner.backend
        print(f"model {b.name} loaded in {b.load_seconds:.1f} s ({'cache' if b.from_cache else 'first load, now cached'})")
    with tqdm(total=cfg.agent.max_steps, unit="step", dynamic_ncols=True, disable=not sys.stderr.isatty()) as bar:
        run, summary = run_agent(cfg, planner, stdin=stdin_stream(), on_decision=print_decision(tqdm.write), on_step=lambda _: bar.update())
    print(f"decisions: {summary['decisions']} (invalid {summary['invalid_decisions']}, fallbacks {summary['fallbacks']}); "
          f"latency p50 {summary['latency_ms_p50']:.0f} ms, p95 {summary['latency_ms_p95']:.0f} ms")
    for r in summary["reactions"][1:]:
        print(f"reaction to {r['text']!r}: {r['steps']} steps, {r['wall_ms']:.0f} ms")
    for seg in summary["segments"]:
        verdict = {True: "satisfied", False: "NOT satisfied", None: "not judged (no intent)"}[seg["satisfied"]]
        print(f"instruction {seg['instruction']!r} from step {seg['start_step']}: {verdict}")
    print(f"run directory: {run.path}")
    for m in summary.get("media", []):
        print(f"  video: {run.path / m}")
    return 0


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

    r = sub.add_parser("run", help="run the LLM-driven agent for one episode (the demo)")
    r.add_argument("--planner", choices=["llm", "oracle", "random"], default="llm")
    r.add_argument("--instruction", default="Go to the ball")
    r.add_argument("--intent", default="go_to(ball)", help="skill call that fulfils the instruction ('' for none)")
    r.add_argument("--at", action="append", metavar="STEP:TEXT[=>INTENT]",
                   help="inject an instruction at a step (repeatable); default: '150:Avoid the ball! => avoid(ball)'")
    r.add_argument("--steps", type=int, default=300)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--ball-mode", choices=["still", "drift", "chase", "random"], default="drift")
    r.add_argument("--ball-speed", type=float, default=0.3)
    r.add_argument("--model", default=None, help="Hugging Face directory or .gguf file (default: embedded SmolLM2-135M)")
    r.add_argument("--threads", type=int, default=1, help="torch threads for the LLM")
    r.add_argument("--stdin", action="store_true", help="read live instructions from standard input")
    r.add_argument("--http-port", type=int, default=None, help="accept POST /instruction on 127.0.0.1:PORT")
    r.add_argument("--no-video", action="store_true")
    r.add_argument("--workspace", default="workspace")
    r.add_argument("--experiment", default="demo")
    r.set_defaults(func=_cmd_run)

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
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:  # bad input: one line, no traceback
        print(f"flexrl {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

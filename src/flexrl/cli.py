"""The ``flexrl`` command: thin entry points over the library.

``train``, ``run`` and ``eval`` are Hydra apps (config groups under ``flexrl/conf``; ``--multirun`` for
sweeps, ``--cfg job`` to print the config); ``runs`` reads the workspace. Each app composes its config once
with Hydra's ``compose()`` before running, so a config error is one line naming the key and what is
allowed, not a traceback. Only this module and ``flexrl.config`` touch Hydra or OmegaConf.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable

COMMANDS = {
    "train": "train a skill policy family with PPO in a run directory (Hydra app; -m for sweeps)",
    "run": "run the LLM-driven agent for one episode: the demo (Hydra app)",
    "eval": "measure skill success rates over seeded episodes (Hydra app)",
    "bench": "the instruction-following benchmark: task suite x planners -> report (Hydra app)",
    "collect": "record episodes of any planner into a Minari dataset (Hydra app)",
    "train-offline": "train a language-conditioned policy from a dataset: behaviour cloning or IQL (Hydra app)",
    "distill": "fine-tune the planner LLM on oracle-labelled simulator data with DAgger rounds (Hydra app)",
    "ui": "the control room: watch, steer and understand runs in a browser on 127.0.0.1:8765 (Hydra app)",
    "runs": "list, show and compare runs in the workspace",
    "convert": "turn SB3 PPO zips into weights-only policies (safetensors + JSON) without running their pickles",
    "serve": "serve a local model through an OpenAI-compatible API on 127.0.0.1 (batched)",
    "infer": "one prompt through any backend: score options or generate",
    "launch": "multi-GPU inference: vLLM presets with tensor parallelism, or transformers under torchrun",
    "k8s": "submit, inspect and follow training, sweep and serving jobs on Kubernetes",
}
HYDRA_APPS = ("train", "run", "eval", "bench", "distill", "ui", "collect", "train-offline")
USAGE = "usage: flexrl <command> [overrides ...]   (flexrl <command> --help for details)"


class UsageError(Exception):
    """Bad input at the command line: printed as one line, exit status 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (``--help`` still prints the usage)."""

    def error(self, message: str):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# ------------------------------------------------------------------------------------------ the work
def _train(cfg) -> float:
    from omegaconf import OmegaConf

    from flexrl.config.validate import load_run_config
    from flexrl.runs.atomic import write_text
    from flexrl.runs.run_dir import RunDir, recorded_status
    from flexrl.skills.train import check_body
    from flexrl.skills.training_run import TrainingRunConfig, parent_policy, train_in_run

    if cfg.resume:  # checked before Hydra ran (_check_resume): the run, its config and its checkpoint
        run = RunDir.open(cfg.resume)
        settings = load_run_config(run.path / "config.yaml", "train")
        changed = _resume_overrides(cfg, settings)
        if changed:
            write_text(run.path / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(settings)))
        run.reopen(_command("train"))
    else:
        settings = OmegaConf.to_object(cfg)
        check_body(settings.skill.family, settings.robot)  # before the run directory exists
        if settings.parent:
            parent_policy(settings.parent, settings.skill.family)
        run = _create_run(settings.experiment, kind="train", parent=_parent_id(settings.parent), family=settings.skill.family)
        write_text(run.path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    print(f"flexrl train {settings.skill.family}: run {run.path}")
    with recorded_status(run):
        plain = TrainingRunConfig(**{k: getattr(settings, k) for k in TrainingRunConfig.__dataclass_fields__})
        metrics = train_in_run(plain, run, _signing_key(), resume=bool(cfg.resume))
    success = ", ".join(f"{k} {v:.0%}" for k, v in metrics["success"].items())
    policy = metrics.get("gait") or run.path / "checkpoints" / (metrics["family"] + ".safetensors")
    print(f"{metrics['family']}: {metrics['steps']} steps in {metrics['wall_seconds']:.1f} s; success {success}; "
          f"objective {metrics['objective']}; policy -> {policy}")
    return metrics["objective"]


def _signing_key() -> Path:
    """The key that signs resume checkpoints: $FLEXRL_SIGNING_KEY, else ~/.config/flexrl/checkpoint.key."""
    from flexrl.runs.signing import default_key_path

    return Path(os.environ.get("FLEXRL_SIGNING_KEY") or default_key_path())


def _resume_overrides(cfg, settings) -> list[str]:
    """Apply to a resumed run's stored settings the overrides a resume accepts; returns the keys changed.

    ``skill.total_steps`` and ``ppo.total_steps`` are one budget (the YAML interpolates one from the other).
    """
    from omegaconf import OmegaConf

    from flexrl.skills.training_run import RESUMABLE_KEYS

    given = {_override_key(o) for o in _overrides()} & set(RESUMABLE_KEYS)
    budget = {"skill.total_steps", "ppo.total_steps"}
    if given & budget:
        settings.skill.total_steps = settings.ppo.total_steps = int(cfg.ppo.total_steps)
    for key in sorted(given - budget):
        *path, leaf = key.split(".")
        setattr(functools.reduce(getattr, path, settings), leaf, OmegaConf.select(cfg, key))
    return sorted(given)


def _override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0].strip()


def _check_resume(cfg, overrides: list[str]) -> None:
    """Refuse, before Hydra touches the run directory, a resume this workspace must not do."""
    from flexrl.config.validate import ConfigError, load_run_config
    from flexrl.skills.training_run import RESUMABLE_KEYS, open_resumable

    fixed = sorted({_override_key(o) for o in overrides} - {"resume", *RESUMABLE_KEYS})
    if fixed:
        raise ConfigError(f"{fixed[0]} cannot change on resume: the run keeps its stored config.yaml (allowed with "
                          f"resume: {', '.join(RESUMABLE_KEYS)}); to change it, fine-tune in a new run: "
                          f"flexrl train parent={cfg.resume} {fixed[0]}=...")
    run = open_resumable(cfg.resume, cfg.experiment.workspace, _signing_key())
    load_run_config(run.path / "config.yaml", "train")


def _run(cfg) -> dict:
    from omegaconf import OmegaConf
    from tqdm import tqdm

    from flexrl.agent.session import RunConfig, print_decision, run_agent, stdin_stream
    from flexrl.planners.config import build_planner

    settings: RunConfig = OmegaConf.to_object(cfg)  # checks ports, schedule steps and intents: one line each
    exp = settings.experiment
    print(f"flexrl run: planner={settings.planner.name} seed={exp.seed} steps={settings.agent.max_steps}")
    planner = build_planner(settings.planner, settings.llm, exp.seed)
    if hasattr(planner, "backend") and hasattr(planner.backend, "load_seconds"):
        b = planner.backend
        print(f"model {b.name} loaded in {b.load_seconds:.1f} s ({'cache' if b.from_cache else 'first load, now cached'})")
    with tqdm(total=settings.agent.max_steps, unit="step", dynamic_ncols=True, disable=not sys.stderr.isatty()) as bar:
        run, summary = run_agent(settings, planner, stdin=stdin_stream() if settings.stdin else None,
                                 on_decision=print_decision(tqdm.write), on_step=lambda _: bar.update(),
                                 on_serving=lambda url: tqdm.write(f"instructions: POST {url}" if url.endswith("/instruction")
                                                                  else f"control room: {url}"),
                                 run_dir=_hydra_run_dir(), resolved_config=OmegaConf.to_yaml(cfg, resolve=True))
    print(f"decisions: {summary['decisions']} (invalid {summary['invalid_decisions']}, fallbacks {summary['fallbacks']}); "
          f"latency p50 {summary['latency_ms_p50']:.0f} ms, p95 {summary['latency_ms_p95']:.0f} ms")
    for seg, r in zip(summary["segments"], summary["reactions"]):
        if seg["start_step"] > 0:
            print(f"reaction to {r['text']!r}: {r['steps']} steps, {r['wall_ms']:.0f} ms")
    if not summary["segments"]:
        print(f"no instruction arrived; notes: {run.path / 'events.jsonl'}")
    for seg in summary["segments"]:
        unjudged = "not judged (no intent given)" if seg["intent"] is None else "not judged"
        verdict = {True: "satisfied", False: "NOT satisfied", None: unjudged}[seg["satisfied"]]
        print(f"instruction {seg['instruction']!r} from step {seg['start_step']}: {verdict}")
    print(f"run directory: {run.path}")
    for m in summary.get("media", []):
        print(f"  video: {run.path / m}")
    return summary


def _eval(cfg) -> float:
    from omegaconf import OmegaConf
    from tqdm import tqdm

    from flexrl.config.schema import EvalAppConfig
    from flexrl.runs.atomic import write_json, write_text
    from flexrl.runs.run_dir import recorded_status
    from flexrl.skills.evaluate import evaluate_skill
    from flexrl.skills.library import MOTOR_SKILLS as SKILLS
    from flexrl.skills.policies import PolicySet

    settings: EvalAppConfig = OmegaConf.to_object(cfg)  # checks skills, episodes and bar
    policies = PolicySet.load(settings.checkpoints, sources=settings.policies, robot=settings.robot)
    run = _create_run(settings.experiment, kind="eval")
    write_text(run.path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    with recorded_status(run):
        success, falls = {}, {}
        for name in tqdm(settings.skills or list(SKILLS), desc="eval", unit="skill",
                         disable=not sys.stderr.isatty()):
            r = evaluate_skill(policies, name, settings.episodes, seed=settings.experiment.seed, robot=settings.robot)
            success[name], falls[name] = r.success_rate, r.falls
            tqdm.write(f"{name:8s} success {r.success_rate:6.1%} ({r.successes}/{r.episodes}), mean {r.mean_steps:.0f} steps, "
                       f"falls {r.falls}")
        total = len(success) * settings.episodes
        print(f"falls: {sum(falls.values())} in {total} episodes ({100 * sum(falls.values()) / total:.1f} per 100)")
        write_json(run.path / "metrics.json", {"success": success, "episodes": settings.episodes,
                                               "success_min": min(success.values()), "falls": falls})
    print(f"run directory: {run.path}")
    if min(success.values()) < settings.bar:
        raise SystemExit(1)
    return min(success.values())


def _bench(cfg) -> dict:
    import time

    import torch
    from omegaconf import OmegaConf
    from tqdm import tqdm

    from flexrl.bench.evaluate import evaluate
    from flexrl.bench.report import summarise, write_report
    from flexrl.config.schema import BenchAppConfig
    from flexrl.planners.config import PlannerConfig, build_planner
    from flexrl.planners.policy_planner import policies_for
    from flexrl.runs.atomic import write_text
    from flexrl.runs.run_dir import recorded_status
    from flexrl.skills.policies import PolicySet

    settings: BenchAppConfig = OmegaConf.to_object(cfg)  # checks baselines, categories, episodes, seeds
    tasks = _suite_tasks(settings.suite)
    torch.set_num_threads(1)
    policies = PolicySet.load(robot=settings.robot)
    names = [*dict.fromkeys([*settings.baselines, settings.planner.name])]
    planners = {name: build_planner(settings.planner if name == settings.planner.name else PlannerConfig(name),
                                    settings.llm, seed=settings.first_seed) for name in names}  # a bad model fails here
    run = _create_run(settings.experiment, kind="bench")
    write_text(run.path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    seeds = list(range(settings.first_seed, settings.first_seed + settings.episodes))
    summaries, episodes = [], {}
    with recorded_status(run):
        for name, planner in planners.items():
            label = planner.name if name != "llm" else f"llm ({getattr(planner.backend, 'name', 'model')})"
            bar = tqdm(total=len(tasks) * len(seeds), desc=f"bench {name}", unit="ep", disable=not sys.stderr.isatty())
            start = time.perf_counter()
            results = evaluate(tasks, seeds, planner, policies_for(planner, policies), n_envs=settings.n_envs, batched=settings.batched,
                               encoder=settings.agent.encoder, events_dir=run.path / "events" / name,
                               on_episode=lambda _: bar.update(), robot=settings.robot)
            bar.close()
            summaries.append(summarise(label, results, time.perf_counter() - start))
            episodes[label] = results
            s = summaries[-1]
            print(f"{label}: success {s['overall']['success']:.1%} (solvable {s['solvable']['success']:.1%}) over "
                  f"{s['episodes']} episodes; invalid {s['invalid_decisions']}/{s['decisions']}; "
                  f"{s['episodes_per_minute']} episodes/min")
        paths = write_report(run.path, summaries, episodes)
    print(paths["markdown"].read_text())
    print(f"report: {paths['markdown']}, {paths['json']}, {paths['png']}")
    return {"run": str(run.path), "summaries": summaries}


def _suite_tasks(suite) -> list:
    """The suite's tasks (``suite.files``, else the shipped suite), filtered by ``suite.tasks`` and ``suite.categories``.

    Raises:
        TaskError: a bad suite file (nothing runs); ValueError: an unknown task id, or no task left.
    """
    from flexrl.bench.tasks import default_suite, load_tasks

    tasks = load_tasks(suite.files or [default_suite()])  # a bad suite runs nothing: TaskError
    unknown = sorted(set(suite.tasks) - {t.id for t in tasks})
    if unknown:
        raise ValueError(f"suite.tasks entry {unknown[0]!r} is not a loaded task; see the suite files (`--cfg job` prints them)")
    tasks = [t for t in tasks if (not suite.tasks or t.id in suite.tasks)
             and (not suite.categories or t.category in suite.categories)]
    if not tasks:
        raise ValueError("no task left to run after loading and filtering the suite")
    return tasks


def _collect(cfg) -> dict:
    import torch
    from omegaconf import OmegaConf
    from tqdm import tqdm

    from flexrl.config.schema import CollectAppConfig
    from flexrl.data.collect import collect, next_dataset_id
    from flexrl.data.tasks import generate_tasks
    from flexrl.planners.config import build_planner
    from flexrl.runs.atomic import write_json, write_text
    from flexrl.runs.run_dir import recorded_status
    from flexrl.skills.policies import PolicySet

    settings: CollectAppConfig = OmegaConf.to_object(cfg)
    if settings.tasks == "generated":
        tasks, seeds = generate_tasks(settings.episodes, settings.first_seed), [settings.first_seed]
    else:
        tasks = _suite_tasks(settings.suite)
        seeds = list(range(settings.first_seed, settings.first_seed + settings.episodes))
    root = Path(settings.root or Path(settings.experiment.workspace) / "datasets")
    dataset_id = settings.dataset or next_dataset_id(root, f"arena-{settings.robot.name}-{settings.planner.name}")
    torch.set_num_threads(1)
    policies = PolicySet.load(robot=settings.robot)
    planner = build_planner(settings.planner, settings.llm, seed=settings.first_seed)
    run = _create_run(settings.experiment, kind="collect", dataset=dataset_id)
    write_text(run.path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    print(f"flexrl collect: {len(tasks) * len(seeds)} episodes of {settings.planner.name} on the {settings.robot.name} "
          f"-> {dataset_id} under {root}")
    meta = run.meta
    metadata = {"planner": settings.planner.name, "robot": settings.robot.name, "tasks": settings.tasks,
                "first_seed": settings.first_seed, "seeds": seeds if settings.tasks == "suite" else
                [settings.first_seed, settings.first_seed + settings.episodes - 1], "run": str(run.path),
                "git": meta.get("git"), "versions": meta.get("versions")}
    with recorded_status(run):
        bar = tqdm(total=len(tasks) * len(seeds), desc="collect", unit="ep", disable=not sys.stderr.isatty())
        sheet = collect(tasks, seeds, planner, policies, settings.robot, root, dataset_id, metadata,
                        n_envs=settings.n_envs, encoder=settings.agent.encoder, on_episode=lambda _: bar.update())
        bar.close()
        write_json(run.path / "datasheet.json", sheet)
    print(f"{sheet['episodes']} episodes, {sheet['steps']} steps in {sheet['wall_seconds']} s "
          f"({sheet['episodes_per_minute']} episodes/min), written in {sheet['write_seconds']} s; judged success "
          f"{sheet['success']:.1%}; falls {sheet['falls']}")
    print(f"dataset {dataset_id} -> {sheet['path']}; read it with MINARI_DATASETS_PATH={root} and "
          f"minari.load_dataset({dataset_id!r})")
    return sheet


def _train_offline(cfg) -> dict:
    from omegaconf import OmegaConf

    from flexrl.config.validate import load_run_config
    from flexrl.data.offline import train_offline
    from flexrl.runs.atomic import write_text
    from flexrl.runs.run_dir import RunDir, recorded_status

    if cfg.resume:
        run = RunDir.open(cfg.resume)
        settings = load_run_config(run.path / "config.yaml", "train-offline")
        run.reopen(_command("train-offline"))
    else:
        settings = OmegaConf.to_object(cfg)
        if not settings.dataset:
            raise ValueError("dataset is not set; allowed: a dataset id from `flexrl collect`, e.g. dataset=flexrl/arena-orb-oracle-v0")
        run = _create_run(settings.experiment, kind="train-offline", dataset=settings.dataset, algorithm=settings.algorithm)
        write_text(run.path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    print(f"flexrl train-offline {settings.algorithm}: run {run.path}")
    with recorded_status(run):
        metrics = train_offline(settings, run.path, Path(settings.experiment.workspace), resume=bool(cfg.resume))
    print(f"{metrics['algorithm']}: {metrics['steps']} steps in {metrics['wall_seconds']} s; validation agreement "
          f"{metrics['agreement']:.1%}, mse {metrics['val_mse']}; policy -> {run.path / 'checkpoints' / 'policy.json'}; "
          f"bench it: flexrl bench planner=policy planner.policy={run.path / 'checkpoints'}")
    return metrics


def _distill(cfg) -> dict:
    from omegaconf import OmegaConf

    from flexrl.config.validate import load_run_config
    from flexrl.distill.pipeline import Pipeline
    from flexrl.runs.atomic import write_text
    from flexrl.runs.run_dir import RunDir, recorded_status

    if cfg.resume:  # the stored config wins, but for settings that change no result (threads, where to export)
        run = RunDir.open(cfg.resume)
        settings = load_run_config(run.path / "config.yaml", "distill")
        given = {_override_key(o) for o in _overrides()}
        for key in sorted(given & {"lora.threads", "n_envs", "export"}):
            section, _, name = key.rpartition(".")
            setattr(settings.lora if section else settings, name, OmegaConf.select(cfg, key))
        ignored = sorted(given - {"resume", "lora.threads", "n_envs", "export"})
        if ignored:
            print(f"flexrl distill: resuming keeps the run's config; ignored: {', '.join(ignored)}")
        run.reopen(_command("distill"))
    else:
        settings = OmegaConf.to_object(cfg)
        run = _create_run(settings.experiment, kind="distill")
        write_text(run.path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    print(f"flexrl distill: run {run.path}")
    with recorded_status(run):
        state = Pipeline(settings, run).run_all()
    print(f"flexrl distill: {state['total_minutes']} min; adapter {run.path / 'adapter'}")
    return state


def _ui(cfg) -> None:
    import time

    from omegaconf import OmegaConf

    from flexrl.agent.session import RunConfig
    from flexrl.ui.app import ControlRoom

    import signal

    settings: RunConfig = OmegaConf.to_object(cfg)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM (kill, Kubernetes) stops it like Ctrl-C
    choices = {"llm": _choice("llm")}
    room = ControlRoom(settings, choices={k: v for k, v in choices.items() if v})
    print(f"flexrl ui: the control room is at {room.url}  (Ctrl-C stops it; episodes go to "
          f"{Path(settings.experiment.workspace) / 'ui'})", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("flexrl ui: stopped")
    finally:
        room.close()


def _choice(group: str) -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get(group)


WORK: dict[str, Callable[[Any], Any]] = {"train": _train, "run": _run, "eval": _eval, "bench": _bench, "distill": _distill,
                                         "collect": _collect, "train-offline": _train_offline,
                                         "ui": _ui}


# ------------------------------------------------------------------------------------------ plumbing
def _command(name: str) -> list[str]:
    return ["flexrl", name, *_overrides()]


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task)


def _hydra_run_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir


def _parent_id(parent: str | None) -> str | None:
    return str(Path(parent)) if parent else None


def _create_run(experiment, kind: str, **extra):
    """The run directory Hydra made for this job, with ``meta.json``; trials of a sweep get ``<sweep>/<n>`` ids."""
    from flexrl.runs.run_dir import RunDir

    path = Path(_hydra_run_dir())
    base = Path(experiment.workspace) / experiment.name
    try:
        run_id = path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        run_id = path.name
    return RunDir.create(path, experiment.name, experiment.seed, command=_command(kind), run_id=run_id, kind=kind,
                         tags=list(experiment.tags), **extra)


def _task(name: str) -> Callable[[Any], Any]:
    """The Hydra task function of ``name``: the work, with bad input reported as one line."""
    def task(cfg):
        import logging

        from flexrl.llm.base import LLMError

        for noisy in ("httpx", "httpcore"):  # Hydra's job logging is INFO: one line per HTTP request otherwise
            logging.getLogger(noisy).setLevel(logging.WARNING)
        try:
            return WORK[name](cfg)
        except (ValueError, OSError, LLMError, ImportError) as err:
            for line in getattr(err, "lines", None) or [str(err)]:  # a TaskError: one file:line per problem
                print(f"flexrl {name}: {line}", file=sys.stderr)
            _remove_if_empty(Path(_hydra_run_dir()), Path(cfg.experiment.workspace) / cfg.experiment.name, name)
            raise SystemExit(2) from None

    task.__module__ = __name__
    task.__qualname__ = task.__name__ = f"{name}_task"
    return task


def _remove_if_empty(path: Path, experiment_dir: Path, job: str) -> None:
    """Hydra makes the run directory (and its ``<job>.log``) before the work starts; a run refused on the spot
    leaves neither it nor an emptied experiment directory behind. Only directories flexrl named
    (``<workspace>/<experiment>/<run>``) are removed, never one given with ``hydra.run.dir``."""
    if path.resolve().parent != experiment_dir.resolve():
        return
    if not path.is_dir() or {p.name for p in path.iterdir()} - {f"{job}.log"}:
        return  # a run that started keeps its files
    (path / f"{job}.log").unlink(missing_ok=True)
    for directory in (path, path.parent):
        try:
            directory.rmdir()
        except OSError:  # not empty: other runs live there
            break


def _check_workspace(workspace: str) -> None:
    """A workspace that cannot hold runs is one line here, not a traceback from Hydra's mkdir."""
    from flexrl.config.validate import ConfigError

    try:
        Path(workspace).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"experiment.workspace={workspace!r}: {err.strerror or err}; allowed: a directory "
                          "this user can create and write") from None
    if not os.access(workspace, os.W_OK | os.X_OK):
        raise ConfigError(f"experiment.workspace={workspace!r} is not writable by this user")


def _run_hydra_app(name: str, args: list[str]) -> int:
    import hydra

    from flexrl.config import resolvers, schema
    from flexrl.config.validate import compose_checked

    schema.register()
    resolvers.register()
    informational = any(a in ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc")
                        or a.startswith(("--cfg=", "--info=")) for a in args)
    if not informational:
        overrides = [a for a in args if not a.startswith("-")]
        composed = compose_checked(name, overrides)
        if name == "train" and composed.resume:
            _check_resume(composed, overrides)
        _check_workspace(composed.experiment.workspace)
    app = hydra.main(version_base="1.3", config_path="conf", config_name=name)(_task(name))
    saved = sys.argv
    sys.argv = [f"flexrl {name}", *args]
    try:
        app()
    except SystemExit as exit_:  # the task's one-line errors, an eval below its bar, Hydra's own exits
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = saved
    return 0


def _runs(args: list[str]) -> int:
    from flexrl.runs import report

    p = _ArgumentParser(prog="flexrl runs", description=COMMANDS["runs"])
    p.add_argument("--workspace", default="workspace")
    sub = p.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="every run as a table")
    ls.add_argument("--experiment", default=None)
    sh = sub.add_parser("show", help="one run: metadata, lineage, metrics")
    sh.add_argument("run", help="run id or directory")
    cp = sub.add_parser("compare", help="final metrics side by side, learning curves in one PNG")
    cp.add_argument("runs", nargs="+", help="run ids or directories")
    cp.add_argument("--png", default="compare.png", help="where to write the plot ('' for none)")
    a = p.parse_args(args)
    if a.action == "list":
        print(report.list_runs(a.workspace, a.experiment))
    elif a.action == "show":
        print(report.show_run(a.workspace, a.run))
    else:
        print(report.compare_runs(a.workspace, a.runs, a.png or None))
    return 0


def _convert(args: list[str]) -> int:
    from flexrl.skills.checkpoint import convert_sb3_zip

    p = _ArgumentParser(prog="flexrl convert", description=COMMANDS["convert"] + ". Reads only the zip's "
                                "JSON and its tensors (torch.load with weights_only=True); loadable then with "
                                "checkpoints=DIR or policies.<family>=DIR.")
    p.add_argument("zips", nargs="+", help="SB3 PPO zips; each becomes <name>.safetensors + <name>.json")
    p.add_argument("--out", required=True, help="directory for the weights-only policies")
    p.add_argument("--name", default=None, help="the policies' name, e.g. a skill family (default: each zip's stem); "
                   "<run>/checkpoints/<family> is what parent=<run> and checkpoints=<dir> load")
    a = p.parse_args(args)
    if a.name and len(a.zips) > 1:
        raise UsageError("--name names one policy; convert several zips one at a time")
    for source in a.zips:
        path = convert_sb3_zip(source, a.out, a.name or Path(source).stem)
        print(f"{source} -> {path} (+ {path.with_suffix('.json').name})")
    return 0


def _serve(args: list[str]) -> int:
    from flexrl.llm.serving.cli import main as serve_main

    return serve_main(args)


def _infer(args: list[str]) -> int:
    from flexrl.llm.config import BACKENDS, LLMConfig, build_backend
    from flexrl.llm.infer import add_prompt_arguments, infer

    p = _ArgumentParser(prog="flexrl infer", description=COMMANDS["infer"])
    add_prompt_arguments(p)
    p.add_argument("--backend", choices=BACKENDS, default="transformers")
    p.add_argument("--model", default=None, help="local model (transformers) or served model name (openai_compat)")
    p.add_argument("--base-url", default=None, help="server URL for openai_compat, e.g. http://127.0.0.1:8000/v1")
    a = p.parse_args(args)
    from flexrl.llm.base import LLMError

    try:
        backend = build_backend(LLMConfig(backend=a.backend, model=a.model, base_url=a.base_url, threads=a.threads))
        result = infer(backend, a.text, a.system, a.options, a.max_new_tokens, raw=a.raw)
    except LLMError as err:
        print(f"flexrl infer: {err}", file=sys.stderr)
        return 2
    print("\n".join(result.lines()))
    return 0


def _help() -> str:
    width = max(map(len, COMMANDS))
    lines = [USAGE, "", "An LLM composes PPO-trained MuJoCo skills.", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "examples:", "  flexrl run planner=oracle agent.max_steps=200",
              "  flexrl train skill=avoid ppo.learning_rate=3e-4",
              "  flexrl train -m experiment=sweep_ppo hydra/launcher=joblib", "  flexrl runs list"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flexrl`` console command."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_help())
        return 0
    name, rest = args[0], args[1:]
    try:
        if name in HYDRA_APPS:
            return _run_hydra_app(name, rest)
        if name == "runs":
            return _runs(rest)
        if name == "convert":
            return _convert(rest)
        if name == "serve":
            return _serve(rest)
        if name == "infer":
            return _infer(rest)
        if name == "launch":
            from flexrl.llm.launch_cli import launch_main

            return launch_main(rest)
        if name == "k8s":
            from flexrl.deploy.k8s_cli import k8s_main

            return k8s_main(rest, main)
        raise UsageError(f"unknown command {name!r}; allowed: {', '.join(COMMANDS)}")
    except (UsageError, ValueError, OSError) as err:  # bad input: one line, no traceback
        print(f"flexrl {name}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""``flexrl k8s``: submit training runs, sweeps and LLM servers to Kubernetes, follow them, run one sweep trial.

    flexrl k8s submit train [--dry-run] [options] [overrides ...]    one Job: flexrl train <overrides>
    flexrl k8s submit sweep [--dry-run] [options] [overrides ...]    one Indexed Job: a trial per index
    flexrl k8s submit serve [--dry-run] [--backend flexrl|vllm] ...  Deployment + Service on port 8000
    flexrl k8s status | logs NAME [--index I] [--follow]              the flexrl objects of the namespace
    flexrl k8s trial --trials DIR --run-root DIR [--index I]         inside a sweep pod: run trial I
    flexrl k8s render DIR                                            write deploy/k8s's generated workloads

Overrides are checked (and sweeps expanded by Hydra's basic sweeper) before anything is built, so a bad
override is one line here, not a failed pod.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Callable

from flexrl.deploy.objects import WORKSPACE, ClusterSettings, Resources

# The workloads kept in deploy/k8s (relative to it), as the `flexrl k8s` command lines that build them.
RENDERED = {
    "base/workloads/train.yaml": ["submit", "train", "--name", "train-quick", "experiment=quick"],
    "base/workloads/sweep.yaml": ["submit", "sweep", "--name", "sweep-ppo", "experiment=sweep_ppo"],
    "base/workloads/serve.yaml": ["submit", "serve", "--name", "llm"],
    "overlays/gke/vllm.yaml": ["submit", "serve", "--name", "llm-vllm", "--backend", "vllm", "--gpus", "2",
                               "--cpus", "8", "--memory", "32Gi", "--model", "Qwen/Qwen2.5-7B-Instruct",
                               "--served-model-name", "planner",
                               "--gpu-node-selector", "cloud.google.com/gke-accelerator=nvidia-l4"],
}
RENDER_STAMP = "example"
NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
NAME_MAX = 52  # pods of an Indexed Job append -<index>-<5 chars> to the Job's name within 63


def _name(text: str) -> str:
    if len(text) > NAME_MAX or not NAME.fullmatch(text):
        raise ValueError(f"name {text!r}: lower-case letters, digits and '-', at most {NAME_MAX} characters")
    return text


def _pairs(items: list[str], what: str) -> dict[str, str]:
    bad = [i for i in items if "=" not in i]
    if bad:
        raise ValueError(f"{what} {bad[0]!r}: expected KEY=VALUE")
    return dict(i.split("=", 1) for i in items)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flexrl k8s", description="Run flex-rl on Kubernetes (current kube context).")
    p.add_argument("--namespace", default="flexrl")
    p.add_argument("--context", default=None, help="kube context (default: the current one)")
    sub = p.add_subparsers(dest="action", required=True)

    submit = sub.add_parser("submit", help="build the objects and create them (--dry-run: print them as YAML)")
    kinds = submit.add_subparsers(dest="kind", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dry-run", action="store_true", help="print the objects as YAML; submit nothing")
    common.add_argument("--name", default=None, help="object name (default: <kind>-<time>)")
    common.add_argument("--image", default=ClusterSettings.image, help="training image")
    common.add_argument("--serve-image", default=ClusterSettings.serve_image, help="flexrl serving image")
    common.add_argument("--gpu-image", default=ClusterSettings.gpu_image, help="vLLM/torchrun image")
    common.add_argument("--pull-policy", default=ClusterSettings.image_pull_policy, choices=["IfNotPresent", "Always", "Never"])
    common.add_argument("--workspace-claim", default=ClusterSettings.workspace_claim)
    common.add_argument("--service-account", default=ClusterSettings.service_account)
    common.add_argument("--queue", default=None, help="Kueue LocalQueue (jobs start suspended until admitted)")
    common.add_argument("--node-selector", action="append", default=[], metavar="KEY=VALUE")
    common.add_argument("--gpu-node-selector", action="append", default=[], metavar="KEY=VALUE",
                        help="e.g. cloud.google.com/gke-accelerator=nvidia-l4")
    common.add_argument("--gpu-toleration", action="append", default=None, metavar="KEY[=VALUE]",
                        help="NoSchedule taint of GPU nodes (default: nvidia.com/gpu)")
    common.add_argument("--cpus", default="2")
    common.add_argument("--memory", default="4Gi")
    common.add_argument("--gpus", type=int, default=0)
    for kind, text in (("train", "one Job: flexrl train <overrides>"), ("sweep", "one Indexed Job, a trial per index")):
        k = kinds.add_parser(kind, parents=[common], help=text)
        k.add_argument("overrides", nargs="*", help="Hydra overrides, as for flexrl train (sweeps: a,b,c)")
        if kind == "sweep":
            k.add_argument("--parallelism", type=int, default=4, help="trials running at once")
    serve = kinds.add_parser("serve", parents=[common], help="an OpenAI-compatible LLM server: Deployment + Service")
    serve.add_argument("--backend", default="flexrl", choices=["flexrl", "vllm"])
    serve.add_argument("--model", default=None, help="HF id or /workspace path (flexrl default: embedded SmolLM2)")
    serve.add_argument("--served-model-name", default=None)
    serve.add_argument("--preset", default=None,
                       help="a vLLM preset (flexrl launch presets): model, name, GPUs and memory flags, checked first")
    serve.add_argument("--replicas", type=int, default=1)
    serve.add_argument("--api-key-secret", default=ClusterSettings.api_key_secret)

    sub.add_parser("status", help="flexrl Jobs and Deployments with their progress")
    logs = sub.add_parser("logs", help="logs of a Job's or Deployment's pods")
    logs.add_argument("name")
    logs.add_argument("--index", type=int, default=None, help="a sweep's trial")
    logs.add_argument("--follow", "-f", action="store_true")
    logs.add_argument("--tail", type=int, default=None)

    render = sub.add_parser("render", help="write the generated workloads of deploy/k8s (see RENDERED)")
    render.add_argument("root", help="the deploy/k8s directory")

    trial = sub.add_parser("trial", help="(inside a sweep pod) run the trial of this completion index")
    trial.add_argument("--trials", required=True, help="directory with a file per trial index: one override a line")
    trial.add_argument("--run-root", required=True, help="the sweep's directory; the trial writes <run-root>/<index>")
    trial.add_argument("--index", type=int, default=None, help="default: $JOB_COMPLETION_INDEX")
    return p


def _settings(a: argparse.Namespace) -> ClusterSettings:
    defaults = ClusterSettings()
    return ClusterSettings(
        namespace=_name(a.namespace), image=a.image, serve_image=a.serve_image, gpu_image=a.gpu_image,
        image_pull_policy=a.pull_policy,
        workspace_claim=a.workspace_claim, service_account=a.service_account, queue=a.queue,
        node_selector=_pairs(a.node_selector, "--node-selector"),
        gpu_node_selector=_pairs(a.gpu_node_selector, "--gpu-node-selector"),
        gpu_tolerations=defaults.gpu_tolerations if a.gpu_toleration is None else a.gpu_toleration,
        api_key_secret=getattr(a, "api_key_secret", defaults.api_key_secret))


def build(a: argparse.Namespace, now: str | None = None) -> list:
    """The objects of ``flexrl k8s submit <kind>``; ``now`` (YYYYmmdd-HHMMSS) names them (default: the time)."""
    from flexrl.config import resolvers, schema
    from flexrl.deploy import objects

    stamp = now or time.strftime("%Y%m%d-%H%M%S")
    name = _name(a.name or f"{a.kind}-{stamp}")
    settings, resources = _settings(a), Resources(cpus=a.cpus, memory=a.memory, gpus=a.gpus)
    if a.kind == "serve":
        model, served, extra = a.model, a.served_model_name, None
        if a.preset:
            from flexrl.llm.vllm_presets import load_preset

            if a.backend != "vllm":
                raise ValueError(f"--preset {a.preset} needs --backend vllm")
            preset = load_preset(a.preset).replace(tensor_parallel_size=a.gpus or None)
            preset.check(gpus=preset.tensor_parallel_size)
            resources = Resources(cpus=a.cpus, memory=a.memory, gpus=preset.tensor_parallel_size)
            model, served, extra = model or preset.model, served or preset.served_model_name, preset.server_flags()
        return objects.serve_objects(settings, name, backend=a.backend, model=model, resources=resources,
                                     replicas=a.replicas, served_model_name=served, extra_args=extra)
    from flexrl.config.validate import compose_checked, concrete_overrides

    schema.register()
    resolvers.register()
    if a.kind == "train":
        if concrete_overrides(a.overrides) != a.overrides:
            raise ValueError("submit train runs one configuration; sweep values (a,b,...) belong to submit sweep")
        compose_checked("train", a.overrides)
        return [objects.train_job(settings, name, a.overrides, resources)]
    from flexrl.config.sweep_expand import expand_sweep

    trials = expand_sweep("train", a.overrides)
    experiment = compose_checked("train", trials[0]).experiment.name
    pinned = [[*t, f"experiment.workspace={WORKSPACE}", "tracking.progress=false"] for t in trials]
    return objects.sweep_objects(settings, name, pinned, f"{WORKSPACE}/{experiment}/sweep-{stamp}",
                                 parallelism=a.parallelism, resources=resources)


def _trial(a: argparse.Namespace, environ: dict[str, str], flexrl_main: Callable[[list[str]], int]) -> int:
    index = a.index if a.index is not None else environ.get("JOB_COMPLETION_INDEX")
    if index is None:
        raise ValueError("no trial index: pass --index or run inside an Indexed Job ($JOB_COMPLETION_INDEX)")
    path = Path(a.trials) / str(index)
    if not path.is_file():
        raise FileNotFoundError(f"no trial {index}: {path} does not exist")
    overrides = path.read_text().splitlines()
    print(f"flexrl k8s trial {index}: {' '.join(overrides)}", flush=True)
    return flexrl_main(["train", *overrides, f"hydra.run.dir={a.run_root}/{index}"])


def render(root: Path) -> dict[Path, str]:
    """The YAML of every file of ``RENDERED`` under ``root`` (sweeps stamped ``example``)."""
    from flexrl.deploy.cluster import to_yaml

    out = {}
    for path, argv in RENDERED.items():
        header = f"# Generated by `flexrl k8s render deploy/k8s` from: flexrl k8s {' '.join(argv)}\n"
        out[root / path] = header + to_yaml(build(_parser().parse_args(argv), now=RENDER_STAMP))
    return out


def k8s_main(argv: list[str], flexrl_main: Callable[[list[str]], int]) -> int:
    """``flexrl k8s ...``; returns the exit status (2 and one line on bad input or a cluster error).

    Args:
        argv: the arguments after ``k8s``.
        flexrl_main: runs a ``flexrl`` command in this process (``flexrl k8s trial`` runs ``flexrl train``);
            the ``flexrl`` entry point passes its own ``main``, so this module never imports it.
    """
    import os

    a = _parser().parse_args(argv)
    try:
        if a.action == "trial":
            return _trial(a, dict(os.environ), flexrl_main)
        from flexrl.deploy import cluster

        if a.action == "submit":
            objs = build(a)
            if a.dry_run:
                print(cluster.to_yaml(objs), end="")
                return 0
            return cluster.submit(objs, a.context)
        if a.action == "render":
            for path, text in render(Path(a.root)).items():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                print(f"wrote {path}")
            return 0
        if a.action == "status":
            print(cluster.status(_name(a.namespace), a.context))
            return 0
        return cluster.logs(_name(a.namespace), a.name, a.index, a.follow, a.tail, a.context)
    except (ValueError, ImportError, FileNotFoundError, *cluster_errors()) as err:
        print(f"flexrl k8s: {err}", file=sys.stderr)
        return 2


def cluster_errors() -> tuple[type[BaseException], ...]:
    """Connection failures worth one line (the API server's refusals arrive as ClusterError, a ValueError)."""
    try:
        from urllib3.exceptions import HTTPError
    except ImportError:
        return ()
    return (HTTPError,)

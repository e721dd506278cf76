"""``flexrl launch``: start multi-GPU inference, checked first.

    flexrl launch presets                                   the shipped vLLM presets, sized
    flexrl launch vllm PRESET [--tp N] [--gpus N] [--dry-run]
                                                            `vllm serve` with tensor parallelism
    flexrl launch tp --nproc N [--dry-run] -- --model DIR TEXT [--option ...]
                                                            transformers tensor parallelism under torchrun

Every command is printed before it runs; ``--dry-run`` stops there. Bad settings (a tensor-parallel
size that does not split the heads, more ranks than GPUs, a model that does not fit) fail in one
line before any process starts.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys

from flexrl.llm.tensor_parallel import check_tp_size, head_counts, torchrun_command
from flexrl.llm.vllm_presets import load_preset, preset_names


def _visible_gpus() -> int | None:
    """GPUs this process may use (CUDA_VISIBLE_DEVICES, else torch), or None when unknown."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return None


def _start(command: list[str], dry_run: bool) -> int:
    print(shlex.join(command), flush=True)
    if dry_run:
        return 0
    if shutil.which(command[0]) is None:
        raise ValueError(f"{command[0]!r} is not installed here; run it where it is (e.g. the GPU image) or use --dry-run")
    os.execvp(command[0], command)
    return 0  # not reached


def _model_dir(worker_args: list[str]) -> str:
    for i, arg in enumerate(worker_args):
        if arg == "--model" and i + 1 < len(worker_args):
            return worker_args[i + 1]
        if arg.startswith("--model="):
            return arg.split("=", 1)[1]
    raise ValueError("pass the model after --: flexrl launch tp --nproc N -- --model DIR TEXT [--option ...]")


def launch_main(args: list[str]) -> int:
    """Entry point of ``flexrl launch``."""
    worker_args: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, worker_args = args[:cut], args[cut + 1 :]
    p = argparse.ArgumentParser(prog="flexrl launch", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("presets", help="the shipped vLLM presets with their per-GPU sizes")
    v = sub.add_parser("vllm", help="serve a preset with vLLM (tensor parallel)")
    v.add_argument("preset", help=f"one of: {', '.join(preset_names())}")
    v.add_argument("--tp", type=int, default=None, help="tensor-parallel size (default: the preset's)")
    v.add_argument("--gpu-memory-gib", type=float, default=None, help="memory of one GPU (default: the preset's)")
    v.add_argument("--max-model-len", type=int, default=None)
    v.add_argument("--gpus", type=int, default=None, help="GPUs available (default: the visible ones; unchecked when none)")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--dry-run", action="store_true", help="check and print the command, do not run it")
    t = sub.add_parser("tp", help="transformers tensor parallelism under torchrun (arguments after -- go to the worker)")
    t.add_argument("--nproc", type=int, required=True, help="ranks: one per GPU (processes on CPU)")
    t.add_argument("--dry-run", action="store_true")
    a = p.parse_args(args)

    if a.what == "presets":
        print(f"{'preset':14s} {'model':44s} {'tp':>3s} {'GPU GiB':>8s} {'weights/GPU':>12s} {'full seqs':>10s}")
        for name in preset_names():
            s = load_preset(name)
            print(f"{name:14s} {s.model:44s} {s.tensor_parallel_size:>3d} {s.gpu_memory_gib:>8.0f} "
                  f"{s.weights_gib_per_gpu():>10.1f} G {s.concurrent_full_sequences():>10.1f}")
        return 0
    if a.what == "vllm":
        preset = load_preset(a.preset).replace(tensor_parallel_size=a.tp, gpu_memory_gib=a.gpu_memory_gib,
                                                max_model_len=a.max_model_len)
        gpus = a.gpus if a.gpus is not None else (_visible_gpus() or None)
        preset.check(gpus)
        return _start(preset.command(a.host, a.port), a.dry_run)
    model = _model_dir(worker_args)
    if not model.endswith(".gguf"):
        heads, kv_heads = head_counts(model)
        check_tp_size(a.nproc, heads, kv_heads, model)
    return _start(torchrun_command(a.nproc, worker_args), a.dry_run)


if __name__ == "__main__":
    sys.exit(launch_main(sys.argv[1:]))

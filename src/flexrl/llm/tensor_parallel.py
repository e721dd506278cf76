"""Tensor-parallel inference with transformers, launched by torchrun.

``flexrl launch tp --nproc N -- <infer arguments>`` checks the model against N and runs::

    torchrun --standalone --nproc-per-node N -m flexrl.llm.tensor_parallel --model DIR ...

Every rank loads :class:`~flexrl.llm.transformers_backend.TransformersBackend` with
``tensor_parallel=True`` (transformers' ``tp_plan="auto"``: attention heads and MLP columns split
across ranks, one all-reduce per block) and makes the same calls; rank 0 prints the result and
writes ``--out``. On GPUs the process group uses NCCL, one GPU per rank; on CPU it uses gloo, which
is how the tests exercise this module for real on a machine without GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from flexrl.llm.infer import add_prompt_arguments, infer
from flexrl.runs.atomic import write_json


def head_counts(model_dir: str | Path) -> tuple[int, int]:
    """(attention heads, key/value heads) from a Hugging Face model directory's config.json."""
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    config = config.get("text_config", config)  # multimodal models (Llama 4) nest the language model's
    heads = config.get("num_attention_heads")
    if not isinstance(heads, int):
        raise ValueError(f"{path} has no integer num_attention_heads")
    return heads, int(config.get("num_key_value_heads") or heads)


def allowed_sizes(heads: int, kv_heads: int) -> list[int]:
    """Tensor-parallel sizes that split both head counts evenly."""
    return [n for n in range(1, heads + 1) if heads % n == 0 and kv_heads % n == 0]


def check_tp_size(size: int, heads: int, kv_heads: int, what: str) -> None:
    """Raise one line when ``size`` cannot shard a model with these head counts."""
    allowed = allowed_sizes(heads, kv_heads)
    if size not in allowed:
        raise ValueError(
            f"tensor-parallel size {size} does not split {what}'s {heads} attention / {kv_heads} key-value heads; "
            f"allowed: {', '.join(map(str, allowed))}"
        )


def torchrun_command(nproc: int, worker_args: list[str]) -> list[str]:
    """The torchrun command line running this module on ``nproc`` local ranks."""
    if nproc < 1:
        raise ValueError(f"--nproc {nproc}: must be >= 1")
    return ["torchrun", "--standalone", f"--nproc-per-node={nproc}", "-m", "flexrl.llm.tensor_parallel", *worker_args]


def _parameter_counts(model) -> tuple[int, int]:
    """(parameters held by this rank, parameters of the whole model): shards are DTensors."""
    local = full = 0
    for param in model.parameters():
        full += param.numel()
        local += param.to_local().numel() if hasattr(param, "to_local") else param.numel()
    return local, full


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flexrl.llm.tensor_parallel", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="Hugging Face model directory (or .gguf: sharded from its cache)")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    add_prompt_arguments(p)  # as flexrl infer: TEXT [--option ...] [--system] [--max-new-tokens] [--raw] [--threads]
    p.add_argument("--out", default=None, help="JSON file written by rank 0")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one prompt on every rank; rank 0 reports. Needs torchrun's environment (RANK, WORLD_SIZE...)."""
    a = _parser().parse_args(argv)
    if "RANK" not in os.environ:
        print("flexrl.llm.tensor_parallel: run under torchrun (flexrl launch tp --nproc N -- ...)", file=sys.stderr)
        return 2
    import torch

    from flexrl.llm.transformers_backend import TransformersBackend

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    backend = TransformersBackend(a.model, dtype=a.dtype, threads=a.threads, tensor_parallel=True)
    result = infer(backend, a.text, a.system, a.options, a.max_new_tokens, raw=a.raw)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    local, full = _parameter_counts(backend.model)
    if rank == 0:
        for line in result.lines():
            print(line)
        if a.out:
            report = {"world_size": world, "weights": backend.weights, "text": result.text, "best": result.best,
                      "scores": result.scores, "latency_ms": result.latency_ms,
                      "local_parameter_fraction": local / full}
            write_json(a.out, report)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

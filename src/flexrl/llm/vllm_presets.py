"""Ready vLLM serving configurations for large open-weight models, checked before anything starts.

A preset (YAML in ``flexrl/llm/serving_presets/``) names the model, dtype, tensor-parallel size, the
GPU it is sized for and vLLM's memory settings, plus the architecture numbers the checks need. The
checks catch, in one line each, what would otherwise fail minutes into a GPU job: a tensor-parallel
size that does not split the attention heads, more ranks than GPUs, weights plus one full-length
sequence's KV cache that do not fit the memory vLLM may use. The planner then reaches the server
through the ``openai_compat`` backend (``llm=openai_compat llm.model=<served_model_name>``).

    flexrl launch vllm qwen2.5-7b --dry-run          # print the checked `vllm serve` command
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources

import yaml

from flexrl.llm.tensor_parallel import check_tp_size

_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
# CUDA context, activations and CUDA graphs: vLLM's own headroom inside gpu_memory_utilization.
_OVERHEAD_GIB = 2.0
GIB = 2**30


@dataclass(frozen=True)
class VLLMPreset:
    """One model's vLLM serving settings and the architecture figures its checks use."""

    model: str
    served_model_name: str
    dtype: str
    tensor_parallel_size: int
    gpu_memory_gib: float
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    params_billion: float
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    extra_args: list[str] = field(default_factory=list)

    def replace(self, **changes) -> "VLLMPreset":
        """A copy with some settings changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def weights_gib_per_gpu(self) -> float:
        """Weight memory on each GPU: the weights split over the tensor-parallel ranks."""
        return self.params_billion * 1e9 * _DTYPE_BYTES[self.dtype] / GIB / self.tensor_parallel_size

    def kv_gib_per_gpu(self, tokens: int) -> float:
        """KV-cache memory on each GPU for ``tokens`` tokens (keys and values, every layer)."""
        shards = min(self.tensor_parallel_size, self.kv_heads)  # beyond kv_heads, KV heads are replicated
        per_token = 2 * self.layers * self.kv_heads * self.head_dim * _DTYPE_BYTES[self.dtype] / shards
        return per_token * tokens / GIB

    def check(self, gpus: int | None = None) -> None:
        """Raise ValueError (one line) when this preset cannot run as configured."""
        if self.dtype not in _DTYPE_BYTES:
            raise ValueError(f"dtype={self.dtype!r}; allowed: {', '.join(_DTYPE_BYTES)}")
        if not 0.1 <= self.gpu_memory_utilization <= 0.98:
            raise ValueError(f"gpu_memory_utilization={self.gpu_memory_utilization}; allowed: 0.1 to 0.98")
        for name in ("max_model_len", "max_num_seqs", "tensor_parallel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}; must be >= 1")
        check_tp_size(self.tensor_parallel_size, self.attention_heads, self.kv_heads, self.model)
        if gpus is not None and self.tensor_parallel_size > gpus:
            raise ValueError(f"tensor_parallel_size={self.tensor_parallel_size} needs that many GPUs; {gpus} available")
        usable = self.gpu_memory_gib * self.gpu_memory_utilization - _OVERHEAD_GIB
        needed = self.weights_gib_per_gpu() + self.kv_gib_per_gpu(self.max_model_len)
        if needed > usable:
            raise ValueError(
                f"{self.model} with tensor_parallel_size={self.tensor_parallel_size} needs {needed:.1f} GiB per GPU "
                f"(weights {self.weights_gib_per_gpu():.1f} + one {self.max_model_len}-token sequence's KV "
                f"{self.kv_gib_per_gpu(self.max_model_len):.1f}) but {usable:.1f} GiB is usable of {self.gpu_memory_gib} GiB; "
                f"raise tensor_parallel_size or lower max_model_len"
            )

    def concurrent_full_sequences(self) -> float:
        """How many full-length sequences fit in the KV memory left after the weights (a sizing figure)."""
        usable = self.gpu_memory_gib * self.gpu_memory_utilization - _OVERHEAD_GIB - self.weights_gib_per_gpu()
        return usable / self.kv_gib_per_gpu(self.max_model_len)

    def server_flags(self) -> list[str]:
        """dtype, memory and length flags and the preset's extra flags (not model, parallelism or address)."""
        return [
            "--dtype", self.dtype,
            "--gpu-memory-utilization", str(self.gpu_memory_utilization),
            "--max-model-len", str(self.max_model_len),
            "--max-num-seqs", str(self.max_num_seqs),
            *self.extra_args,
        ]

    def command(self, host: str = "127.0.0.1", port: int = 8000) -> list[str]:
        """The ``vllm serve`` command line (the API key, if any, comes from VLLM_API_KEY)."""
        return [
            "vllm", "serve", self.model,
            "--served-model-name", self.served_model_name,
            "--tensor-parallel-size", str(self.tensor_parallel_size),
            "--host", host, "--port", str(port),
            *self.server_flags(),
        ]


def preset_names() -> list[str]:
    """The shipped presets."""
    folder = resources.files("flexrl.llm") / "serving_presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> VLLMPreset:
    """A shipped preset by name; unknown names and keys get one line naming what is allowed."""
    if name not in preset_names():
        raise ValueError(f"vLLM preset {name!r} unknown; allowed: {', '.join(preset_names())}")
    data = yaml.safe_load((resources.files("flexrl.llm") / "serving_presets" / f"{name}.yaml").read_text())
    fields = {f.name for f in dataclasses.fields(VLLMPreset)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"preset {name!r}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(fields))}")
    return VLLMPreset(**data)

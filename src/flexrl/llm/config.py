"""Plain configuration of the planner's language model, and the backend it builds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from flexrl.llm.base import LLMBackend

BACKENDS = ("transformers", "openai_compat", "llama_cpp")
DTYPES = ("float32", "bfloat16", "float16")
FALLBACKS = ("keep", "embedded")


@dataclass
class LLMConfig:
    """Which language model the LLM planner uses, and how it is reached.

    Attributes:
        backend: "transformers" (in process), "openai_compat" (an OpenAI-compatible server) or
            "llama_cpp" (in process on llama.cpp; the optional ``llamacpp`` extra).
        model: Hugging Face directory or .gguf file (transformers), .gguf file (llama_cpp), or the served model's name;
            None: the embedded SmolLM2-135M-Instruct.
        cache_dir: where dequantised GGUF weights are cached (None: ~/.cache/flexrl/models).
        dtype: "float32", "bfloat16" or "float16".
        device: torch device of the transformers backend ("auto": the best available, see
            :func:`resolve_device`; or "cpu", "cuda", "cuda:1", "mps").
        threads: torch threads (1: the model shares the CPU with simulation).
        base_url: server URL of the openai_compat backend (e.g. http://127.0.0.1:8000/v1).
        api_key_env: environment variable holding the server's API key (never the key itself).
        timeout_s: seconds before a request counts as failed.
        retries: extra attempts after a failed request.
        fallback: what a run does while the LLM is failing: "keep" (keep the running skill) or
            "embedded" (ask the embedded local model instead).
        adapter: LoRA adapter merged into the transformers backend's model: null (the untrained model),
            "shipped" (the planner adapter inside the package) or an adapter directory.
    """

    backend: str = "transformers"
    model: Optional[str] = None
    cache_dir: Optional[str] = None
    dtype: str = "float32"
    device: str = "auto"
    threads: int = 1
    base_url: Optional[str] = None
    api_key_env: Optional[str] = None
    timeout_s: float = 10.0
    retries: int = 2
    fallback: str = "keep"
    adapter: Optional[str] = None

    def validate(self) -> None:
        """Raise a one-line ValueError naming a bad value and what is allowed."""
        if self.backend not in BACKENDS:
            raise ValueError(f"llm backend={self.backend!r}; allowed: {', '.join(BACKENDS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"llm dtype={self.dtype!r}; allowed: {', '.join(DTYPES)}")
        if self.threads < 1:
            raise ValueError(f"llm threads={self.threads!r}; allowed: a positive integer")
        if self.adapter is not None and not isinstance(self.adapter, str):
            raise ValueError(f"llm adapter={self.adapter!r}; allowed: null, shipped or an adapter directory")
        if self.adapter is not None and self.backend != "transformers":
            raise ValueError(f"llm adapter={self.adapter!r} needs backend=transformers, not {self.backend!r}; "
                             "allowed: llm.adapter=null")
        if self.backend == "transformers":
            resolve_device(self.device, "llm.device")


def available_devices() -> list[str]:
    """The device names this machine can load a model on: "auto", "cpu", then any CUDA devices and "mps"."""
    import torch

    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def resolve_device(device: str, setting: str = "device") -> str:
    """The torch device a model loads on: ``device`` itself, or for "auto" the best available (cuda, mps, cpu).

    The one check of a device name, used by the planner's LLM config and by ``flexrl serve``.

    Args:
        device: "auto" or a device name, e.g. "cpu", "cuda", "cuda:1", "mps".
        setting: how the user set it (e.g. "llm.device", "--device"), for the error message.

    Raises:
        ValueError: (one line) ``device`` is malformed or this machine lacks it; names the devices it has.
    """
    names = available_devices()
    if device not in names:
        raise ValueError(f"{setting}={device!r} is not a device this machine has; allowed: {', '.join(names)}")
    if device != "auto":
        return device
    return next((name for name in ("cuda", "mps") if name in names), "cpu")


def build_backend(cfg: LLMConfig) -> LLMBackend:
    """Load or connect the configured backend (a missing model fails here, before any episode).

    A served backend is wrapped in :class:`~flexrl.llm.resilient.ResilientBackend` (deadline, retries,
    circuit breaker); with ``fallback="embedded"`` the embedded local model answers while the server fails,
    with ``"keep"`` the error reaches the runner, which keeps the running skill. Set the wrapper's
    ``on_fault`` to record faults (``flexrl run`` writes them as ``llm_fault`` events).
    """
    cfg.validate()
    if cfg.backend == "transformers":
        from flexrl.llm.adapters import resolve_adapter
        from flexrl.llm.transformers_backend import TransformersBackend

        return TransformersBackend(model=cfg.model, cache_dir=cfg.cache_dir, dtype=cfg.dtype,
                                   device=resolve_device(cfg.device, "llm.device"), threads=cfg.threads,
                                   adapter=resolve_adapter(cfg.adapter))
    if cfg.backend == "llama_cpp":
        from flexrl.llm.llama_cpp_backend import LlamaCppBackend

        return LlamaCppBackend(model=cfg.model, threads=cfg.threads)
    import os

    from flexrl.llm.openai_compat import OpenAICompatBackend
    from flexrl.llm.resilient import ResilienceConfig, ResilientBackend

    if not cfg.base_url:
        raise ValueError("llm.base_url is not set; the openai_compat backend needs the server's URL, e.g. http://127.0.0.1:8000/v1")
    if cfg.fallback not in FALLBACKS:
        raise ValueError(f"llm fallback={cfg.fallback!r}; allowed: {', '.join(FALLBACKS)}")
    key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    if cfg.api_key_env and not key:
        raise ValueError(f"llm.api_key_env={cfg.api_key_env!r} names an environment variable that is not set")
    primary = OpenAICompatBackend(cfg.base_url, model=cfg.model, api_key=key, timeout=cfg.timeout_s)
    fallback = None
    if cfg.fallback == "embedded":
        from flexrl.llm.transformers_backend import TransformersBackend

        fallback = TransformersBackend(threads=cfg.threads)
    # The wrapper's deadline sits above the HTTP timeout, so a slow request fails (and retries) by its own timeout.
    return ResilientBackend(primary, fallback, ResilienceConfig(call_timeout_s=1.5 * cfg.timeout_s, retries=cfg.retries))

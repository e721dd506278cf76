"""Every setting and limit of ``flexrl serve``, checked once where it enters."""

from __future__ import annotations

from dataclasses import dataclass, fields

from flexrl.llm.config import DTYPES, resolve_device
from flexrl.local_http import check_port, is_loopback

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
"""uvicorn's log levels (``uvicorn.config.LOG_LEVELS``), named here so that a bad one is refused before the model loads."""


@dataclass
class ServeConfig:
    """How ``flexrl serve`` runs, and how much work one request may ask for.

    A limit a request breaks is answered with a 400 that names the limit, its value and the
    flag that raises it (``--max-prompt-tokens`` for ``max_prompt_tokens``, and so on).

    Attributes:
        model: a Hugging Face model directory or a ``.gguf`` file; None: the embedded SmolLM2-135M-Instruct.
        gguf_file: a ``.gguf`` file inside ``model`` (or a path to one when ``model`` is None).
        model_cache: where dequantised GGUF weights are cached (None: ~/.cache/flexrl/models).
        dtype: "float32", "bfloat16" or "float16".
        device: "auto" (the best available: cuda, mps, then cpu) or a torch device this machine has.
        threads: torch intra-op threads (None: torch's default, all cores).
        host: address to bind; anything but a loopback address needs ``api_key``. On a loopback address,
            a request whose ``Host`` header is not a loopback host is refused (403: DNS rebinding).
        port: TCP port (0: any free port).
        api_key: the key every request must carry as ``Authorization: Bearer KEY`` (None: no check, and a
            request whose ``Origin`` is not a loopback origin, i.e. from a web page of another site, gets 403).
        served_model_name: the model id clients send (None: the model file or directory name).
        max_batch: most requests moved on per micro-batch.
        batch_wait_ms: how long an idle server waits for more requests before running a micro-batch.
        max_prompt_tokens: longest prompt (or rendered chat) accepted, in tokens.
        max_new_tokens: largest ``max_tokens`` accepted.
        max_prompts: most prompts, structured-output choices or chat messages in one request.
        max_request_tokens: most tokens one request may need in all: every prompt's tokens plus the
            tokens it may generate (or, for a structured-output choice, the choices' tokens per prompt).
        max_request_bytes: largest request body accepted.
        slice_tokens: most new tokens one request feeds the model per micro-batch; a bigger request
            runs in slices between other requests' work, so small requests do not wait for all of it.
        decode_steps: most tokens one request generates per micro-batch.
        prefix_cache_tokens: token budget of the automatic prefix cache.
        log_level: uvicorn's log level, one of :data:`LOG_LEVELS`.
    """

    model: str | None = None
    gguf_file: str | None = None
    model_cache: str | None = None
    dtype: str = "float32"
    device: str = "auto"
    threads: int | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    served_model_name: str | None = None
    max_batch: int = 32
    batch_wait_ms: float = 5.0
    max_prompt_tokens: int = 4096
    max_new_tokens: int = 512
    max_prompts: int = 64
    max_request_tokens: int = 16384
    max_request_bytes: int = 1_000_000
    slice_tokens: int = 256
    decode_steps: int = 16
    prefix_cache_tokens: int = 8192
    log_level: str = "warning"

    def __post_init__(self) -> None:
        check_port(self.port)
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be empty (leave it unset for no check on 127.0.0.1)")
        if not is_loopback(self.host) and self.api_key is None:
            raise ValueError(
                f"host={self.host!r} is reachable from other machines: set an API key "
                "(api_key / --api-key), or bind 127.0.0.1"
            )
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level={self.log_level!r}; allowed: {', '.join(LOG_LEVELS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r}; allowed: {', '.join(DTYPES)}")
        for name in POSITIVE:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}; allowed: a positive integer")
        if self.slice_tokens < 16:
            raise ValueError(f"slice_tokens={self.slice_tokens}; allowed: 16 or more")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms={self.batch_wait_ms}; allowed: >= 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads={self.threads}; allowed: a positive integer or None")
        resolve_device(self.device, "device")


POSITIVE = tuple(
    f.name for f in fields(ServeConfig)
    if f.name.startswith("max_") or f.name in ("decode_steps", "prefix_cache_tokens")
)
"""The settings that must be positive integers."""


def flag(name: str) -> str:
    """The command-line flag of a :class:`ServeConfig` field, e.g. ``--max-prompt-tokens``."""
    return "--" + name.replace("_", "-")


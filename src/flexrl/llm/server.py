"""``flexrl serve``: a local model behind an OpenAI-compatible subset, batching concurrent requests.

Endpoints: ``/v1/completions`` (with ``echo`` and ``logprobs`` for scoring),
``/v1/chat/completions``, ``/v1/models`` and ``/health``. Both completion
endpoints accept vLLM's ``{"structured_outputs": {"choice": [...]}}``; the
answer is the choice with the highest log-likelihood. Decoding is always greedy
(deterministic); sampling parameters are ignored. Every model call goes through
one :class:`~flexrl.llm.batching.MicroBatcher`, so concurrent requests share
forward passes.

The server binds 127.0.0.1 by default; any other address needs an API key,
which is then checked on every request (``Authorization: Bearer KEY``). Bad
requests get a 4xx answer with an OpenAI-style error body and never stop the
server. FastAPI and uvicorn come with the ``serve`` extra.

Run it as ``python -m flexrl.llm.server --port 8000`` (``--port 0`` picks a free
port; the address is printed once the server accepts connections).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import json
import logging
import math
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from flexrl.llm.base import LLMError

logger = logging.getLogger(__name__)

SERVE_EXTRA = "pip install 'flexrl[serve]'"
_LOOPBACK_NAMES = ("localhost",)
_MISSING = object()


@dataclass
class ServeConfig:
    """How ``flexrl serve`` runs.

    Attributes:
        model: a Hugging Face model directory or a ``.gguf`` file; None: the embedded SmolLM2-135M-Instruct.
        gguf_file: a ``.gguf`` file inside ``model`` (or a path to one when ``model`` is None).
        model_cache: where dequantised GGUF weights are cached (None: ~/.cache/flexrl/models).
        dtype: "float32", "bfloat16" or "float16".
        device: torch device string.
        threads: torch intra-op threads (None: torch's default, all cores).
        host: address to bind; anything but a loopback address needs ``api_key``.
        port: TCP port (0: any free port).
        api_key: the key every request must carry as ``Authorization: Bearer KEY`` (None: no check).
        served_model_name: the model id clients send (None: the model file or directory name).
        max_batch: most requests per micro-batch.
        batch_wait_ms: how long a micro-batch waits for more requests once the queue is empty.
        max_prompt_tokens: longest prompt accepted, in tokens.
        max_new_tokens: largest ``max_tokens`` accepted.
        max_prompts: most prompts (or choices) in one request.
        max_request_bytes: largest request body accepted.
        prefix_cache_tokens: token budget of the automatic prefix cache.
        log_level: uvicorn's log level.
    """

    model: str | None = None
    gguf_file: str | None = None
    model_cache: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
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
    max_request_bytes: int = 1_000_000
    prefix_cache_tokens: int = 8192
    log_level: str = "warning"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port={self.port}; allowed: 0 to 65535")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be empty (leave it unset for no check on 127.0.0.1)")
        if not is_loopback(self.host) and self.api_key is None:
            raise ValueError(
                f"host={self.host!r} is reachable from other machines: set an API key "
                "(api_key / --api-key), or bind 127.0.0.1"
            )
        for name in ("max_batch", "max_prompt_tokens", "max_new_tokens", "max_prompts", "max_request_bytes", "prefix_cache_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}; allowed: a positive integer")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms={self.batch_wait_ms}; allowed: >= 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads={self.threads}; allowed: a positive integer or None")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP address) only accepts connections from this machine."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServedModel:
    """The model behind the server: its tokenizer, a batched scorer and the micro-batcher.

    Args:
        config: the server settings (model, dtype, limits).
    """

    def __init__(self, config: ServeConfig) -> None:
        from flexrl.llm.batching import BatchScorer, MicroBatcher
        from flexrl.llm.transformers_backend import TransformersBackend

        self.backend = TransformersBackend(
            model=config.model, gguf_file=config.gguf_file, cache_dir=config.model_cache,
            dtype=config.dtype, device=config.device, threads=config.threads,
        )
        self.name = config.served_model_name or self.backend.name
        self.tokenizer = self.backend._tokenizer
        self.context_tokens = int(getattr(self.backend._model.config, "max_position_embeddings", 2048))
        scorer = BatchScorer(self.backend, prompt_logprobs=True, cache_tokens=config.prefix_cache_tokens)
        self.batcher = MicroBatcher(scorer, max_batch=config.max_batch, wait_s=config.batch_wait_ms / 1e3)
        self._pieces: dict[int, str] = {}

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        """Token ids of ``text`` (no special tokens added) and each token's start offset in it."""
        if not text:
            return [], []
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], [start for start, _ in enc["offset_mapping"]]

    def piece(self, token: int) -> str:
        """The text of one token (memoised: an echoed answer names thousands of tokens)."""
        text = self._pieces.get(token)
        if text is None:
            text = self._pieces[token] = self.tokenizer.decode([token])
        return text

    def close(self) -> None:
        """Stop the batcher's worker."""
        self.batcher.close()


class _BadRequest(Exception):
    """A request the server refuses; becomes an OpenAI-style error body."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param = status, param


def _field(body: dict, name: str, kind: type, default: Any = _MISSING, low: float | None = None, high: float | None = None) -> Any:
    """``body[name]`` checked against ``kind`` and the inclusive range [low, high]."""
    value = body.get(name)
    if value is None:
        if default is _MISSING:
            raise _BadRequest(f"'{name}' is required", param=name)
        return default
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise _BadRequest(f"'{name}' must be of type {kind.__name__}, got {json.dumps(value)[:80]}", param=name)
    if (low is not None and value < low) or (high is not None and value > high):
        raise _BadRequest(f"'{name}' must be between {low} and {high}, got {value}", param=name)
    return value


def _strings(body: dict, name: str, limit: int, required: bool = True) -> list[str] | None:
    """A string or a non-empty list of at most ``limit`` strings, as a list."""
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        if len(value) > limit:
            raise _BadRequest(f"'{name}' has {len(value)} entries; this server accepts at most {limit}", param=name)
        return value
    raise _BadRequest(f"'{name}' must be a string or a non-empty list of strings", param=name)


class _Api:
    """Request validation and the answers of each endpoint."""

    def __init__(self, model: ServedModel, config: ServeConfig) -> None:
        self.model, self.config = model, config

    # ------------------------------------------------------------------------------ shared checks
    def _common(self, body: dict) -> None:
        if not isinstance(body, dict):
            raise _BadRequest("the request body must be a JSON object")
        name = _field(body, "model", str)
        if name != self.model.name:
            raise _BadRequest(f"model {name!r} not found; this server serves {self.model.name!r}", status=404, param="model")
        if _field(body, "stream", bool, False):
            raise _BadRequest("streaming is not supported; send 'stream': false", param="stream")
        _field(body, "n", int, 1, 1, 1)

    def _prompt_ids(self, text: str) -> tuple[list[int], list[int]]:
        limit = self.config.max_prompt_tokens
        if len(text) > limit * 32:  # no tokenizer reaches 32 characters a token: refuse before tokenising
            raise _BadRequest(f"prompt of {len(text)} characters is too long; this server accepts at most {limit} tokens", param="prompt")
        ids, offsets = self.model.encode(text)
        if not ids:
            raise _BadRequest("prompt must not be empty", param="prompt")
        if len(ids) > limit:
            raise _BadRequest(f"prompt has {len(ids)} tokens; this server accepts at most {limit}", param="prompt")
        return ids, offsets

    def _max_tokens(self, body: dict, names: tuple[str, ...], default: int, prompt_tokens: int) -> int:
        value = default
        for name in names:
            if body.get(name) is not None:
                value = _field(body, name, int, None, 0, self.config.max_new_tokens)
        if prompt_tokens + value > self.model.context_tokens:
            raise _BadRequest(
                f"prompt ({prompt_tokens} tokens) plus max_tokens ({value}) exceeds the model's context of {self.model.context_tokens}",
                param=names[0],
            )
        return value

    def _choices(self, body: dict) -> list[str] | None:
        spec = body.get("structured_outputs")
        if spec is None:
            return None
        if not isinstance(spec, dict) or set(spec) != {"choice"}:
            raise _BadRequest("'structured_outputs' supports only {\"choice\": [...]} here", param="structured_outputs")
        choices = _strings(spec, "choice", self.config.max_prompts)
        if any(not self.model.encode(c)[0] for c in choices):
            raise _BadRequest("every choice must be a non-empty string", param="structured_outputs")
        return choices

    def _stops(self, body: dict) -> list[str]:
        stops = _strings(body, "stop", 4, required=False) or []
        if any(not s for s in stops):
            raise _BadRequest("stop strings must not be empty", param="stop")
        return stops

    # ------------------------------------------------------------------------------ model calls
    async def _choose(self, ids: list[int], choices: list[str]) -> str:
        from flexrl.llm.batching import SequenceGroup

        options = [self.model.encode(c)[0] for c in choices]
        group = SequenceGroup(tuple(tuple(ids + o) for o in options), len(ids))
        results = await asyncio.wrap_future(self.model.batcher.score(group))
        totals = [math.fsum(r.logprobs[len(ids) :]) for r in results]
        return choices[max(range(len(choices)), key=totals.__getitem__)]

    async def _generate(self, ids: list[int], max_tokens: int, top_k: int, stops: list[str]):
        """Greedy text, its tokens (cut at a stop string) with log-probs, and the finish reason."""
        gen = await asyncio.wrap_future(self.model.batcher.generate(ids, max_tokens, top_k))
        pieces = [self.model.piece(t) for t in gen.tokens]
        text = self.model.tokenizer.decode(gen.tokens, skip_special_tokens=True)
        reason = "stop" if gen.stopped else "length"
        cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
        n = len(gen.tokens)
        if cut >= 0:
            text, reason = text[:cut], "stop"
            n, length = 0, 0
            while n < len(pieces) and length < cut:
                length += len(pieces[n])
                n += 1
        return text, pieces[:n], gen.logprobs[:n], gen.top[:n], reason

    # ------------------------------------------------------------------------------ endpoints
    async def completions(self, body: dict) -> dict:
        self._common(body)
        prompts = _strings(body, "prompt", self.config.max_prompts)
        echo = _field(body, "echo", bool, False)
        top_k = _field(body, "logprobs", int, None, 0, 5)
        stops = self._stops(body)
        choices = self._choices(body)
        encoded = [self._prompt_ids(p) for p in prompts]
        longest = max(len(ids) for ids, _ in encoded)
        max_tokens = self._max_tokens(body, ("max_tokens",), 16, longest)
        scored = None
        if echo and top_k is not None:
            from flexrl.llm.batching import SequenceGroup

            group = SequenceGroup.sharing([ids for ids, _ in encoded], all_positions=True, top_k=top_k)
            scored = asyncio.wrap_future(self.model.batcher.score(group))
        if choices is not None:
            outputs = await asyncio.gather(*(self._choose(ids, choices) for ids, _ in encoded))
            generated = [(text, [], [], [], "stop") for text in outputs]
        elif max_tokens:
            generated = await asyncio.gather(*(self._generate(ids, max_tokens, top_k or 0, stops) for ids, _ in encoded))
        else:
            generated = [("", [], [], [], "length") for _ in encoded]
        echoed = await scored if scored is not None else None
        out = []
        for i, (prompt, (ids, offsets), (text, pieces, lps, tops, reason)) in enumerate(zip(prompts, encoded, generated)):
            logprobs = None
            if top_k is not None:
                logprobs = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
                base = len(prompt) if echo else 0
                if echoed is not None:
                    rows = zip([self.model.piece(t) for t in ids], echoed[i].logprobs, echoed[i].top, offsets)
                    self._append_logprobs(logprobs, rows, top_k)
                gen_offsets = [base + sum(len(p) for p in pieces[:j]) for j in range(len(pieces))]
                self._append_logprobs(logprobs, zip(pieces, lps, tops, gen_offsets), top_k)
            out.append({"index": i, "text": (prompt if echo else "") + text, "logprobs": logprobs, "finish_reason": reason})
        completion = sum(len(g[1]) for g in generated)
        prompt_tokens = sum(len(ids) for ids, _ in encoded)
        return self._envelope("cmpl", "text_completion", out, prompt_tokens, completion)

    def _append_logprobs(self, logprobs: dict, rows, top_k: int) -> None:
        for piece, lp, top, offset in rows:
            logprobs["tokens"].append(piece)
            logprobs["token_logprobs"].append(_finite(lp))
            logprobs["top_logprobs"].append(None if lp is None else {self.model.piece(t): _finite(v) for t, v in top[:top_k]})
            logprobs["text_offset"].append(offset)

    async def chat(self, body: dict) -> dict:
        self._common(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or len(messages) > self.config.max_prompts:
            raise _BadRequest(f"'messages' must be a list of 1 to {self.config.max_prompts} messages", param="messages")
        for m in messages:
            if not (isinstance(m, dict) and m.get("role") in ("system", "user", "assistant") and isinstance(m.get("content"), str)):
                raise _BadRequest("each message needs a 'role' (system, user or assistant) and a string 'content'", param="messages")
        if not self.model.tokenizer.chat_template:
            raise _BadRequest(f"model {self.model.name!r} has no chat template; use /v1/completions", param="messages")
        want_logprobs = _field(body, "logprobs", bool, False)
        top_k = _field(body, "top_logprobs", int, 0, 0, 5) if want_logprobs else 0
        stops = self._stops(body)
        choices = self._choices(body)
        rendered = self.model.tokenizer.apply_chat_template(
            [{"role": m["role"], "content": m["content"]} for m in messages], tokenize=False, add_generation_prompt=True
        )
        ids, _ = self._prompt_ids(rendered)
        default = min(self.config.max_new_tokens, self.model.context_tokens - len(ids))
        max_tokens = self._max_tokens(body, ("max_completion_tokens", "max_tokens"), max(default, 0), len(ids))
        if choices is not None:
            text, pieces, lps, tops, reason = await self._choose(ids, choices), [], [], [], "stop"
        else:
            text, pieces, lps, tops, reason = await self._generate(ids, max_tokens, top_k, stops)
        logprobs = None
        if want_logprobs:
            logprobs = {"content": [
                {**_chat_logprob(p, lp), "top_logprobs": [_chat_logprob(self.model.piece(t), v) for t, v in top[:top_k]]}
                for p, lp, top in zip(pieces, lps, tops)
            ]}
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs, "finish_reason": reason}
        return self._envelope("chatcmpl", "chat.completion", [choice], len(ids), len(pieces))

    def _envelope(self, prefix: str, kind: str, choices: list, prompt_tokens: int, completion_tokens: int) -> dict:
        return {
            "id": f"{prefix}-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": self.model.name,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model.name, "object": "model", "created": 0,
                                            "owned_by": "flexrl", "max_model_len": self.model.context_tokens}]}

    def health(self) -> dict:
        batcher = self.model.batcher
        return {"status": "ok", "model": self.model.name, "batches": batcher.batches, "requests": batcher.jobs}


def _chat_logprob(piece: str, logprob: float) -> dict:
    return {"token": piece, "logprob": _finite(logprob), "bytes": list(piece.encode())}


def _finite(value: float | None) -> float | None:
    """JSON has no infinities: clamp them to the most negative float a client can parse."""
    if value is None or math.isfinite(value):
        return value
    return -3.4e38


def _error(status: int, message: str, param: str | None = None):
    from fastapi.responses import JSONResponse

    kind = "authentication_error" if status == 401 else "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}}, status_code=status)


def _import_fastapi():
    try:
        import fastapi
        import uvicorn
    except ImportError as err:
        raise ImportError(f"flexrl serve needs FastAPI and uvicorn ({err.name} is missing): {SERVE_EXTRA}") from err
    return fastapi, uvicorn


def build_app(model: ServedModel, config: ServeConfig):
    """The FastAPI application serving ``model`` under ``config``'s limits and API key.

    Raises:
        ImportError: FastAPI is not installed; the message names the extra.
    """
    fastapi, _ = _import_fastapi()
    from starlette.exceptions import HTTPException

    app = fastapi.FastAPI(title="flexrl serve", docs_url=None, redoc_url=None, openapi_url=None)
    api = _Api(model, config)
    expected = f"Bearer {config.api_key}".encode() if config.api_key else None

    @app.middleware("http")
    async def check_key(request, call_next):
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
        return await call_next(request)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        return _error(exc.status_code, str(exc.detail))

    async def read_json(request) -> Any:
        limit = config.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _BadRequest(f"request body of {declared} bytes exceeds the limit of {limit}", status=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _BadRequest(f"request body exceeds the limit of {limit} bytes", status=413)
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _BadRequest(f"malformed JSON: {err}") from None

    def endpoint(handler: Callable):
        async def run(request):
            try:
                return await handler(await read_json(request))
            except _BadRequest as err:
                return _error(err.status, str(err), err.param)
            except (LLMError, ValueError) as err:
                logger.warning("request failed: %s", err)
                return _error(400, f"the model could not process this request: {err}")

        # FastAPI injects the request by annotation; set it as an object, since postponed
        # (string) annotations cannot name the lazily imported module.
        run.__annotations__ = {"request": fastapi.Request}
        return run

    app.post("/v1/completions")(endpoint(api.completions))
    app.post("/v1/chat/completions")(endpoint(api.chat))
    app.get("/v1/models")(api.models)
    app.get("/health")(api.health)
    return app


def serve(config: ServeConfig, on_ready: Callable[[str], None] | None = None) -> None:
    """Load the model and serve it until interrupted (Ctrl-C or SIGTERM).

    Args:
        config: what to serve and how; validated on construction.
        on_ready: called with the base URL (``http://host:port``) once connections are accepted.

    Raises:
        ImportError: FastAPI or uvicorn is missing; the message names the extra.
        ModelLoadError: the model cannot be loaded.
        OSError: the address cannot be bound.
    """
    _, uvicorn = _import_fastapi()
    model = ServedModel(config)
    try:
        app = build_app(model, config)
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.host, config.port))
        sock.listen(128)  # connections made from now on wait in the backlog until uvicorn serves them
        port = sock.getsockname()[1]
        host = f"[{config.host}]" if family == socket.AF_INET6 else config.host
        if on_ready is not None:
            on_ready(f"http://{host}:{port}")
        server = uvicorn.Server(uvicorn.Config(app, log_level=config.log_level, access_log=False))
        server.run(sockets=[sock])
    finally:
        model.close()


def _parse_args(argv: list[str] | None) -> ServeConfig:
    p = argparse.ArgumentParser(prog="python -m flexrl.llm.server", description="Serve a model through an OpenAI-compatible API.")
    p.add_argument("--model", default=None, help="Hugging Face directory or .gguf file (default: embedded SmolLM2-135M)")
    p.add_argument("--model-cache", default=None, help="dequantised GGUF cache directory")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0: any free port")
    p.add_argument("--api-key", default=os.environ.get("FLEXRL_SERVE_API_KEY"),
                   help="required for a non-loopback --host (default: $FLEXRL_SERVE_API_KEY)")
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--batch-wait-ms", type=float, default=5.0)
    p.add_argument("--log-level", default="warning")
    a = p.parse_args(argv)
    return ServeConfig(
        model=a.model, model_cache=a.model_cache, dtype=a.dtype, device=a.device, threads=a.threads, host=a.host,
        port=a.port, api_key=a.api_key, served_model_name=a.served_model_name, max_batch=a.max_batch,
        batch_wait_ms=a.batch_wait_ms, log_level=a.log_level,
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    try:
        config = _parse_args(argv)
        serve(config, on_ready=lambda url: print(f"flexrl serve: listening on {url}", flush=True))
    except (ValueError, ImportError, LLMError, OSError) as err:
        print(f"flexrl serve: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

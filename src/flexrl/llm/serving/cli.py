"""The ``flexrl serve`` command line: flags to :class:`ServeConfig`, then the server until interrupted.

``flexrl serve --port 0`` picks a free port; the address is printed (``flexrl serve: listening on
http://127.0.0.1:PORT``) once connections are accepted. Bad flags, an unavailable device, a model that
does not load or an address that cannot be bound are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from dataclasses import fields
from typing import Callable

from flexrl.llm.base import LLMError
from flexrl.llm.config import DTYPES
from flexrl.llm.serving.config import LOG_LEVELS, ServeConfig, flag

SERVE_EXTRA = "pip install 'flexrl[serve]'"
PROG = "flexrl serve"
_DEFAULTS = {f.name: f.default for f in fields(ServeConfig)}
_LIMITS = {
    "max_batch": "most requests moved on per micro-batch",
    "batch_wait_ms": "how long an idle server waits for more requests before a micro-batch",
    "max_prompt_tokens": "longest prompt (or rendered chat) accepted, in tokens",
    "max_new_tokens": "largest max_tokens accepted",
    "max_prompts": "most prompts, choices or messages in one request",
    "max_request_tokens": "most tokens one request may need: its prompts plus what it may generate",
    "max_request_bytes": "largest request body accepted",
    "slice_tokens": "most new tokens one request feeds per micro-batch (bigger ones run in slices between others)",
    "decode_steps": "most tokens one request generates per micro-batch",
    "prefix_cache_tokens": "token budget of the automatic prefix cache",
}


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with a usage error as one ValueError line (``--help`` still prints every flag)."""

    def error(self, message: str):
        raise ValueError(f"{message} (see `{PROG} --help`)")


def parse_args(argv: list[str] | None) -> ServeConfig:
    """The :class:`ServeConfig` of a command line (``--help`` prints every flag and exits).

    Raises:
        ValueError: a setting is out of range, the device is unavailable, or a public address has no key.
    """
    p = _ArgumentParser(prog=PROG, description="Serve a model through an OpenAI-compatible API "
                                "(completions, chat, echo and log-probs, structured-output choice, streaming).")
    p.add_argument("--model", default=None, help="Hugging Face directory or .gguf file (default: embedded SmolLM2-135M)")
    p.add_argument("--gguf-file", default=None, help="a .gguf file inside --model")
    p.add_argument("--model-cache", default=None, help="dequantised GGUF cache directory")
    p.add_argument("--dtype", default=_DEFAULTS["dtype"], choices=DTYPES)
    p.add_argument("--device", default=_DEFAULTS["device"], help="auto (cuda, mps, then cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--host", default=_DEFAULTS["host"])
    p.add_argument("--port", type=int, default=_DEFAULTS["port"], help="0: any free port")
    p.add_argument("--api-key", default=os.environ.get("FLEXRL_SERVE_API_KEY"),
                   help="required for a non-loopback --host (default: $FLEXRL_SERVE_API_KEY)")
    p.add_argument("--served-model-name", default=None, help="the model id clients send (default: the file name)")
    for name, text in _LIMITS.items():
        p.add_argument(flag(name), type=type(_DEFAULTS[name]), default=_DEFAULTS[name],
                       help=f"{text} (default: {_DEFAULTS[name]})")
    p.add_argument("--log-level", default=_DEFAULTS["log_level"], choices=LOG_LEVELS, help="uvicorn's log level")
    args = vars(p.parse_args(argv))
    return ServeConfig(**args)


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
    try:
        import uvicorn

        from flexrl.llm.serving.router import build_app
    except ImportError as err:
        raise ImportError(f"flexrl serve needs FastAPI and uvicorn ({err.name} is missing): {SERVE_EXTRA}") from err
    from flexrl.llm.serving.engine import ServedModel
    from flexrl.llm.serving.serving import OpenAIServing

    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:  # bound before the model loads, so a busy port is one line at once, not after the load
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.host, config.port))
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {config.host}:{config.port}: {err.strerror or err}; "
                      "choose another --port, or 0 for any free port") from None
    try:
        model = ServedModel(config)
    except BaseException:
        sock.close()
        raise
    try:
        app = build_app(OpenAIServing(model, config), config)
        sock.listen(128)  # connections made from now on wait in the backlog until uvicorn serves them
        port = sock.getsockname()[1]
        host = f"[{config.host}]" if family == socket.AF_INET6 else config.host
        if on_ready is not None:
            on_ready(f"http://{host}:{port}")
        server = uvicorn.Server(uvicorn.Config(app, log_level=config.log_level, access_log=False))
        server.run(sockets=[sock])
    finally:
        model.close()


def main(argv: list[str] | None = None) -> int:
    """The ``flexrl serve`` entry point; returns the exit status (2: bad input, one line on stderr)."""
    try:
        config = parse_args(argv)
        serve(config, on_ready=lambda url: print(f"{PROG}: listening on {url}", flush=True))
    except (ValueError, ImportError, LLMError, OSError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C (how a server is stopped) while loading or shutting down: not a crash
        print(f"{PROG}: stopped", file=sys.stderr)
        return 0
    return 0

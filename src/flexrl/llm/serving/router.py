"""The FastAPI application of ``flexrl serve``: routes, the API key, and one JSON error body for every error.

Every error a client can meet is an OpenAI-style body (``{"error": {"message", "type", "param",
"code"}}``): 400 for a body that is not JSON or breaks the request models or the limits, 401 for a
missing or wrong key, 403 for a request that may come from a web page (see :func:`build_app`), 404 for
an unknown model or path, 405 for a wrong method, 413 for a body over ``max_request_bytes``. A 500 (with
a JSON body, the traceback only in the server's log) means a bug. Needs the ``serve`` extra (FastAPI, uvicorn).
"""

from __future__ import annotations

import hmac
import logging
from typing import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from flexrl.llm.serving.config import ServeConfig, flag, is_loopback
from flexrl.llm.serving.protocol import (
    ChatCompletionRequest, CompletionRequest, ErrorResponse, RequestError, parse_request,
)
from flexrl.llm.serving.serving import OpenAIServing
from flexrl.local_http import cross_site_refusal

logger = logging.getLogger(__name__)

ROUTES = ("POST /v1/completions", "POST /v1/chat/completions", "GET /v1/models", "GET /health")


def error_response(status: int, message: str, param: str | None = None) -> JSONResponse:
    """An OpenAI-style error body with ``status``."""
    return JSONResponse(ErrorResponse.of(status, message, param).model_dump(), status_code=status)


def build_app(serving: OpenAIServing, config: ServeConfig) -> FastAPI:
    """The application serving ``serving``'s endpoints under ``config``'s API key and body limit.

    Web pages are kept out (403, see :mod:`flexrl.local_http`): on a loopback address, a request whose
    ``Host`` is not a loopback host (DNS rebinding); without an API key, a request whose ``Origin`` is not
    a loopback origin. With a key, every request must carry it (401), so a page that does knows the key.
    """
    app = FastAPI(title="flexrl serve", docs_url=None, redoc_url=None, openapi_url=None)
    expected = f"Bearer {config.api_key}".encode() if config.api_key else None
    loopback = is_loopback(config.host)

    @app.middleware("http")
    async def check_caller(request: Request, call_next):
        why = cross_site_refusal(request.headers.getlist("origin"), request.headers.getlist("host"),
                                 check_origin=expected is None, check_host=loopback)
        if why is not None:
            return error_response(403, why)
        if expected is not None and not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
            return error_response(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
        return await call_next(request)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        path = request.url.path[:100]
        if exc.status_code == 404:
            return error_response(404, f"no route {path}; this server has {', '.join(ROUTES)}")
        if exc.status_code == 405:
            return error_response(405, f"{request.method} {path} is not allowed; this server has {', '.join(ROUTES)}")
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):  # a backstop: endpoints answer their own errors
        logger.error("unhandled error", exc_info=exc)
        return error_response(500, f"internal error: {type(exc).__name__}")

    async def read_body(request: Request) -> bytes:
        limit = config.max_request_bytes
        hint = f"this server allows at most max_request_bytes={limit} (raise it with flexrl serve {flag('max_request_bytes')})"
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RequestError(f"request body of {declared} bytes; {hint}", status=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise RequestError(f"request body over {limit} bytes; {hint}", status=413)
        return bytes(body)

    def endpoint(handler: Callable[[bytes], Awaitable[BaseModel | object]]):
        async def run(request: Request) -> Response:
            try:
                result = await handler(await read_body(request))
            except RequestError as err:
                return error_response(err.status, str(err), err.param)
            except Exception as err:  # noqa: BLE001  (a bug: the client gets JSON, the log the traceback)
                logger.exception("request failed")
                return error_response(500, f"internal error: {type(err).__name__}: {err}")
            if isinstance(result, BaseModel):
                return Response(result.model_dump_json(), media_type="application/json")
            return StreamingResponse(result, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

        return run

    async def completions(body: bytes):
        return await serving.completions(parse_request(body, CompletionRequest))

    async def chat(body: bytes):
        return await serving.chat(parse_request(body, ChatCompletionRequest))

    app.post("/v1/completions")(endpoint(completions))
    app.post("/v1/chat/completions")(endpoint(chat))
    app.get("/v1/models")(lambda: serving.models().model_dump())
    app.get("/health")(serving.health)
    return app

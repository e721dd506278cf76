"""``POST /instruction`` on 127.0.0.1: the request model, the answer to a request, and the run's app and server.

Every request gets a JSON answer, never a traceback: 202 with the instruction as it will be used, or a 4xx
whose ``error`` is one line naming the bad value and what is allowed. A refused instruction also reaches
the run as a note for its event log. :func:`answer_post` knows nothing of the server. The run's app (FastAPI,
served by uvicorn on a thread: :class:`InstructionServer`) carries these routes and, with ``ui=true``,
the control room's (:mod:`flexrl.ui`).

Two content types are accepted: ``text/plain`` (the body is the instruction) and ``application/json``
(an :class:`InstructionRequest`), e.g. ``curl -H 'Content-Type: text/plain' -d 'Follow the ball' URL``.
The server answers 403 to a request that may come from a web page (an ``Origin`` that is not a loopback
origin, or a ``Host`` that is not a loopback host: :func:`~flexrl.local_http.cross_site_refusal`); the run
hears nothing of it.
"""

from __future__ import annotations

import asyncio
import io
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from flexrl import local_http
from flexrl.agent.intents import IntentChecker
from flexrl.agent.sanitise import Arrival, sanitise
from flexrl.web.guard import Guard, check_exposure
from flexrl.web.server import AppServer

HOST = "127.0.0.1"
MAX_BODY_BYTES = 64_000
MAX_INTENT_CHARS = 200
CONTENT_TYPES = ("text/plain", "application/json")
READ_TIMEOUT_S = 10.0
"""A client that stops sending mid-request is answered 408 (or dropped) after this long, not waited on."""
JSON_FORM = '{"text": "...", "intent": "go_to(ball)" (optional)}'


class InstructionRequest(BaseModel):
    """The JSON body of ``POST /instruction``.

    Attributes:
        text: the instruction (cleaned like any other source: over MAX_CHARS it is truncated, with a note).
        intent: the skill call that fulfils it, e.g. ``avoid(ball)`` (for the oracle and the verdict);
            it must be valid in the arena, or the request is refused.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    text: str = Field(min_length=1, max_length=MAX_BODY_BYTES)
    intent: Optional[str] = Field(default=None, min_length=1, max_length=MAX_INTENT_CHARS)


@dataclass(frozen=True)
class Reply:
    """An answer to a request, and what the run receives from it.

    Attributes:
        status: HTTP status code.
        body: the JSON body.
        arrival: the accepted instruction, or a note on a refused one (None: the run hears nothing).
    """

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    arrival: Arrival | None = None


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _refuse(status: int, error: str) -> Reply:
    error = " ".join(error.split())  # one line, whatever the parts held
    return Reply(status, {"accepted": False, "error": error}, Arrival(None, f"http instruction refused ({status}): {error}"))


def header_refusal(content_type: str | None, content_length: str | None) -> Reply | None:
    """The refusal of a ``POST /instruction`` for its headers alone, or None when its body may be read."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in CONTENT_TYPES:
        return _refuse(415, f"Content-Type {_short(content_type)}; allowed: {', '.join(CONTENT_TYPES)}")
    if content_length is None:
        return _refuse(411, f"Content-Length is required; allowed: 0 to {MAX_BODY_BYTES} bytes")
    if not re.fullmatch(r"\s*[0-9]+\s*", content_length):
        return _refuse(400, f"Content-Length {_short(content_length)}; allowed: 0 to {MAX_BODY_BYTES} bytes")
    length = int(content_length)
    if length > MAX_BODY_BYTES:
        return _refuse(413, f"body of {length} bytes; allowed: at most {MAX_BODY_BYTES}")
    return None


def answer_post(content_type: str | None, content_length: str | None, read: Callable[[int], bytes],
                intents: IntentChecker | None = None) -> Reply:
    """The answer to ``POST /instruction`` with these headers, reading the body with ``read(n)``.

    Args:
        content_type: the Content-Type header (None: missing).
        content_length: the Content-Length header (None: missing; repeated headers joined by commas).
        read: reads up to n bytes of the body.
        intents: checks the request's intent (None: any intent is passed on).

    Returns:
        202 with the cleaned instruction; 400 (bad body, length or intent), 411 (no length), 413 (too big),
        415 (content type); the body's ``error`` names the bad value and what is allowed.
    """
    refused = header_refusal(content_type, content_length)
    if refused is not None:
        return refused
    length = int(content_length)
    body = read(length)
    if len(body) < length:
        return _refuse(400, f"body ended after {len(body)} of the {length} bytes that Content-Length announced")
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "text/plain":
        text, intent = body, None
    else:
        try:
            request = InstructionRequest.model_validate_json(body)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            return _refuse(400, f"{where}: {first['msg']}; expected {JSON_FORM}")
        text, intent = request.text, request.intent
    if intent is not None and intents is not None:
        try:
            intents.parse(intent)
        except ValueError as err:
            return _refuse(400, f"intent {_short(intent)}: {err}")
    arrival = sanitise(text, "http", intent)
    if arrival.instruction is None:
        return Reply(400, {"accepted": False, "error": arrival.note}, arrival)
    ins = arrival.instruction
    return Reply(202, {"accepted": True, "text": ins.text, "intent": ins.intent, "note": arrival.note}, arrival)


class BodyError(Exception):
    """A request body that cannot be read: its status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, at most ``limit`` bytes, arriving within :data:`READ_TIMEOUT_S`.

    Raises:
        BodyError: 413 past ``limit`` (whatever Content-Length said), 408 when it stops arriving.
    """
    chunks, size = [], 0

    async def pull() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyError(413, f"body of more than {limit} bytes; allowed: at most {limit}")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(pull(), READ_TIMEOUT_S)
    except (TimeoutError, asyncio.TimeoutError):
        raise BodyError(408, f"the body did not arrive within {READ_TIMEOUT_S:g} s") from None
    return b"".join(chunks)


def reply_response(reply: Reply) -> JSONResponse:
    """A reply as a JSON response (a refusal closes the connection: its unread body is not the next request)."""
    return JSONResponse(reply.body, reply.status, headers={"Connection": "close"} if reply.status >= 400 else None)


def add_instruction_routes(app: FastAPI, accept: Callable[[Arrival], None], intents: IntentChecker | None = None) -> None:
    """``GET /health`` and ``POST /instruction`` on ``app``; every reply (and a note on a refusal) goes to ``accept``."""

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/instruction")
    async def instruction(request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type")
        lengths = request.headers.getlist("content-length")
        content_length = ",".join(lengths) if lengths else None
        reply = header_refusal(content_type, content_length)
        if reply is None:
            try:
                body = await read_body(request)
                reply = answer_post(content_type, content_length, io.BytesIO(body).read, intents)
            except BodyError as err:
                reply = _refuse(err.status, str(err))
        if reply.arrival is not None:
            accept(reply.arrival)
        return reply_response(reply)


def build_app(accept: Callable[[Arrival], None] | None = None, intents: IntentChecker | None = None,
              loopback: bool = True, token: str | None = None) -> FastAPI:
    """A run's app: JSON errors of one line, the guard (:mod:`flexrl.web.guard`) and, given ``accept``, the
    instruction routes. More routes (the control room's) may be added before it is served."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if err.status_code == 404:
            why = f"no route {request.method} {_short(request.url.path)}; allowed: GET /health, POST /instruction and the page's routes"
        elif err.status_code == 405:
            allowed = (err.headers or {}).get("allow", "")
            why = f"method {request.method} not allowed on {_short(request.url.path)}; allowed: {allowed or 'another method'}"
        else:
            why = " ".join(str(err.detail).split())
        return JSONResponse({"accepted": False, "error": why}, err.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ())) or "request"
        return JSONResponse({"accepted": False, "error": " ".join(f"{where}: {first.get('msg')}".split())}, 400)

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception) -> JSONResponse:  # no request may take the run down
        return JSONResponse({"accepted": False, "error": f"internal error while answering: {type(err).__name__}"}, 500)

    if accept is not None:
        add_instruction_routes(app, accept, intents)
    app.add_middleware(Guard, loopback=loopback, token=token)
    return app


class InstructionServer:
    """Serves a run's app (``POST /instruction``, ``GET /health``, and whatever ``extend`` adds) from a
    background thread, with uvicorn.

    Requests from web pages (a foreign ``Origin``, or a ``Host`` other than a loopback host) get 403.

    Args:
        port: TCP port (0: any free port; see :attr:`address` for the one chosen).
        accept: receives every accepted instruction, and a note for every refused one (thread-safe).
        intents: checks request intents (None: any intent is passed on).
        host: the address to bind; off loopback ``token`` is required.
        token: the token every request must carry (None: none).
        extend: adds routes to the app before it is served (the control room).

    Raises:
        ValueError: one line, when the port is out of range or cannot be bound (e.g. already in use), or
            the host is not a loopback address and no token is given.
    """

    def __init__(self, port: int, accept: Callable[[Arrival], None], intents: IntentChecker | None = None,
                 host: str = HOST, token: str | None = None, extend: Callable[[FastAPI], None] | None = None) -> None:
        local_http.check_port(port, "http_port")
        check_exposure(host, token)
        app = build_app(accept, intents, loopback=local_http.is_loopback(host), token=token)
        if extend is not None:
            extend(app)
        self._server = AppServer(app, host, port, "http_port")

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) being served."""
        return self._server.host, self._server.port

    @property
    def base_url(self) -> str:
        """The app's base URL, e.g. ``http://127.0.0.1:8765``."""
        return self._server.url

    @property
    def url(self) -> str:
        """Where to post instructions."""
        return f"{self._server.url}/instruction"

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.close()

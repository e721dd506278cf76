"""``POST /instruction`` on 127.0.0.1: the request model, the answer to a request, and a small stdlib server.

Every request gets a JSON answer, never a traceback: 202 with the instruction as it will be used, or a 4xx
whose ``error`` is one line naming the bad value and what is allowed. A refused instruction also reaches
the run as a note for its event log. :func:`answer_post` knows nothing of the server, so another server
(FastAPI) can give the same answers.

Two content types are accepted: ``text/plain`` (the body is the instruction) and ``application/json``
(an :class:`InstructionRequest`), e.g. ``curl -H 'Content-Type: text/plain' -d 'Follow the ball' URL``.
The server answers 403 to a request that may come from a web page (an ``Origin`` that is not a loopback
origin, or a ``Host`` that is not a loopback host: :func:`~flexrl.local_http.cross_site_refusal`); the run
hears nothing of it.
"""

from __future__ import annotations

import errno
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flexrl import local_http
from flexrl.agent.intents import IntentChecker
from flexrl.agent.sanitise import Arrival, sanitise

HOST = "127.0.0.1"
MAX_BODY_BYTES = 64_000
MAX_INTENT_CHARS = 200
CONTENT_TYPES = ("text/plain", "application/json")
READ_TIMEOUT_S = 10.0
"""A client that stops sending mid-request is answered 408 (or dropped) after this long, not waited on."""
LINGER_S = 0.2
"""After refusing a request, what the client still sends is read (and dropped) this long, so that closing
the connection with unread data does not reset it before the client has read the answer."""
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
    body = read(length)
    if len(body) < length:
        return _refuse(400, f"body ended after {len(body)} of the {length} bytes that Content-Length announced")
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


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A connection broken by the client is the client's business: no traceback on the live display."""


def _handler(accept: Callable[[Arrival], None], intents: IntentChecker | None) -> type[BaseHTTPRequestHandler]:
    class InstructionHandler(BaseHTTPRequestHandler):
        timeout = READ_TIMEOUT_S
        server_version = "flexrl"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer(lambda: Reply(200, {"status": "ok"}) if self.path == "/health"
                         else Reply(404, {"error": f"no route GET {_short(self.path)}; allowed: GET /health, POST /instruction"}))

        def do_POST(self) -> None:  # noqa: N802
            self._answer(self._post)

        def _post(self) -> Reply:
            if self.path != "/instruction":
                return Reply(404, {"error": f"no route POST {_short(self.path)}; allowed: GET /health, POST /instruction"})
            lengths = self.headers.get_all("Content-Length")
            return answer_post(self.headers.get("Content-Type"), ",".join(lengths) if lengths else None,
                               self.rfile.read, intents)

        def _answer(self, make: Callable[[], Reply]) -> None:
            """Never raises: whatever goes wrong becomes a JSON reply (and a note for the run).

            A request that may come from a web page is refused before its body is read, and the run hears
            nothing of it: a page must not be able to fill the event log either.
            """
            try:
                why = local_http.cross_site_refusal(self.headers.get_all("Origin") or [], self.headers.get_all("Host") or [])
                reply = Reply(403, {"error": why}) if why is not None else make()
            except TimeoutError:
                reply = _refuse(408, f"the body did not arrive within {READ_TIMEOUT_S:g} s")
            except Exception as err:  # noqa: BLE001 (no request may take the server or the run down)
                reply = _refuse(500, f"internal error while answering: {type(err).__name__}")
            if reply.arrival is not None:
                accept(reply.arrival)
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            data = json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if reply.status >= 400:  # an unread or partial body must not be taken for the next request
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(data)
                if reply.status >= 400:
                    self._linger()
            except OSError:  # the client went away
                self.close_connection = True

        def _linger(self) -> None:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_S)
            drained = 0
            try:
                while drained <= MAX_BODY_BYTES and (chunk := self.connection.recv(65536)):
                    drained += len(chunk)
            except TimeoutError:
                pass

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """http.server's own errors (bad request line, unknown method) as JSON too."""
            self._send(Reply(code, {"error": message or HTTPStatus(code).phrase}))

        def log_message(self, *args) -> None:  # keep the live display clean
            pass

    return InstructionHandler


class InstructionServer:
    """Serves ``POST /instruction`` and ``GET /health`` on 127.0.0.1 from a background thread.

    Requests from web pages (a foreign ``Origin``, or a ``Host`` other than a loopback host) get 403.

    Args:
        port: TCP port (0: any free port; see :attr:`address` for the one chosen).
        accept: receives every accepted instruction, and a note for every refused one (thread-safe).
        intents: checks request intents (None: any intent is passed on).

    Raises:
        ValueError: one line, when the port is out of range or cannot be bound (e.g. already in use).
    """

    def __init__(self, port: int, accept: Callable[[Arrival], None], intents: IntentChecker | None = None) -> None:
        local_http.check_port(port, "http_port")
        try:
            self._server = _QuietServer((HOST, port), _handler(accept, intents))
        except OSError as err:
            reason = "address already in use" if err.errno == errno.EADDRINUSE else (err.strerror or str(err)).lower()
            raise ValueError(f"http_port={port}: {reason}; choose another port or 0") from None
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) being served."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """Where to post instructions."""
        return f"http://{self.address[0]}:{self.address[1]}/instruction"

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()

"""The instruction channel: the initial instruction, a schedule, and live input (stdin, HTTP on 127.0.0.1).

Instructions are only ever text for the prompt: nothing in one is executed or used as a path. Bad input
(empty, huge, binary, control characters) is cleaned or dropped, with a note for the event log.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import unicodedata
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO

from flexrl.planners.base import Instruction

MAX_CHARS = 500
"""Longer instructions are truncated: the prompt stays small and the decision fast."""
MAX_BODY_BYTES = 64_000


@dataclass(frozen=True)
class Arrival:
    """An instruction as it arrived, with what cleaning it needed."""

    instruction: Instruction | None
    note: str | None


def sanitise(raw: str | bytes, source: str, intent: str | None = None) -> Arrival:
    """Clean raw input into an instruction, or drop it with a note.

    Control and format characters are removed, whitespace collapsed, text over MAX_CHARS truncated.
    Input that is empty after cleaning, or mostly undecodable bytes, is dropped.
    """
    notes = []
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", errors="replace")
        if text.count("\ufffd") > max(3, len(text) // 4):
            return Arrival(None, f"dropped {len(raw)} bytes of binary input from {source}")
    else:
        text = raw
    cleaned = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in " \t\n")
    if len(cleaned) != len(text):
        notes.append(f"removed {len(text) - len(cleaned)} control characters")
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    if not cleaned:
        return Arrival(None, f"dropped an empty instruction from {source}")
    if len(cleaned) > MAX_CHARS:
        notes.append(f"truncated from {len(cleaned)} to {MAX_CHARS} characters")
        cleaned = cleaned[:MAX_CHARS]
    return Arrival(Instruction(cleaned, intent, source), "; ".join(notes) or None)


def parse_schedule_item(item: str) -> tuple[int, str]:
    """``"300:Avoid the ball!"`` -> (300, "Avoid the ball!").

    Raises:
        ValueError: one line naming the bad item and the expected form.
    """
    step, sep, text = item.partition(":")
    if not sep or not step.strip().isdigit():
        raise ValueError(f"schedule item {item!r} is not of the form STEP:TEXT (e.g. '300:Avoid the ball!')")
    return int(step), text


class InstructionChannel:
    """Collects instructions from every source; the runner polls it once per control step.

    Args:
        initial: the run's first instruction.
        schedule: (step, instruction) pairs, delivered at that step.
        stdin: a stream whose lines become instructions (read on a background thread).
        http_port: serve ``POST /instruction`` on 127.0.0.1:port (0 picks a free port; None: no server).
    """

    def __init__(
        self,
        initial: Instruction | None = None,
        schedule: list[tuple[int, Instruction]] | None = None,
        stdin: TextIO | None = None,
        http_port: int | None = None,
    ) -> None:
        self._pending: list[tuple[int, Instruction]] = sorted(schedule or [], key=lambda p: p[0])
        self._live: queue.Queue[Arrival] = queue.Queue()
        self._initial = initial
        self._server: ThreadingHTTPServer | None = None
        if stdin is not None:
            threading.Thread(target=self._read_lines, args=(stdin,), daemon=True).start()
        if http_port is not None:
            self._server = ThreadingHTTPServer(("127.0.0.1", http_port), _handler(self._live))
            threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def http_address(self) -> tuple[str, int] | None:
        """(host, port) of the HTTP endpoint, if serving."""
        return self._server.server_address[:2] if self._server else None

    def submit(self, raw: str | bytes, source: str = "api", intent: str | None = None) -> None:
        """Queue an instruction from code (thread-safe)."""
        self._live.put(sanitise(raw, source, intent))

    def _read_lines(self, stream: TextIO) -> None:
        for line in stream:
            self._live.put(sanitise(line, "stdin"))

    def poll(self, step: int) -> list[Arrival]:
        """Everything that arrived by ``step``: the initial instruction, due scheduled ones, live input."""
        out = []
        if self._initial is not None:
            out.append(Arrival(self._initial, None))
            self._initial = None
        while self._pending and self._pending[0][0] <= step:
            out.append(Arrival(self._pending.pop(0)[1], None))
        while True:
            try:
                out.append(self._live.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """Stop the HTTP server, if any."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler(sink: queue.Queue) -> type[BaseHTTPRequestHandler]:
    class InstructionHandler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._reply(200, {"status": "ok"}) if self.path == "/health" else self._reply(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/instruction":
                return self._reply(404, {"error": f"no route {self.path}; use POST /instruction"})
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                return self._reply(413, {"error": f"body of {length} bytes; at most {MAX_BODY_BYTES}"})
            body = self.rfile.read(length)
            intent = None
            if "json" in (self.headers.get("Content-Type") or ""):
                try:
                    payload = json.loads(body)
                    body, intent = str(payload["text"]), payload.get("intent")
                except (ValueError, KeyError, TypeError):
                    return self._reply(400, {"error": 'JSON body must be {"text": "...", "intent": optional}'})
            arrival = sanitise(body, "http", intent)
            sink.put(arrival)
            self._reply(202 if arrival.instruction else 400, {"accepted": arrival.instruction is not None, "note": arrival.note})

        def log_message(self, *args) -> None:  # keep the live display clean
            pass

    return InstructionHandler

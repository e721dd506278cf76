"""Serve an ASGI app with uvicorn from a background thread: bind first (a busy port is one line at once)."""

from __future__ import annotations

import errno
import json
import socket
import threading
import time

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from flexrl import local_http

SHUTDOWN_S = 2.0
"""How long open responses (e.g. a live stream) may take to end when the server stops."""


class JSONErrorsH11(H11Protocol):
    """uvicorn's h11 protocol, answering a request it cannot parse (``Content-Length: -1`` or ``abc``, a
    garbled request line, headers too large) with a JSON 4xx naming h11's reason in one line, and no log
    line (the live display stays clean), instead of a plain "Invalid HTTP request received."."""

    def handle_events(self) -> None:
        parse = self.conn.next_event

        def next_event():
            try:
                return parse()
            except h11.RemoteProtocolError as err:
                self._parse_error = err
                raise

        self.conn.next_event = next_event
        try:
            super().handle_events()
        finally:
            del self.conn.next_event

    def send_400_response(self, msg: str) -> None:
        err = getattr(self, "_parse_error", None)
        status = getattr(err, "error_status_hint", 400) if err is not None else 400
        reason = " ".join(str(err or msg).split())[:200] or "unparseable request"
        data = json.dumps({"accepted": False, "error": f"bad HTTP request: {reason}"}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        try:
            self.transport.write(self.conn.send(h11.Response(status_code=status, headers=headers)))
            self.transport.write(self.conn.send(h11.Data(data=data)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:  # the state machine cannot answer any more: just close
            pass
        self.transport.close()


class AppServer:
    """An app served on ``host:port`` from a daemon thread until :meth:`close`.

    Args:
        app: the ASGI app.
        host: the address to bind (127.0.0.1 unless the app is guarded by a token).
        port: TCP port (0: any free port; :attr:`port` tells which).
        setting: the setting's name for messages (e.g. ``http_port`` or ``ui.port``).

    Raises:
        ValueError: one line, when the port is out of range or cannot be bound (e.g. already in use).
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, setting: str = "port") -> None:
        local_http.check_port(port, setting)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self._sock.listen(128)
        except OSError as err:
            self._sock.close()
            reason = "address already in use" if err.errno == errno.EADDRINUSE else (err.strerror or str(err)).lower()
            raise ValueError(f"{setting}={port}: {reason}; choose another port or 0") from None
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(app, http=JSONErrorsH11, log_level="error", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=SHUTDOWN_S, timeout_keep_alive=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True,
                                        name=f"flexrl-http-{self.port}")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:8765``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        """Stop serving (open streams get :data:`SHUTDOWN_S` to end) and free the port."""
        self._server.should_exit = True
        self._thread.join(timeout=SHUTDOWN_S + 3)
        self._sock.close()

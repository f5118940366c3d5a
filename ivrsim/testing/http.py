"""Servers for tests: fixed bytes on loopback (over HTTP, or raw over TCP), or a small JSON app, for as long
as a ``with`` lasts."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _QuietHandler(BaseHTTPRequestHandler):
    """A handler that logs nothing and answers with one call."""

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler], name: str) -> Iterator[str]:
    """``handler`` on a free loopback port in a thread; yields the base URL, shuts the server down after."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve_bytes(body: bytes, content_type: str = "application/octet-stream", gate: threading.Event | None = None) -> Iterator[str]:
    """Serve ``body`` to every GET on a free loopback port; yields the base URL (any path works).
    ``gate``: each answer waits until it is set (a server that is slow until the test says otherwise)."""

    class Handler(_QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            if gate is not None:
                gate.wait(timeout=120)
            self.reply(200, content_type, body)

    with _serving(Handler, "serve-bytes") as url:
        yield url


@contextmanager
def serve_raw(reply: bytes) -> Iterator[str]:
    """A loopback TCP server that answers every connection with ``reply`` (any bytes, valid HTTP or not)
    once the request's headers have arrived, then closes it; yields ``http://127.0.0.1:<port>``."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer(connection: socket.socket) -> None:
        with connection:
            connection.settimeout(10.0)
            received = b""
            with suppress(OSError):
                while b"\r\n\r\n" not in received:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    received += chunk
                connection.sendall(reply)

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # the listener was closed: the ``with`` has ended
                return
            threading.Thread(target=answer, args=(connection,), name="serve-raw-connection", daemon=True).start()

    threading.Thread(target=serve, name="serve-raw", daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (closing alone does not, on Linux)
        listener.close()


@dataclass
class JsonApp:
    """A JSON app on loopback (the user's app a flow's webhook node asks): ``routes`` maps a path to
    ``answer(body) -> (status, JSON value)``; an unknown path answers 500. ``requests`` keeps what it was sent."""

    routes: dict[str, Callable[[Any], tuple[int, Any]]]
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def serve_json(routes: dict[str, Callable[[Any], tuple[int, Any]]]) -> Iterator[JsonApp]:
    """``JsonApp`` of ``routes`` answering POSTs (JSON bodies) on a free loopback port for as long as the ``with`` lasts."""
    app = JsonApp(routes)

    class Handler(_QuietHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            payload = json.loads(body) if body else None
            app.requests.append({"path": self.path, "json": payload})
            route = app.routes.get(self.path)
            status, answer = route(payload) if route is not None else (500, {"error": "no such route"})
            self.reply(status, "application/json", json.dumps(answer).encode())

    with _serving(Handler, "serve-json") as url:
        app.url = url
        yield app

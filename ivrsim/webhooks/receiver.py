"""A webhook receiver on loopback: collects what ivrsim posts, checking signatures when given the secret.

Used by ``ivrsim demo`` and handy in tests of your own; ``samples/webhook_receiver.py`` runs one that
prints what arrives.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ivrsim.client import verify_signature
from ivrsim.webhooks.dispatcher import SIGNATURE_HEADER


@dataclass
class ReceivedWebhook:
    path: str
    payload: dict[str, Any]
    signature_ok: bool | None
    received_at: float = field(default_factory=time.time)


class WebhookReceiver:
    """Listens on ``host`` (port 0: a free one) in a thread; a context manager. ``url`` is its address."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, secret: str | None = None) -> None:
        self.secret = secret
        self.received: list[ReceivedWebhook] = []
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: ivrsim reuses its connections

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    payload = json.loads(body)
                except ValueError:
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                signature = self.headers.get(SIGNATURE_HEADER)
                ok = verify_signature(receiver.secret, signature, body) if receiver.secret and signature else None
                with receiver._lock:
                    receiver.received.append(ReceivedWebhook(self.path, payload, ok))
                    receiver._lock.notify_all()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, call_id: str, event_type: str, timeout_s: float = 15.0) -> bool:
        """Wait until a webhook of ``event_type`` for ``call_id`` has arrived."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not any(w.payload.get("call_id") == call_id and w.payload.get("type") == event_type for w in self.received):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

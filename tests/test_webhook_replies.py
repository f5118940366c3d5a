"""What a webhook receiver answers never costs ivrsim unbounded memory or time: an endless reply body, a
trickling one, or no reply at all. Real sockets on loopback, the real dispatcher and a real SQLite store."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from ivrsim.engine.events import CallEvent
from ivrsim.store.sqlite import Store
from ivrsim.webhooks.dispatcher import WebhookDispatcher, WebhookSettings

ATTEMPT_TIMEOUT_S = 1.5


@contextmanager
def misbehaving_receiver(kind: str) -> Iterator[tuple[str, list[int]]]:
    """``endless``: 200 and zeros forever (no Content-Length); ``trickle``: 200, Content-Length 100000, a
    byte every 0.5 s; ``silent``: reads the request and never answers. Yields (url, bytes sent per connection)."""
    listener = socket.create_server(("127.0.0.1", 0))
    sent: list[int] = []

    def answer(connection: socket.socket) -> None:
        with connection, suppress(OSError):
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                received += chunk
            count = 0
            if kind == "endless":
                connection.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                while count < 2_000_000_000:
                    connection.sendall(b"\0" * 65536)
                    count += 65536
                    sent[-1] = count
            elif kind == "trickle":
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                for _ in range(100000):
                    connection.sendall(b"x")
                    count += 1
                    sent[-1] = count
                    time.sleep(0.5)
            else:
                time.sleep(30)

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            sent.append(0)
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook", sent
    finally:
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()


def deliver_once(tmp_path: Path, url: str) -> tuple[dict, float]:
    """One event of one call to ``url``, one attempt; the delivery as logged, and the seconds it took."""

    async def scenario() -> tuple[dict, float]:
        store = Store(tmp_path / "hooks.sqlite3")
        store.insert_call("call_a", "+15550100001", "+15559876543", {"webhook_url": url})
        dispatcher = WebhookDispatcher(store, WebhookSettings(attempts=1, timeout_s=ATTEMPT_TIMEOUT_S, connect_timeout_s=ATTEMPT_TIMEOUT_S))
        started = time.monotonic()
        dispatcher.on_event(CallEvent("call_a", 1, "call.queued", 0.0, "2026-01-01T00:00:00.000Z", {"status": "queued"}))
        await asyncio.wait_for(dispatcher.drain(), timeout=60)
        took_s = time.monotonic() - started
        await dispatcher.close()
        [delivery] = store.deliveries(call_id="call_a")
        store.close()
        return delivery, took_s

    return asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["endless", "trickle"])
def test_a_reply_body_is_never_read_past_its_headers_unless_short(tmp_path: Path, kind: str) -> None:
    with misbehaving_receiver(kind) as (url, sent):
        delivery, took_s = deliver_once(tmp_path, url)
    # delivered within the attempt's deadline although the body never ends: the 200 was enough
    assert delivery["status"] == "delivered" and delivery["attempts"][0]["status_code"] == 200
    # an endless body was dropped with its connection: far less was pushed than the 2 GB it offered
    assert sent and sent[0] < 200_000_000


def test_a_receiver_that_never_answers_is_a_timed_out_attempt(tmp_path: Path) -> None:
    with misbehaving_receiver("silent") as (url, _):
        delivery, took_s = deliver_once(tmp_path, url)
    assert delivery["status"] == "failed"
    assert "timed out" in delivery["attempts"][0]["error"]
    assert took_s < ATTEMPT_TIMEOUT_S + 5  # the attempt's total deadline, not the receiver's 30 s

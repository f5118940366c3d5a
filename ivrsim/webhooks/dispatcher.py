"""Delivers call events to webhook URLs: in order per call, at least once, never holding up the call.

Which events go where (DESIGN.md, "Events and webhooks"): a call's ``webhook_url`` gets its status events
(``call.*``), ``recording.completed`` and ``transcription.completed``; ``gather.completed`` goes to the
gather's own ``webhook_url``, or the call's when it has none. The body is the event payload: ``call_id``
and ``type`` first, then the facts, then ``sequence``, ``call_time_s`` and ``timestamp``.

Each delivery is stored before it is attempted (so a restart resumes it) and every attempt is logged.
Attempts that fail on a connection error, a timeout or a 5xx are retried with exponential backoff
(``backoff_s``, doubling) up to ``attempts``; a 4xx answer is final. Deliveries of one call go one after
another, so they arrive in order; different calls deliver in parallel.

Signing (when a secret is configured): ``X-Ivrsim-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>" with the secret>``, as Stripe does; ``ivrsim.client.verify_signature`` checks it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ivrsim.engine.events import CallEvent, utc_now
from ivrsim.store.sqlite import Store

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Ivrsim-Signature"
#: Webhook requests in flight at once, across all calls. httpcore's pool slows down quadratically with the
#: number of requests queued on it, so hundreds of calls each posting at once would starve the server.
MAX_CONCURRENT_DELIVERIES = 16
#: Event types that go to the call's webhook_url (besides gather.completed, routed by its gather).
CALL_WEBHOOK_EVENTS = ("recording.completed", "transcription.completed")
#: The events that end a call.
FINAL_EVENTS = ("call.completed", "call.busy", "call.no-answer", "call.failed")


@dataclass(frozen=True)
class WebhookSettings:
    """Delivery limits. Times in seconds."""

    attempts: int = 5
    connect_timeout_s: float = 5.0
    timeout_s: float = 15.0
    backoff_s: float = 0.5
    secret: str | None = None


@dataclass
class _Delivery:
    """One queued delivery: what to send where, and the attempts made so far."""

    id: int
    event_type: str
    url: str
    body: bytes
    attempts: list[dict[str, Any]]


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookDispatcher:
    """Subscribes to an engine's events and delivers them; ``start`` resumes deliveries left pending."""

    def __init__(self, store: Store, settings: WebhookSettings | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.store = store
        self.settings = settings or WebhookSettings()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.timeout_s, connect=self.settings.connect_timeout_s),
            transport=transport,
            headers={"User-Agent": "ivrsim-webhooks"},
            limits=httpx.Limits(max_connections=MAX_CONCURRENT_DELIVERIES, max_keepalive_connections=MAX_CONCURRENT_DELIVERIES),
        )
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES)
        self._queues: dict[str, asyncio.Queue[_Delivery | None]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._targets: dict[str, tuple[str | None, str | None]] = {}

    async def start(self) -> None:
        """Queue again the deliveries a previous run left pending."""
        for row in self.store.deliveries(pending_only=True):
            self._enqueue(row["call_id"], _Delivery(row["id"], row["event_type"], row["url"], json.dumps(row["payload"]).encode(), row["attempts"]))

    async def close(self) -> None:
        """Stop delivering; what is still pending stays in SQLite and resumes at the next ``start``."""
        for worker in self._workers.values():
            worker.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        await self._client.aclose()

    @property
    def active_calls(self) -> int:
        """Calls with a delivery worker (deliveries queued, or the call not ended yet)."""
        return len(self._workers)

    async def drain(self) -> None:
        """Wait until every queued delivery has been delivered or given up."""
        await asyncio.gather(*(queue.join() for queue in list(self._queues.values())))

    def on_event(self, event: CallEvent) -> None:
        """Bus subscriber: store the deliveries this event causes and queue them (never blocks)."""
        call_url, gather_url = self._urls(event.call_id)
        url = None
        if event.type == "gather.completed":
            url = gather_url or call_url
        elif event.type.startswith("call.") or event.type in CALL_WEBHOOK_EVENTS:
            url = call_url
        if url is not None:
            payload = event.payload()
            delivery_id = self.store.insert_delivery(event.call_id, event.sequence, event.type, url, payload)
            self._enqueue(event.call_id, _Delivery(delivery_id, event.type, url, json.dumps(payload).encode(), []))
        if event.type in FINAL_EVENTS:
            self._targets.pop(event.call_id, None)
            if event.call_id in self._queues:
                self._queues[event.call_id].put_nowait(None)  # the call has ended: its worker stops when done

    def _urls(self, call_id: str) -> tuple[str | None, str | None]:
        if call_id not in self._targets:
            record = self.store.get_call(call_id)
            request: dict[str, Any] = record.request if record else {}
            gather = request.get("gather") or {}
            self._targets[call_id] = (request.get("webhook_url"), gather.get("webhook_url"))
        return self._targets[call_id]

    def _enqueue(self, call_id: str, delivery: _Delivery) -> None:
        queue = self._queues.get(call_id)
        if queue is None:
            queue = self._queues[call_id] = asyncio.Queue()
            self._workers[call_id] = asyncio.create_task(self._work(call_id, queue), name=f"webhooks-{call_id}")
        queue.put_nowait(delivery)

    async def _work(self, call_id: str, queue: asyncio.Queue[_Delivery | None]) -> None:
        while True:
            delivery = await queue.get()
            try:
                if delivery is None:
                    if queue.empty():  # nothing came after the call's last status: retire this worker
                        del self._queues[call_id], self._workers[call_id]
                        return
                    continue
                await self._deliver(delivery)
            except Exception:  # one bad delivery never stops the others
                logger.exception("webhook delivery %s failed unexpectedly", delivery.id if delivery else "-")
            finally:
                queue.task_done()

    async def _deliver(self, delivery: _Delivery) -> None:
        body = delivery.body
        s = self.settings
        for attempt in range(len(delivery.attempts) + 1, s.attempts + 1):
            headers = {"Content-Type": "application/json", "X-Ivrsim-Delivery": str(delivery.id), "X-Ivrsim-Attempt": str(attempt)}
            if s.secret:
                headers[SIGNATURE_HEADER] = sign(s.secret, body, int(time.time()))
            started = time.perf_counter()
            status_code, error = None, None
            try:
                async with self._slots:
                    response = await self._client.post(delivery.url, content=body, headers=headers)
                status_code = response.status_code
            except httpx.TimeoutException as exc:
                error = f"timed out ({type(exc).__name__})"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            delivery.attempts.append(
                {"attempt": attempt, "at": utc_now(), "status_code": status_code, "error": error, "ms": round((time.perf_counter() - started) * 1000, 1)}
            )
            if status_code is not None and status_code < 400:
                self.store.record_attempts(delivery.id, delivery.attempts, "delivered")
                return
            final = (status_code is not None and status_code < 500) or attempt == s.attempts
            self.store.record_attempts(delivery.id, delivery.attempts, "failed" if final else None)
            if final:
                logger.warning("webhook %s to %s given up after %d attempts", delivery.event_type, delivery.url, attempt)
                return
            await asyncio.sleep(s.backoff_s * 2 ** (attempt - 1))

"""Delivers call events to webhook URLs: in order per call, at least once, never holding up the call.

Which events go where (DESIGN.md, "Events and webhooks"): a call's ``webhook_url`` gets its status events
(``call.*``), ``recording.completed``, ``transcription.completed`` / ``.failed`` (the recording's transcript)
and ``transcription.final`` (real time, each utterance); ``gather.completed`` goes to the
gather's own ``webhook_url``, or the call's when it has none. The body is the event payload: ``call_id``
and ``type`` first, then the facts, then ``sequence``, ``call_time_s`` and ``timestamp``.

Each delivery is stored (``pending``, due now) before it is attempted, and every attempt is logged with its
status code or error. An attempt that fails on a connection error, a timeout, a 5xx, 408 or 429 is retried
on a schedule of hours, as Stripe and Twilio do: attempt n+1 waits ``backoff_s * backoff_factor**(n-1)``,
capped at ``backoff_cap_s``, varied by +-``jitter``; the time of the next attempt is stored
(``next_attempt_at``), so a restart resumes on schedule. Other 4xx answers, and a URL that cannot be used,
are final. After ``attempts`` attempts the delivery is ``failed``; ``retry`` queues it again (the API's
``POST /v1/voice/webhooks/{id}/retry``), keeping its attempt log.

Order per call: one worker per call sends the call's oldest pending delivery, and nothing later of that call
goes before it has been delivered or has failed. The store is the queue, so a restart, a retry of an older
delivery, or a reset needs no in-memory bookkeeping beyond the workers. Different calls deliver in parallel.

Signing (when a secret is configured): ``X-Ivrsim-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>" with the secret>``, as Stripe does; ``ivrsim.client.verify_signature`` checks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from ivrsim.engine.events import CallEvent, epoch_of, iso_at, utc_now
from ivrsim.http_failures import describe_http_failure
from ivrsim.store.sqlite import Store

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Ivrsim-Signature"
#: Webhook requests in flight at once, across all calls. httpcore's pool slows down quadratically with the
#: number of requests queued on it, so hundreds of calls each posting at once would starve the server.
MAX_CONCURRENT_DELIVERIES = 16
#: Event types that go to the call's webhook_url (besides gather.completed, routed by its gather).
CALL_WEBHOOK_EVENTS = ("recording.completed", "transcription.completed", "transcription.failed", "transcription.final",
                       "flow.node_entered", "flow.completed")
#: The events that end a call.
FINAL_EVENTS = ("call.completed", "call.busy", "call.no-answer", "call.failed")
#: Longest reply body read (and thrown away) to keep a connection; longer or undeclared ones close it.
MAX_REPLY_BYTES = 64 * 1024
#: How long a short reply body may take to arrive before its connection is dropped instead, in seconds.
REPLY_DRAIN_S = 1.0
#: 4xx answers that mean "later", not "never".
RETRYABLE_4XX = (408, 429)
#: Delivery statuses.
DeliveryStatus = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True)
class WebhookSettings:
    """Delivery limits and the retry schedule. Times in seconds; the defaults retry 8 times over ~3 days."""

    attempts: int = 8
    connect_timeout_s: float = 5.0
    timeout_s: float = 15.0
    backoff_s: float = 10.0
    backoff_factor: float = 6.0
    backoff_cap_s: float = 48 * 3600.0
    jitter: float = 0.2
    secret: str | None = None

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after failed attempt ``attempt`` (1-based) of a round, before the next one."""
        base = min(self.backoff_cap_s, self.backoff_s * self.backoff_factor ** (attempt - 1))
        if rng is None or self.jitter == 0:
            return base
        return base * (1.0 + rng.uniform(-self.jitter, self.jitter))


class DeliveryNotFound(LookupError):
    """No delivery has that id."""


class DeliveryAlreadyDelivered(ValueError):
    """The delivery has arrived; there is nothing to retry."""


def _shown(url: str) -> str:
    """A URL for the log: without its query string, which may carry a token."""
    return url.split("?", 1)[0]


def _seconds(value: float) -> str:
    """A wait, as a person reads it."""
    if value < 120:
        return f"{value:.3g} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookDispatcher:
    """Subscribes to an engine's events and delivers them; ``start`` resumes deliveries left pending."""

    def __init__(
        self, store: Store, settings: WebhookSettings | None = None, transport: httpx.AsyncBaseTransport | None = None, seed: int | None = None
    ) -> None:
        self.store = store
        self.settings = settings or WebhookSettings()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.timeout_s, connect=self.settings.connect_timeout_s),
            transport=transport,
            headers={"User-Agent": "ivrsim-webhooks"},
            limits=httpx.Limits(max_connections=MAX_CONCURRENT_DELIVERIES, max_keepalive_connections=MAX_CONCURRENT_DELIVERIES),
        )
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES)
        self._rng = random.Random(seed)  # jitter only: wall-clock spacing, never call behaviour
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._waiting: set[str] = set()  # calls whose worker sleeps until a later attempt is due
        self._targets: dict[str, tuple[str | None, str | None]] = {}

    async def start(self) -> None:
        """Resume the deliveries a previous run left pending, each at its stored ``next_attempt_at``."""
        for call_id in self.store.calls_with_pending_deliveries():
            self._ensure_worker(call_id)

    async def close(self) -> None:
        """Stop delivering; what is still pending stays in SQLite and resumes at the next ``start``."""
        await self.cancel()
        await self._client.aclose()

    async def cancel(self, call_ids: list[str] | None = None) -> None:
        """Stop the workers of ``call_ids`` (all when None) and wait for them; their deliveries stay as
        stored (the /_sim reset deletes them)."""
        chosen = [c for c in list(self._workers) if call_ids is None or c in call_ids]
        tasks = [self._workers.pop(c) for c in chosen]
        for call_id in chosen:
            self._wake.pop(call_id, None)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if call_ids is None:
            self._targets.clear()
        else:
            for call_id in call_ids:
                self._targets.pop(call_id, None)

    @property
    def active_calls(self) -> int:
        """Calls with a delivery worker (calls with deliveries pending)."""
        return len(self._workers)

    async def drain(self) -> None:
        """Wait until no delivery is pending (each delivered or failed). Cancelling this wait stops nothing."""
        while self._workers:
            await asyncio.wait(list(self._workers.values()))

    async def settle(self, timeout_s: float, poll_s: float = 0.02) -> None:
        """Wait (at most ``timeout_s``) until every delivery due now has been attempted: what waits for a
        later retry stays pending in SQLite. Shutdown uses it, so a receiver that is down costs no time."""
        deadline = time.monotonic() + timeout_s
        while any(call_id not in self._waiting for call_id in self._workers) and time.monotonic() < deadline:
            await asyncio.sleep(poll_s)

    def on_event(self, event: CallEvent) -> None:
        """Bus subscriber: store the deliveries this event causes and start them (never blocks)."""
        call_url, gather_url = self._urls(event.call_id)
        url = None
        if event.type == "gather.completed":
            url = gather_url or call_url
        elif event.type.startswith("call.") or event.type in CALL_WEBHOOK_EVENTS:
            url = call_url
        if url is not None:
            self.store.insert_delivery(event.call_id, event.sequence, event.type, url, event.payload())
            self._ensure_worker(event.call_id)
        if event.type in FINAL_EVENTS:
            self._targets.pop(event.call_id, None)

    def deliver(self, stream: str, sequence: int, event_type: str, url: str, payload: dict[str, Any]) -> int:
        """Store and start a delivery that belongs to no call (a Canonical analysis' end): ``stream`` keys
        its order as a call id does (use a prefix no call id has), with the same retries, signing and log.
        Call it on the event loop's thread; returns the delivery id."""
        delivery_id = self.store.insert_delivery(stream, sequence, event_type, url, payload)
        self._ensure_worker(stream)
        return delivery_id

    def retry(self, delivery_id: int) -> dict[str, Any]:
        """Queue a pending or failed delivery again, due now, keeping its attempt log; returns it as
        stored. Raises ``DeliveryNotFound`` or ``DeliveryAlreadyDelivered``."""
        delivery = self.store.delivery(delivery_id)
        if delivery is None:
            raise DeliveryNotFound(delivery_id)
        if delivery["status"] == "delivered":
            raise DeliveryAlreadyDelivered(delivery_id)
        self.store.requeue_delivery(delivery_id)
        self._ensure_worker(delivery["call_id"])
        requeued = self.store.delivery(delivery_id)
        assert requeued is not None
        return requeued

    def _urls(self, call_id: str) -> tuple[str | None, str | None]:
        if call_id not in self._targets:
            record = self.store.get_call(call_id)
            request: dict[str, Any] = record.request if record else {}
            gather = request.get("gather") or {}
            self._targets[call_id] = (request.get("webhook_url"), gather.get("webhook_url"))
        return self._targets[call_id]

    def _ensure_worker(self, call_id: str) -> None:
        """Start the call's worker, or wake it: something new may be due before what it waits for."""
        if call_id in self._workers:
            self._wake[call_id].set()
            return
        self._wake[call_id] = asyncio.Event()
        self._workers[call_id] = asyncio.create_task(self._work(call_id), name=f"webhooks-{call_id}")

    async def _work(self, call_id: str) -> None:
        """Send the call's oldest pending delivery when it is due, until none is pending."""
        wake = self._wake[call_id]
        try:
            while True:
                try:
                    delivery = self.store.next_pending_delivery(call_id)
                except Exception:  # the store is gone (shutting down): what is pending resumes at the next start
                    logger.exception("webhook worker of %s cannot read its deliveries; stopping it", call_id)
                    return
                if delivery is None:
                    return  # no await since the check: nothing can have been queued in between
                wait_s = epoch_of(delivery["next_attempt_at"]) - time.time() if delivery["next_attempt_at"] else 0.0
                if wait_s > 0:
                    wake.clear()
                    self._waiting.add(call_id)
                    try:
                        await asyncio.wait_for(wake.wait(), timeout=wait_s)
                    except TimeoutError:
                        pass
                    finally:
                        self._waiting.discard(call_id)
                    continue  # look again: a retry or an older delivery may have come first
                try:
                    await self._attempt(delivery)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the attempt could not even be logged: keep the order, try again later
                    logger.exception("webhook delivery #%s could not be logged; retrying it in %s", delivery["id"], _seconds(self.settings.backoff_s))
                    wake.clear()
                    try:
                        await asyncio.wait_for(wake.wait(), timeout=self.settings.backoff_s)
                    except TimeoutError:
                        pass
        finally:
            self._waiting.discard(call_id)
            if self._workers.get(call_id) is asyncio.current_task():
                del self._workers[call_id]
                self._wake.pop(call_id, None)

    async def _post(self, target: httpx.URL, body: bytes, headers: dict[str, str]) -> int:
        """POST ``body`` and return the status code, known once the reply's headers are in. The reply's body
        is never needed: a short one (declared, at most ``MAX_REPLY_BYTES``) is read so the connection can be
        reused, anything else is dropped with the connection, so that an endless or trickling reply costs
        neither memory nor time."""
        async with self._client.stream("POST", target, content=body, headers=headers) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) <= MAX_REPLY_BYTES:
                with contextlib.suppress(TimeoutError, httpx.HTTPError):
                    await asyncio.wait_for(response.aread(), timeout=REPLY_DRAIN_S)
            return response.status_code

    async def _attempt(self, delivery: dict[str, Any]) -> None:
        """One attempt of ``delivery``: send it, log the outcome, and decide what comes next."""
        s = self.settings
        attempts: list[dict[str, Any]] = delivery["attempts"]
        number = len(attempts) + 1
        in_round = number - int(delivery.get("round_start") or 0)
        body = json.dumps(delivery["payload"]).encode()
        url = delivery["url"]
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        retryable = True
        try:
            target = httpx.URL(url)
            if target.scheme not in ("http", "https") or not target.host:
                raise httpx.InvalidURL("it needs http:// or https:// and a host")
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            error, retryable = f"invalid webhook URL: {exc}", False
        else:
            headers = {"Content-Type": "application/json", "X-Ivrsim-Delivery": str(delivery["id"]), "X-Ivrsim-Attempt": str(number)}
            if s.secret:
                headers[SIGNATURE_HEADER] = sign(s.secret, body, int(time.time()))
            try:
                async with self._slots:
                    status_code = await asyncio.wait_for(self._post(target, body, headers), timeout=s.timeout_s)
                retryable = status_code >= 500 or status_code in RETRYABLE_4XX
            except TimeoutError:
                error = f"timed out (no reply within {s.timeout_s:g} s)"
            except httpx.TimeoutException as exc:
                error = f"timed out ({type(exc).__name__})"
            except httpx.HTTPError as exc:  # a fixed phrase: protocol errors quote the receiver's bytes
                error = f"{type(exc).__name__}: {describe_http_failure(exc)}"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # anything else is a failed attempt, never a stuck delivery
                logger.exception("webhook #%s: unexpected error while sending", delivery["id"])
                error = f"{type(exc).__name__}: unexpected error while sending (details in the server log)"
        attempts.append(
            {"attempt": number, "at": utc_now(), "status_code": status_code, "error": error, "ms": round((time.perf_counter() - started) * 1000, 1)}
        )
        outcome = str(status_code) if status_code is not None else error
        where = f"webhook {delivery['event_type']} #{delivery['id']} to {_shown(url)}"
        if status_code is not None and status_code < 300:
            self.store.record_attempts(delivery["id"], attempts, "delivered")
            if number > 1:
                logger.info("%s: %s, delivered at attempt %d", where, outcome, number)
            return
        if not retryable or in_round >= s.attempts:
            self.store.record_attempts(delivery["id"], attempts, "failed")
            why = "not retried" if not retryable else f"given up after {in_round} attempts"
            logger.warning("%s: %s, %s (POST /v1/voice/webhooks/%s/retry sends it again)", where, outcome, why, delivery["id"])
            return
        wait_s = s.delay_s(in_round, self._rng)
        self.store.record_attempts(delivery["id"], attempts, None, next_attempt_at=iso_at(time.time() + wait_s))
        logger.warning("%s: %s, retry %d/%d in %s", where, outcome, in_round + 1, s.attempts, _seconds(wait_s))

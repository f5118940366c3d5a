"""The Canonical call-analysis API's calls: one per ``callId``, analysed once by an ``analysis`` job, read
back with the job's status and result, and summed per assistant (the hosted product's dashboard).

Life of a call: ``submit`` stores the call (and counts it for its assistant) BEFORE it submits the job, so a
``callId`` seen before is never analysed twice; the job runs on the workers (``JobService``); when it ends,
``on_job_finished`` adds the outcome to the assistant's aggregates exactly once (``counted_at`` guards it, so
a job that runs again after a restart is not counted twice) and sends ``analysis.completed`` or
``analysis.failed`` to the call's ``webhook_url`` through the webhook dispatcher (stored, signed, retried,
ordered). ``recover`` (at start-up, after the jobs' own recovery) finishes what a crash cut short: a call
stored without its job gets one, a job that ended uncounted is counted and announced.

Aggregates are incremental (a few counters and a latency histogram per assistant, updated when a call ends),
so ``GET /api/v1/assistants`` costs the same at 10 calls or 10 million. Latency percentiles are computed from
the histogram of every latency value of every completed call (whole ms, as the analysis reports them), with
numpy's linear interpolation, so they equal ``numpy.percentile`` over all the values.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from typing import Any, Literal

from ivrsim.analysis.service import JobService
from ivrsim.engine.events import utc_now
from ivrsim.store.sqlite import CanonicalCallRecord, CanonicalOutcome, JobRecord, Store
from ivrsim.webhooks.dispatcher import WebhookDispatcher

__all__ = ["CanonicalCallRecord", "CanonicalService", "Source", "assistant_summary", "call_payload"]

logger = logging.getLogger(__name__)

#: Where a Canonical call came from: POST /api/v1/call, a Retell webhook, or a multipart upload.
Source = Literal["api", "retell", "upload"]
#: Prefix of the webhook delivery streams of Canonical calls (a call id of the Canary API never has it).
DELIVERY_STREAM_PREFIX = "canonical:"
#: Latency values above this many ms are counted in this bin (a minute without an answer is not a latency).
LATENCY_HISTOGRAM_CAP_MS = 60_000


class CanonicalService:
    """Submits Canonical calls and follows their jobs to the end. Build it on the event loop's thread."""

    def __init__(self, store: Store, jobs: JobService, dispatcher: WebhookDispatcher | None = None) -> None:
        self.store = store
        self.jobs = jobs
        self.dispatcher = dispatcher
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        jobs.listeners.append(self.on_job_finished)

    def submit(self, call_id: str, assistant: dict[str, Any], job_input: dict[str, Any], source: Source,
               webhook_url: str | None = None) -> tuple[CanonicalCallRecord, bool]:
        """Store the call and queue its analysis; ``(record, False)`` when ``call_id`` was submitted before
        (nothing is queued again, whatever this request carried). ``job_input`` per Contract A
        (``location`` or ``upload``, ``speaks_first``, ...); ``call_id`` and ``assistant_id`` are added."""
        job_input = {**job_input, "call_id": call_id, "assistant_id": assistant["id"]}
        if not self.store.insert_canonical_call(call_id, assistant, source, webhook_url, job_input):
            existing = self.store.canonical_call(call_id)
            assert existing is not None
            return existing, False
        try:
            self._submit_job(call_id, job_input)
        except BaseException:
            self.store.forget_canonical_call(call_id)  # nothing was queued: the same callId may come again
            raise
        record = self.store.canonical_call(call_id)
        assert record is not None
        return record, True

    def _submit_job(self, call_id: str, job_input: dict[str, Any]) -> None:
        job = self.jobs.submit("analysis", job_input)
        self.store.set_canonical_job(call_id, job.id)

    def recover(self) -> int:
        """Finish what a crash left half done; returns how many calls it touched."""
        records = self.store.canonical_calls_to_recover()
        for record in records:
            if record.job_id is None:  # the process stopped between the call's row and its job
                job_input = self.store.canonical_job_input(record.call_id)
                assert job_input is not None
                logger.warning("recovery: canonical call %s was stored without its job; queued now", record.call_id)
                self._submit_job(record.call_id, job_input)
            else:
                job = self.store.job(record.job_id)
                if job is not None:
                    self.on_job_finished(job)
        return len(records)

    def on_job_finished(self, job: JobRecord) -> None:
        """Job listener: count a Canonical call's end once and announce it to its webhook_url."""
        if job.kind != "analysis" or job.status not in ("completed", "failed"):
            return
        record = self.store.canonical_call_for_job(job.id)
        if record is None:
            call_id = job.input.get("call_id")
            candidate = self.store.canonical_call(call_id) if isinstance(call_id, str) else None
            if candidate is None or candidate.job_id not in (None, job.id):
                return  # an analysis of /_sim/analyses, or an older job of another call
            self.store.set_canonical_job(candidate.call_id, job.id)
            record = self.store.canonical_call(candidate.call_id)
            assert record is not None
        if not self.store.count_canonical_call(record.call_id, outcome_of(job)):
            return  # counted (and announced) before: a job that ended twice, or recovery after the listener ran
        if record.webhook_url and self.dispatcher is not None:
            self._announce(record.call_id, record.webhook_url)

    def _announce(self, call_id: str, url: str) -> None:
        def send() -> None:
            record = self.store.canonical_call(call_id)
            if record is None or self.dispatcher is None:
                return
            event_type = "analysis.completed" if record.status == "completed" else "analysis.failed"
            payload = {"call_id": call_id, "type": event_type, "callId": call_id, **call_payload(record), "timestamp": utc_now()}
            self.dispatcher.deliver(DELIVERY_STREAM_PREFIX + call_id, 1, event_type, url, payload)

        if threading.get_ident() == self._loop_thread:
            send()
        else:  # the dispatcher's workers live on the loop
            self._loop.call_soon_threadsafe(send)


def outcome_of(job: JobRecord) -> CanonicalOutcome:
    """What an ended job adds to its assistant's aggregates."""
    result = job.result or {}
    if job.status != "completed" or not result:
        return CanonicalOutcome(completed=False)
    latency = result.get("latency_ms") or {}
    interruptions = result.get("interruptions") or {}
    dead_air = result.get("dead_air") or {}
    values = tuple(min(max(round(float(v)), 0), LATENCY_HISTOGRAM_CAP_MS) for v in latency.get("values") or [])
    return CanonicalOutcome(
        completed=True,
        duration_s=float(result.get("duration_s") or 0.0),
        latency_ms=values,
        user_interrupted=int(interruptions.get("num_user_interrupted") or 0),
        assistant_interrupted=int(interruptions.get("num_assistant_interrupted") or 0),
        dead_air_count=int(dead_air.get("count") or 0),
        dead_air_total_s=float(dead_air.get("total_s") or 0.0),
    )


def call_payload(record: CanonicalCallRecord) -> dict[str, Any]:
    """``GET /api/v1/call/{callId}``: the call, its status, and its analysis or the failure's reason."""
    return {
        "callId": record.call_id,
        "status": record.status,
        "assistant": record.assistant,
        "source": record.source,
        "createdAt": record.created_at,
        "startedAt": record.started_at,
        "completedAt": record.completed_at if record.status in ("completed", "failed") else None,
        "attempts": record.attempts,
        "analysis": record.result if record.status == "completed" else None,
        "failureReason": record.error if record.status == "failed" else None,
        "jobId": record.job_id,
    }


def histogram_percentile(histogram: Mapping[int, int], percent: float) -> float | None:
    """The ``percent`` percentile of the values counted in ``histogram`` (value -> count), interpolated as
    ``numpy.percentile`` does (linear); None when it is empty."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = percent / 100.0 * (total - 1)
    low_rank, fraction = int(rank), rank - int(rank)
    low = high = None
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if low is None and seen > low_rank:
            low = value
        if seen > low_rank + (1 if fraction > 0 else 0):
            high = value
            break
    assert low is not None
    high = low if high is None else high
    return float(low + (high - low) * fraction)


def assistant_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """One assistant's dashboard line from its stored aggregates: calls, outcomes, latency percentiles over
    every latency value of its completed calls, interruption rate (per completed call and per analysed
    minute of audio), dead air (total and per completed call)."""
    histogram: Mapping[int, int] = row["latency_histogram"]
    completed = int(row["completed"])
    minutes = float(row["analysed_s"]) / 60.0
    interruptions = int(row["user_interrupted"]) + int(row["assistant_interrupted"])
    pending = int(row["calls"]) - completed - int(row["failed"])

    def rounded(value: float | None, digits: int = 1) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "assistant": row["assistant"],
        "id": row["assistant_id"],
        "calls": int(row["calls"]),
        "completed": completed,
        "failed": int(row["failed"]),
        "pending": max(pending, 0),
        "analysed_minutes": round(minutes, 3),
        "latency_ms": {
            "p50": rounded(histogram_percentile(histogram, 50)),
            "p90": rounded(histogram_percentile(histogram, 90)),
            "num": sum(histogram.values()),
        },
        "interruptions": {
            "total": interruptions,
            "num_user_interrupted": int(row["user_interrupted"]),
            "num_assistant_interrupted": int(row["assistant_interrupted"]),
            "per_call": rounded(interruptions / completed, 3) if completed else None,
            "per_minute": rounded(interruptions / minutes, 3) if minutes > 0 else None,
        },
        "dead_air": {
            "count": int(row["dead_air_count"]),
            "total_s": round(float(row["dead_air_total_s"]), 3),
            "per_call_s": rounded(float(row["dead_air_total_s"]) / completed, 3) if completed else None,
            "count_per_call": rounded(int(row["dead_air_count"]) / completed, 3) if completed else None,
        },
        "firstCallAt": row["first_call_at"],
        "lastCallAt": row["last_call_at"],
    }

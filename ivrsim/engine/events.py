"""Call events: every state change, in order, with call time and wall time; and the bus that fans them out.

Event types are ``<noun>.<verb>`` (``call.ringing``, ``gather.completed``, ...). As a webhook payload an
event reads ``{"call_id", "type", ...facts, "sequence", "call_time_s", "timestamp"}``: the documented
``gather.completed`` shape first, our additions after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallEvent:
    """One event of one call. ``sequence`` counts from 1 per call; ``call_time_s`` is call time in
    seconds (a multiple of the 20 ms frame); ``timestamp`` is wall time, ISO 8601 UTC."""

    call_id: str
    sequence: int
    type: str
    call_time_s: float
    timestamp: str
    data: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The webhook body: call_id and type first, then the facts, then sequence and times."""
        return {
            "call_id": self.call_id,
            "type": self.type,
            **self.data,
            "sequence": self.sequence,
            "call_time_s": self.call_time_s,
            "timestamp": self.timestamp,
        }


# -- time: the one place timestamps are formatted and parsed ---------------------------------------------
# Stored and sent as ISO 8601 UTC with milliseconds and a ``Z`` (``2024-05-01T12:00:00.000Z``), so that
# comparing two of them as strings (SQLite does) compares the moments.


def iso_of(moment: datetime) -> str:
    """``moment`` in the one timestamp form (a naive ``moment`` is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(iso: str) -> datetime:
    """A timestamp back to an aware datetime (one without an offset is taken as UTC)."""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def utc_now() -> str:
    return iso_of(datetime.now(UTC))


def iso_after(iso: str, seconds: float) -> str:
    """The time ``seconds`` after ``iso``: wall time that follows call time, for the clocks whose call
    time is not wall time."""
    return iso_of(parse_iso(iso) + timedelta(seconds=seconds))


def iso_at(epoch_s: float) -> str:
    """Unix seconds as a timestamp."""
    return iso_of(datetime.fromtimestamp(epoch_s, UTC))


def epoch_of(iso: str) -> float:
    """A timestamp as Unix seconds."""
    return parse_iso(iso).timestamp()


def iso_days_ago(days: float, now: datetime | None = None) -> str:
    """The timestamp ``days`` before ``now`` (default: now): retention's cutoff."""
    return iso_of((now or datetime.now(UTC)) - timedelta(days=days))


Subscriber = Callable[[CallEvent], None]


class EventBus:
    """Delivers each event to every subscriber, in publication order. A subscriber that raises is logged
    and skipped: one bad listener never stops a call."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber) if subscriber in self._subscribers else None

    def publish(self, event: CallEvent) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # a listener's bug must not stop the call
                logger.exception("event subscriber failed on %s %s", event.call_id, event.type)

    def queue(self, call_id: str | None = None, max_events: int = 0) -> tuple[EventQueue, Callable[[], None]]:
        """An asyncio queue that receives the events (of one call, or all); returns (queue, unsubscribe).
        ``max_events`` (0: no bound) bounds what waits for a reader that fell behind: newer events are
        dropped and ``queue.overflowed`` says so, so the reader can start over from the store."""
        queue = EventQueue(max_events)

        def put(event: CallEvent) -> None:
            if call_id is None or event.call_id == call_id:
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    queue.overflowed = True

        return queue, self.subscribe(put)


class EventQueue(asyncio.Queue[CallEvent]):
    """The bus's queue for one reader; ``overflowed``: events were dropped since the reader last looked."""

    overflowed: bool = False

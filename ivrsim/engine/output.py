"""Where a running call reports to: the seam between running calls and keeping their record.

A call's runner only reports (``CallOutput``); it never opens the store, because in worker mode the API
process stays SQLite's one writer and a worker sends these reports back over its session
(``ivrsim.workers.worker.SessionOutput``).
``StoreOutput`` is the API process's own: it writes the store and publishes on the bus, in that order,
so that a subscriber never hears of an event the store does not hold yet.
"""

from __future__ import annotations

from typing import Any, Protocol

from ivrsim.engine.events import CallEvent, EventBus
from ivrsim.store.sqlite import Store


class CallOutput(Protocol):
    """What a running call reports, in the order it happens."""

    def event(self, event: CallEvent) -> None:
        """A new event of the call (numbered and timed by the runner)."""

    def update_call(self, call_id: str, **fields: Any) -> None:
        """New values of the call's record (status, answered_at, ended_at, reason, duration_s)."""

    def recording_started(self, recording_id: str, call_id: str, path: str, channels: str) -> None:
        """A recording file was opened at ``path`` (on the runner's machine)."""

    def recording_completed(self, recording_id: str, duration_s: float) -> None:
        """The recording was closed, holding ``duration_s`` of audio."""


class StoreOutput:
    """``CallOutput`` for the API process: the store, then the bus."""

    def __init__(self, store: Store, bus: EventBus) -> None:
        self.store = store
        self.bus = bus

    def event(self, event: CallEvent) -> None:
        self.store.insert_event(event)
        self.bus.publish(event)

    def update_call(self, call_id: str, **fields: Any) -> None:
        self.store.update_call(call_id, **fields)

    def recording_started(self, recording_id: str, call_id: str, path: str, channels: str) -> None:
        self.store.insert_recording(recording_id, call_id, path, channels)

    def recording_completed(self, recording_id: str, duration_s: float) -> None:
        self.store.complete_recording(recording_id, duration_s)

"""The call engine, API side: places calls, keeps their record, and ends the calls a crash left live.

``place`` stores the call as ``queued``, emits ``call.queued`` and hands a ``CallJob`` to the executor;
the call runs in a ``CallRunner`` (``ivrsim.engine.runner``), which reports through a ``StoreOutput`` to
the store and the bus. The engine owns SQLite and the bus, a runner owns nothing of them, and the executor
decides where calls run: in this process, or in worker processes (``ivrsim.workers.hub.WorkerHub``).

Stopping: a call cut by a shutdown ends ``completed`` (answered) or ``failed`` (not yet answered), with the
reason. After a crash, ``recover()`` (run by ``__aenter__``, or by the app once the webhook dispatcher
listens) does the same for the calls the store still holds as live, finalises their recordings, and
publishes the final events, so webhook receivers hear that those calls ended.
"""

from __future__ import annotations

import logging
import random
import secrets
from dataclasses import replace
from typing import Any

from ivrsim.engine.actions import Action
from ivrsim.engine.callees import DeskPhone, Phonebook
from ivrsim.engine.clock import ManualTimeline
from ivrsim.engine.events import CallEvent, EventBus, iso_after, utc_now
from ivrsim.engine.executor import CallExecutor, InProcessExecutor
from ivrsim.engine.job import (
    DEFAULT_MAX_DURATION_S,
    DEFAULT_RING_TIMEOUT_S,
    CallJob,
    CallRequest,
    EngineSettings,
    GatherSpec,
    TtsSpec,
)
from ivrsim.engine.output import StoreOutput
from ivrsim.engine.recorder import detach_file, repair_wav
from ivrsim.engine.runner import (
    MAX_INJECTED_S,
    RECORDINGS_PATH,
    STOPPED_REASON,
    CallRunner,
    InjectionLimitError,
    LiveCallHandle,
    recording_completed_facts,
    recording_url,
)
from ivrsim.media.audio_url import AudioUrlLoader
from ivrsim.speech.asr.engines import SpeechEngines
from ivrsim.speech.tts import SpeechSynthesizer
from ivrsim.store.sqlite import CallRecord, Store

__all__ = [
    "DEFAULT_MAX_DURATION_S",
    "DEFAULT_RING_TIMEOUT_S",
    "MAX_INJECTED_S",
    "RECORDINGS_PATH",
    "STOPPED_REASON",
    "CallEngine",
    "CallRequest",
    "EngineSettings",
    "GatherSpec",
    "InjectionLimitError",
    "TtsSpec",
]

logger = logging.getLogger(__name__)


class CallEngine:
    """Places calls and keeps their record. Use as ``async with CallEngine(...) as engine``.

    ``executor``: where calls run; by default ``InProcessExecutor`` over a ``CallRunner`` built from this
    engine's settings, phonebook, synthesizer, loader and timeline. ``timeline``: the manual clock's (made
    here when the clock is manual and none is given; a ``WorkerHub`` shares it)."""

    def __init__(
        self,
        settings: EngineSettings,
        store: Store | None = None,
        phonebook: Phonebook | None = None,
        synthesizer: SpeechSynthesizer | None = None,
        loader: AudioUrlLoader | None = None,
        executor: CallExecutor | None = None,
        timeline: ManualTimeline | None = None,
        speech: SpeechEngines | None = None,
        phone: DeskPhone | None = None,
        soundcard_answers_all: bool = False,
    ) -> None:
        self.settings = settings
        #: Every call rings the desktop phone, whatever its number (``ivrsim serve --answer soundcard``).
        self.soundcard_answers_all = soundcard_answers_all
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = store or Store(settings.data_dir / "ivrsim.sqlite3")
        self.phonebook = phonebook or Phonebook.default_book()
        self.synthesizer = synthesizer or SpeechSynthesizer()
        self.loader = loader or AudioUrlLoader()
        self.bus = EventBus()
        self.output = StoreOutput(self.store, self.bus)
        self._ids = random.Random(settings.seed) if settings.seed is not None else None
        #: Simulated time for the manual clock (None on the virtual and realtime clocks).
        self.timeline = timeline or (ManualTimeline() if settings.clock == "manual" else None)
        self.executor: CallExecutor = executor or InProcessExecutor(
            CallRunner(settings, self.phonebook, self.synthesizer, self.loader, self.timeline, speech, phone)
        )
        self.executor.bind(self._end_orphaned)
        #: Ids of the calls ``recover()`` ended; None until it has run.
        self.recovered: list[str] | None = None

    def _end_orphaned(self, call_id: str, reason: str, status: str | None, at_s: float | None = None) -> None:
        record = self.store.get_call(call_id)
        if record is not None and record.status in ("queued", "ringing", "in-progress"):
            self.end_orphaned(record, reason, status, detach=True, at_s=at_s)

    async def __aenter__(self) -> CallEngine:
        self.recover()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop running calls (they end ``failed``: the engine stopped) and wait for them."""
        await self.executor.close()
        self.loader.close()

    def recording_url(self, recording_id: str) -> str:
        return recording_url(self.settings.public_url, recording_id)

    def recover(self) -> list[str]:
        """End the calls a previous run left live (once; later calls do nothing). Each recording is
        finalised (WAV header from the file size, duration, completed_at) and announced with
        ``recording.completed``; an answered call ends ``completed``, one never answered ``failed``, with
        the reason. The events go through the bus, so subscribers (the webhook dispatcher) deliver them
        as any other. Returns the ids of the calls ended."""
        if self.recovered is not None:
            return self.recovered
        self.recovered = []
        reason = f"{STOPPED_REASON}; it was ended when ivrsim started again"
        for record in self.store.live_calls():
            status = self.end_orphaned(record, reason)
            self.recovered.append(record.id)
            logger.warning("recovery: call %s was live when ivrsim stopped; ended %s", record.id, status)
        return self.recovered

    def end_orphaned(self, record: CallRecord, reason: str, status: str | None = None, detach: bool = False, at_s: float | None = None) -> str:
        """End a call that nothing runs any more (its server or its worker stopped), from what the store
        holds: the recording is finalised (WAV header from the file size, duration, completed_at) and
        announced with ``recording.completed``; the call ends ``status``, or by default ``completed`` when
        it was answered and ``failed`` when not, with ``reason``. The events go through the bus, so
        webhook receivers hear of them as of any other. ``detach``: the process that wrote the recording
        may still be alive (a frozen worker): the file is replaced by a copy first, so that whatever it
        writes later goes to a file nobody reads. ``at_s``: the call time it ended at, when its events are
        behind it (a call that waited in the queue for its ring timeout). Returns the status it ended with."""
        events = self.store.events(record.id)
        end_s = max(events[-1].call_time_s if events else 0.0, at_s or 0.0)
        answered = next((e for e in events if e.type == "call.in-progress"), None)
        answered_s = answered.call_time_s if answered is not None else None

        recording = self.store.recording_for_call(record.id)
        if recording is not None and recording.completed_at is None:
            try:
                if detach:
                    detach_file(recording.path)
                duration_s = repair_wav(recording.path)
            except (OSError, ValueError) as error:
                logger.warning("recording %s of call %s cannot be repaired (%s); its duration is 0", recording.id, record.id, error)
                duration_s = 0.0
            self.output.recording_completed(recording.id, duration_s)
            end_s = max(end_s, (answered_s if answered_s is not None else end_s) + duration_s)
            self.append_event(record.id, "recording.completed",
                              recording_completed_facts(recording.id, duration_s, recording.channels, self.settings.public_url), end_s)
        fields: dict[str, Any] = {"ended_at": iso_after(record.created_at, end_s), "reason": reason}
        was_answered = answered_s is not None or record.status == "in-progress"
        if was_answered:
            start_s = answered_s if answered_s is not None else end_s
            fields["duration_s"] = round(end_s - start_s, 3)
            if record.answered_at is None:
                fields["answered_at"] = iso_after(record.created_at, start_s)
        status = status or ("completed" if was_answered else "failed")
        self.output.update_call(record.id, status=status, **fields)
        self.append_event(record.id, f"call.{status}", {"status": status, "reason": reason}, end_s)
        return status

    def append_event(self, call_id: str, event_type: str, data: dict[str, Any], call_time_s: float | None = None) -> CallEvent:
        """An event of a call that nothing runs any more (it ended, or its runner stopped), numbered after
        the call's last one, at ``call_time_s`` (default: the last event's call time), through the store
        and the bus like any other."""
        events = self.store.events(call_id)
        sequence = events[-1].sequence + 1 if events else 1
        at_s = call_time_s if call_time_s is not None else (events[-1].call_time_s if events else 0.0)
        event = CallEvent(call_id, sequence, event_type, round(at_s, 3), utc_now(), data)
        self.output.event(event)
        return event

    def new_id(self, prefix: str) -> str:
        token = f"{self._ids.getrandbits(80):020x}" if self._ids is not None else secrets.token_hex(10)
        return f"{prefix}_{token}"

    async def place(self, request: CallRequest, then: list[Action] | None = None) -> CallRecord:
        """Store the call as ``queued`` and start it; returns at once, before the call is placed.

        ``then``: actions to run after the request's own (prompt and gather), before hanging up; the
        IVR builder composes calls this way (in-process only: see ``CallJob``).
        """
        if request.callee is None and request.to in self.phonebook.registered:  # a run-time caller travels with the call
            request = replace(request, callee=self.phonebook.registered[request.to])
        record = self.store.insert_call(self.new_id("call"), request.to, request.from_, request.as_dict())
        self.output.event(CallEvent(record.id, 1, "call.queued", 0.0, utc_now(), {"status": "queued", "to": request.to, "from": request.from_}))
        start_frame = self.timeline.now_frames if self.timeline is not None else None
        kind = str(request.callee.get("kind", "")) if request.callee is not None else self.phonebook.kind_of(request.to)
        soundcard = self.soundcard_answers_all or kind == "soundcard"
        job = CallJob(record.id, record.created_at, request, sequence=1, then=tuple(then or ()), start_frame=start_frame, soundcard=soundcard)
        self.executor.submit(job, self.output)
        return record

    def live_call(self, call_id: str) -> LiveCallHandle | None:
        """The running call ``call_id``, or None when it is not running (ended, or unknown)."""
        return self.executor.live_call(call_id)

    @property
    def live_count(self) -> int:
        return self.executor.live_count

    async def wait(self, call_id: str) -> CallRecord:
        """Wait for a call to end; returns its final record."""
        await self.executor.wait(call_id)
        record = self.store.get_call(call_id)
        if record is None:
            raise KeyError(call_id)
        return record

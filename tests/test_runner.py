"""The call runner alone (no store, no bus) gives exactly what the full engine stores for the same call.

This is the seam for worker processes (issue 9): a worker runs ``CallRunner`` and sends what its
``CallOutput`` hears; these tests pin that nothing of a call's story depends on running beside SQLite.
Real TTS, real DTMF through the line model, real recordings; only the output is a list.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ivrsim.audio.dtmf_generator import DtmfToneSpec
from ivrsim.engine.callees import Phonebook
from ivrsim.engine.clock import FRAME_S, ManualTimeline
from ivrsim.engine.engine import (
    CallEngine,
    CallRequest,
    EngineSettings,
    GatherSpec,
    TtsSpec,
)
from ivrsim.engine.events import CallEvent
from ivrsim.engine.job import CallJob
from ivrsim.engine.runner import STOPPED_REASON, CallRunner, LiveCallHandle
from ivrsim.media.audio_url import AudioUrlLoader
from ivrsim.speech.tts import PromptCache, SpeechSynthesizer
from ivrsim.store.sqlite import CallRecord

FROM = "+15559876543"
SEED = 7
PIN_PROMPT = TtsSpec("Please enter your 4-digit PIN followed by the pound key.")
#: Bound on every wait for a condition, in seconds (never a fixed sleep).
WAIT_S = 60.0


@pytest.fixture(scope="module")
def synthesizer(tmp_path_factory: pytest.TempPathFactory) -> SpeechSynthesizer:
    return SpeechSynthesizer(cache=PromptCache(tmp_path_factory.mktemp("prompts")))


class ListOutput:
    """A ``CallOutput`` that keeps every report in lists, in order."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []
        self.updates: list[tuple[str, dict[str, Any]]] = []
        self.recordings: list[tuple[str, Any]] = []

    def event(self, event: CallEvent) -> None:
        self.events.append(event)

    def update_call(self, call_id: str, **fields: Any) -> None:
        self.updates.append((call_id, fields))

    def recording_started(self, recording_id: str, call_id: str, path: str, channels: str) -> None:
        self.recordings.append(("started", (recording_id, call_id, path, channels)))

    def recording_completed(self, recording_id: str, duration_s: float) -> None:
        self.recordings.append(("completed", (recording_id, duration_s)))

    def merged_updates(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for _, fields in self.updates:
            merged.update(fields)
        return merged


def comparable(events: list[CallEvent]) -> list[tuple[Any, ...]]:
    """Everything of an event but its wall time."""
    return [(e.call_id, e.sequence, e.type, e.call_time_s, e.data) for e in events]


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def runner_for(data_dir: Path, synthesizer: SpeechSynthesizer, clock: str = "virtual") -> CallRunner:
    timeline = ManualTimeline() if clock == "manual" else None
    return CallRunner(EngineSettings(data_dir, clock=clock, seed=SEED), Phonebook.default_book(), synthesizer, AudioUrlLoader(), timeline)


def assert_same_call(final: CallRecord, stored: list[CallEvent], output: ListOutput) -> None:
    """The runner's reports are what the engine stored: call.queued (the placer's) aside, every event
    with the same type, call time and data, and the same final fields of the call."""
    assert [(e.sequence, e.type) for e in stored[:1]] == [(1, "call.queued")]
    assert comparable(output.events) == comparable(stored[1:])
    assert {call_id for call_id, _ in output.updates} == {final.id}
    fields = output.merged_updates()
    assert {name: getattr(final, name) for name in fields} == fields
    assert fields["status"] == final.status


@pytest.mark.parametrize(
    "request_",
    [
        CallRequest(to="+15550100001", from_=FROM, tts=PIN_PROMPT, gather=GatherSpec(timeout_s=10), record=True),
        CallRequest(to="+15550100001", from_=FROM, tts=PIN_PROMPT, gather=GatherSpec(), record=True, recording_channels="mono"),
        CallRequest(to="+15550100486", from_=FROM, tts=PIN_PROMPT),
        CallRequest(to="+15550100408", from_=FROM, tts=PIN_PROMPT, timeout_s=12),
        CallRequest(to="+15550100001", from_=FROM, tts=TtsSpec("hi", voice="en-US-Neural2-Q")),
    ],
    ids=["recorded-gather", "recorded-mono", "busy", "no-answer", "bad-voice"],
)
def test_the_runner_alone_reports_what_the_engine_stores(tmp_path: Path, synthesizer: SpeechSynthesizer, request_: CallRequest) -> None:
    async def scenario() -> tuple[CallRecord, list[CallEvent], Any, ListOutput]:
        async with CallEngine(EngineSettings(tmp_path / "engine", seed=SEED), synthesizer=synthesizer) as engine:
            placed = await engine.place(request_)
            final = await engine.wait(placed.id)
            stored, recording = engine.store.events(final.id), engine.store.recording_for_call(final.id)
        runner = runner_for(tmp_path / "runner", synthesizer)
        output = ListOutput()
        try:
            await runner.run(CallJob(final.id, final.created_at, request_), output)
        finally:
            runner.loader.close()
        assert runner.live_call(final.id) is None
        return final, stored, recording, output

    final, stored, recording, output = asyncio.run(scenario())
    assert_same_call(final, stored, output)
    if not request_.record:
        assert recording is None and output.recordings == []
        return
    assert final.status == "completed"
    [(started, (rec_id, call_id, path, channels)), (completed, (done_id, duration_s))] = output.recordings
    assert (started, completed) == ("started", "completed")
    assert (rec_id, call_id, channels, done_id) == (recording.id, final.id, recording.channels, recording.id)  # same id, no shared Random
    assert duration_s == pytest.approx(recording.duration_s)
    ours, _ = soundfile.read(path, dtype="int16")
    theirs, _ = soundfile.read(recording.path, dtype="int16")
    assert np.array_equal(ours, theirs)  # the same audio, sample for sample


async def press_at_six_seconds(timeline: ManualTimeline, handle: Callable[[], LiveCallHandle | None], ended: Awaitable[Any]) -> float:
    """Step manual time to 6 s, press 42# through the handle where the call then waits, let the call end.
    A call on the manual clock waits with the frame that reaches the timeline's present done, one frame past it."""
    await until(lambda: (live := handle()) is not None and live.status == "ringing", "the call to ring")  # its clock is set
    await timeline.advance(6.0)
    await until(lambda: (live := handle()) is not None and live.call_time_s == 6.0 + FRAME_S, "the call to wait at 6 s")
    live = handle()
    assert live is not None and live.status == "in-progress"
    injected = await live.press("42#", DtmfToneSpec(on_ms=80, off_ms=80))
    assert injected.duration_s == pytest.approx(0.48)
    await timeline.advance(30.0)
    await ended
    return injected.call_time_s


def test_dtmf_pressed_through_the_handle_gives_the_same_gather_in_the_runner_and_the_engine(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    request = CallRequest(to="+15550100002", from_=FROM, tts=PIN_PROMPT, gather=GatherSpec(timeout_s=10), record=True)

    async def scenario() -> tuple[CallRecord, list[CallEvent], ListOutput, float, float]:
        async with CallEngine(EngineSettings(tmp_path / "engine", clock="manual", seed=SEED), synthesizer=synthesizer) as engine:
            placed = await engine.place(request)
            assert engine.timeline is not None
            engine_at = await press_at_six_seconds(engine.timeline, lambda: engine.live_call(placed.id), engine.wait(placed.id))
            final = await engine.wait(placed.id)
            stored = engine.store.events(final.id)
        runner = runner_for(tmp_path / "runner", synthesizer, clock="manual")
        output = ListOutput()
        task = asyncio.create_task(runner.run(CallJob(final.id, final.created_at, request), output))
        try:
            assert runner.timeline is not None
            runner_at = await press_at_six_seconds(runner.timeline, lambda: runner.live_call(final.id), task)
        finally:
            runner.loader.close()
        return final, stored, output, engine_at, runner_at

    final, stored, output, engine_at, runner_at = asyncio.run(scenario())
    assert engine_at == runner_at == 6.0 + FRAME_S
    assert_same_call(final, stored, output)
    [gathered] = [e for e in output.events if e.type == "gather.completed"]
    assert (gathered.data["digits"], gathered.data["finished_on_key"], gathered.data["reason"]) == ("42", "#", "finish_on_key")
    assert [e.data["digit"] for e in output.events if e.type == "dtmf.received"] == list("42#")
    assert 6.0 < gathered.call_time_s < 7.0


def test_a_cancelled_run_ends_the_call_with_the_reason_and_lets_it_go(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    async def scenario() -> tuple[ListOutput, CallRunner]:
        runner = runner_for(tmp_path / "runner", synthesizer, clock="manual")
        output = ListOutput()
        request = CallRequest(to="+15550100002", from_=FROM, tts=PIN_PROMPT)
        task = asyncio.create_task(runner.run(CallJob("call_cut", "2026-01-01T00:00:00.000Z", request), output))
        try:
            await until(lambda: (live := runner.live_call("call_cut")) is not None and live.status == "ringing", "the call to ring")
            task.cancel()  # it waits for manual time that never comes
            await task
        finally:
            runner.loader.close()
        return output, runner

    output, runner = asyncio.run(scenario())
    assert runner.live_call("call_cut") is None
    assert [(e.sequence, e.type) for e in output.events] == [(2, "call.ringing"), (3, "call.failed")]
    assert output.events[-1].data == {"status": "failed", "reason": STOPPED_REASON}
    assert output.merged_updates()["status"] == "failed"

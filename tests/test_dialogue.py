"""Dialogues: calls whose next step is decided while they run (the engine's side of flows and TwiML apps).

A dialogue coroutine here says, gathers and branches on what a scripted caller pressed, through the real
engine (TTS, the line, the DTMF receiver, SQLite), on the virtual and realtime clocks.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import soundfile

from ivrsim.engine.callees import Phonebook
from ivrsim.engine.dialogue import CallEnded, Conversation, DialogueAction, DialogueError, DialogueServices
from ivrsim.engine.engine import CallEngine, CallRequest, EngineSettings, TtsSpec
from ivrsim.engine.events import CallEvent
from ivrsim.speech.tts import PromptCache, SpeechSynthesizer
from ivrsim.webhooks.app_client import AppClient

FROM = "+15559876543"


@pytest.fixture(scope="module")
def synthesizer(tmp_path_factory: pytest.TempPathFactory) -> SpeechSynthesizer:
    return SpeechSynthesizer(cache=PromptCache(tmp_path_factory.mktemp("prompts")))


def caller(steps: list[Any]) -> dict[str, Any]:
    return {"kind": "scripted", "script": {"name": "test caller", "answer_after_rings": 0, "steps": steps}}


async def menu(conversation: Conversation) -> None:
    """Press 1 for billing, 2 for a message; anything else ends the call."""
    conversation.emit("test.entered", node="menu")
    choice = await conversation.gather([await conversation.prompt_say("Press 1 for billing, 2 to leave a message.")], num_digits=1, timeout_s=3)
    conversation.emit("test.chose", digits=choice.digits, reason=choice.reason)
    if choice.digits == "1":
        await conversation.say("Billing. Goodbye.")
    elif choice.digits == "2":
        message = await conversation.record(max_length_s=5, silence_timeout_s=1.5)
        conversation.emit("test.recorded", recording_id=message.recording_id, duration_s=message.duration_s, reason=message.reason)
    else:
        raise DialogueError("no branch for that key")


def run(tmp_path: Path, synthesizer: SpeechSynthesizer, steps: list[Any], dialogue: Any = menu, clock: str = "virtual",
        **request_fields: Any) -> tuple[Any, list[CallEvent]]:
    number = "+15557001000"

    async def scenario() -> tuple[Any, list[CallEvent]]:
        settings = EngineSettings(tmp_path / f"data-{clock}", clock=clock, seed=7)
        book = Phonebook(entries={number: caller(steps)})
        async with CallEngine(settings, phonebook=book, synthesizer=synthesizer) as engine:
            request = CallRequest(to=number, from_=FROM, tts=TtsSpec("Welcome."), record=True, **request_fields)
            runner = engine.executor.runner  # type: ignore[attr-defined]
            services = DialogueServices(settings, synthesizer, engine.loader, runner.speech, book, engine.output, AppClient())
            record = await engine.place(request, then=[DialogueAction(dialogue, request, services)])
            final = await engine.wait(record.id)
            return final, engine.store.events(record.id)

    return asyncio.run(scenario())


def facts(events: list[CallEvent], event_type: str) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == event_type]


def test_a_dialogue_branches_on_the_key_the_caller_pressed(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    final, events = run(tmp_path, synthesizer, [{"wait_for_prompt": {"silence_ms": 400}}, {"press": {"digits": "1"}}])
    assert final.status == "completed", final.reason
    assert facts(events, "test.chose") == [{"digits": "1", "reason": "num_digits"}]
    said = [f["text"] for f in facts(events, "prompt.started")]
    assert said == ["Welcome.", "Press 1 for billing, 2 to leave a message.", "Billing. Goodbye."]
    # the dialogue's events are the call's, in call-time order, before it ends
    assert [e.type for e in events][-1] == "call.completed"
    times = [e.call_time_s for e in events]
    assert times == sorted(times)


def test_the_same_dialogue_gives_the_same_events_at_the_same_call_times(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    steps = [{"wait_for_prompt": {"silence_ms": 400}}, {"press": {"digits": "1"}}]
    first = run(tmp_path / "a", synthesizer, steps)[1]
    second = run(tmp_path / "b", synthesizer, steps)[1]
    assert [(e.type, e.call_time_s) for e in first] == [(e.type, e.call_time_s) for e in second]


def test_a_message_is_recorded_as_a_recording_of_its_own(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    steps = [{"wait_for_prompt": {"silence_ms": 400}}, {"press": {"digits": "2"}},
             {"pause": {"seconds": 0.8}}, {"say": {"text": "Call me back tomorrow please"}}]
    final, events = run(tmp_path, synthesizer, steps)
    assert final.status == "completed", final.reason
    [recorded] = facts(events, "test.recorded")
    assert recorded["reason"] == "silence" and 1.0 < recorded["duration_s"] < 5.0
    audio, rate = soundfile.read(tmp_path / "data-virtual" / "recordings" / f"{recorded['recording_id']}.wav")
    assert abs(len(audio) / rate - recorded["duration_s"]) < 0.02
    # the call's own recording is still the call's
    [call_recording] = facts(events, "recording.completed")
    assert call_recording["recording_id"] != recorded["recording_id"]


def test_a_dialogue_error_fails_the_call_with_its_reason(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    final, events = run(tmp_path, synthesizer, [{"wait_for_prompt": {"silence_ms": 400}}, {"press": {"digits": "9"}}])
    assert final.status == "failed"
    assert final.reason == "no branch for that key"
    assert facts(events, "recording.completed"), "the recording so far is kept"


def test_a_hang_up_reaches_the_dialogue_which_emits_its_last_events_first(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    async def waits(conversation: Conversation) -> None:
        try:
            await conversation.gather([await conversation.prompt_say("Press a key.")], num_digits=1, timeout_s=30)
            await conversation.say("You should not hear this.")
        except CallEnded as ended:
            conversation.emit("test.ended", reason=ended.reason)
            raise

    final, events = run(tmp_path, synthesizer, [{"wait_for_prompt": {"silence_ms": 400}}, {"pause": {"seconds": 2}}, {"hangup": {}}], waits)
    assert final.status == "completed" and final.reason == "the callee hung up"
    types = [e.type for e in events]
    assert "test.ended" in types and types.index("test.ended") < types.index("call.completed")
    assert facts(events, "gather.completed")[0]["reason"] == "hangup"


def test_on_the_realtime_clock_the_line_plays_silence_while_the_app_thinks(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    async def slow(conversation: Conversation) -> None:
        await asyncio.sleep(0.5)  # an app taking its time
        conversation.emit("test.decided")

    final, events = run(tmp_path, synthesizer, [], slow, clock="realtime")
    assert final.status == "completed", final.reason
    [decided] = [e for e in events if e.type == "test.decided"]
    [welcome_done] = [e for e in events if e.type == "prompt.completed"]
    assert decided.call_time_s - welcome_done.call_time_s >= 0.4  # call time ran on meanwhile


def test_call_times_on_the_virtual_clock_do_not_depend_on_how_long_the_app_takes(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    def thinking(delay_s: float) -> Any:
        async def dialogue(conversation: Conversation) -> None:
            await asyncio.sleep(delay_s)  # the app answering, in wall time
            await conversation.say("Thanks for waiting.")
            await asyncio.sleep(delay_s)
            conversation.emit("test.decided")

        return dialogue

    quick = run(tmp_path / "quick", synthesizer, [], thinking(0.0))[1]
    slow = run(tmp_path / "slow", synthesizer, [], thinking(0.3))[1]
    assert [(e.type, e.call_time_s) for e in quick] == [(e.type, e.call_time_s) for e in slow]


def test_a_recording_cut_by_the_calls_maximum_length_is_closed_and_reported(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    async def voicemail(conversation: Conversation) -> None:
        try:
            await conversation.record(max_length_s=60, silence_timeout_s=30)
        except CallEnded:
            conversation.emit("test.ended", recording=conversation.last_record.recording_id if conversation.last_record else None)
            raise

    final, events = run(tmp_path, synthesizer, [{"wait_for_prompt": {"silence_ms": 300}}, {"say": {"text": "Hello, this is a long message"}}],
                        voicemail, max_duration_s=4.0)
    assert final.status == "completed" and "maximum length" in final.reason
    [recorded] = facts(events, "record.completed")
    assert recorded["reason"] == "hangup"
    audio, rate = soundfile.read(recorded["path"])  # a readable WAV: its header was written when the call ended
    assert abs(len(audio) / rate - recorded["duration"]) < 0.02 and len(audio) > 0
    types = [e.type for e in events]
    assert types.index("record.completed") < types.index("test.ended") < types.index("call.completed")


def test_a_dialogue_stuck_past_the_grace_is_cancelled_and_still_reports_first(
    tmp_path: Path, synthesizer: SpeechSynthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ivrsim.engine.dialogue as dialogue_module

    monkeypatch.setattr(dialogue_module, "END_GRACE_S", 0.2)

    async def stubborn(conversation: Conversation) -> None:
        try:
            await conversation.gather([await conversation.prompt_say("Press a key.")], num_digits=1, timeout_s=30)
        except CallEnded:
            try:
                await asyncio.sleep(30)  # an app that takes its time even after the call ended
            finally:
                conversation.emit("test.last_words")

    final, events = run(tmp_path, synthesizer, [{"wait_for_prompt": {"silence_ms": 300}}, {"hangup": {}}], stubborn)
    types = [e.type for e in events]
    assert "test.last_words" in types and types.index("test.last_words") < types.index("call.completed")

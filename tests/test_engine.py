"""The call engine end to end: real TTS, real DTMF through the line model and the receiver, real SQLite.

Each test sends a scenario and checks the events that come out, not the engine's internals.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ivrsim.audio.dtmf_generator import DtmfToneSpec, generate_dtmf
from ivrsim.audio.dtmf_receiver import detect_dtmf
from ivrsim.engine.callees import Phonebook, ScriptedCaller, ScriptError
from ivrsim.engine.engine import CallEngine, CallRequest, EngineSettings, GatherSpec, TtsSpec
from ivrsim.engine.events import CallEvent
from ivrsim.media.audio_url import AudioUrlLoader, MediaSettings
from ivrsim.speech.tts import PromptCache, SpeechSynthesizer
from ivrsim.store.sqlite import Store
from ivrsim.testing import serve_bytes

FROM = "+15559876543"
PIN_PROMPT = TtsSpec("Please enter your 4-digit PIN followed by the pound key.")


@pytest.fixture(scope="module")
def synthesizer(tmp_path_factory: pytest.TempPathFactory) -> SpeechSynthesizer:
    return SpeechSynthesizer(cache=PromptCache(tmp_path_factory.mktemp("prompts")))


def script(name: str, steps: list[Any], rings: int = 0) -> dict[str, Any]:
    return {"kind": "scripted", "script": {"name": name, "answer_after_rings": rings, "steps": steps}}


def run_calls(tmp_path: Path, synthesizer: SpeechSynthesizer, requests: list[CallRequest], entries: dict[str, Any] | None = None,
              clock: str = "virtual", seed: int = 1, loader: AudioUrlLoader | None = None) -> list[tuple[Any, list[CallEvent]]]:
    async def scenario() -> list[tuple[Any, list[CallEvent]]]:
        book = Phonebook.default_book()
        book.entries.update(entries or {})
        settings = EngineSettings(tmp_path / f"data-{clock}", clock=clock, seed=seed)
        async with CallEngine(settings, phonebook=book, synthesizer=synthesizer, loader=loader) as engine:
            records = [await engine.place(r) for r in requests]
            finals = [await engine.wait(r.id) for r in records]
            return [(final, engine.store.events(final.id)) for final in finals]

    return asyncio.run(scenario())


def one_call(tmp_path: Path, synthesizer: SpeechSynthesizer, request: CallRequest, entries: dict[str, Any] | None = None, **kwargs: Any) -> tuple[Any, list[CallEvent]]:
    return run_calls(tmp_path, synthesizer, [request], entries, **kwargs)[0]


def of_type(events: list[CallEvent], event_type: str) -> list[CallEvent]:
    return [e for e in events if e.type == event_type]


def recording_file(tmp_path: Path, event: CallEvent, clock: str = "virtual") -> Path:
    """The WAV of a ``recording.completed`` event (the event carries its URL, not a server path)."""
    return tmp_path / f"data-{clock}" / "recordings" / f"{event.data['recording_id']}.wav"


def statuses(events: list[CallEvent]) -> list[str]:
    return [e.data["status"] for e in events if e.type.startswith("call.")]


# -- gather -----------------------------------------------------------------------------------------------


def test_caller_keys_1234_pound_and_the_gather_returns_1234_with_pound(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    final, events = one_call(tmp_path, synthesizer, CallRequest(to="+15550100001", from_=FROM, tts=PIN_PROMPT, gather=GatherSpec(timeout_s=10)))
    assert final.status == "completed"
    assert statuses(events) == ["queued", "ringing", "in-progress", "completed"]
    [gathered] = of_type(events, "gather.completed")
    assert gathered.payload()["call_id"] == final.id
    assert {k: gathered.data[k] for k in ("digits", "finished_on_key", "reason")} == {"digits": "1234", "finished_on_key": "#", "reason": "finish_on_key"}
    assert [e.data["digit"] for e in of_type(events, "dtmf.received")] == list("1234#")
    assert list(gathered.payload())[:4] == ["call_id", "type", "digits", "finished_on_key"]


def test_num_digits_ends_the_gather_without_a_finish_key(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    _, events = one_call(tmp_path, synthesizer, CallRequest(to="+15550100001", from_=FROM, tts=PIN_PROMPT, gather=GatherSpec(num_digits=3)))
    [gathered] = of_type(events, "gather.completed")
    assert (gathered.data["digits"], gathered.data["finished_on_key"], gathered.data["reason"]) == ("123", "", "num_digits")


def test_gather_times_out_after_the_prompt_ends(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    _, events = one_call(tmp_path, synthesizer, CallRequest(to="+15550100002", from_=FROM, tts=PIN_PROMPT, gather=GatherSpec(timeout_s=4)))
    [prompt_end] = of_type(events, "prompt.completed")
    [gathered] = of_type(events, "gather.completed")
    assert (gathered.data["digits"], gathered.data["reason"]) == ("", "timeout")
    assert gathered.call_time_s == pytest.approx(prompt_end.call_time_s + 4.0, abs=0.021)


def test_barge_in_digits_stop_the_prompt_and_count(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    entries = {"+15557770001": script("impatient", [{"pause": {"seconds": 1.0}}, {"press": {"digits": "5#"}}])}
    _, events = one_call(tmp_path, synthesizer, CallRequest(to="+15557770001", from_=FROM, tts=PIN_PROMPT, gather=GatherSpec()), entries)
    [prompt_end] = of_type(events, "prompt.completed")
    assert prompt_end.data["interrupted"] is True
    assert prompt_end.call_time_s < 1.6  # the prompt is 3 s long
    [gathered] = of_type(events, "gather.completed")
    assert (gathered.data["digits"], gathered.data["finished_on_key"]) == ("5", "#")


def test_without_barge_in_digits_during_the_prompt_are_ignored(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    entries = {"+15557770002": script("impatient", [{"pause": {"seconds": 1.0}}, {"press": {"digits": "5"}}])}
    request = CallRequest(to="+15557770002", from_=FROM, tts=PIN_PROMPT, gather=GatherSpec(timeout_s=2, barge_in=False))
    _, events = one_call(tmp_path, synthesizer, request, entries)
    assert of_type(events, "prompt.completed")[0].data["interrupted"] is False
    assert [e.data["digit"] for e in of_type(events, "dtmf.received")] == ["5"]  # heard, but not gathered
    assert (of_type(events, "gather.completed")[0].data["digits"], of_type(events, "gather.completed")[0].data["reason"]) == ("", "timeout")


def test_documented_example_number_presses_1(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    request = CallRequest(to="+15551234567", from_=FROM, tts=TtsSpec("Hello! This is a call from Canary. Press 1 to confirm.", voice="en-US-Neural2-F"), gather=GatherSpec(num_digits=1))
    final, events = one_call(tmp_path, synthesizer, request)
    assert of_type(events, "gather.completed")[0].data["digits"] == "1"
    assert of_type(events, "call.in-progress")[0].call_time_s == 2.0  # answered after one ring


def test_audio_fixture_callee_keys_2580(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    _, events = one_call(tmp_path, synthesizer, CallRequest(to="+15550100005", from_=FROM, tts=TtsSpec("Enter your code."), gather=GatherSpec(timeout_s=5)))
    gathered = of_type(events, "gather.completed")[0]
    assert (gathered.data["digits"], gathered.data["finished_on_key"]) == ("2580", "#")


def test_callee_hanging_up_ends_the_gather_and_the_call(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    final, events = one_call(tmp_path, synthesizer, CallRequest(to="+15550100003", from_=FROM, tts=PIN_PROMPT, gather=GatherSpec()))
    assert (final.status, final.reason) == ("completed", "the callee hung up")
    assert of_type(events, "gather.completed")[0].data["reason"] == "hangup"
    assert final.duration_s == pytest.approx(2.0, abs=0.05)


# -- outcomes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "status", "reason"),
    [
        ("+15550100486", "busy", "SIP 486"),
        ("+15550100503", "failed", "SIP 503"),
        ("+15550100408", "no-answer", "no answer within 12 s"),
        ("+15550100100", "failed", "no desktop phone answers in this process"),
    ],
)
def test_forced_outcomes(tmp_path: Path, synthesizer: SpeechSynthesizer, number: str, status: str, reason: str) -> None:
    final, events = one_call(tmp_path, synthesizer, CallRequest(to=number, from_=FROM, tts=PIN_PROMPT, timeout_s=12))
    assert final.status == status and reason in final.reason
    assert statuses(events)[-1] == status
    if status == "no-answer":
        assert statuses(events) == ["queued", "ringing", "no-answer"]
        assert events[-1].call_time_s == 12.0


def test_ring_timeout_shorter_than_the_answer_is_no_answer(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    final, _ = one_call(tmp_path, synthesizer, CallRequest(to="+15550100004", from_=FROM, tts=PIN_PROMPT, timeout_s=10))  # machine answers at 14 s
    assert final.status == "no-answer"


def test_answering_machine_greets_and_beeps_into_the_recording(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    # The platform speaks over the greeting, then waits 8 s (a gather), long enough for the beep.
    request = CallRequest(to="+15550100004", from_=FROM, tts=TtsSpec("This is your pharmacy."), gather=GatherSpec(timeout_s=8), record=True)
    final, events = one_call(tmp_path, synthesizer, request)
    assert of_type(events, "call.in-progress")[0].call_time_s == 14.0  # three rings
    completed = of_type(events, "recording.completed")[0]
    audio, rate = soundfile.read(recording_file(tmp_path, completed), dtype="float32")
    callee = audio[:, 1]
    spectrum = np.abs(np.fft.rfft(callee))
    frequency = np.fft.rfftfreq(len(callee), 1 / rate)
    assert frequency[np.argmax(spectrum)] == pytest.approx(1000.0, abs=5)  # the beep dominates


def test_unreachable_audio_url_fails_the_call_with_the_reason(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    final, events = one_call(tmp_path, synthesizer, CallRequest(to="+15550100001", from_=FROM, audio_url="http://127.0.0.1:9/none.mp3"))
    assert final.status == "failed"
    assert "audio_url http://127.0.0.1:9/none.mp3" in final.reason and "cannot connect" in final.reason
    assert statuses(events) == ["queued", "failed"]


def test_unknown_voice_fails_the_call_and_suggests(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    final, _ = one_call(tmp_path, synthesizer, CallRequest(to="+15550100001", from_=FROM, tts=TtsSpec("hi", voice="en-US-Neural2-Q")))
    assert final.status == "failed" and "did you mean" in final.reason


def test_maximum_call_length(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    final, _ = one_call(tmp_path, synthesizer, CallRequest(to="+15550100002", from_=FROM, tts=PIN_PROMPT, max_duration_s=1.0))
    assert final.status == "completed" and "maximum length of 1 s" in final.reason
    assert final.duration_s == pytest.approx(1.0, abs=0.021)


# -- media ------------------------------------------------------------------------------------------------


def test_dual_channel_recording_holds_the_tones_where_the_events_say(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    final, events = one_call(tmp_path, synthesizer, CallRequest(to="+15550100001", from_=FROM, tts=PIN_PROMPT, gather=GatherSpec(), record=True))
    completed = of_type(events, "recording.completed")[0]
    answered_s = of_type(events, "call.in-progress")[0].call_time_s
    audio, rate = soundfile.read(recording_file(tmp_path, completed), dtype="float32")
    assert audio.shape[1] == 2 and rate == 8000
    assert len(audio) / rate == pytest.approx(final.duration_s, abs=0.001)
    platform, callee = audio[:, 0], audio[:, 1]
    decoded = detect_dtmf(callee, rate)
    reported = of_type(events, "dtmf.received")
    assert [d.key for d in decoded] == [e.data["digit"] for e in reported]
    for digit, event in zip(decoded, reported):
        assert digit.start_s + answered_s == pytest.approx(event.data["start_s"], abs=0.005)
    assert detect_dtmf(platform, rate) == []
    assert np.sqrt(np.mean(platform[: rate * 2] ** 2)) > 0.01  # the prompt is on channel 1


def test_mono_recording(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    _, events = one_call(tmp_path, synthesizer, CallRequest(to="+15550100001", from_=FROM, tts=PIN_PROMPT, gather=GatherSpec(), record=True, recording_channels="mono"))
    info = soundfile.info(recording_file(tmp_path, of_type(events, "recording.completed")[0]))
    assert info.channels == 1


def test_audio_url_prompt_is_played(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    buffer = io.BytesIO()
    t = np.arange(16000) / 16000
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, format="MP3")
    body = buffer.getvalue()

    with serve_bytes(body, "audio/mpeg") as base_url:
        request = CallRequest(to="+15550100002", from_=FROM, tts=TtsSpec("Listen."), audio_url=f"{base_url}/hello.mp3")
        final, events = one_call(tmp_path, synthesizer, request, loader=AudioUrlLoader(MediaSettings()))
    started = of_type(events, "prompt.started")
    assert [(e.data["kind"]) for e in started] == ["say", "play"]
    assert started[1].data["duration_s"] == pytest.approx(1.0, abs=0.1)
    assert final.status == "completed"


def test_ssml_warnings_reach_the_events(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    _, events = one_call(tmp_path, synthesizer, CallRequest(to="+15550100002", from_=FROM, tts=TtsSpec("<speak>Hello <foo>there</foo></speak>")))
    assert "unsupported SSML element <foo>" in of_type(events, "prompt.warning")[0].data["warning"]


# -- time, order, many calls, restarts ---------------------------------------------------------------------


def comparable(events: list[CallEvent]) -> list[tuple[Any, ...]]:
    """Events without wall time and file paths: what must match between clocks."""
    return [(e.sequence, e.type, e.call_time_s, tuple(sorted((k, str(v)) for k, v in e.data.items() if k != "url"))) for e in events]


def test_virtual_and_realtime_clocks_give_the_same_events_at_the_same_call_times(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    entries = {"+15557770003": script("quick", [{"wait_for_prompt": {"silence_ms": 300}}, {"press": {"digits": "42#"}}])}
    request = CallRequest(to="+15557770003", from_=FROM, tts=TtsSpec("Press four two."), gather=GatherSpec(), record=True)
    virtual = one_call(tmp_path, synthesizer, request, entries, clock="virtual", seed=5)
    realtime = one_call(tmp_path, synthesizer, request, entries, clock="realtime", seed=5)
    assert virtual[0].id == realtime[0].id
    assert comparable(virtual[1]) == comparable(realtime[1])
    assert of_type(virtual[1], "gather.completed")[0].data["digits"] == "42"


def test_events_reach_subscribers_in_stored_order(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    async def scenario() -> tuple[list[CallEvent], list[CallEvent]]:
        async with CallEngine(EngineSettings(tmp_path / "d", seed=2), synthesizer=synthesizer) as engine:
            seen: list[CallEvent] = []
            engine.bus.subscribe(seen.append)
            engine.bus.subscribe(lambda e: 1 / 0)  # a broken listener changes nothing
            record = await engine.place(CallRequest(to="+15550100001", from_=FROM, tts=PIN_PROMPT, gather=GatherSpec()))
            await engine.wait(record.id)
            return seen, engine.store.events(record.id)

    seen, stored = asyncio.run(scenario())
    assert [(e.sequence, e.type) for e in seen] == [(e.sequence, e.type) for e in stored]
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))


def test_many_calls_at_once_and_a_failing_one_stalls_none(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    requests = [CallRequest(to="+15550100001", from_=FROM, tts=PIN_PROMPT, gather=GatherSpec()) for _ in range(12)]
    requests.insert(5, CallRequest(to="+15550100001", from_=FROM, audio_url="http://127.0.0.1:9/x.wav"))
    requests.insert(8, CallRequest(to="+15550100486", from_=FROM, tts=PIN_PROMPT))
    results = run_calls(tmp_path, synthesizer, requests)
    assert [final.status for final, _ in results].count("completed") == 12
    assert results[5][0].status == "failed" and results[8][0].status == "busy"
    for final, events in results:
        if final.status == "completed":
            assert of_type(events, "gather.completed")[0].data["digits"] == "1234"


def test_restart_recovery_ends_live_calls_and_keeps_the_rest(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    data = tmp_path / "data"
    store = Store(data / "ivrsim.sqlite3")
    store.insert_call("call_ringing", "+15550100001", FROM, {"to": "+15550100001"})
    store.update_call("call_ringing", status="ringing")
    store.insert_call("call_live", "+15550100001", FROM, {"to": "+15550100001"})
    store.update_call("call_live", status="in-progress")
    store.insert_call("call_done", "+15550100001", FROM, {"to": "+15550100001"})
    store.update_call("call_done", status="completed")
    store.close()

    async def restart() -> tuple[list[str] | None, Any, Any, Any, list[CallEvent]]:
        async with CallEngine(EngineSettings(data), synthesizer=synthesizer) as engine:
            store = engine.store
            return engine.recovered, store.get_call("call_ringing"), store.get_call("call_live"), store.get_call("call_done"), store.events("call_live")

    recovered, ringing, live, done, events = asyncio.run(restart())
    assert sorted(recovered or []) == ["call_live", "call_ringing"]
    assert ringing.status == "failed" and "stopped while the call was live" in ringing.reason  # never answered
    assert live.status == "completed" and "stopped while the call was live" in live.reason  # answered, then cut
    assert done.status == "completed"
    assert events[-1].type == "call.completed"


def test_calls_survive_a_restart_in_the_store(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    final, events = one_call(tmp_path, synthesizer, CallRequest(to="+15550100001", from_=FROM, tts=PIN_PROMPT, gather=GatherSpec()))
    reopened = Store(tmp_path / "data-virtual" / "ivrsim.sqlite3")
    assert reopened.get_call(final.id) == final
    assert [e.type for e in reopened.events(final.id)] == [e.type for e in events]


# -- scripts ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"steps": [{"dance": {}}]}, "step 1: unknown step 'dance'"),
        ({"steps": [{"press": {"digits": "12x"}}]}, "step 1: press.digits: character 3"),
        ({"steps": [{"press": {"digit": "1"}}]}, "press has no setting 'digit'"),
        ({"steps": [{"pause": {"seconds": "two"}}]}, "pause.seconds has the wrong type"),
        ({"steps": [{"say": {}}]}, "say needs 'text'"),
        ({"answer_after_rings": -1}, "answer_after_rings must be a whole number"),
        ({"stpes": []}, "unknown key(s) ['stpes']"),
    ],
)
def test_bad_caller_scripts_name_the_step_and_field(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ScriptError) as caught:
        ScriptedCaller.from_dict(document, source="my.yaml")
    assert message in str(caught.value)


def test_every_shipped_caller_script_and_the_default_phonebook_load() -> None:
    book = Phonebook.default_book()
    assert "+15551234567" in book.entries
    for path in sorted((Path(__file__).parents[1] / "samples" / "callers").glob("*.yaml")):
        ScriptedCaller.from_file(path)


def test_a_bad_phonebook_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    path.write_text('numbers:\n  "+1555": {kind: teleport}\n')
    with pytest.raises(ScriptError, match=r"\+1555: unknown kind 'teleport'"):
        Phonebook.load(path)


def test_play_files_are_decoded_at_load_and_in_prepare_never_per_call(tmp_path: Path) -> None:
    """``callee_for`` runs on the event loop for every call: it only checks that a play file exists."""
    from ivrsim.engine.callees import CalleeContext

    reply = tmp_path / "reply.wav"
    soundfile.write(reply, generate_dtmf("5", 8000, DtmfToneSpec(on_ms=100, off_ms=100)), 8000, subtype="PCM_16")
    path = tmp_path / "book.yaml"
    path.write_text('numbers:\n  "+1555": {kind: scripted, script: {answer_after_rings: 0, steps: [{play: {file: reply.wav}}]}}\n')
    book = Phonebook.load(path)
    good = book.callee_for("+1555")
    asyncio.run(good.prepare(CalleeContext(8000)))  # decoded in a worker thread
    heard = np.concatenate([good.exchange(np.zeros(160, dtype=np.float32)) for _ in range(10)])
    assert [d.key for d in detect_dtmf(heard, 8000)] == ["5"]

    reply.write_bytes(b"no longer audio " * 64)  # the file goes bad after the phonebook loaded
    callee = book.callee_for("+1555")  # not decoded here
    with pytest.raises(ScriptError, match="play step"):
        asyncio.run(callee.prepare(CalleeContext(8000)))  # but in prepare, which names it
    with pytest.raises(ScriptError, match="play.file"):
        Phonebook.load(path)  # and at load


def test_generated_tones_reach_the_receiver_as_audio_only() -> None:
    """The scripted caller's presses are audio: the same samples the generator makes."""
    caller = ScriptedCaller.from_dict({"answer_after_rings": 0, "steps": [{"press": {"digits": "7"}}]})
    from ivrsim.engine.callees import CalleeContext

    asyncio.run(caller.prepare(CalleeContext(8000)))
    frames = [caller.exchange(np.zeros(160, dtype=np.float32)) for _ in range(20)]
    sent = np.concatenate(frames)
    expected = generate_dtmf("7", 8000, DtmfToneSpec(on_ms=100, off_ms=100))
    assert np.array_equal(sent[: len(expected)], expected)


def test_record_action_takes_a_message_until_the_finish_key(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    from ivrsim.engine.actions import RecordMessage

    entries = {"+15557770004": script("voicemail", [{"wait_for_prompt": {"silence_ms": 300}}, {"say": {"text": "Please call me back tomorrow morning"}}, {"pause": {"seconds": 0.5}}, {"press": {"digits": "#"}}])}
    message = tmp_path / "message.wav"

    async def scenario() -> list[CallEvent]:
        async with CallEngine(EngineSettings(tmp_path / "d", seed=3), synthesizer=synthesizer,
                              phonebook=Phonebook(entries={**Phonebook.default_book().entries, **entries})) as engine:
            record = await engine.place(CallRequest(to="+15557770004", from_=FROM, tts=TtsSpec("Leave a message after the tone.")),
                                        then=[RecordMessage(path=message, recording_id="rec_message")])
            await engine.wait(record.id)
            return engine.store.events(record.id)

    events = asyncio.run(scenario())
    [completed] = of_type(events, "record.completed")
    assert completed.data["reason"] == "finish_on_key"
    audio, rate = soundfile.read(message, dtype="float32")
    assert 1.5 < len(audio) / rate < 5.0 and completed.data["duration"] == pytest.approx(len(audio) / rate, abs=0.001)
    assert np.sqrt(np.mean(audio**2)) > 0.01  # the words are in it


def test_record_action_ends_on_silence(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    from ivrsim.engine.actions import RecordMessage

    async def scenario() -> list[CallEvent]:
        async with CallEngine(EngineSettings(tmp_path / "d", seed=4), synthesizer=synthesizer) as engine:
            record = await engine.place(CallRequest(to="+15550100002", from_=FROM, tts=TtsSpec("Leave a message.")),
                                        then=[RecordMessage(path=tmp_path / "m.wav", recording_id="rec_silent", silence_timeout_s=3)])
            await engine.wait(record.id)
            return engine.store.events(record.id)

    events = asyncio.run(scenario())
    [started] = of_type(events, "record.started")
    [completed] = of_type(events, "record.completed")
    assert completed.data["reason"] == "silence"
    assert completed.call_time_s == pytest.approx(started.call_time_s + 0.4 + 3.0, abs=0.05)


def test_answering_machine_hangs_up_after_its_longest_message(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    entries = {"+15557770005": {"kind": "machine", "greeting": "Leave a message.", "answer_after_rings": 1, "max_message_s": 1}}
    final, events = one_call(tmp_path, synthesizer, CallRequest(to="+15557770005", from_=FROM, tts=TtsSpec("Hi."), gather=GatherSpec(timeout_s=20)), entries)
    assert (final.status, final.reason) == ("completed", "the callee hung up")
    assert 2.0 < final.duration_s < 4.5  # greeting, 0.3 s gap, 0.5 s beep, 1 s of message


def test_a_listening_caller_that_never_hears_its_phrase_hangs_up_when_told(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    script = {"name": "impatient", "steps": [{"wait_for_phrase": {"text": "representative", "timeout_s": 3, "on_timeout": "hangup"}},
                                             {"press": "1"}]}
    final, events = one_call(tmp_path, synthesizer, CallRequest(to="+15557770006", from_=FROM, tts=TtsSpec("Please hold."), gather=GatherSpec(timeout_s=10)),
                             {"+15557770006": {"kind": "scripted", "script": script}})
    assert (final.status, final.reason) == ("completed", "the callee hung up")
    [gathered] = of_type(events, "gather.completed")
    assert gathered.data["reason"] == "hangup" and gathered.data["digits"] == ""  # it never pressed 1
    answered = of_type(events, "call.in-progress")[0].call_time_s
    assert 3.0 <= gathered.call_time_s - answered <= 3.2  # at its timeout, not before
    with pytest.raises(ScriptError, match="on_timeout must be 'continue' or 'hangup'"):
        Phonebook(entries={"+1": {"kind": "scripted", "script": {"steps": [{"wait_for_phrase": {"text": "x", "on_timeout": "sulk"}}]}}}).callee_for("+1")


def test_a_dtmf_speech_gather_ends_on_speech_or_on_a_key(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    either = GatherSpec(type="dtmf speech", hints=("yes", "no"), timeout_s=8)
    (_, said), (_, pressed), (_, silent) = run_calls(tmp_path, synthesizer, [
        CallRequest(to=to, from_=FROM, tts=TtsSpec("Do you confirm? Say yes or no."), gather=either)
        for to in ("+15550100006", "+15551234567", "+15550100002")
    ])
    [by_voice] = of_type(said, "gather.completed")
    assert by_voice.data["reason"] == "speech" and by_voice.data["speech"]["text"] == "yes" and by_voice.data["digits"] == ""
    [by_key] = of_type(pressed, "gather.completed")
    # the key came first: the tone is not taken for speech, and the gather waits for more keys
    assert by_key.data["reason"] == "timeout" and by_key.data["digits"] == "1" and by_key.data["speech"]["text"] == ""
    [nothing] = of_type(silent, "gather.completed")
    assert nothing.data["reason"] == "timeout" and nothing.data["speech"]["text"] == "" and nothing.data["digits"] == ""


def test_a_speech_only_gather_ignores_keys_and_never_takes_a_tone_for_words(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    # A caller who answers a yes/no question with keys: Twilio's input="speech" ignores them; the tones must not
    # be recognised as "no" or "yeah" (pocketsphinx against a yes/no grammar hears something in anything).
    entries = {"+15557770011": script("keys-instead", [{"pause": {"seconds": 0.8}}, {"press": {"digits": "#"}}])}  # during the prompt
    speech_only = GatherSpec(type="speech", hints=("yes", "no"), timeout_s=4)
    final, events = one_call(tmp_path, synthesizer, CallRequest(to="+15557770011", from_=FROM, tts=TtsSpec("Do you confirm? Say yes or no."),
                                                                gather=speech_only), entries)
    assert final.status == "completed"
    assert len(of_type(events, "dtmf.received")) == 1  # the key was heard, and reported
    [gathered] = of_type(events, "gather.completed")
    assert gathered.data["reason"] == "timeout" and gathered.data["speech"]["text"] == "" and gathered.data["digits"] == ""


def test_audio_injected_into_a_live_call_reaches_the_gather(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    async def scenario() -> list[CallEvent]:
        async with CallEngine(EngineSettings(tmp_path / "d", seed=6, clock="realtime"), synthesizer=synthesizer) as engine:
            record = await engine.place(CallRequest(to="+15550100002", from_=FROM, tts=TtsSpec("Press a key."), gather=GatherSpec(timeout_s=5)))
            while (live := engine.live_call(record.id)) is None or live.status != "in-progress":
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)
            live.inject(generate_dtmf("7#", 8000))
            await engine.wait(record.id)
            return engine.store.events(record.id)

    events = asyncio.run(scenario())
    gathered = of_type(events, "gather.completed")[0]
    assert (gathered.data["digits"], gathered.data["finished_on_key"]) == ("7", "#")


def test_a_key_pressed_just_before_the_callee_hangs_up_still_counts(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    entries = {"+15557770006": script("press-and-go", [{"wait_for_prompt": {"silence_ms": 300}}, {"press": {"digits": "8", "on_ms": 60, "off_ms": 0}}, "hangup"])}
    final, events = one_call(tmp_path, synthesizer, CallRequest(to="+15557770006", from_=FROM, tts=TtsSpec("Press eight."), gather=GatherSpec()), entries)
    gathered = of_type(events, "gather.completed")[0]
    assert (gathered.data["digits"], gathered.data["reason"]) == ("8", "hangup")
    assert final.reason == "the callee hung up"

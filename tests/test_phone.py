"""The desktop phone on a real sound card path: PortAudio over a PulseAudio daemon with null sinks.

The phone's speakers are the null sink ``speaker`` (what it plays is heard on ``speaker.monitor``), its
microphone is ``micfeed.monitor`` (what the test plays into the sink ``micfeed`` is what the phone hears).
Nothing here is mocked: the call runs on the engine, paced by the card's clock, its digits decoded by the
receiver from the microphone's audio through the line model.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile

from ivrsim.api.server import BackgroundServer
from ivrsim.audio.dtmf_generator import DtmfToneSpec, generate_dtmf
from ivrsim.audio.dtmf_receiver import detect_dtmf
from ivrsim.devices.soundcard import SoundCardSettings
from ivrsim.engine.engine import CallEngine, CallRequest, EngineSettings, GatherSpec, TtsSpec
from ivrsim.engine.events import CallEvent
from ivrsim.media.audio_url import AudioUrlLoader, MediaSettings
from ivrsim.phone.desktop import DesktopPhone, PhoneSettings
from ivrsim.settings import Settings
from ivrsim.speech.tts import PromptCache, SpeechSynthesizer
from ivrsim.testing.pulse import PulseAudioServer
from ivrsim.testing.waiting import wait_until

from conftest import require_pulseaudio

FROM = "+15559876543"
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
RATE_HZ = 8000


@pytest.fixture(scope="module")
def synthesizer(tmp_path_factory: pytest.TempPathFactory) -> SpeechSynthesizer:
    return SpeechSynthesizer(cache=PromptCache(tmp_path_factory.mktemp("prompts")))


def keys(digits: str, on_ms: float = 100, off_ms: float = 100) -> np.ndarray:
    return generate_dtmf(digits, RATE_HZ, DtmfToneSpec(on_ms=on_ms, off_ms=off_ms, level_dbm0=-10.0))


def decoded(samples: np.ndarray, rate_hz: int) -> str:
    return "".join(str(d.key) for d in detect_dtmf(np.asarray(samples, dtype=np.float32), rate_hz))


def of_type(events: list[CallEvent], event_type: str) -> list[CallEvent]:
    return [e for e in events if e.type == event_type]


async def wait_for_event(engine: CallEngine, call_id: str, event_type: str, timeout_s: float = 30.0) -> CallEvent:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        found = of_type(engine.store.events(call_id), event_type)
        if found:
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {event_type} within {timeout_s} s: {[e.type for e in engine.store.events(call_id)]}")


def engine_for(tmp_path: Path, synthesizer: SpeechSynthesizer, phone: DesktopPhone, media_root: Path | None = None) -> CallEngine:
    loader = AudioUrlLoader(MediaSettings(allowed_roots=(media_root,) if media_root else (), cache_dir=tmp_path / "media"))
    return CallEngine(EngineSettings(tmp_path / "data", clock="virtual", seed=3), synthesizer=synthesizer, loader=loader,
                      phone=phone, soundcard_answers_all=True)


def test_a_call_answered_by_the_sound_card_plays_on_the_speakers_and_gathers_the_keys_played_into_the_microphone(
        tmp_path: Path, pulse: PulseAudioServer, synthesizer: SpeechSynthesizer) -> None:
    prompt = tmp_path / "prompt.wav"
    soundfile.write(prompt, np.concatenate([np.zeros(800, np.float32), keys("7", on_ms=200)]), RATE_HZ, subtype="PCM_16")
    phone = DesktopPhone(PhoneSettings(SoundCardSettings(), auto_answer_rings=0))
    heard: dict[str, np.ndarray] = {}
    recorder = threading.Thread(target=lambda: heard.setdefault("speaker", pulse.record("speaker.monitor", 9.0)))

    async def scenario() -> tuple[Any, list[CallEvent], Path]:
        async with engine_for(tmp_path, synthesizer, phone, media_root=tmp_path) as engine:
            recorder.start()
            record = await engine.place(CallRequest(to="+15551234567", from_=FROM, audio_url=str(prompt), record=True,
                                                    gather=GatherSpec(num_digits=2, timeout_s=10)))
            await wait_for_event(engine, record.id, "prompt.completed")
            await asyncio.to_thread(pulse.play, "micfeed", keys("42"), RATE_HZ)
            final = await asyncio.wait_for(engine.wait(record.id), 30)
            events = engine.store.events(record.id)
            recording = engine.store.recording_for_call(record.id)
            assert recording is not None
            return final, events, Path(recording.path)

    final, events, recording = asyncio.run(scenario())
    recorder.join(30)
    assert not recorder.is_alive() and "speaker" in heard
    assert final.status == "completed"
    [gathered] = of_type(events, "gather.completed")
    assert gathered.data["digits"] == "42"  # real tones, from the microphone, through the line and the receiver
    [opened] = of_type(events, "soundcard.opened")
    assert opened.data["input_device"] and opened.data["output_device"]
    assert decoded(heard["speaker"], 48000) == "7"  # the prompt reached the speakers
    audio, rate_hz = soundfile.read(recording, dtype="float32")
    assert audio.shape[1] == 2
    assert decoded(audio[:, 0], rate_hz) == "7"  # platform channel: the prompt
    assert decoded(audio[:, 1], rate_hz) == "42"  # callee channel: the microphone


def test_the_person_hanging_up_ends_the_call_completed_with_the_callee_as_the_one_who_hung_up(
        tmp_path: Path, pulse: PulseAudioServer, synthesizer: SpeechSynthesizer) -> None:
    phone = DesktopPhone(PhoneSettings(SoundCardSettings(), auto_answer_rings=0))

    async def scenario() -> tuple[Any, list[CallEvent]]:
        async with engine_for(tmp_path, synthesizer, phone) as engine:
            record = await engine.place(CallRequest(to="+15551234567", from_=FROM, tts=TtsSpec("Please hold."), gather=GatherSpec(timeout_s=30)))
            await wait_for_event(engine, record.id, "gather.started")
            assert phone.hang_up()
            final = await asyncio.wait_for(engine.wait(record.id), 30)
            return final, engine.store.events(record.id)

    final, events = asyncio.run(scenario())
    assert (final.status, final.reason) == ("completed", "the callee hung up")
    assert of_type(events, "gather.completed")[0].data["reason"] == "hangup"
    assert phone.line is None  # the card is closed and the phone free for the next call


def test_a_sound_card_call_is_transcribed_live_in_a_process_of_its_own_and_its_transcript_covers_the_recording(
        tmp_path: Path, pulse: PulseAudioServer, synthesizer: SpeechSynthesizer) -> None:
    phone = DesktopPhone(PhoneSettings(SoundCardSettings(), auto_answer_rings=0))

    async def scenario() -> list[CallEvent]:
        async with engine_for(tmp_path, synthesizer, phone) as engine:
            record = await engine.place(CallRequest(to="+15551234567", from_=FROM, tts=TtsSpec("Thank you for calling. Press 1 for billing."),
                                                    transcribe=True, record=True, gather=GatherSpec(timeout_s=2)))
            await asyncio.wait_for(engine.wait(record.id), 60)
            return engine.store.events(record.id)

    events = asyncio.run(scenario())
    finals = [e.data for e in of_type(events, "transcription.final") if e.data["channel"] == "platform"]
    assert finals and "billing" in finals[0]["text"] and finals[0]["engine"] == "pocketsphinx"
    assert 0.0 <= finals[0]["start_s"] < finals[0]["end_s"] < 6.0  # call times of the prompt, as an in-process transcript gives
    [completed] = of_type(events, "recording.completed")
    assert completed.data["transcribed_live"]["engine"] == "pocketsphinx"  # the live transcript is the recording's
    assert not of_type(events, "transcription.failed")


def test_a_second_call_while_the_phone_is_on_one_is_busy(tmp_path: Path, pulse: PulseAudioServer, synthesizer: SpeechSynthesizer) -> None:
    phone = DesktopPhone(PhoneSettings(SoundCardSettings(), auto_answer_rings=0))

    async def scenario() -> tuple[Any, Any]:
        async with engine_for(tmp_path, synthesizer, phone) as engine:
            first = await engine.place(CallRequest(to="+15551234567", from_=FROM, tts=TtsSpec("One moment."), gather=GatherSpec(timeout_s=30)))
            await wait_for_event(engine, first.id, "call.in-progress")
            second = await engine.wait((await engine.place(CallRequest(to="+15551234567", from_=FROM, tts=TtsSpec("Hello.")))).id)
            phone.hang_up()
            return await asyncio.wait_for(engine.wait(first.id), 30), second

    first, second = asyncio.run(scenario())
    assert first.status == "completed"
    assert second.status == "busy" and "on another call" in second.reason


def test_a_device_that_does_not_exist_fails_the_call_with_the_devices_there_are(tmp_path: Path, pulse: PulseAudioServer,
                                                                               synthesizer: SpeechSynthesizer) -> None:
    phone = DesktopPhone(PhoneSettings(SoundCardSettings(input_device="no-such-microphone"), auto_answer_rings=0))

    async def scenario() -> Any:
        async with engine_for(tmp_path, synthesizer, phone) as engine:
            return await engine.wait((await engine.place(CallRequest(to="+15551234567", from_=FROM, tts=TtsSpec("Hello.")))).id)

    final = asyncio.run(scenario())
    assert final.status == "failed"
    assert "no-such-microphone" in final.reason and "pulse" in final.reason  # names what was asked, lists what there is
    assert phone.line is None


def test_a_sound_card_that_disappears_mid_call_fails_the_call_and_keeps_its_recording(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    require_pulseaudio()
    phone = DesktopPhone(PhoneSettings(SoundCardSettings(), auto_answer_rings=0))
    with PulseAudioServer() as doomed:  # its own daemon: the module's stays up for the other tests

        async def scenario() -> tuple[Any, list[CallEvent], Path]:
            async with engine_for(tmp_path, synthesizer, phone) as engine:
                record = await engine.place(CallRequest(to="+15551234567", from_=FROM, tts=TtsSpec("Please hold for the next agent."),
                                                        record=True, gather=GatherSpec(timeout_s=60)))
                await wait_for_event(engine, record.id, "gather.started")
                await asyncio.to_thread(doomed.stop)
                final = await asyncio.wait_for(engine.wait(record.id), 30)
                recording = engine.store.recording_for_call(record.id)
                assert recording is not None
                return final, engine.store.events(record.id), Path(recording.path)

        final, events, recording = asyncio.run(scenario())
    assert final.status == "failed" and "sound card stopped" in final.reason
    [completed] = of_type(events, "recording.completed")
    audio, rate_hz = soundfile.read(recording, dtype="float32")
    assert completed.data["duration_s"] == pytest.approx(len(audio) / rate_hz, abs=0.03)
    assert np.abs(audio[:, 0]).max() > 0.05  # the prompt played until the card went: it is in the recording
    assert phone.line is None


# -- `ivrsim phone` in a pseudo-terminal: the keyboard path -------------------------------------------------


def json_line(child: Any, event_type: str) -> dict[str, Any]:
    """The next JSON line ``ivrsim phone --json`` prints for ``event_type``."""
    child.expect(r'\{[^\r\n]*"type": "' + event_type.replace(".", r"\.") + r'"[^\r\n]*\}')
    return dict(json.loads(child.after))


def spawn_phone(data_dir: Path, pulse: PulseAudioServer, *options: str) -> Any:
    import pexpect

    env = {**os.environ, **pulse.env, "COLUMNS": "100", "LINES": "30"}
    return pexpect.spawn(sys.executable, ["-m", "ivrsim", "phone", "--data-dir", str(data_dir), *options], env=env, encoding="utf-8",
                         timeout=60, dimensions=(30, 100))


def ended(http: httpx.Client, call_id: str) -> str | None:
    status = str(http.get(f"/v1/voice/calls/{call_id}").json()["status"])
    return status if status in ("completed", "busy", "no-answer", "failed", "canceled") else None


def test_ivrsim_phone_rings_answers_on_enter_and_the_keys_typed_are_tones_the_platform_decodes(tmp_path: Path, pulse: PulseAudioServer) -> None:
    settings = Settings(api_key=KEY, port=0, data_dir=tmp_path / "data", seed=5, workers=1)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        child = spawn_phone(tmp_path / "data", pulse, "--json")
        try:
            json_line(child, "phone.ready")
            placed = http.post("/v1/voice/calls", json={"to": "+15550100100", "from": FROM, "tts": {"text": "Press 5 then 9."}, "record": True,
                                                        "gather": {"num_digits": 2, "timeout": 20}})
            assert placed.status_code == 200, placed.text
            call_id = placed.json()["id"]
            ringing = json_line(child, "phone.ringing")
            assert ringing["call_id"] == call_id
            wait_until(lambda: http.get(f"/v1/voice/calls/{call_id}").json()["status"] == "ringing", timeout_s=30)  # and rings until Enter
            child.send("\r")
            json_line(child, "call.in-progress")
            json_line(child, "prompt.completed")
            child.send("5")
            child.send("9")
            gathered = json_line(child, "gather.completed")
            assert gathered["digits"] == "59"
            assert wait_until(lambda: ended(http, call_id), timeout_s=30) == "completed"
            events = [e["type"] for e in http.get(f"/v1/voice/calls/{call_id}/events").json()["data"]]
            recording_id = next(e for e in http.get(f"/v1/voice/calls/{call_id}/events").json()["data"] if e["type"] == "recording.completed")["recording_id"]
            wav = http.get(f"/v1/voice/recordings/{recording_id}.wav")
            child.send("q")
            child.expect(__import__("pexpect").EOF)
        finally:
            child.close(force=True)
    assert events.count("dtmf.received") == 2 and "soundcard.opened" in events
    audio, rate_hz = soundfile.read(__import__("io").BytesIO(wav.content), dtype="float32")
    assert decoded(audio[:, 1], rate_hz) == "59"  # the keys went into the line as tones: the callee's channel holds them


def test_ivrsim_phone_declines_a_ringing_call_with_h_and_the_call_ends_busy(tmp_path: Path, pulse: PulseAudioServer) -> None:
    settings = Settings(api_key=KEY, port=0, data_dir=tmp_path / "data", seed=6, workers=1)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        child = spawn_phone(tmp_path / "data", pulse)  # the screen, not JSON: what a person sees
        try:
            child.expect("waiting for calls")
            call_id = http.post("/v1/voice/calls", json={"to": "+15550100100", "from": FROM, "tts": {"text": "Hello."}}).json()["id"]
            child.expect("RINGING")
            child.expect("press Enter to answer")
            child.send("h")
            assert wait_until(lambda: ended(http, call_id), timeout_s=30) == "busy"
            reason = http.get(f"/v1/voice/calls/{call_id}").json()["reason"]
            child.expect("BUSY")
            child.send("q")
            child.expect(__import__("pexpect").EOF)
        finally:
            child.close(force=True)
    assert "declined at the desktop phone" in reason


def test_ivrsim_phone_refuses_a_device_that_is_not_there_listing_those_that_are(tmp_path: Path, pulse: PulseAudioServer) -> None:
    import subprocess

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "queue.sqlite3").touch()  # a server's folder
    done = subprocess.run([sys.executable, "-m", "ivrsim", "phone", "--data-dir", str(tmp_path / "data"), "--input", "no-such-mic"],
                          env={**os.environ, **pulse.env}, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert "no-such-mic" in done.stderr and "pulse" in done.stderr and "Traceback" not in done.stderr
    nowhere = subprocess.run([sys.executable, "-m", "ivrsim", "phone", "--data-dir", str(tmp_path / "empty")],
                             env={**os.environ, **pulse.env}, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert nowhere.returncode == 1 and "start `ivrsim serve` there first" in nowhere.stderr
    bad_setting = subprocess.run([sys.executable, "-m", "ivrsim", "phone", "--data-dir", str(tmp_path / "data")],
                                 env={**os.environ, **pulse.env, "IVRSIM_DEVICE_LATENCY": "abc"}, capture_output=True, text=True, timeout=60,
                                 stdin=subprocess.DEVNULL)
    assert bad_setting.returncode == 2 and "IVRSIM_DEVICE_LATENCY" in bad_setting.stderr and "Traceback" not in bad_setting.stderr


def test_the_phone_screen_shows_the_prompt_the_digits_the_gather_and_the_live_transcript() -> None:
    import io

    from rich.console import Console

    from ivrsim.engine.job import CallJob
    from ivrsim.phone.console import PhoneConsole

    screen = Console(file=io.StringIO(), width=120, record=True)
    ui = PhoneConsole(PhoneSettings(), "speakers: test", "sqlite:///queue", console=screen)
    ui.call_started(CallJob("call_1", "2026-12-02T00:00:00Z", CallRequest(to="+15550100100", from_=FROM, tts=TtsSpec("Say billing or press 1."))))
    for sequence, (kind, data) in enumerate([
        ("call.ringing", {"status": "ringing"}),
        ("call.in-progress", {"status": "in-progress"}),
        ("prompt.started", {"kind": "say", "source": "en-US-Neural2-F", "duration_s": 2.1}),
        ("dtmf.received", {"digit": "1"}),
        ("transcription.final", {"channel": "callee", "text": "billing please"}),
        ("gather.completed", {"digits": "1", "reason": "num_digits", "speech": {"text": ""}}),
        ("soundcard.xrun", {"underruns": 2, "overruns": 0}),
    ], start=2):
        ui.call_event(CallEvent("call_1", sequence, kind, 1.0, "2026-12-02T00:00:01Z", data))
    screen.print(ui.render())
    text = screen.export_text()
    assert "IN-PROGRESS" in text and "call_1  from +15559876543 to +15550100100" in text
    assert 'say en-US-Neural2-F "Say billing or press 1." (2.1 s)' in text
    assert "completed: digits 1 (num_digits)" in text
    assert "callee: billing please" in text and "2 underrun(s), 0 overrun(s)" in text


def test_serve_answer_soundcard_rings_the_card_for_every_number_from_the_local_worker_that_owns_it(tmp_path: Path, pulse: PulseAudioServer) -> None:
    settings = Settings(api_key=KEY, port=0, data_dir=tmp_path / "data", seed=8, workers=1, answer="soundcard", auto_answer_rings=0)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        placed = http.post("/v1/voice/calls", json={"to": "+15550100002", "from": FROM, "tts": {"text": "Enter your code."},
                                                    "gather": {"num_digits": 2, "timeout": 20}})
        assert placed.status_code == 200, placed.text
        call_id = placed.json()["id"]

        def event_types() -> list[str]:
            return [e["type"] for e in http.get(f"/v1/voice/calls/{call_id}/events").json()["data"]]

        wait_until(lambda: "prompt.completed" in event_types(), timeout_s=60)
        pulse.play("micfeed", keys("31"), RATE_HZ)
        assert wait_until(lambda: ended(http, call_id), timeout_s=60) == "completed"
        events = http.get(f"/v1/voice/calls/{call_id}/events").json()["data"]
        workers = http.get("/_sim/workers").json()["workers"]
    gathered = next(e for e in events if e["type"] == "gather.completed")
    assert gathered["digits"] == "31"  # the phonebook's listener would have pressed nothing: the card answered
    assert any(e["type"] == "soundcard.opened" for e in events)
    assert [w["name"] for w in workers if "phone" in w["lanes"]] == ["local-1"]


def test_ivrsim_phone_without_a_keyboard_or_a_screen_answers_by_itself_and_prints_plain_lines(tmp_path: Path, pulse: PulseAudioServer) -> None:
    import signal
    import subprocess

    settings = Settings(api_key=KEY, port=0, data_dir=tmp_path / "data", seed=9, workers=1)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        phone = subprocess.Popen([sys.executable, "-m", "ivrsim", "phone", "--data-dir", str(tmp_path / "data"), "--auto-answer", "0"],
                                 env={**os.environ, **pulse.env, "TERM": "dumb"}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
        try:
            call_id = http.post("/v1/voice/calls", json={"to": "+15550100100", "from": FROM, "tts": {"text": "Enter one digit."},
                                                         "gather": {"num_digits": 1, "timeout": 20}}).json()["id"]
            wait_until(lambda: any(e["type"] == "prompt.completed" for e in http.get(f"/v1/voice/calls/{call_id}/events").json()["data"]), timeout_s=60)
            pulse.play("micfeed", keys("8"), RATE_HZ)
            assert wait_until(lambda: ended(http, call_id), timeout_s=30) == "completed"
        finally:
            phone.send_signal(signal.SIGTERM)
            out, _ = phone.communicate(timeout=30)
    assert phone.returncode == 0
    assert f"RINGING: {call_id}" in out and "IN-PROGRESS" in out and "digit: 8" in out and "gather completed: digits 8" in out

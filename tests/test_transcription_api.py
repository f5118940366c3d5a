"""Speech through the API, end to end with real engines: speech gathers answered by scripted callers,
recorded calls transcribed after they end (the transcript job, its webhook), real-time transcription
events, callers that listen for a phrase, answering-machine detection, and a language with no model."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from ivrsim.api.server import BackgroundServer
from ivrsim.settings import Settings
from ivrsim.testing.waiting import wait_until
from ivrsim.webhooks.receiver import WebhookReceiver

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FROM = "+15559876543"
SAYS_BILLING = "+15550100007"
LISTENS_FOR_BILLING = "+15550100008"
SAYS_HELLO = "+15550100009"
VOICEMAIL = "+15550100004"


def settings_for(folder: Path, **overrides: Any) -> Settings:
    return Settings(**{"api_key": KEY, "port": 0, "data_dir": folder, "seed": 7, **overrides})


def place(http: httpx.Client, **body: Any) -> str:
    response = http.post("/v1/voice/calls", json={"from": FROM, **body})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def ended_events(http: httpx.Client, call_id: str) -> list[dict[str, Any]]:
    """The call's timeline, once the call has ended."""
    wait_until(lambda: http.get(f"/v1/voice/calls/{call_id}").json()["status"] not in ("queued", "ringing", "in-progress"), timeout_s=90)
    return list(http.get(f"/v1/voice/calls/{call_id}/events").json()["data"])


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == event_type]


def test_a_speech_gather_hears_billing_from_a_scripted_caller(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, workers=0)) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        call_id = place(http, to=SAYS_BILLING, tts={"text": "Which department? Say billing, sales or technical support."},
                        gather={"type": "speech", "hints": ["billing", "sales", "technical support"], "timeout": 8})
        events = ended_events(http, call_id)
    [completed] = of_type(events, "gather.completed")
    assert completed["reason"] == "speech", completed
    assert completed["speech"]["text"] == "billing"
    assert 0 < completed["speech"]["confidence"] <= 1
    assert completed["speech"]["engine"] == "pocketsphinx" and completed["speech"]["language"] == "en-US"
    assert completed["digits"] == "" and completed["finished_on_key"] == ""
    prompt_end = of_type(events, "prompt.completed")[0]["call_time_s"]
    assert completed["speech"]["start_s"] >= prompt_end  # the caller spoke after the prompt, and the times say so


def test_a_recorded_call_is_transcribed_after_it_ends_with_a_webhook(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver, BackgroundServer(settings_for(tmp_path, workers=1)) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        call_id = place(http, to=SAYS_BILLING, record=True, transcribe=True, webhook_url=f"{receiver.url}/hooks",
                        tts={"text": "Thank you for calling. Please tell us the department you need."},
                        gather={"type": "speech", "hints": ["billing", "sales", "technical support"]})
        events = ended_events(http, call_id)
        first = http.get(f"/v1/voice/calls/{call_id}/recording").json()["transcription"]
        assert receiver.wait_for(call_id, "transcription.completed", timeout_s=90)
        recording = http.get(f"/v1/voice/calls/{call_id}/recording").json()
    assert first["status"] in ("in-progress", "completed")
    transcription = recording["transcription"]
    assert transcription["status"] == "completed", transcription
    assert transcription["engine"] == "pocketsphinx" and transcription["language"] == "en-US"
    by_channel = {channel: " ".join(s["text"] for s in transcription["segments"] if s["channel"] == channel) for channel in ("platform", "callee")}
    assert "department" in by_channel["platform"], by_channel
    assert "billing" in by_channel["callee"], by_channel
    starts = [s["start"] for s in transcription["segments"]]
    assert starts == sorted(starts) and transcription["text"].split()  # the whole call, in time order
    assert 0 < transcription["confidence"] <= 1
    [hook] = [w.payload for w in receiver.received if w.payload["type"] == "transcription.completed"]
    assert hook["text"] == transcription["text"] and hook["recording_id"] == recording["id"]
    # real time: each side's words as the call ran, at the call time they were spoken
    finals = of_type(events, "transcription.final")
    assert any(e["channel"] == "platform" and "department" in e["text"] for e in finals), finals
    assert any(e["channel"] == "callee" and "billing" in e["text"] for e in finals), finals
    assert all(e["start_s"] <= e["end_s"] <= e["call_time_s"] for e in finals)
    assert transcription["source"] == "live"  # heard whole during the call: not decoded twice


def test_a_mono_recording_is_decoded_by_a_job_on_a_worker(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver, BackgroundServer(settings_for(tmp_path, workers=1)) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        call_id = place(http, to=SAYS_BILLING, record=True, transcribe=True, recording_channels="mono", webhook_url=f"{receiver.url}/hooks",
                        tts={"text": "Please tell us the department you need."}, gather={"type": "dtmf", "timeout": 4})
        events = ended_events(http, call_id)
        assert receiver.wait_for(call_id, "transcription.completed", timeout_s=90)
        transcription = http.get(f"/v1/voice/calls/{call_id}/recording").json()["transcription"]
        job = http.get(f"/_sim/analyses/{transcription['job_id']}")
    assert transcription["status"] == "completed" and transcription["source"] == "recording", transcription
    assert {s["channel"] for s in transcription["segments"]} == {"mixed"}
    assert "department" in transcription["text"].split()
    answered_s = of_type(events, "call.in-progress")[0]["call_time_s"]
    reply_s = of_type(events, "prompt.completed")[0]["call_time_s"] - answered_s
    assert any(s["start"] > reply_s for s in transcription["segments"]), transcription  # the caller's reply, after the prompt
    assert job.status_code == 404  # a transcript is not an analysis: /_sim/analyses does not serve it


def test_a_caller_waits_for_the_phrase_then_presses_the_key(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, workers=0)) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        call_id = place(http, to=LISTENS_FOR_BILLING, gather={"type": "dtmf", "num_digits": 1, "timeout": 10},
                        tts={"text": "Thank you for calling Canary. For sales, press 1. For billing, press 2.", "voice": "en-US-Neural2-D"})
        events = ended_events(http, call_id)
    [completed] = of_type(events, "gather.completed")
    assert completed["digits"] == "2" and completed["reason"] == "num_digits"
    [key] = of_type(events, "dtmf.received")
    prompt = of_type(events, "prompt.started")[0]
    # "billing" is the prompt's second-to-last word: the caller heard it, not just any speech
    assert key["start_s"] > prompt["call_time_s"] + 0.7 * prompt["duration_s"], (key, prompt)


@pytest.mark.parametrize(("to", "expected"), [(VOICEMAIL, {"machine_start", "machine_end_beep"}), (SAYS_HELLO, {"human"})])
def test_machine_detection_tells_a_voicemail_from_a_person(tmp_path: Path, to: str, expected: set[str]) -> None:
    with BackgroundServer(settings_for(tmp_path, workers=0)) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        call_id = place(http, to=to, tts={"text": "This is a reminder of your appointment tomorrow."}, machine_detection=True)
        events = ended_events(http, call_id)
    [decided] = of_type(events, "call.answered_by")
    assert decided["answered_by"] in expected, decided
    answered_s = of_type(events, "call.in-progress")[0]["call_time_s"]
    assert decided["call_time_s"] - answered_s <= 4.0 + 0.02


def test_waiting_for_the_beep_starts_the_message_after_it(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, workers=0)) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        call_id = place(http, to=VOICEMAIL, tts={"text": "Hello Sam, your order has shipped."},
                        machine_detection=True, machine_detection_wait_for_beep=True)
        events = ended_events(http, call_id)
    [decided] = of_type(events, "call.answered_by")
    assert decided["answered_by"] == "machine_end_beep" and decided["beep_after_s"] is not None
    answered_s = of_type(events, "call.in-progress")[0]["call_time_s"]
    prompt = of_type(events, "prompt.started")[0]
    assert prompt["call_time_s"] >= answered_s + decided["beep_after_s"]  # the message starts after the beep, not over the greeting


def test_a_language_without_a_model_says_which_to_pull_and_nothing_is_stuck(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver, BackgroundServer(settings_for(tmp_path, workers=0)) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        call_id = place(http, to="+15550100002", record=True, transcribe=True, webhook_url=f"{receiver.url}/hooks",
                        tts={"text": "Hola, gracias por llamar.", "voice": "es-ES-Neural2-A"})
        refused = http.post("/v1/voice/calls", json={"from": FROM, "to": "+15550100002", "tts": {"text": "Diga su departamento."},
                                                      "gather": {"type": "speech", "language": "es-ES"}})
        either = place(http, to="+15550100002", tts={"text": "Diga su departamento."}, gather={"type": "dtmf speech", "language": "es-ES", "timeout": 1})
        events = ended_events(http, call_id)
        # two failures are announced: the live transcript's (at the answer) and the recording's (after the call)
        wait_until(lambda: any(w.payload.get("type") == "transcription.failed" and w.payload.get("recording_id")
                               for w in list(receiver.received)), timeout_s=60)
        recording = http.get(f"/v1/voice/calls/{call_id}/recording").json()
        keys_only = ended_events(http, either)
    [live] = [e for e in of_type(events, "transcription.failed") if "recording_id" not in e]  # the real-time one
    assert "ivrsim models pull vosk-model-small-es" in live["reason"] and live["language"] == "es-ES"
    assert of_type(events, "call.completed") and of_type(events, "prompt.completed")  # the call itself went on
    assert recording["transcription"]["status"] == "failed"
    assert "ivrsim models pull vosk-model-small-es" in recording["transcription"]["reason"]
    error = refused.json()["error"]  # a speech-only gather that cannot hear its language is refused before the call
    assert refused.status_code == 422 and error["param"] == "gather.language" and "ivrsim models pull vosk-model-small-es" in error["message"]
    [started] = of_type(keys_only, "gather.started")  # with keys as well, the call goes on and says why speech is off
    assert started["input"] == "dtmf" and "vosk-model-small-es" in started["speech_error"]
    assert of_type(keys_only, "gather.completed")[0]["reason"] == "timeout"


def test_speech_injected_through_sim_reaches_a_speech_gather(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, workers=0, clock="manual")) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        call_id = place(http, to="+15550100002", tts={"text": "Say sales or billing."},
                        gather={"type": "speech", "hints": ["sales", "billing"], "timeout": 6})
        http.post("/_sim/clock", json={"advance_s": 5.0})  # rings, answers, plays the prompt
        wait_until(lambda: of_type(http.get(f"/v1/voice/calls/{call_id}/events").json()["data"], "prompt.completed"))
        injected = http.post(f"/_sim/calls/{call_id}/speech", json={"text": "sales", "voice": "en-US-Neural2-D"})
        assert injected.status_code == 200, injected.text
        http.post("/_sim/clock", json={"advance_s": 10.0})
        events = ended_events(http, call_id)
    [completed] = of_type(events, "gather.completed")
    assert completed["reason"] == "speech" and completed["speech"]["text"] == "sales", completed
    assert completed["speech"]["start_s"] >= injected.json()["call_time_s"] - 0.5  # heard where it was injected (with VAD pre-roll)


def test_a_transcript_a_crash_left_unasked_is_made_at_the_next_start(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, workers=0)) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        call_id = place(http, to=SAYS_BILLING, record=True, transcribe=True, tts={"text": "Please tell us the department you need."},
                        gather={"type": "dtmf", "timeout": 3})
        ended_events(http, call_id)
        wait_until(lambda: http.get(f"/v1/voice/calls/{call_id}/recording").json()["transcription"]["status"] == "completed", timeout_s=60)
    with sqlite3.connect(tmp_path / "ivrsim.sqlite3") as db:  # as if the server died between the call's end and the job
        assert db.execute("DELETE FROM jobs WHERE kind = 'transcription'").rowcount == 1
    with BackgroundServer(settings_for(tmp_path, workers=0)) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        transcription = wait_until(lambda: (t := http.get(f"/v1/voice/calls/{call_id}/recording").json()["transcription"])["status"] == "completed" and t,
                                   timeout_s=60)
    assert "department" in transcription["text"].split()

"""The Canonical call-analysis API (/api/v1) against a real server: the seed's own examples (curl with and
without its # comments, Python requests, Node axios), the schema enforced field by field in Fastify's error
shape, duplicate callIds, Retell's webhooks (the sample call_analyzed body end to end, other events, the
signature), the reads (one call, the list with filters and pages, the per-assistant aggregates), webhook_url
deliveries, and a restart while an analysis runs.

Recordings are two-party calls built from espeak-ng speech, the parties on separate channels at known times,
served by a loopback file server; transcribe is off where ASR is not the point (it has its own tests).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile

from ivrsim.api.routes.canonical import sign_retell
from ivrsim.api.server import BackgroundServer
from ivrsim.audio.resample import resample
from ivrsim.media.files import read_audio_file
from ivrsim.settings import Settings
from ivrsim.store.sqlite import Store
from ivrsim.testing.http import serve_bytes
from ivrsim.testing.waiting import wait_until
from ivrsim.webhooks.receiver import WebhookReceiver

KEY = "test-key"
HEADERS = {"X-Canonical-Api-Key": KEY}
RATE_HZ = 8000
REPO = Path(__file__).resolve().parent.parent
#: The seed document, copied into the repository from ../shared/seeds/ (CI has only the repository).
SEED = Path(__file__).parent / "seeds" / "canonical-call-analysis-api.txt"
SAMPLE = REPO / "samples" / "retell_call_analyzed.json"
NODE_DIR = REPO / "tests" / "node"

#: The sample's turns: (role, text, start_s); each is placed where its first word starts in the sample.
TURNS = [(u["role"], u["content"], u["words"][0]["start"]) for u in json.loads(SAMPLE.read_text())["call"]["transcript_object"]]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Each sample utterance spoken by espeak-ng (a different voice per role), at 8 kHz, trimmed to its sound."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is not installed: run ./setup.sh (it installs the Debian package espeak-ng)")
    folder = tmp_path_factory.mktemp("clips")
    out = {}
    for index, (role, text, _) in enumerate(TURNS):
        path = folder / f"{index}.wav"
        voice = "en-us" if role == "agent" else "en-us+m3"
        subprocess.run([espeak, "-v", voice, "-s", "165", "-w", str(path), text], check=True, capture_output=True)
        clip = read_audio_file(path)
        samples = resample(clip.samples[:, 0], clip.rate_hz, RATE_HZ).astype(np.float32)
        loud = np.nonzero(np.abs(samples) > 0.01)[0]
        out[text] = samples[loud[0]:loud[-1] + 1]
    return out


def conversation(clips: dict[str, np.ndarray], agent_channel: int = 1, duration_s: float = 20.0) -> tuple[bytes, list[float]]:
    """The sample call as a stereo WAV (the agent on ``agent_channel``, 0-based) and the latencies it was
    built with (user's end of turn to the agent's next start, in s)."""
    stereo = np.zeros((int(duration_s * RATE_HZ), 2), dtype=np.float32)
    ends: dict[str, float] = {}
    latencies = []
    for role, text, start_s in TURNS:
        clip = clips[text]
        at = round(start_s * RATE_HZ)
        stereo[at:at + len(clip), agent_channel if role == "agent" else 1 - agent_channel] += 0.5 * clip
        if role == "agent" and "user" in ends:
            latencies.append(start_s - ends.pop("user"))
        ends[role] = start_s + len(clip) / RATE_HZ
    buffer = io.BytesIO()
    soundfile.write(buffer, stereo, RATE_HZ, format="WAV", subtype="PCM_16")
    return buffer.getvalue(), latencies


@pytest.fixture(scope="module")
def recording(clips: dict[str, np.ndarray]) -> Iterator[tuple[str, list[float]]]:
    """The call served on loopback: (URL, built latencies)."""
    wav, latencies = conversation(clips)
    with serve_bytes(wav, "audio/wav") as url:
        yield f"{url}/call.wav", latencies


def settings_for(folder: Path, **overrides: Any) -> Settings:
    return Settings(**{"api_key": KEY, "port": 0, "data_dir": folder, "workers": 0, **overrides})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """One server (jobs in its own process) for the tests that only add calls of their own ids."""
    with BackgroundServer(settings_for(tmp_path_factory.mktemp("data"), webhook_backoff_s=0.2, webhook_jitter=0.0)) as running:
        yield running


@pytest.fixture
def http(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=30) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


def body_for(location: str, call_id: str, assistant_id: str = "bot-a", **extra: Any) -> dict[str, Any]:
    return {"assistant": {"id": assistant_id, "speaksFirst": True, "description": "Outbound Sales Agent"}, "location": location,
            "callId": call_id, "transcribe": False, **extra}


def ended(http: httpx.Client, call_id: str) -> dict[str, Any] | None:
    call = http.get(f"/api/v1/call/{call_id}").json()
    return call if call["status"] in ("completed", "failed") else None


def fastify_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()
    assert error["statusCode"] == status and isinstance(error["error"], str) and isinstance(error["message"], str), error
    return error


# -- the seed's examples ------------------------------------------------------------------------------


def seed_curl() -> str:
    text = SEED.read_text()
    return text[text.index("curl -X POST 'https://voiceapp.canonical.chat/api/v1/call'"):text.index("const axios")]


def test_the_seed_curl_example_gets_a_clear_400_for_its_comments_and_200_without_them(http: httpx.Client, server: BackgroundServer,
                                                                                      recording: tuple[str, list[float]]) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed: run ./setup.sh")
    call_id = unique("curl")
    example = (seed_curl().replace("https://voiceapp.canonical.chat", server.base_url).replace("YOUR_API_KEY_HERE", KEY)
               .replace("ACCESSIBLE_URL_TO_AUDIO_FILE", recording[0]).replace("YOUR_CALL_ID", call_id))
    with_comments = subprocess.run(["bash", "-c", example.strip() + " -s -w '\\n%{http_code}'"], check=False, capture_output=True, text=True, timeout=30)
    answer, _, status = with_comments.stdout.rpartition("\n")
    assert status == "400", with_comments.stdout
    error = json.loads(answer)
    assert error["code"] == "FST_ERR_CTP_INVALID_JSON_BODY"
    assert "no comments" in error["message"] and "line 3" in error["message"] and "'#'" in error["message"]

    uncommented = re.sub(r" # [^\n]*", "", example)
    plain = subprocess.run(["bash", "-c", uncommented.strip() + " -s -w '\\n%{http_code}'"], check=False, capture_output=True, text=True, timeout=30)
    answer, _, status = plain.stdout.rpartition("\n")
    assert status == "200", plain.stdout
    assert json.loads(answer)["callId"] == call_id
    done = wait_until(lambda: ended(http, call_id), timeout_s=60)
    assert done["status"] == "completed", done["failureReason"]
    assert done["assistant"] == {"id": "UNIQUE_ID_FOR_THE_ASSISTANT", "speaksFirst": True, "description": "Outbound Sales Agent"}


#: The seed's Python example with its indentation restored (the seed's text lost it); the test checks that it
#: is the seed's program, character for character but for whitespace.
PYTHON_EXAMPLE = """import os
import requests
CANONICAL_API = 'https://voiceapp.canonical.chat'
HEADERS = {
    'Content-Type': 'application/json',
    'X-Canonical-Api-Key': os.environ.get('CANONICAL_API_KEY')
}
def main():
    try:
        response = requests.post(
            f"{CANONICAL_API}/api/v1/call",
            json={
                "assistant": {
                    "id": "UNIQUE_ID_FOR_THE_ASSISTANT", # you will use this to select between different AI agents on our dashboard (e.g., Voicebot v0.1)
                    "speaksFirst": True, # if the AI agent speaks first in the call, then set to true
                    "description": "Outbound Sales Agent" # optional friendly name or description for the assistant
                },
                "location": "ACCESSIBLE_URL_TO_AUDIO_FILE",
                "callId": "YOUR_CALL_ID" # use this to to map the call back to your system
            },
            headers=HEADERS
        )
        response.raise_for_status()
        print(response.json())
    except requests.RequestException as error:
        print(f"Error: {str(error)}")
if __name__ == "__main__":
    main()
"""


def test_the_seed_python_requests_example(http: httpx.Client, server: BackgroundServer, recording: tuple[str, list[float]]) -> None:
    text = SEED.read_text()
    seed_example = text[text.index("import os\nimport requests"):text.index("Simply send a POST request")]
    assert re.sub(r"\s+", "", seed_example) == re.sub(r"\s+", "", PYTHON_EXAMPLE)
    example = PYTHON_EXAMPLE
    call_id = unique("python")
    example = (example.replace("https://voiceapp.canonical.chat", server.base_url).replace("ACCESSIBLE_URL_TO_AUDIO_FILE", recording[0])
               .replace("YOUR_CALL_ID", call_id))
    run = subprocess.run([sys.executable, "-c", example], check=False, capture_output=True, text=True, timeout=60, env={**os.environ, "CANONICAL_API_KEY": KEY})
    assert run.returncode == 0 and "Error" not in run.stdout, run.stdout + run.stderr
    assert f"'callId': '{call_id}'" in run.stdout
    assert http.get(f"/api/v1/call/{call_id}").json()["assistant"]["id"] == "UNIQUE_ID_FOR_THE_ASSISTANT"


def test_the_seed_node_axios_example(server: BackgroundServer, recording: tuple[str, list[float]]) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (NODE_DIR / "node_modules" / "axios").is_dir():
        pytest.fail("axios is not installed for the tests: run ./setup.sh (npm ci --prefix tests/node)")
    text = SEED.read_text()
    call_id = unique("axios")
    example = text[text.index("const axios"):text.index("import os\nimport requests")]
    example = (example.replace("https://voiceapp.canonical.chat", server.base_url).replace("ACCESSIBLE_URL_TO_AUDIO_FILE", recording[0])
               .replace("YOUR_CALL_ID", call_id))
    run = subprocess.run([node, "-e", example], check=False, capture_output=True, text=True, timeout=60, cwd=NODE_DIR,
                         env={**os.environ, "CANONICAL_API_KEY": KEY, "NODE_PATH": str(NODE_DIR / "node_modules")})
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"callId: '{call_id}'" in run.stdout, run.stdout + run.stderr


# -- the schema -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "message", "param"), [
    ({"assistant": None}, "body must have required property 'assistant'", "assistant"),
    ({"location": None}, "body must have required property 'location'", "location"),
    ({"callId": None}, "body must have required property 'callId'", "callId"),
    ({"assistant": {"speaksFirst": True}}, "body/assistant must have required property 'id'", "assistant.id"),
    ({"assistant": {"id": "a"}}, "body/assistant must have required property 'speaksFirst'", "assistant.speaksFirst"),
    ({"assistant": "bot"}, "body/assistant must be object", "assistant"),
    ({"assistant": {"id": 7, "speaksFirst": True}}, "body/assistant/id must be string", "assistant.id"),
    ({"assistant": {"id": "a", "speaksFirst": "true"}}, "body/assistant/speaksFirst must be boolean", "assistant.speaksFirst"),
    ({"assistant": {"id": "a", "speaksFirst": 1}}, "body/assistant/speaksFirst must be boolean", "assistant.speaksFirst"),
    ({"assistant": {"id": "a", "speaksFirst": True, "description": 5}}, "body/assistant/description must be string", "assistant.description"),
    ({"callId": 12345}, "body/callId must be string", "callId"),
    ({"callId": "  "}, "body/callId must NOT be empty", "callId"),
    ({"location": ["x"]}, "body/location must be string", "location"),
    ({"location": "/etc/passwd"}, "body/location: ", "location"),
    ({"location": "ftp://example.com/a.wav"}, "body/location: ", "location"),
    ({"transcribe": "no"}, "body/transcribe must be boolean", "transcribe"),
    ({"dead_air_threshold_s": "3"}, "body/dead_air_threshold_s must be number", "dead_air_threshold_s"),
    ({"dead_air_threshold_s": 0.1}, "body/dead_air_threshold_s must be >= 0.5", "dead_air_threshold_s"),
    ({"webhook_url": "not a url"}, "body/webhook_url must be an http", "webhook_url"),
])
def test_every_field_is_enforced_by_name_without_coercion(http: httpx.Client, change: dict[str, Any], message: str, param: str) -> None:
    call_id = unique("schema")
    body = body_for("http://127.0.0.1:9/call.wav", call_id)
    for name, value in change.items():
        if value is None:
            del body[name]
        else:
            body[name] = value
    error = fastify_error(http.post("/api/v1/call", json=body), 400)
    assert error["message"].startswith(message), error
    assert error["param"] == param
    assert http.get(f"/api/v1/call/{call_id}").status_code == 404  # nothing stored


def test_bodies_that_are_not_json_objects_and_unknown_fields(http: httpx.Client) -> None:
    not_object = fastify_error(http.post("/api/v1/call", json=[1, 2]), 400)
    assert not_object["message"] == "body must be object" and not_object["code"] == "FST_ERR_VALIDATION"
    empty = fastify_error(http.post("/api/v1/call", content=b"", headers={"Content-Type": "application/json"}), 400)
    assert empty["code"] == "FST_ERR_CTP_EMPTY_JSON_BODY"
    broken = fastify_error(http.post("/api/v1/call", content=b'{"callId": "x",}', headers={"Content-Type": "application/json"}), 400)
    assert "line 1" in broken["message"] and "not valid JSON" in broken["message"]
    slashes = fastify_error(http.post("/api/v1/call", content=b'{"callId": "a//b" // mine\n}', headers={"Content-Type": "application/json"}), 400)
    assert "'//'" in slashes["message"] and "line 1, column 19" in slashes["message"]  # not the // inside the string
    text = fastify_error(http.post("/api/v1/call", content=b"callId=x", headers={"Content-Type": "text/plain"}), 415)
    assert text["code"] == "FST_ERR_CTP_INVALID_MEDIA_TYPE" and "application/json" in text["message"]
    assert fastify_error(http.get("/api/v1/no-such-thing"), 404)["error"] == "Not Found"
    call_id = unique("extra")
    accepted = http.post("/api/v1/call", json={**body_for("http://127.0.0.1:9/call.wav", call_id), "colour": "red", "metadata": {"a": 1}})
    assert accepted.status_code == 200 and accepted.json()["callId"] == call_id


def test_the_key_is_required_and_checked(server: BackgroundServer, http: httpx.Client) -> None:
    missing = fastify_error(httpx.post(f"{server.base_url}/api/v1/call", json={}), 401)
    assert missing["param"] == "X-Canonical-Api-Key"
    wrong = fastify_error(httpx.get(f"{server.base_url}/api/v1/calls", headers={"X-Canonical-Api-Key": "nope"}), 401)
    assert "not valid" in wrong["message"]
    bearer_only = httpx.get(f"{server.base_url}/api/v1/assistants", headers={"Authorization": f"Bearer {KEY}"})
    assert bearer_only.status_code == 401
    assert http.get("/api/v1/call/never-sent").status_code == 404
    assert fastify_error(http.get("/api/v1/call/never-sent"), 404)["param"] == "callId"


def test_a_canonical_key_of_its_own_replaces_the_server_key(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, canonical_api_key="canon-key")) as running:
        own = httpx.get(f"{running.base_url}/api/v1/calls", headers={"X-Canonical-Api-Key": "canon-key"})
        server_key = httpx.get(f"{running.base_url}/api/v1/calls", headers={"X-Canonical-Api-Key": KEY})
    assert own.status_code == 200 and server_key.status_code == 401


# -- calls: duplicates, results, the list, the dashboard, webhooks --------------------------------------


def test_a_call_is_analysed_once_read_back_listed_and_summed_for_its_assistant(http: httpx.Client, recording: tuple[str, list[float]]) -> None:
    url, built = recording
    assistant = unique("dashboard")
    ids = [unique("call") for _ in range(3)]
    with WebhookReceiver() as receiver:
        first = http.post("/api/v1/call", json=body_for(url, ids[0], assistant, webhook_url=f"{receiver.url}/hook"))
        assert first.status_code == 200 and first.json() == {"callId": ids[0], "alreadyReceived": False, "status": "queued"}
        again = http.post("/api/v1/call", json={**body_for(url, ids[0], assistant), "location": "http://127.0.0.1:9/other.wav"})
        assert again.status_code == 200 and again.json()["alreadyReceived"] is True and "not analysed again" in again.json()["message"]
        for call_id in ids[1:]:
            assert http.post("/api/v1/call", json=body_for(url, call_id, assistant)).status_code == 200
        failing = unique("fails")
        assert http.post("/api/v1/call", json=body_for("http://127.0.0.1:9/nothing.wav", failing, assistant)).status_code == 200
        calls = [wait_until(lambda c=c: ended(http, c), timeout_s=60) for c in [*ids, failing]]
        assert receiver.wait_for(ids[0], "analysis.completed", timeout_s=60)
        hooks = [w.payload for w in receiver.received]

    for call in calls[:3]:
        assert call["status"] == "completed", call["failureReason"]
        assert call["attempts"] == 1 and call["source"] == "api"
        latency = call["analysis"]["latency_ms"]
        assert latency["num"] == len(built) == 2
        assert latency["values"] == pytest.approx([1000 * b for b in built], abs=80)
        assert call["analysis"]["speakers"]["assistant"]["channel"] == 2  # the party that speaks first
    assert calls[3]["status"] == "failed" and calls[3]["failureReason"].startswith("location") and calls[3]["analysis"] is None

    assert [h["type"] for h in hooks] == ["analysis.completed"] and hooks[0]["callId"] == ids[0]
    assert hooks[0]["analysis"]["latency_ms"]["values"] == calls[0]["analysis"]["latency_ms"]["values"]

    listed = http.get("/api/v1/calls", params={"assistantId": assistant}).json()
    assert [c["callId"] for c in listed["data"]] == [failing, *reversed(ids)] and listed["has_more"] is False
    assert listed["data"][1]["summary"]["latency_ms"]["num"] == 2 and "analysis" not in listed["data"][1]
    page_one = http.get("/api/v1/calls", params={"assistantId": assistant, "limit": 2}).json()
    page_two = http.get("/api/v1/calls", params={"assistantId": assistant, "limit": 2, "starting_after": page_one["data"][-1]["callId"]}).json()
    assert page_one["has_more"] is True and page_two["has_more"] is False
    assert [c["callId"] for c in page_one["data"] + page_two["data"]] == [c["callId"] for c in listed["data"]]
    failed_only = http.get("/api/v1/calls", params={"assistantId": assistant, "status": "failed"}).json()["data"]
    assert [c["callId"] for c in failed_only] == [failing]
    assert fastify_error(http.get("/api/v1/calls", params={"status": "done"}), 400)["param"] == "status"
    assert fastify_error(http.get("/api/v1/calls", params={"limit": "many"}), 400)["param"] == "limit"
    assert fastify_error(http.get("/api/v1/calls", params={"starting_after": "nope"}), 404)["param"] == "starting_after"

    row = next(a for a in http.get("/api/v1/assistants", params={"limit": 1000}).json()["data"] if a["id"] == assistant)
    values = [v for c in calls[:3] for v in c["analysis"]["latency_ms"]["values"]]
    assert (row["calls"], row["completed"], row["failed"], row["pending"]) == (4, 3, 1, 0)
    assert row["latency_ms"]["num"] == 6
    assert row["latency_ms"]["p50"] == pytest.approx(float(np.percentile(values, 50)), abs=0.05)
    assert row["latency_ms"]["p90"] == pytest.approx(float(np.percentile(values, 90)), abs=0.05)
    interruptions = sum(c["analysis"]["interruptions"]["num_user_interrupted"] + c["analysis"]["interruptions"]["num_assistant_interrupted"]
                        for c in calls[:3])
    minutes = sum(c["analysis"]["duration_s"] for c in calls[:3]) / 60
    assert row["interruptions"]["total"] == interruptions and row["interruptions"]["per_call"] == pytest.approx(interruptions / 3, abs=1e-3)
    assert row["interruptions"]["per_minute"] == pytest.approx(interruptions / minutes, abs=1e-3)
    dead_air = sum(c["analysis"]["dead_air"]["total_s"] for c in calls[:3])
    assert row["dead_air"]["total_s"] == pytest.approx(dead_air, abs=1e-3) and row["dead_air"]["per_call_s"] == pytest.approx(dead_air / 3, abs=1e-3)
    assert row["assistant"]["description"] == "Outbound Sales Agent"


def test_a_failed_analysis_is_announced_as_failed(http: httpx.Client) -> None:
    call_id = unique("hook-fail")
    with serve_bytes(b"<html>not audio</html>", "text/html") as page, WebhookReceiver() as receiver:
        assert http.post("/api/v1/call", json=body_for(f"{page}/x.wav", call_id, webhook_url=receiver.url)).status_code == 200
        assert receiver.wait_for(call_id, "analysis.failed", timeout_s=60)
        payload = next(w.payload for w in receiver.received if w.payload["callId"] == call_id)
    assert payload["status"] == "failed" and "not audio" in payload["failureReason"] and "<html>" not in payload["failureReason"]


# -- Retell ---------------------------------------------------------------------------------------------


def retell_body(url: str, call_id: str, container: str = "call") -> dict[str, Any]:
    body = json.loads(SAMPLE.read_text())
    call = body.pop("call")
    call.update({"call_id": call_id, "recording_multi_channel_url": url, "recording_url": "http://127.0.0.1:9/mono.wav"})
    body[container] = call
    return body


def test_retell_events_other_than_call_analyzed_get_200_with_an_error(http: httpx.Client) -> None:
    for event in ("call_started", "call_ended"):
        answer = http.post("/api/v1/webhooks/retell", json={"event": event, "call": {"call_id": unique("retell")}})
        assert answer.status_code == 200 and "call_analyzed" in answer.json()["error"] and answer.json()["event"] == event
    assert fastify_error(http.post("/api/v1/webhooks/retell", json={"call": {}}), 400)["message"] == "body must have required property 'event'"
    no_recording = {"event": "call_analyzed", "call": {"call_id": unique("retell"), "agent_id": "a"}}
    assert fastify_error(http.post("/api/v1/webhooks/retell", json=no_recording), 400)["param"] == "call.recording_url"


@pytest.mark.parametrize("container", ["call", "data"])
def test_the_sample_call_analyzed_body_is_analysed_end_to_end(http: httpx.Client, recording: tuple[str, list[float]], container: str) -> None:
    url, built = recording
    call_id = unique("retell")
    answer = http.post("/api/v1/webhooks/retell", json=retell_body(url, call_id, container))
    assert answer.status_code == 200 and answer.json()["callId"] == call_id
    done = wait_until(lambda: ended(http, call_id), timeout_s=60)
    assert done["status"] == "completed", done["failureReason"]
    assert done["source"] == "retell"
    assert done["assistant"] == {"id": "oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD", "speaksFirst": True, "description": "Sunrise Dental receptionist"}
    analysis = done["analysis"]
    assert analysis["source"]["location"] == url  # the multichannel recording, not the mono one
    assert analysis["latency_ms"]["values"] == pytest.approx([1000 * b for b in built], abs=80)
    transcript = analysis["transcript"]
    assert transcript["source"] == "retell" and "reason" not in transcript
    assert [u["speaker"] for u in transcript["utterances"]] == ["assistant", "user", "assistant", "user", "assistant"]
    assert analysis["speakers"]["user"]["words"] == 14  # "Hi, I would like to book a cleaning for next week." + "Yes, that works."
    assert analysis["call"] == {"call_id": call_id, "assistant_id": "oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD"}
    assert http.post("/api/v1/webhooks/retell", json=retell_body(url, call_id, container)).json()["alreadyReceived"] is True


def test_retell_signatures_are_verified_when_a_retell_key_is_set(tmp_path: Path, recording: tuple[str, list[float]]) -> None:
    body = json.dumps(retell_body(recording[0], unique("signed"))).encode()
    now_ms = int(time.time() * 1000)
    plain = {"Content-Type": "application/json"}
    with BackgroundServer(settings_for(tmp_path, retell_api_key="retell-key")) as running, httpx.Client(base_url=running.base_url, timeout=30) as client:
        def post(signature: str | None, headers: dict[str, str] = plain) -> httpx.Response:
            extra = {"x-retell-signature": signature} if signature is not None else {}
            return client.post("/api/v1/webhooks/retell", content=body, headers={**headers, **extra})

        correct = post(sign_retell("retell-key", body, now_ms))  # Retell itself: no canonical key, its signature
        wrong_key = post(sign_retell("other-key", body, now_ms), {**plain, **HEADERS})
        tampered = post(sign_retell("retell-key", body + b" ", now_ms))
        expired = post(sign_retell("retell-key", body, now_ms - 6 * 60 * 1000))
        in_seconds = post(sign_retell("retell-key", body, now_ms // 1000))
        unsigned = post(None, {**plain, **HEADERS})
        garbled = post("v=abc,d=zz")
    assert correct.status_code == 200 and correct.json()["alreadyReceived"] is False
    for response, words in ((wrong_key, "does not match"), (tampered, "does not match"), (expired, "s ago; signatures are accepted for 5 minutes"), (unsigned, "missing"),
                            (garbled, "not of the form")):
        error = fastify_error(response, 401)
        assert words in error["message"] and error["param"] == "x-retell-signature"
    assert "that is seconds" in fastify_error(in_seconds, 401)["message"]


def test_a_long_calls_retell_body_over_a_megabyte_is_taken_and_a_call_id_with_a_slash_reads_back(http: httpx.Client,
                                                                                                 recording: tuple[str, list[float]]) -> None:
    call_id = unique("retell/long")
    body = retell_body(recording[0], call_id)
    words = [{"word": "word", "start": i * 0.3, "end": i * 0.3 + 0.2} for i in range(20_000)]  # well over an hour of talk
    body["call"]["transcript_object"] = [{"role": "user", "content": "word " * 20_000, "words": words}]
    raw = json.dumps(body).encode()
    assert len(raw) > 1_000_000  # over the API's general body cap
    taken = http.post("/api/v1/webhooks/retell", content=raw, headers={"Content-Type": "application/json", **HEADERS})
    assert taken.status_code == 200, taken.text
    assert http.get(f"/api/v1/call/{call_id}").json()["callId"] == call_id


# -- a restart ------------------------------------------------------------------------------------------


def test_a_call_whose_analysis_was_running_at_a_restart_ends_once_on_a_worker(tmp_path: Path, clips: dict[str, np.ndarray]) -> None:
    wav, _ = conversation(clips)
    gate = threading.Event()
    call_id = unique("restart")
    assistant = unique("restart-bot")
    with serve_bytes(wav, "audio/wav", gate=gate) as slow, WebhookReceiver() as receiver:
        with BackgroundServer(settings_for(tmp_path)) as running, httpx.Client(base_url=running.base_url, headers=HEADERS, timeout=30) as client:
            assert client.post("/api/v1/call", json=body_for(f"{slow}/call.wav", call_id, assistant, webhook_url=receiver.url)).status_code == 200
            wait_until(lambda: client.get(f"/api/v1/call/{call_id}").json()["status"] == "processing")
        gate.set()  # stopped while the fetch waited: the job is still processing in the store
        with BackgroundServer(settings_for(tmp_path, workers=1)) as running, httpx.Client(base_url=running.base_url, headers=HEADERS, timeout=30) as client:
            done = wait_until(lambda: ended(client, call_id), timeout_s=90)
            assert receiver.wait_for(call_id, "analysis.completed", timeout_s=60)
            dashboard = client.get("/api/v1/assistants").json()["data"]
        announced = [w for w in receiver.received if w.payload["callId"] == call_id]
    assert done["status"] == "completed", done["failureReason"]
    assert done["attempts"] == 2
    assert len(announced) == 1
    row = next(a for a in dashboard if a["id"] == assistant)
    assert (row["calls"], row["completed"], row["failed"]) == (1, 1, 0)


def test_a_call_stored_without_its_job_gets_one_at_the_next_start(tmp_path: Path, recording: tuple[str, list[float]]) -> None:
    """The process stopped between the call's row and its job (the client got no answer): the next start
    queues the stored request, and the client's retry of the same callId is told it was received."""
    call_id = unique("orphan")
    store = Store(tmp_path / "ivrsim.sqlite3")
    job_input = {"location": recording[0], "speaks_first": True, "transcribe": False, "call_id": call_id, "assistant_id": "bot-o"}
    assert store.insert_canonical_call(call_id, {"id": "bot-o", "speaksFirst": True}, "api", None, job_input)
    store.close()
    with BackgroundServer(settings_for(tmp_path)) as running, httpx.Client(base_url=running.base_url, headers=HEADERS, timeout=30) as client:
        retry = client.post("/api/v1/call", json=body_for(recording[0], call_id, "bot-o"))
        done = wait_until(lambda: ended(client, call_id), timeout_s=60)
    assert retry.json()["alreadyReceived"] is True
    assert done["status"] == "completed" and done["attempts"] == 1, done["failureReason"]

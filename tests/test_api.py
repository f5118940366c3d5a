"""The Canary Voice API through real HTTP on loopback, with a real webhook receiver.

The documented examples are sent verbatim (host changed); every bad input gets the right status and a
message that names the field.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ivrsim.api.server import BackgroundServer
from ivrsim.client import Canary, CanaryError, verify_signature
from ivrsim.settings import Settings
from ivrsim.testing.waiting import wait_until

KEY = "test-key"
SECRET = "whsec_test"
AUTH = {"Authorization": f"Bearer {KEY}"}
FINAL = ("completed", "busy", "no-answer", "failed")
#: The server's webhook timeout in these tests, and how long /slow takes to answer its first request.
WEBHOOK_TIMEOUT_S = 2.0
SLOW_RECEIVER_S = 3.0


class Receiver:
    """A webhook receiver: records every POST; ``/flaky`` fails twice, ``/slow`` answers late, ``/reject`` says 400."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.failures: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.split("?")[0]
                count = receiver.failures.get(self.path, 0)
                receiver.failures[self.path] = count + 1
                if path == "/flaky" and count < 2:
                    self.send_response(503)
                    self.end_headers()
                    return
                if path == "/slow" and count < 1:
                    time.sleep(SLOW_RECEIVER_S)
                if path == "/reject":
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.received.append({"path": self.path, "headers": dict(self.headers), "raw": body, "json": json.loads(body)})
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def for_call(self, call_id: str) -> list[dict[str, Any]]:
        return [r["json"] for r in self.received if r["json"]["call_id"] == call_id]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    instance = Receiver()
    yield instance
    instance.server.shutdown()


def settings_for(folder: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_key": KEY,
        "port": 0,
        "data_dir": folder,
        "webhook_secret": SECRET,
        "webhook_attempts": 3,
        "webhook_backoff_s": 0.05,
        # generous enough that a healthy receiver on a cold machine answers in time; /slow is slower still
        "webhook_timeout_s": WEBHOOK_TIMEOUT_S,
        "webhook_connect_timeout_s": WEBHOOK_TIMEOUT_S,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with BackgroundServer(settings_for(tmp_path_factory.mktemp("server"))) as running:
        yield running.base_url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=30) as http:
        yield http


def place(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/voice/calls", json={"from": "+15559876543", **body})
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(client: httpx.Client, call_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        call = client.get(f"/v1/voice/calls/{call_id}").json()
        if call["status"] in FINAL:
            return call
        time.sleep(0.02)
    raise AssertionError(f"call {call_id} did not end")


def wait_for_deliveries(client: httpx.Client, call_id: str, count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The call's delivery log once it holds ``count`` deliveries and none is still pending."""
    log: list[dict[str, Any]] = []

    def settled() -> bool:
        nonlocal log
        log = client.get(f"/v1/voice/calls/{call_id}/webhooks").json()["data"]
        return len(log) >= count and all(d["status"] != "pending" for d in log)

    wait_until(settled, timeout_s)
    return log


# -- the documented examples ------------------------------------------------------------------------------


def test_quick_start_example_verbatim(server: str) -> None:
    """The curl of the Quick Start, as raw bytes, with only the host changed."""
    body = b"""
  {
    "to": "+15551234567",
    "from": "+15559876543",
    "tts": {
      "text": "Hello! This is a call from Canary. Press 1 to confirm.",
      "voice": "en-US-Neural2-F"
    }
  }
"""
    response = httpx.post(f"{server}/v1/voice/calls", content=body, headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert response.status_code == 200
    document = response.json()
    assert list(document) == ["id", "to", "from", "status", "direction", "created_at"]
    assert document["id"].startswith("call_") and len(document["id"]) > 10
    assert (document["to"], document["from"], document["status"], document["direction"]) == ("+15551234567", "+15559876543", "queued", "outbound")
    assert time.strptime(document["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ")


def test_sdk_example_with_the_python_client(server: str) -> None:
    canary = Canary(KEY, base_url=server)
    call = canary.voice.call(to="+15551234567", from_="+15559876543", tts={"text": "Hello from Canary!", "voice": "en-US-Neural2-F"}, record=True)
    assert call.id.startswith("call_") and call.status == "queued"
    assert canary.voice.wait(call.id).status == "completed"
    assert canary.voice.recording(call.id)["call_id"] == call.id


def test_gather_example_sends_the_documented_payload(client: httpx.Client, receiver: Receiver) -> None:
    call = place(
        client,
        to="+15550100001",
        tts={"text": "Please enter your 4-digit PIN followed by the pound key."},
        gather={"type": "dtmf", "num_digits": 4, "finish_on_key": "#", "timeout": 10, "webhook_url": f"{receiver.url}/dtmf"},
    )
    wait_for(client, call["id"])
    wait_until(lambda: any(r["json"]["type"] == "gather.completed" and r["json"]["call_id"] == call["id"] for r in receiver.received))
    [payload] = [r["json"] for r in receiver.received if r["path"] == "/dtmf" and r["json"]["call_id"] == call["id"]]
    assert list(payload)[:4] == ["call_id", "type", "digits", "finished_on_key"]
    assert {k: payload[k] for k in ("call_id", "type", "digits", "finished_on_key")} == {
        "call_id": call["id"], "type": "gather.completed", "digits": "1234", "finished_on_key": ""}


def test_finish_on_key_gather(client: httpx.Client, receiver: Receiver) -> None:
    call = place(client, to="+15550100001", tts={"text": "PIN, then pound."}, gather={"timeout": 10}, webhook_url=f"{receiver.url}/hooks")
    wait_for(client, call["id"])
    wait_until(lambda: any(e["type"] == "call.completed" for e in receiver.for_call(call["id"])))
    gathered = next(e for e in receiver.for_call(call["id"]) if e["type"] == "gather.completed")
    assert (gathered["digits"], gathered["finished_on_key"]) == ("1234", "#")


def test_recording_example_and_the_file(client: httpx.Client) -> None:
    call = place(client, to="+15550100001", tts={"text": "This call may be recorded for quality purposes."}, record=True, transcribe=True, recording_channels="dual")
    final = wait_for(client, call["id"])
    response = client.get(f"/v1/voice/calls/{call['id']}/recording")
    assert response.status_code == 200
    recording = response.json()
    assert list(recording)[:5] == ["id", "call_id", "duration", "url", "transcription"]
    assert recording["id"].startswith("rec_") and recording["call_id"] == call["id"]
    assert recording["duration"] == round(final["duration"]) and recording["duration_s"] == pytest.approx(final["duration"], abs=0.001)
    wav = httpx.get(recording["url"])
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    assert wav.content[:4] == b"RIFF" and int.from_bytes(wav.content[22:24], "little") == 2  # two channels


def test_recording_missing_says_why(client: httpx.Client) -> None:
    unrecorded = place(client, to="+15550100001", tts={"text": "Hi."})
    wait_for(client, unrecorded["id"])
    response = client.get(f"/v1/voice/calls/{unrecorded['id']}/recording")
    assert response.status_code == 409 and "without record: true" in response.json()["error"]["message"]
    busy = place(client, to="+15550100486", tts={"text": "Hi."}, record=True)
    wait_for(client, busy["id"])
    response = client.get(f"/v1/voice/calls/{busy['id']}/recording")
    assert response.status_code == 409 and "ended busy before it was answered" in response.json()["error"]["message"]


# -- reading calls ----------------------------------------------------------------------------------------


def test_get_list_and_events(client: httpx.Client) -> None:
    first = place(client, to="+15550100486", tts={"text": "Hi."})
    second = place(client, to="+15550100002", tts={"text": "Hi."})
    wait_for(client, first["id"])
    final = wait_for(client, second["id"])
    assert final["status"] == "completed" and final["answered_at"] and final["ended_at"]
    page = client.get("/v1/voice/calls", params={"limit": 1}).json()
    assert page["data"][0]["id"] == second["id"] and page["has_more"] is True
    following = client.get("/v1/voice/calls", params={"limit": 1, "starting_after": page["next_starting_after"]}).json()
    assert following["data"][0]["id"] == first["id"]
    busy = client.get("/v1/voice/calls", params={"status": "busy"}).json()["data"]
    assert busy and all(c["status"] == "busy" for c in busy)
    events = client.get(f"/v1/voice/calls/{second['id']}/events").json()["data"]
    assert [e["type"] for e in events][:3] == ["call.queued", "call.ringing", "call.in-progress"]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))


def test_voices_endpoint(client: httpx.Client) -> None:
    voices = client.get("/v1/voice/voices").json()["data"]
    assert {"en-US-Neural2-F", "en-US-Neural2-D", "en-GB-Neural2-A", "es-ES-Neural2-A", "fr-FR-Neural2-A"} <= {v["id"] for v in voices}


def test_openapi_describes_the_api(server: str) -> None:
    paths = httpx.get(f"{server}/openapi.json").json()["paths"]
    assert {"/v1/voice/calls", "/v1/voice/calls/{call_id}", "/v1/voice/calls/{call_id}/recording", "/_sim/health"} <= set(paths)


# -- bad input --------------------------------------------------------------------------------------------

GOOD = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hello"}}


@pytest.mark.parametrize(
    ("change", "status", "code", "param", "fragment"),
    [
        ({"to": None}, 422, "missing_parameter", "to", "to is required"),
        ({"to": "5551234567"}, 422, "invalid_parameter", "to", "E.164"),
        ({"from": "+15550000000"}, 422, "unverified_number", "from", "--verified-number"),
        ({"tts": None}, 422, "invalid_parameter", None, "tts (text to speak) or audio_url"),
        ({"tts": {"text": "Hi", "voice": "en-US-Neural2-Z"}}, 422, "unknown_voice", "tts.voice", "did you mean"),
        ({"tts": {"text": "<speak>Hi <break time='x'/></speak>"}}, 422, "invalid_ssml", "tts.text", "line 1, column"),
        ({"tts": {"text": "Hi", "speed": 9}}, 422, "invalid_parameter", "tts.speed", "less than or equal to 4"),
        ({"timeout": "abc"}, 422, "invalid_parameter", "timeout", "must be an integer"),
        ({"recording_channels": "stereo"}, 422, "invalid_parameter", "recording_channels", "'dual' or 'mono'"),
        ({"gather": {"finish_on_key": "X"}}, 422, "invalid_parameter", "gather.finish_on_key", "one DTMF key"),
        ({"colour": "blue"}, 422, "invalid_parameter", "colour", "not a parameter"),
        ({"webhook_url": "ftp://x"}, 422, "invalid_parameter", "webhook_url", "http:// or https://"),
    ],
)
def test_bad_requests_name_the_field(client: httpx.Client, change: dict[str, Any], status: int, code: str, param: str | None, fragment: str) -> None:
    body = {**GOOD, **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = client.post("/v1/voice/calls", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    assert fragment in error["message"]


def test_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.post("/v1/voice/calls", content=b'{"to": "+1555', headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_wrong_content_type_is_415(client: httpx.Client) -> None:
    response = client.post("/v1/voice/calls", content=b"to=+15551234567", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415 and "application/json" in response.json()["error"]["message"]


def test_body_over_1_mb_is_413(client: httpx.Client) -> None:
    body = json.dumps({**GOOD, "tts": {"text": "a" * 1_100_000}}).encode()
    response = client.post("/v1/voice/calls", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:
        yield body[:500_000]
        yield body[500_000:]

    chunked = client.post("/v1/voice/calls", content=chunks(), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}])
def test_missing_or_wrong_key_is_401(server: str, headers: dict[str, str]) -> None:
    response = httpx.post(f"{server}/v1/voice/calls", json=GOOD, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_unknown_ids_are_404(client: httpx.Client) -> None:
    for path in ("/v1/voice/calls/call_nope", "/v1/voice/calls/call_nope/events", "/v1/voice/calls/call_nope/recording", "/v1/voice/recordings/rec_nope.wav"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


def test_client_raises_the_api_error(server: str) -> None:
    with pytest.raises(CanaryError) as caught:
        Canary(KEY, base_url=server).voice.call(to="nope", from_="+15559876543", tts={"text": "Hi"})
    assert (caught.value.status, caught.value.param) == (422, "to")


# -- webhooks ---------------------------------------------------------------------------------------------


def test_status_webhooks_arrive_in_order_and_signed(client: httpx.Client, receiver: Receiver) -> None:
    call = place(client, to="+15550100001", tts={"text": "PIN please."}, gather={"num_digits": 4}, record=True, webhook_url=f"{receiver.url}/status")
    wait_for(client, call["id"])
    wait_until(lambda: any(e["type"] == "call.completed" for e in receiver.for_call(call["id"])))
    received = [r for r in receiver.received if r["json"]["call_id"] == call["id"]]
    types = [r["json"]["type"] for r in received]
    assert types == ["call.queued", "call.ringing", "call.in-progress", "gather.completed", "recording.completed", "call.completed"]
    assert [r["json"]["sequence"] for r in received] == sorted(r["json"]["sequence"] for r in received)
    for item in received:
        assert verify_signature(SECRET, item["headers"]["X-Ivrsim-Signature"], item["raw"])
        assert not verify_signature("other", item["headers"]["X-Ivrsim-Signature"], item["raw"])
    # The server records "delivered" only once the receiver's 2xx is back: wait for that very condition.
    log = wait_for_deliveries(client, call["id"], count=len(types))
    assert [d["event_type"] for d in log] == types
    assert all(d["status"] == "delivered" and len(d["attempts"]) == 1 for d in log)


def test_webhooks_retry_on_5xx_and_timeouts(client: httpx.Client, receiver: Receiver) -> None:
    for path in ("flaky", "slow"):
        call = place(client, to="+15550100486", tts={"text": "Hi."}, webhook_url=f"{receiver.url}/{path}?c={time.time()}")
        wait_for(client, call["id"])
        log = wait_for_deliveries(client, call["id"], count=2)
        assert [d["event_type"] for d in log] == ["call.queued", "call.busy"]
        assert all(d["status"] == "delivered" for d in log)
        first = log[0]["attempts"]
        if path == "flaky":
            assert [a["status_code"] for a in first] == [503, 503, 204]
        else:
            assert "timed out" in first[0]["error"] and first[-1]["status_code"] == 204
        assert [e["type"] for e in receiver.for_call(call["id"])] == ["call.queued", "call.busy"]


def test_webhooks_to_a_receiver_that_is_down_or_refuses_are_logged(client: httpx.Client, receiver: Receiver) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    for url, expected_attempts in ((down, 3), (f"{receiver.url}/reject", 1)):
        call = place(client, to="+15550100486", tts={"text": "Hi."}, webhook_url=url)
        final = wait_for(client, call["id"])
        assert final["status"] == "busy"  # the call itself never waits for its webhooks
        log = wait_for_deliveries(client, call["id"], count=2)
        assert [d["event_type"] for d in log] == ["call.queued", "call.busy"]
        assert all(d["status"] == "failed" and len(d["attempts"]) == expected_attempts for d in log)


def test_fifty_concurrent_calls_each_deliver_in_order(client: httpx.Client, receiver: Receiver) -> None:
    calls = [place(client, to="+15550100001", tts={"text": "PIN please."}, gather={"num_digits": 4}, webhook_url=f"{receiver.url}/many") for _ in range(50)]
    for call in calls:
        wait_for(client, call["id"], timeout_s=60)
    ids = {c["id"] for c in calls}
    wait_until(lambda: sum(1 for r in receiver.received if r["json"]["call_id"] in ids and r["json"]["type"] == "call.completed") == 50, timeout_s=60)
    for call in calls:
        sequences = [e["sequence"] for e in receiver.for_call(call["id"])]
        assert sequences == sorted(sequences) and len(sequences) == 5
        assert next(e for e in receiver.for_call(call["id"]) if e["type"] == "gather.completed")["digits"] == "1234"


# -- /_sim ------------------------------------------------------------------------------------------------


def test_sim_health_phonebook_and_journal(client: httpx.Client) -> None:
    assert client.get("/_sim/health").json()["status"] == "ok"
    book = client.get("/_sim/phonebook").json()
    assert book["numbers"]["+15551234567"]["kind"] == "scripted"
    calls = [place(client, to="+15550100486", tts={"text": "Hi."}) for _ in range(3)]
    for call in calls:
        wait_for(client, call["id"])
    ids = {c["id"] for c in calls}
    journal: list[dict[str, Any]] = []

    def journal_holds_the_calls_ends() -> bool:  # the newest events are these calls' last ones
        nonlocal journal
        journal = client.get("/_sim/events", params={"limit": 5}).json()["data"]
        return sum(1 for e in journal if e["call_id"] in ids and e["type"] == "call.busy") >= 2

    wait_until(journal_holds_the_calls_ends)
    assert len(journal) == 5 and all(e["call_id"].startswith("call_") for e in journal)


def test_sim_injects_dtmf_into_a_live_realtime_call(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, clock="realtime")) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as http:
        call = place(http, to="+15550100002", tts={"text": "Press something."}, gather={"timeout": 4})
        wait_until(lambda: http.get(f"/v1/voice/calls/{call['id']}").json()["status"] == "in-progress")
        early = http.post(f"/_sim/calls/{call['id']}/dtmf", json={"digits": "x"})
        assert early.status_code == 422 and early.json()["error"]["param"] == "digits"
        response = http.post(f"/_sim/calls/{call['id']}/dtmf", json={"digits": "42#"})
        assert response.status_code == 200, response.text
        wait_for(http, call["id"])
        events = http.get(f"/v1/voice/calls/{call['id']}/events").json()["data"]
        gathered = next(e for e in events if e["type"] == "gather.completed")
        assert (gathered["digits"], gathered["finished_on_key"]) == ("42", "#")
        ended = http.post(f"/_sim/calls/{call['id']}/dtmf", json={"digits": "1"})
        assert ended.status_code == 409 and ended.json()["error"]["code"] == "call_not_live"
        assert http.post("/_sim/calls/call_nope/speech", json={"text": "hi"}).status_code == 404
        assert http.post("/_sim/reset").status_code == 200
        assert http.get("/v1/voice/calls").json()["data"] == []


def test_sim_manual_clock_steps_calls(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, clock="manual")) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as http:
        call = place(http, to="+15550100002", tts={"text": "Press something."}, gather={"timeout": 5})
        wait_until(lambda: http.get(f"/v1/voice/calls/{call['id']}").json()["status"] == "ringing")
        assert http.get("/_sim/clock").json() == {"clock": "manual", "now_s": 0.0}  # time has not moved
        events = http.get(f"/v1/voice/calls/{call['id']}/events").json()["data"]
        assert [e["type"] for e in events] == ["call.queued", "call.ringing"] and events[-1]["call_time_s"] == 0.0
        assert http.post("/_sim/clock", json={"advance_s": 2.0}).json() == {"clock": "manual", "now_s": 2.0}
        wait_until(lambda: http.get(f"/v1/voice/calls/{call['id']}").json()["status"] == "in-progress")
        http.post(f"/_sim/calls/{call['id']}/dtmf", json={"digits": "9#"})
        http.post("/_sim/clock", json={"advance_s": 5.0})
        final = wait_for(http, call["id"])
        events = http.get(f"/v1/voice/calls/{call['id']}/events").json()["data"]
        gathered = next(e for e in events if e["type"] == "gather.completed")
        assert final["status"] == "completed" and (gathered["digits"], gathered["finished_on_key"]) == ("9", "#")
        assert http.get("/_sim/clock").json() == {"clock": "manual", "now_s": 7.0}


def test_sim_clock_refuses_steps_when_not_manual(client: httpx.Client) -> None:
    response = client.post("/_sim/clock", json={"advance_s": 1})
    assert response.status_code == 409 and "--clock manual" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"to": "+15550100408", "tts": {"text": "Hi."}, "timeout": 5}, "no-answer", "no answer within 5 s"),
        ({"to": "+15550100503", "tts": {"text": "Hi."}}, "failed", "SIP 503"),
        ({"to": "+15550100001", "audio_url": "http://127.0.0.1:9/missing.mp3"}, "failed", "cannot connect"),
        ({"to": "+15550100003", "tts": {"text": "Please hold."}, "gather": {"timeout": 30}}, "completed", "the callee hung up"),
    ],
)
def test_every_status_path_over_http(client: httpx.Client, receiver: Receiver, body: dict[str, Any], status: str, reason: str) -> None:
    call = place(client, **body, webhook_url=f"{receiver.url}/paths")
    final = wait_for(client, call["id"])
    assert final["status"] == status and reason in final["reason"]
    wait_until(lambda: any(e["type"] == f"call.{status}" for e in receiver.for_call(call["id"])))
    assert next(e for e in receiver.for_call(call["id"]) if e["type"] == f"call.{status}")["reason"] == final["reason"]


def test_mono_recording_over_http(client: httpx.Client) -> None:
    call = place(client, to="+15550100001", tts={"text": "Recorded in mono."}, record=True, recording_channels="mono", gather={"num_digits": 4})
    wait_for(client, call["id"])
    recording = client.get(f"/v1/voice/calls/{call['id']}/recording").json()
    assert recording["channels"] == "mono"
    wav = httpx.get(recording["url"]).content
    assert int.from_bytes(wav[22:24], "little") == 1


def test_webhook_workers_retire_when_their_calls_end(tmp_path: Path, receiver: Receiver) -> None:
    import asyncio

    from ivrsim.engine.events import CallEvent
    from ivrsim.store.sqlite import Store
    from ivrsim.webhooks.dispatcher import WebhookDispatcher

    async def scenario() -> tuple[int, int]:
        store = Store(tmp_path / "hooks.sqlite3")
        store.insert_call("call_a", "+15550100001", "+15559876543", {"webhook_url": f"{receiver.url}/retire"})
        dispatcher = WebhookDispatcher(store)
        for sequence, kind in enumerate(("call.queued", "call.completed"), start=1):
            dispatcher.on_event(CallEvent("call_a", sequence, kind, 0.0, "2026-01-01T00:00:00Z", {"status": kind[5:]}))
        await dispatcher.drain()
        await asyncio.sleep(0)
        live = dispatcher.active_calls
        await dispatcher.close()
        return live, len(store.deliveries(call_id="call_a"))

    live, delivered = asyncio.run(scenario())
    assert (live, delivered) == (0, 2)


def test_event_stream_replays_then_follows_a_live_call(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, clock="realtime")) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as http:
        call = place(http, to="+15550100001", tts={"text": "PIN please."}, gather={"num_digits": 4})
        received: list[tuple[str, dict[str, Any]]] = []
        with http.stream("GET", f"/v1/voice/calls/{call['id']}/events/stream") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[len("event: "):]
                elif line.startswith("data: "):
                    received.append((kind, json.loads(line[len("data: "):])))
        types = [k for k, _ in received]
        assert types[0] == "call.queued" and types[-1] == "call.completed"
        assert [d["sequence"] for _, d in received] == list(range(1, len(received) + 1))
        assert next(d for k, d in received if k == "gather.completed")["digits"] == "1234"
        # after the call: the stored events, then the stream ends by itself
        again = http.get(f"/v1/voice/calls/{call['id']}/events/stream", params={"after": len(received) - 1})
        assert again.text.count("event: ") == 1 and "event: call.completed" in again.text

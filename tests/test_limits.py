"""Bounded work per request, through real HTTP on loopback (issue 8, points 1-3 and part of 11).

A real server (``BackgroundServer``), a real audio server that trickles one byte at a time, a real webhook
receiver: slow ``audio_url``s end at the fetch deadline without starving TTS, prompts and injected audio
are bounded with a 422 naming the limit, non-audio is described and never quoted, and local paths outside
the media roots are refused at POST time.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile

from ivrsim.api.server import BackgroundServer
from ivrsim.engine.engine import MAX_INJECTED_S
from ivrsim.settings import Settings
from ivrsim.testing.http import serve_bytes, serve_raw
from ivrsim.speech.tts import MAX_PROMPT_S
from ivrsim.testing.waiting import wait_until

KEY = "limits-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FROM = "+15559876543"
FINAL = ("completed", "busy", "no-answer", "failed")
#: The server's fetch deadline in these tests, in seconds.
DEADLINE_S = 5.0
#: The trickling server sends one byte this often, for at most this long (far past the deadline).
TRICKLE_EVERY_S = 0.5
TRICKLE_FOR_S = 90.0
SECRET = "SECRET-TOKEN=abc"
#: What a server that does not speak HTTP answers with.
RAW_SECRET = "SECRET-TOKEN=hunter2"


def _wav(seconds: float, rate_hz: int = 8000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(int(seconds * rate_hz), dtype=np.float32), rate_hz, format="WAV")
    return buffer.getvalue()


#: A short prompt served fast, from another port than the trickling host.
FAST_WAV = _wav(0.5)


class MediaAndHooks:
    """One loopback server: ``GET /trickle/*`` sends a byte every 0.5 s, ``GET /secret.wav`` an HTML page
    holding a secret; ``POST`` anything records a webhook body."""

    def __init__(self) -> None:
        self.webhooks: list[dict[str, Any]] = []
        self.trickling = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/secret.wav":
                    body = f"<html><body>{SECRET}</body></html>".encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.end_headers()
                with outer._lock:
                    outer.trickling += 1
                try:
                    for _ in range(int(TRICKLE_FOR_S / TRICKLE_EVERY_S)):
                        self.wfile.write(b"R")
                        self.wfile.flush()
                        time.sleep(TRICKLE_EVERY_S)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with outer._lock:
                        outer.trickling -= 1

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer._lock:
                    outer.webhooks.append({"raw": body.decode("utf-8", "replace"), "json": json.loads(body)})
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="limits-media", daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def hooks_for(self, call_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [hook for hook in self.webhooks if hook["json"].get("call_id") == call_id]


@pytest.fixture(scope="module")
def media() -> Iterator[MediaAndHooks]:
    instance = MediaAndHooks()
    yield instance
    instance.server.shutdown()
    instance.server.server_close()


def settings_for(folder: Path, **overrides: Any) -> Settings:
    roots = folder / "media"
    roots.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "api_key": KEY,
        "port": 0,
        "data_dir": folder / "data",
        "media_roots": [roots],
        "media_deadline_s": DEADLINE_S,
        "webhook_attempts": 2,
        "webhook_backoff_s": 0.05,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with BackgroundServer(settings_for(tmp_path_factory.mktemp("limits"))) as running:
        yield running.base_url


@pytest.fixture
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=30) as client:
        yield client


def place(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post("/v1/voice/calls", json={"from": FROM, **body})
    assert response.status_code == 200, response.text
    return response.json()


def status(http: httpx.Client, call_id: str) -> str:
    return http.get(f"/v1/voice/calls/{call_id}").json()["status"]


def ended_wall(http: httpx.Client, call_id: str) -> str:
    """The wall-clock timestamp of the call's final event (ISO 8601 UTC, so comparable as text)."""
    events = http.get(f"/v1/voice/calls/{call_id}/events").json()["data"]
    return next(e["timestamp"] for e in events if e["type"] in {f"call.{s}" for s in FINAL})


def wait_for(http: httpx.Client, call_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    wait_until(lambda: status(http, call_id) in FINAL, timeout_s)
    return http.get(f"/v1/voice/calls/{call_id}").json()


# -- point 1: a slow audio_url ends at its deadline and starves nothing ------------------------------------


def test_trickling_audio_urls_fail_at_the_deadline_and_tts_calls_still_run(http: httpx.Client, media: MediaAndHooks) -> None:
    started = time.monotonic()
    slow = [place(http, to="+15551234567", audio_url=f"{media.url}/trickle/{n}.wav")["id"] for n in range(6)]
    wait_until(lambda: media.trickling >= 2, timeout_s=DEADLINE_S)  # the host's share of the media workers is busy trickling
    spoken = place(http, to="+15551234567", tts={"text": "Your order has shipped."})["id"]
    assert wait_for(http, spoken)["status"] == "completed"
    first_failed = None
    for call_id in slow:
        final = wait_for(http, call_id)
        first_failed = first_failed or time.monotonic() - started
        assert final["status"] == "failed"
        assert f"fetch deadline of {DEADLINE_S:g} s" in final["reason"], final["reason"]
    # it did not wait for them: the spoken call ended (wall time) before any stuck download gave up
    assert ended_wall(http, spoken) < min(ended_wall(http, call_id) for call_id in slow)
    # each byte comes in time for any read timeout: without the deadline these would run for 90 s
    assert first_failed is not None and first_failed < DEADLINE_S + 10
    wait_until(lambda: media.trickling == 0, timeout_s=DEADLINE_S + 10)  # and the server saw them hang up


def test_a_fast_audio_url_is_not_queued_behind_a_slow_host(tmp_path: Path, media: MediaAndHooks) -> None:
    """Eight calls to a trickling host, then one to a fast host: the fast call completes while the slow
    fetches still run (a per-host share of the media workers), and the slow ones end at their deadline."""
    wait_until(lambda: media.trickling == 0, timeout_s=DEADLINE_S + 10)  # nothing left from another test
    settings = settings_for(tmp_path, media_deadline_s=2.0)
    with (
        BackgroundServer(settings) as running,
        httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as client,
        serve_bytes(FAST_WAV, "audio/wav") as fast_host,
    ):
        slow = [place(client, to="+15551234567", audio_url=f"{media.url}/trickle/{n}.wav")["id"] for n in range(8)]
        wait_until(lambda: media.trickling >= 2, timeout_s=10)
        fast = place(client, to="+15551234567", audio_url=f"{fast_host}/prompt.wav")["id"]
        assert wait_for(client, fast)["status"] == "completed"
        assert media.trickling > 0 and any(status(client, call_id) not in FINAL for call_id in slow)
        for call_id in slow:
            final = wait_for(client, call_id)
            assert final["status"] == "failed" and "fetch deadline of 2 s" in final["reason"], final["reason"]
    wait_until(lambda: media.trickling == 0, timeout_s=10)


# -- point 2: bounded prompts and injected audio -----------------------------------------------------------


def test_hours_of_ssml_breaks_are_a_422_naming_the_limit(http: httpx.Client) -> None:
    text = 'Please hold. <break time="10s"/> ' * 100  # 1,000 s of silence in 3 KB
    response = http.post("/v1/voice/calls", json={"from": FROM, "to": "+15551234567", "tts": {"text": text}})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "tts.text" and error["code"] == "prompt_too_long"
    assert f"the limit is {MAX_PROMPT_S:g} s" in error["message"] and "1000 s of breaks" in error["message"]


def test_injected_audio_is_bounded_per_request_and_per_call(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, clock="manual")) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as client:
        call = place(client, to="+15550100002", tts={"text": "Press something."}, gather={"timeout": 20})["id"]
        wait_until(lambda: status(client, call) == "ringing")
        client.post("/_sim/clock", json={"advance_s": 2.0})
        wait_until(lambda: status(client, call) == "in-progress")  # manual time: it stays so until stepped

        too_much = client.post(f"/_sim/calls/{call}/dtmf", json={"digits": "1" * 64, "on_ms": 1000, "off_ms": 1000})
        assert too_much.status_code == 422 and too_much.json()["error"]["param"] == "digits"
        assert f"at most {MAX_INJECTED_S:g} s may wait per call" in too_much.json()["error"]["message"]

        assert client.post(f"/_sim/calls/{call}/dtmf", json={"digits": "1" * 25, "on_ms": 1000, "off_ms": 1000}).status_code == 200
        queue_full = client.post(f"/_sim/calls/{call}/dtmf", json={"digits": "2" * 10, "on_ms": 1000, "off_ms": 1000})
        assert queue_full.status_code == 422 and "50.0 s already wait" in queue_full.json()["error"]["message"]
        spoken = client.post(f"/_sim/calls/{call}/speech", json={"text": " ".join(["press one for sales"] * 60)})
        assert spoken.status_code == 422 and spoken.json()["error"]["param"] == "text"
        assert "MAX_INJECTED_S" in spoken.json()["error"]["message"]

        client.post("/_sim/clock", json={"advance_s": 51.0})  # the call plays what waited
        wait_until(lambda: client.post(f"/_sim/calls/{call}/dtmf", json={"digits": "2" * 10, "on_ms": 1000, "off_ms": 1000}).status_code == 200)


# -- point 3: what is not audio is described, never quoted -------------------------------------------------


def test_a_page_instead_of_audio_never_leaks_into_the_call(http: httpx.Client, media: MediaAndHooks) -> None:
    call = place(http, to="+15551234567", audio_url=f"{media.url}/secret.wav", webhook_url=f"{media.url}/hooks")["id"]
    final = wait_for(http, call)
    assert final["status"] == "failed"
    assert "not audio" in final["reason"] and "Content-Type text/html" in final["reason"] and "bytes" in final["reason"]
    wait_until(lambda: any(hook["json"]["type"] == "call.failed" for hook in media.hooks_for(call)))
    seen = [json.dumps(final), http.get(f"/v1/voice/calls/{call}/events").text, http.get(f"/v1/voice/calls/{call}/webhooks").text]
    seen += [hook["raw"] for hook in media.hooks_for(call)]
    for text in seen:
        assert "SECRET" not in text and SECRET not in text


def test_a_reply_that_is_not_http_is_named_never_quoted(http: httpx.Client, media: MediaAndHooks) -> None:
    """h11 quotes a bad status line in its error (``illegal status line: bytearray(b'...')``)."""
    with serve_raw(f"{RAW_SECRET}\r\n\r\n".encode()) as raw:
        call = place(http, to="+15551234567", audio_url=f"{raw}/prompt.wav", webhook_url=f"{media.url}/hooks")["id"]
        final = wait_for(http, call)
    assert final["status"] == "failed" and "the reply is not valid HTTP" in final["reason"], final["reason"]
    wait_until(lambda: any(hook["json"]["type"] == "call.failed" for hook in media.hooks_for(call)))
    wait_until(lambda: all(d["status"] == "delivered" for d in http.get(f"/v1/voice/calls/{call}/webhooks").json()["data"]))
    seen = [json.dumps(final), http.get(f"/v1/voice/calls/{call}/events").text, http.get(f"/v1/voice/calls/{call}/webhooks").text]
    seen += [hook["raw"] for hook in media.hooks_for(call)]
    for text in seen:
        assert "hunter2" not in text and "SECRET" not in text


def test_concurrent_mp3_requests_for_one_recording_share_one_encode(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with BackgroundServer(settings_for(tmp_path)) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=60) as client:
        call = place(client, to="+15551234567", tts={"text": "Recorded for quality and training purposes."}, record=True)["id"]
        wait_for(client, call)
        mp3_url = client.get(f"/v1/voice/calls/{call}/recording").json()["url"].removesuffix(".wav") + ".mp3"
        with ThreadPoolExecutor(max_workers=6) as pool:
            replies = list(pool.map(lambda _: httpx.get(mp3_url, timeout=60), range(6)))
        assert {reply.status_code for reply in replies} == {200} and len({reply.content for reply in replies}) == 1
        assert running.app.state.services.mp3.encodes_started == 1


# -- point 11: local paths outside the media roots are refused when the call is placed ---------------------


@pytest.mark.parametrize("url", ["/etc/passwd", "file:///etc/shadow", "../../etc/passwd", "ftp://example.com/a.wav"])
def test_audio_url_outside_the_media_roots_is_a_422_at_post_time(http: httpx.Client, url: str) -> None:
    response = http.post("/v1/voice/calls", json={"from": FROM, "to": "+15551234567", "audio_url": url})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "audio_url" and error["code"] == "audio_url_not_allowed"


def test_audio_url_with_no_media_roots_is_a_422(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, media_roots=[])) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as client:
        response = client.post("/v1/voice/calls", json={"from": FROM, "to": "+15551234567", "audio_url": str(tmp_path / "a.wav")})
        assert response.status_code == 422 and "configure a media root" in response.json()["error"]["message"]

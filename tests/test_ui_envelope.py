"""The waveform envelope (ivrsim/ui/envelope.py) against a brute-force reduction, and its route
``GET /ui/api/calls/{id}/envelope.json`` on a real server with a real recorded call."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile

from ivrsim.api.server import BackgroundServer
from ivrsim.settings import Settings
from ivrsim.ui.envelope import MAX_COLUMNS, EnvelopeCache, column_edges, compute_envelope

KEY = "sk_test_envelope"


def write_wav(path: Path, samples: np.ndarray, rate_hz: int = 8000) -> Path:
    soundfile.write(path, samples, rate_hz, subtype="PCM_16")
    return path


def brute_force(path: Path, columns: int) -> tuple[np.ndarray, np.ndarray]:
    ints = soundfile.read(path, dtype="int16", always_2d=True)[0]
    edges = column_edges(len(ints), columns)
    low = np.array([ints[edges[i] : edges[i + 1]].min(axis=0) for i in range(columns)]) / 32768.0
    high = np.array([ints[edges[i] : edges[i + 1]].max(axis=0) for i in range(columns)]) / 32768.0
    return low, high


@pytest.mark.parametrize(("frames", "columns", "block_frames"), [(80_000, 2000, 4096), (80_001, 1999, 777), (12_345, 10, 12_345), (5000, 4999, 1000)])
def test_envelope_matches_brute_force_whatever_the_blocks(tmp_path: Path, frames: int, columns: int, block_frames: int) -> None:
    rng = np.random.default_rng(frames)
    path = write_wav(tmp_path / "dual.wav", (rng.standard_normal((frames, 2)) * [0.3, 0.05]).clip(-1, 1).astype(np.float32))
    envelope = compute_envelope(path, columns, block_frames=block_frames)
    low, high = brute_force(path, columns)
    assert envelope.columns == columns and [lane.name for lane in envelope.lanes] == ["platform", "callee"]
    for i, lane in enumerate(envelope.lanes):
        np.testing.assert_allclose(lane.min, low[:, i], atol=1e-7)
        np.testing.assert_allclose(lane.max, high[:, i], atol=1e-7)
    assert envelope.duration_s == pytest.approx(frames / 8000)


def test_mono_is_one_lane_and_short_recordings_have_fewer_columns(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "mono.wav", np.linspace(-0.5, 0.5, 300, dtype=np.float32))
    envelope = compute_envelope(path, 2000)
    assert envelope.columns == 300 and [lane.name for lane in envelope.lanes] == ["mix"]
    document = envelope.document(answered_s=1.23456)
    assert document["answered_s"] == 1.2346 and document["columns"] == 300 and document["rate_hz"] == 8000
    assert document["lanes"][0]["min"][0] == -0.5 and all(len(str(v)) <= 7 for v in document["lanes"][0]["max"])  # 4 digits
    empty = compute_envelope(write_wav(tmp_path / "empty.wav", np.zeros((0, 2), dtype=np.float32)), 2000)
    assert empty.columns == 0 and empty.document(None)["lanes"] == [{"name": "platform", "min": [], "max": []}, {"name": "callee", "min": [], "max": []}]


def test_cache_reads_a_rewritten_file_again(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "r.wav", np.full((1000, 2), 0.25, dtype=np.float32))
    cache = EnvelopeCache(max_entries=2)
    first = cache.document_json(path, 100, 0.5)
    assert cache.document_json(path, 100, 0.5) is first  # the same bytes, not recomputed
    write_wav(path, np.full((1000, 2), -0.5, dtype=np.float32))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))  # a different mtime, whatever the file system's resolution
    second = cache.document_json(path, 100, 0.5)
    assert second != first and b"-0.5" in second
    cache.document_json(path, 200)
    cache.document_json(path, 300)
    assert len(cache._entries) == 2  # bounded


# -- the route, on a real server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(api_key=KEY, port=0, data_dir=tmp_path_factory.mktemp("envelope-server"))
    with BackgroundServer(settings) as running:
        yield running.base_url


def log_in(client: httpx.Client, key: str = KEY) -> httpx.Response:
    """The login form as a browser submits it: its CSRF field and cookie, then the key."""
    form = client.get("/ui/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert form.status_code == 200 and token, form.text
    return client.post("/ui/login", data={"csrf_token": token.group(1), "api_key": key, "next": "/ui"})


def wait_until(condition, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_envelope_route_draws_a_recorded_call(server: str) -> None:
    api = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    call = api.post("/v1/voice/calls", json={"from": "+15559876543", "to": "+15550100001", "tts": {"text": "Enter your PIN."},
                                             "record": True, "gather": {"num_digits": 4}}).json()
    with httpx.Client(base_url=server, timeout=30) as browser:
        url = f"/ui/api/calls/{call['id']}/envelope.json"
        refused = browser.get(url)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        assert log_in(browser).status_code in (200, 303)
        wait_until(lambda: api.get(f"/v1/voice/calls/{call['id']}").json()["status"] == "completed")
        wait_until(lambda: browser.get(url).status_code == 200)  # the recording is finished a moment after the status
        document = browser.get(url, params={"columns": 500}).json()
        recording = api.get(f"/v1/voice/calls/{call['id']}/recording").json()
        events = api.get(f"/v1/voice/calls/{call['id']}/events").json()["data"]
        answered = next(e for e in events if e["type"] == "call.in-progress")
        assert document["columns"] == 500 and document["rate_hz"] == 8000
        assert document["duration_s"] == pytest.approx(recording["duration_s"], abs=1e-3)
        assert document["answered_s"] == pytest.approx(answered["call_time_s"])
        platform, callee = document["lanes"]
        assert (platform["name"], callee["name"]) == ("platform", "callee")
        assert max(platform["max"]) > 0.05 and max(callee["max"]) > 0.05  # the prompt, and the callee's keys
        too_many = browser.get(url, params={"columns": MAX_COLUMNS + 1})
        assert too_many.status_code == 422
        assert browser.get("/ui/api/calls/call_nope/envelope.json").status_code == 404
    unrecorded = api.post("/v1/voice/calls", json={"from": "+15559876543", "to": "+15550100002", "tts": {"text": "Hi."}}).json()
    with httpx.Client(base_url=server, timeout=30) as browser:
        log_in(browser)
        response = browser.get(f"/ui/api/calls/{unrecorded['id']}/envelope.json")
        assert response.status_code == 409 and response.json()["error"]["code"] == "not_recorded"
    api.close()

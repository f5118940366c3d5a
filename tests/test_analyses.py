"""Background analyses through the API: stored, queued, run on a worker (or in the server's own process
with --workers 0), read back; a restart finishes what was running; bad input fails with the reason."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile

from ivrsim.api.server import BackgroundServer
from ivrsim.settings import Settings
from ivrsim.testing.http import serve_bytes
from ivrsim.testing.waiting import wait_until

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FROM = "+15559876543"


def settings_for(folder: Path, **overrides: Any) -> Settings:
    return Settings(**{"api_key": KEY, "port": 0, "data_dir": folder, **overrides})


def finished(http: httpx.Client, job_id: str) -> dict[str, Any] | None:
    job = http.get(f"/_sim/analyses/{job_id}").json()
    return job if job["status"] in ("completed", "failed") else None


def recorded_call(http: httpx.Client) -> str:
    """A recorded call: the platform speaks, the callee presses 1; returns its recording's URL."""
    placed = http.post("/v1/voice/calls", json={"to": "+15551234567", "from": FROM, "record": True,
                                                 "tts": {"text": "Press 1 for sales."}, "gather": {"type": "dtmf", "num_digits": 1}})
    assert placed.status_code == 200, placed.text
    call_id = placed.json()["id"]
    wait_until(lambda: http.get(f"/v1/voice/calls/{call_id}").json()["status"] == "completed", timeout_s=60)
    return str(wait_until(lambda: http.get(f"/v1/voice/calls/{call_id}/recording").json().get("url"), timeout_s=30))


def analyse(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post("/_sim/analyses", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("workers", [0, 1])
def test_an_ivrsim_recording_analysed_on_a_worker_or_in_process(tmp_path: Path, workers: int) -> None:
    with BackgroundServer(settings_for(tmp_path, workers=workers)) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        url = recorded_call(http)
        job = analyse(http, location=url)
        assert job["status"] == "queued" and job["kind"] == "analysis" and job["input"]["location"] == url
        done = wait_until(lambda: finished(http, job["id"]), timeout_s=60)
        listed = http.get("/_sim/analyses", params={"status": "completed"}).json()["data"]

    assert done["status"] == "completed", done["error"]
    assert done["worker"] == ("in-process" if workers == 0 else "local-1") and done["attempts"] == 1
    result = done["result"]
    assert result["speakers"]["assistant"]["channel"] == 1  # the platform speaks first, on the left
    assert result["speakers"]["user"]["channel"] == 2
    assert result["dtmf"]["user"]["digits"] == "1"  # the callee's key, heard in the recording
    assert result["speakers"]["assistant"]["talk_time_s"] > 0.5
    assert result["source"]["channels"] == 2 and result["duration_s"] > 1
    assert [j["id"] for j in listed] == [job["id"]]


def test_a_job_running_when_the_server_stops_runs_again_after_the_restart(tmp_path: Path) -> None:
    left = np.zeros(8000 * 3, dtype=np.float32)
    left[4000:12000] = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    stereo = np.stack([left, np.roll(left, 12000)], axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, stereo, 8000, format="WAV", subtype="PCM_16")
    gate = threading.Event()
    with serve_bytes(buffer.getvalue(), "audio/wav", gate=gate) as slow:
        with BackgroundServer(settings_for(tmp_path, workers=0)) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
            job = analyse(http, location=f"{slow}/call.wav")
            wait_until(lambda: http.get(f"/_sim/analyses/{job['id']}").json()["status"] == "processing")
            refused = http.post("/_sim/reset")
            assert refused.status_code == 409 and refused.json()["error"]["code"] == "jobs_running"
        # stopped while the fetch waited: the job is still processing in the store
        gate.set()
        with BackgroundServer(settings_for(tmp_path, workers=1)) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
            done = wait_until(lambda: finished(http, job["id"]), timeout_s=60)
    assert done["status"] == "completed", done["error"]
    assert done["attempts"] == 2 and done["worker"] == "local-1"
    assert done["result"]["speakers"]["assistant"]["turns"] == 1


def test_analyses_that_cannot_run_fail_with_the_reason_and_bad_requests_are_refused(tmp_path: Path) -> None:
    three = io.BytesIO()  # mono is diarized, stereo is one party per channel: three channels cannot be analysed
    soundfile.write(three, np.zeros((8000, 3), dtype=np.float32), 8000, format="WAV", subtype="PCM_16")
    with serve_bytes(three.getvalue(), "audio/wav") as three_url, serve_bytes(b"<html>hi</html>", "text/html") as page, \
            BackgroundServer(settings_for(tmp_path, workers=1)) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        three_channels = analyse(http, location=f"{three_url}/three.wav")
        not_audio = analyse(http, location=f"{page}/page")
        failed = [wait_until(lambda j=j: finished(http, j["id"]), timeout_s=60) for j in (three_channels, not_audio)]
        refused = {
            "outside the media roots": http.post("/_sim/analyses", json={"location": "/etc/passwd"}),
            "no location": http.post("/_sim/analyses", json={}),
            "a number as location": http.post("/_sim/analyses", json={"location": 5}),
            "channel 3": http.post("/_sim/analyses", json={"location": f"{page}/x", "assistant_channel": 3}),
            "unknown field": http.post("/_sim/analyses", json={"location": f"{page}/x", "colour": "red"}),
        }
        unknown = http.get("/_sim/analyses/job_nope")
        bad_page = http.get("/_sim/analyses", params={"starting_after": "job_nope"})
    assert failed[0]["status"] == "failed" and failed[0]["error"].startswith("location: the recording has 3 channels")
    assert failed[1]["status"] == "failed" and "is not audio" in failed[1]["error"] and failed[1]["error"].startswith("location ")
    assert "<html>" not in failed[1]["error"]  # never the fetched content
    for what, response in refused.items():
        assert response.status_code == 422, (what, response.text)
    assert refused["outside the media roots"].json()["error"]["param"] == "location"
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "job_id"
    assert bad_page.status_code == 404 and bad_page.json()["error"]["param"] == "starting_after"

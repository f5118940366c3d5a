"""Calls in worker processes: a real redis-server with two `ivrsim worker` processes, and the embedded
default (local workers over the SQLite queue) of `ivrsim serve`.

Same seed, same events as in the API's own process; a worker killed mid-call fails its call within
seconds with its partial recording kept, and what it had not taken waits in the queue for another.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile
import websockets
from websockets.sync.client import connect as ws_connect

from ivrsim.api.server import BackgroundServer
from ivrsim.settings import Settings
from ivrsim.testing.processes import RedisServer, WorkerProcess
from ivrsim.testing.waiting import wait_until

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FINAL = ("completed", "busy", "no-answer", "failed")
FROM = "+15559876543"

#: Calls that exercise every path: a gather answered by keys, one finished by #, busy, no answer, a
#: callee that hangs up, recordings, speech and an SSML pause.
REQUESTS: list[dict[str, Any]] = [
    {"to": "+15551234567", "tts": {"text": "Press 1 for sales."}, "gather": {"type": "dtmf", "num_digits": 1}, "record": True},
    {"to": "+15550100001", "tts": {"text": "Enter your PIN, then hash."}, "gather": {"type": "dtmf", "finish_on_key": "#", "timeout": 8}},
    {"to": "+15550100486", "tts": {"text": "Nobody hears this."}},
    {"to": "+15550100408", "tts": {"text": "Nobody hears this either."}, "timeout": 3},
    {"to": "+15550100003", "tts": {"text": "<speak>Please hold. <break time='3s'/> Thank you.</speak>"}, "record": True},
    {"to": "+15550100005", "tts": {"text": "Your code?"}, "gather": {"type": "dtmf", "finish_on_key": "#", "timeout": 6}, "record": True},
]


def settings_for(folder: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"api_key": KEY, "port": 0, "data_dir": folder, "seed": 7, **overrides}
    return Settings(**values)


def call(http: httpx.Client, body: dict[str, Any]) -> str:
    response = http.post("/v1/voice/calls", json={"from": FROM, **body})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def status_of(http: httpx.Client, call_id: str) -> str:
    return str(http.get(f"/v1/voice/calls/{call_id}").json()["status"])


def ended(http: httpx.Client, call_id: str) -> str | None:
    status = status_of(http, call_id)
    return status if status in FINAL else None


def events_of(http: httpx.Client, call_id: str, base_url: str) -> list[dict[str, Any]]:
    """A call's events without their wall-clock timestamps, URLs relative to the server."""
    events = http.get(f"/v1/voice/calls/{call_id}/events").json()["data"]
    for event in events:
        event.pop("timestamp")
        if "url" in event:
            event["url"] = event["url"].removeprefix(base_url)
    return events


def has_event(http: httpx.Client, call_id: str, event_type: str) -> bool:
    return any(e["type"] == event_type for e in http.get(f"/v1/voice/calls/{call_id}/events").json()["data"])


def workers_of(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/_sim/workers")
    assert response.status_code == 200, response.text
    return response.json()


def workers_when(http: httpx.Client, holds: Any, timeout_s: float = 60) -> dict[str, Any]:
    """/_sim/workers once ``holds(listing)``."""
    def listing() -> dict[str, Any] | None:
        current = workers_of(http)
        return current if holds(current) else None

    return wait_until(listing, timeout_s=timeout_s)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture()
def redis_url(redis: RedisServer) -> str:
    redis.flush()  # every test starts from an empty queue
    return redis.url


def run_calls(base_url: str, bodies: list[dict[str, Any]], at_once: bool) -> dict[str, list[dict[str, Any]]]:
    """Place the calls (all at once, or each after the previous ended) and return their events by id."""
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as http:
        ids = []
        for body in bodies:
            ids.append(call(http, body))
            if not at_once:
                wait_until(lambda: ended(http, ids[-1]), timeout_s=120)
        for call_id in ids:
            wait_until(lambda: ended(http, call_id), timeout_s=120)
        return {call_id: events_of(http, call_id, base_url) for call_id in ids}


def test_calls_spread_over_two_redis_workers_with_the_events_of_the_api_process(tmp_path: Path, redis: RedisServer, redis_url: str) -> None:
    with BackgroundServer(settings_for(tmp_path / "alone", workers=0)) as server, httpx.Client(base_url=server.base_url, headers=AUTH) as http:
        assert workers_of(http)["mode"] == "in-process"
        expected = run_calls(server.base_url, REQUESTS, at_once=False)

    # The workers share the prompts the API's process rendered, as local workers share their server's:
    # espeak-ng carries state from one render to the next, so each process's first render of a text
    # would depend on what it rendered before.
    prompts = tmp_path / "alone" / "prompts"
    folder = tmp_path / "distributed"
    with BackgroundServer(settings_for(folder, workers=0, queue=redis_url)) as server, \
            WorkerProcess(redis_url, "one", tmp_path / "w1", folder / "recordings", max_calls=1, prompt_cache_dir=prompts), \
            WorkerProcess(redis_url, "two", tmp_path / "w2", folder / "recordings", max_calls=1, prompt_cache_dir=prompts), \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        wait_until(lambda: redis.blocked_clients() == 4)  # both workers wait on the queue (two lanes each: calls, jobs)
        got = run_calls(server.base_url, REQUESTS, at_once=True)
        listing = workers_when(http, lambda w: sum(s["calls_run"] for s in w["workers"]) == len(REQUESTS))
        recording = http.get(f"/v1/voice/calls/{next(iter(got))}/recording").json()
        audio = http.get(recording["url"].removeprefix(server.base_url))

    assert list(got) == list(expected)  # same ids
    for call_id, events in expected.items():  # same events at the same call times, with the same facts
        differing = [(mine, theirs) for mine, theirs in zip(got[call_id], events, strict=False) if mine != theirs]
        assert not differing and len(got[call_id]) == len(events), f"{call_id}: {differing[:1]!r}, {len(got[call_id])} vs {len(events)} events"
    assert listing["mode"] == "workers" and listing["queue"] == redis_url and listing["queued"] == 0
    assert sorted(s["name"] for s in listing["workers"]) == ["one", "two"]
    assert all(s["calls_run"] >= 1 for s in listing["workers"]), listing  # both took calls
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"  # written by a worker, served by the API


def test_a_killed_worker_fails_its_call_within_seconds_keeps_its_recording_and_loses_no_queued_call(tmp_path: Path, redis_url: str) -> None:
    folder = tmp_path / "data"
    settings = settings_for(folder, workers=0, queue=redis_url, clock="realtime")
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        with WorkerProcess(redis_url, "doomed", tmp_path / "w1", folder / "recordings", max_calls=1) as doomed:
            long_call = call(http, {"to": "+15550100002", "tts": {"text": "Please hold."}, "record": True,
                                    "gather": {"type": "dtmf", "num_digits": 4, "timeout": 120}})
            waiting = call(http, {"to": "+15550100001", "tts": {"text": "Enter your PIN."}, "gather": {"type": "dtmf", "finish_on_key": "#"}})
            wait_until(lambda: has_event(http, long_call, "recording.started"), timeout_s=60)
            started = next(e for e in events_of(http, long_call, server.base_url) if e["type"] == "recording.started")
            partial = folder / "recordings" / f"{started['recording_id']}.wav"
            wait_until(lambda: partial.exists() and partial.stat().st_size > 16_000, timeout_s=30)  # half a second of audio
            assert status_of(http, waiting) == "queued"  # the doomed worker runs one call at a time
            doomed.kill()
            killed_at = time.monotonic()
            wait_until(lambda: ended(http, long_call), timeout_s=30)
            noticed_s = time.monotonic() - killed_at

        record = http.get(f"/v1/voice/calls/{long_call}").json()
        recording = http.get(f"/v1/voice/calls/{long_call}/recording").json()
        assert record["status"] == "failed"
        assert "worker" in record["reason"] and "doomed" in record["reason"], record["reason"]
        assert noticed_s < 10, noticed_s
        assert recording["duration_s"] > 0.4
        samples, rate_hz = soundfile.read(partial)
        assert rate_hz == 8000 and samples.shape[1] == 2 and len(samples) / rate_hz == pytest.approx(recording["duration_s"], abs=0.05)
        types = [e["type"] for e in events_of(http, long_call, server.base_url)]
        assert types[-2:] == ["recording.completed", "call.failed"]

        assert status_of(http, waiting) == "queued"  # still in the queue, nobody lost it
        with WorkerProcess(redis_url, "heir", tmp_path / "w2", folder / "recordings"):
            assert wait_until(lambda: ended(http, waiting), timeout_s=60) == "completed"
        gathered = [e for e in events_of(http, waiting, server.base_url) if e["type"] == "gather.completed"]
        assert gathered[0]["digits"] == "1234"


def test_a_worker_that_stops_answering_its_sessions_pings_has_its_call_failed(tmp_path: Path, redis_url: str) -> None:
    """Heartbeats: a frozen worker (SIGSTOP: its connection stays open, nothing answers) is gone within
    seconds; when it wakes, what it still writes never reaches the recording the server finalised."""
    folder = tmp_path / "data"
    with BackgroundServer(settings_for(folder, workers=0, queue=redis_url, clock="realtime")) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http, \
            WorkerProcess(redis_url, "frozen", tmp_path / "w1", folder / "recordings") as frozen:
        placed = call(http, {"to": "+15550100002", "tts": {"text": "Please hold."}, "gather": {"type": "dtmf", "timeout": 120}, "record": True})
        wait_until(lambda: status_of(http, placed) == "in-progress" and has_event(http, placed, "recording.started"), timeout_s=60)
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            stopped_at = time.monotonic()
            assert wait_until(lambda: ended(http, placed), timeout_s=30) == "failed"
            noticed_s = time.monotonic() - stopped_at
            reason = http.get(f"/v1/voice/calls/{placed}").json()["reason"]
            assert workers_when(http, lambda w: not w["workers"])["workers"] == []
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        # awake, it learns that its session is gone and stops the call (closing its recording)
        wait_until(lambda: "call(s) and job(s) stopped" in frozen.log.read_text(errors="replace"), timeout_s=30)
        recording = http.get(f"/v1/voice/calls/{placed}/recording").json()
        samples, rate_hz = soundfile.read(folder / "recordings" / f"{recording['id']}.wav")
    assert "frozen" in reason and "stopped" in reason
    assert noticed_s < 15, noticed_s
    assert len(samples) / rate_hz == pytest.approx(recording["duration_s"], abs=0.001)  # the file is what the server said


def test_work_taken_from_the_queue_by_a_worker_that_died_before_claiming_it_is_queued_again(tmp_path: Path, redis_url: str) -> None:
    from ivrsim.workers.queue import JobQueue

    settings = settings_for(tmp_path / "data", workers=0, queue=redis_url, unclaimed_requeue_s=1.0)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        placed = call(http, {"to": "+15551234567", "tts": {"text": "Press 1."}, "gather": {"type": "dtmf", "num_digits": 1}})
        lane = JobQueue(redis_url, "calls")
        taken = wait_until(lane.take)  # a worker takes it... and dies before it claims it
        assert taken["call_id"] == placed
        again = wait_until(lane.take, timeout_s=30)  # the server put it back
        assert again["call_id"] == placed
        lane.put(again)  # (this test is not a worker: hand it to one)
        lane.close()
        with WorkerProcess(redis_url, "heir", tmp_path / "w1"):
            assert wait_until(lambda: ended(http, placed), timeout_s=60) == "completed"


def test_manual_time_stepped_before_a_worker_claims_a_call_counts_for_it(tmp_path: Path, redis_url: str) -> None:
    with BackgroundServer(settings_for(tmp_path / "data", workers=0, queue=redis_url, clock="manual")) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        placed = call(http, {"to": "+15551234567", "tts": {"text": "Press 1 for sales."}, "gather": {"type": "dtmf", "num_digits": 1}})
        http.post("/_sim/clock", json={"advance_s": 60})  # while the call waits in the queue
        with WorkerProcess(redis_url, "late", tmp_path / "w1"):
            assert wait_until(lambda: ended(http, placed), timeout_s=60) == "completed"  # no further step needed
        assert [e for e in events_of(http, placed, server.base_url) if e["type"] == "gather.completed"][0]["digits"] == "1"


def test_a_worker_that_cannot_see_the_recordings_folder_fails_recorded_calls_with_the_fix(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "not-shared").mkdir()  # a folder of this machine's, not the server's
    with BackgroundServer(settings_for(tmp_path / "data", workers=0, queue=redis_url)) as server, \
            WorkerProcess(redis_url, "elsewhere", tmp_path / "w1", recordings_dir=tmp_path / "not-shared"), \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        recorded = call(http, {"to": "+15551234567", "tts": {"text": "Hello."}, "record": True})
        plain = call(http, {"to": "+15551234567", "tts": {"text": "Hello."}})
        assert wait_until(lambda: ended(http, recorded)) == "failed"
        assert "--recordings-dir" in http.get(f"/v1/voice/calls/{recorded}").json()["reason"]
        assert wait_until(lambda: ended(http, plain)) == "completed"


def test_a_worker_that_cannot_read_the_servers_phonebook_fails_calls_with_the_fix(tmp_path: Path, redis_url: str) -> None:
    book = tmp_path / "book.yaml"
    book.write_text("default: {kind: busy}\nnumbers: {}\n", encoding="utf-8")
    with BackgroundServer(settings_for(tmp_path / "data", workers=0, queue=redis_url, phonebook=book)) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        book.unlink()  # a worker elsewhere: the path the server names is not there
        with WorkerProcess(redis_url, "elsewhere", tmp_path / "w1"):
            placed = call(http, {"to": "+15551234567", "tts": {"text": "Hello."}})
            assert wait_until(lambda: ended(http, placed)) == "failed"
        reason = http.get(f"/v1/voice/calls/{placed}").json()["reason"]
    assert "phonebook" in reason and "--phonebook" in reason and "elsewhere" in reason


def test_local_workers_by_default_route_sim_requests_and_replace_a_killed_worker(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, clock="realtime", workers=2)) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        listing = workers_when(http, lambda w: len(w["workers"]) == 2)
        assert listing["mode"] == "workers" and listing["queue"].startswith("sqlite:///")
        for worker in listing["workers"]:  # the queue's URL (it may hold a password) and the token stay off the command line
            command = Path(f"/proc/{worker['pid']}/cmdline").read_bytes()
            assert b"--queue" not in command and b"sqlite:" not in command and b"TOKEN" not in command

        pressed = call(http, {"to": "+15550100002", "tts": {"text": "Enter two digits."}, "gather": {"type": "dtmf", "num_digits": 2, "timeout": 60}})
        wait_until(lambda: status_of(http, pressed) == "in-progress", timeout_s=60)
        injected = http.post(f"/_sim/calls/{pressed}/dtmf", json={"digits": "42"})
        assert injected.status_code == 200, injected.text
        wait_until(lambda: ended(http, pressed), timeout_s=60)
        gathered = [e for e in events_of(http, pressed, server.base_url) if e["type"] == "gather.completed"]
        assert gathered[0]["digits"] == "42"
        too_much = http.post(f"/_sim/calls/{pressed}/dtmf", json={"digits": "1"})
        assert too_much.status_code == 409  # ended

        hung = call(http, {"to": "+15550100002", "tts": {"text": "Hold on."}, "gather": {"type": "dtmf", "timeout": 60}})
        wait_until(lambda: status_of(http, hung) == "in-progress", timeout_s=60)
        assert http.post(f"/_sim/calls/{hung}/hangup").status_code == 200
        assert wait_until(lambda: ended(http, hung), timeout_s=30) == "completed"
        assert http.get(f"/v1/voice/calls/{hung}").json()["reason"] == "the callee hung up (/_sim hangup)"
        assert http.post("/_sim/calls/call_nope/hangup").status_code == 404

        victim = call(http, {"to": "+15550100002", "tts": {"text": "Hold on."}, "gather": {"type": "dtmf", "timeout": 60}})
        wait_until(lambda: status_of(http, victim) == "in-progress", timeout_s=60)
        runner = next(w for w in workers_of(http)["workers"] if w["live_calls"] == 1)
        os.kill(runner["pid"], signal.SIGKILL)
        assert wait_until(lambda: ended(http, victim), timeout_s=15) == "failed"
        assert runner["name"] in http.get(f"/v1/voice/calls/{victim}").json()["reason"]
        replaced = wait_until(lambda: [w for w in workers_of(http)["workers"] if w["name"] == runner["name"] and w["pid"] != runner["pid"]], timeout_s=30)
        assert replaced
        after = call(http, {"to": "+15551234567", "tts": {"text": "Press 1."}, "gather": {"type": "dtmf", "num_digits": 1}})
        assert wait_until(lambda: ended(http, after), timeout_s=60) == "completed"


def test_calls_to_the_sound_card_fail_after_their_ring_timeout_when_no_phone_takes_them(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, workers=2)) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        listing = workers_when(http, lambda w: len(w["workers"]) == 2)
        placed = call(http, {"to": "+15550100100", "tts": {"text": "Hello, desk."}, "timeout": 1})
        assert wait_until(lambda: ended(http, placed), timeout_s=30) == "failed"
        record = http.get(f"/v1/voice/calls/{placed}").json()
        last = http.get(f"/v1/voice/calls/{placed}/events").json()["data"][-1]
        queued = http.get("/_sim/workers").json()["queued_by_lane"]
    assert [w["name"] for w in listing["workers"] if "phone" in w["lanes"]] == []  # `ivrsim phone` takes that lane
    assert "no desktop phone took the call" in record["reason"] and "ivrsim phone" in record["reason"]
    assert (last["type"], last["call_time_s"]) == ("call.failed", 1.0)  # it ended when its ring timeout had passed
    assert record["ended_at"] > record["created_at"]
    assert queued["phone"] == 1  # still in the queue: a phone that starts now takes it, and its claim is refused


def test_with_answer_soundcard_every_call_goes_to_the_one_local_worker_that_owns_the_sound_card(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, workers=2, answer="soundcard")) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        listing = workers_when(http, lambda w: len(w["workers"]) == 2)
        placed = [call(http, {"to": number, "tts": {"text": "Hello, desk."}}) for number in ("+15551234567", "+15550100002")]
        for c in placed:
            wait_until(lambda c=c: ended(http, c), timeout_s=60)
        ran = workers_when(http, lambda w: sum(s["calls_run"] for s in w["workers"]) == 2)
    assert [w["name"] for w in listing["workers"] if "phone" in w["lanes"]] == ["local-1"]
    assert {s["name"]: s["calls_run"] for s in ran["workers"]} == {"local-1": 2, "local-2": 0}


def test_the_manual_clock_steps_calls_on_workers(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, clock="manual", workers=1)) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        placed = call(http, {"to": "+15551234567", "tts": {"text": "Press 1 for sales."}, "gather": {"type": "dtmf", "num_digits": 1}})
        wait_until(lambda: has_event(http, placed, "call.ringing"), timeout_s=60)
        assert status_of(http, placed) == "ringing"  # one ring takes call time, which has not moved
        assert http.post("/_sim/clock", json={"advance_s": 60}).json()["now_s"] == 60.0
        assert status_of(http, placed) == "completed"  # the step answers once the workers have caught up with it
        gathered = [e for e in events_of(http, placed, server.base_url) if e["type"] == "gather.completed"]
        assert gathered[0]["digits"] == "1"


def test_worker_sessions_need_the_token_of_this_run(tmp_path: Path) -> None:
    import json

    with BackgroundServer(settings_for(tmp_path, workers=1)) as server:
        url = server.base_url.replace("http://", "ws://") + "/_internal/workers"
        for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Bearer {KEY}"}):
            with pytest.raises(websockets.InvalidStatus) as refused:
                ws_connect(url, additional_headers=headers, open_timeout=10).close()
            assert refused.value.response.status_code == 403
        token = server.app.state.services.engine.executor.token  # what this run's jobs carry
        with ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10) as session:
            session.send(json.dumps({"t": "hello", "name": "probe"}))
            welcome = json.loads(session.recv(timeout=10))
    assert welcome["t"] == "welcome" and welcome["config"]["clock"] == "virtual"


def test_worker_cli_refuses_bad_queues_with_the_fix(tmp_path: Path) -> None:
    def worker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ivrsim", "worker", *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)

    bad = worker("--queue", "amqp://user:hunter2@localhost")
    assert bad.returncode == 2 and "redis://host:6379/0" in bad.stderr and "hunter2" not in bad.stderr
    unreachable = worker("--queue", "redis://127.0.0.1:1/0")
    assert unreachable.returncode == 1 and "cannot be reached" in unreachable.stderr
    assert worker("--queue", "redis://127.0.0.1:1/zero").returncode == 2  # the database is a number
    no_file = worker("--queue", f"sqlite:///{tmp_path}/nowhere/queue.sqlite3")
    assert no_file.returncode == 2 and "no queue file" in no_file.stderr and not (tmp_path / "nowhere").exists()
    assert worker("--queue", "redis://127.0.0.1:1/0", "--recordings-dir", str(tmp_path / "missing")).returncode == 2
    serve = subprocess.run([sys.executable, "-m", "ivrsim", "serve", "--port", "0", "--queue", "nats://x"], capture_output=True, text=True,
                           timeout=60, cwd=tmp_path)
    assert serve.returncode == 2 and "--queue" in serve.stderr


def stereo_wav() -> bytes:
    """Three seconds: a tone on the left, then one on the right (two parties taking turns)."""
    import io

    import numpy as np

    left = np.zeros(8000 * 3, dtype=np.float32)
    left[4000:12000] = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.stack([left, np.roll(left, 12000)], axis=1), 8000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def job_of(http: httpx.Client, job_id: str) -> dict[str, Any]:
    return http.get(f"/_sim/analyses/{job_id}").json()


def test_analyses_spread_over_two_redis_workers_and_survive_a_killed_one(tmp_path: Path, redis_url: str) -> None:
    import threading

    from ivrsim.testing.http import serve_bytes

    gate = threading.Event()
    folder = tmp_path / "data"
    with serve_bytes(stereo_wav(), "audio/wav", gate=gate) as slow, \
            BackgroundServer(settings_for(folder, workers=0, queue=redis_url)) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        jobs = [http.post("/_sim/analyses", json={"location": f"{slow}/call-{n}.wav"}).json()["id"] for n in range(3)]
        with WorkerProcess(redis_url, "first", tmp_path / "w1") as first:
            wait_until(lambda: job_of(http, jobs[0])["status"] == "processing", timeout_s=60)
            assert job_of(http, jobs[0])["worker"] == "first"
            first.kill()  # mid-job: the fetch still waits at the gate
            again = wait_until(lambda: (j := job_of(http, jobs[0]))["status"] == "queued" and j, timeout_s=30)
            assert again["attempts"] == 1  # queued again, not failed
        with WorkerProcess(redis_url, "second", tmp_path / "w2"), WorkerProcess(redis_url, "third", tmp_path / "w3"):
            # one job each at a time (--max-jobs 1): two are processing at once, on two workers
            busy = wait_until(lambda: (p := [j for j in map(lambda i: job_of(http, i), jobs) if j["status"] == "processing"])
                              and len(p) == 2 and p, timeout_s=60)
            assert {j["worker"] for j in busy} == {"second", "third"}
            gate.set()
            done = [wait_until(lambda i=i: (j := job_of(http, i))["status"] in ("completed", "failed") and j, timeout_s=60) for i in jobs]
    assert all(j["status"] == "completed" for j in done), [j["error"] for j in done]
    assert done[0]["attempts"] == 2 and done[0]["worker"] in ("second", "third")
    assert all(j["result"]["speakers"]["user"]["turns"] == 1 for j in done)

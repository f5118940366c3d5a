"""Webhooks that outlast an outage: retries on a stored schedule, order per call, the list of undelivered
deliveries and their retry (API and CLI), the /_sim reset, shutdown, and what recording.completed carries.

Everything runs for real on loopback: the server (BackgroundServer), SQLite, and a webhook receiver that
can go down and come back on the same port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from ivrsim.api.server import BackgroundServer
from ivrsim.cli import main
from ivrsim.engine.events import CallEvent
from ivrsim.settings import Settings
from ivrsim.store.sqlite import Store
from ivrsim.testing.http import serve_raw
from ivrsim.webhooks.dispatcher import WebhookDispatcher, WebhookSettings
from ivrsim.testing.waiting import wait_until
from ivrsim.testing.processes import free_port

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FROM = "+15559876543"
BUSY = "+15550100486"  # the call ends busy at once: call.queued, call.busy
FINAL = ("completed", "busy", "no-answer", "failed")


class FlakyReceiver:
    """A webhook receiver on a fixed port that can be down (``stop``) and up again (``start``).

    ``answer(payload, count)`` picks the status for a POST (``count``: earlier POSTs of that delivery);
    2xx bodies are recorded in arrival order."""

    def __init__(self, answer: Callable[[dict[str, Any], int], int] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.answer = answer or (lambda payload, count: 204)
        self.received: list[dict[str, Any]] = []
        self.posts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> FlakyReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with receiver._lock:
                    key = (payload["call_id"], payload["sequence"])
                    count = receiver.posts.get(key, 0)
                    receiver.posts[key] = count + 1
                    status = receiver.answer(payload, count)
                    if status < 300:
                        receiver.received.append(payload)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="flaky-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def for_call(self, call_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for p in self.received if p["call_id"] == call_id]


@pytest.fixture
def receiver() -> Iterator[FlakyReceiver]:
    instance = FlakyReceiver()
    yield instance
    instance.stop()


def settings_for(folder: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_key": KEY, "port": 0, "data_dir": folder, "webhook_attempts": 8, "webhook_backoff_s": 0.1, "webhook_backoff_factor": 2.0,
        "webhook_backoff_cap_s": 0.5, "webhook_jitter": 0.2, "webhook_timeout_s": 5.0, "webhook_connect_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


def place(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post("/v1/voice/calls", json={"from": FROM, **body})
    assert response.status_code == 200, response.text
    return response.json()


def ended(http: httpx.Client, call_id: str) -> dict[str, Any]:
    return wait_until(lambda: (c := http.get(f"/v1/voice/calls/{call_id}").json())["status"] in FINAL and c)


def deliveries(http: httpx.Client, call_id: str) -> list[dict[str, Any]]:
    """The call's delivery log, oldest first."""
    return list(http.get(f"/v1/voice/calls/{call_id}/webhooks").json()["data"])


def settled(http: httpx.Client, call_id: str, count: int, status: str = "delivered") -> list[dict[str, Any]]:
    """The call's delivery log once it holds ``count`` deliveries, all in ``status``."""
    return wait_until(lambda: (log := deliveries(http, call_id)) and len(log) == count and all(d["status"] == status for d in log) and log)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- the schedule -----------------------------------------------------------------------------------------


def test_default_schedule_retries_for_about_three_days_with_jitter() -> None:
    import random

    settings = WebhookSettings()
    waits = [settings.delay_s(n) for n in range(1, settings.attempts)]
    assert settings.attempts == 8 and waits[0] == 10.0
    assert waits == sorted(waits) and max(waits) == settings.backoff_cap_s
    assert 2.5 * 86_400 < sum(waits) < 3.5 * 86_400
    rng = random.Random(1)
    jittered = [settings.delay_s(3, rng) for _ in range(50)]
    assert all(0.8 * waits[2] <= w <= 1.2 * waits[2] for w in jittered) and len(set(jittered)) > 40
    defaults = Settings(api_key=KEY)
    assert (defaults.webhook_attempts, defaults.webhook_backoff_s, defaults.webhook_backoff_factor) == (8, 10.0, 6.0)


# -- outages ----------------------------------------------------------------------------------------------


def test_a_receiver_down_then_up_gets_every_event_in_order(tmp_path: Path, receiver: FlakyReceiver) -> None:
    # 20 attempts, 0.5 s apart at most: about 9 s for the calls to end (their workers may still be starting) before any is given up
    with BackgroundServer(settings_for(tmp_path, webhook_attempts=20)) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as http:
        calls = [place(http, to="+15550100001", tts={"text": "PIN please."}, gather={"num_digits": 4}, webhook_url=f"{receiver.url}/down")
                 for _ in range(3)]
        for call in calls:
            ended(http, call["id"])
        # every call's first delivery has failed at least once while the receiver was down; none is given up
        wait_until(lambda: all((log := deliveries(http, c["id"])) and log[0]["attempts"] and all(d["status"] == "pending" for d in log) for c in calls))
        receiver.start()
        for call in calls:
            log = settled(http, call["id"], 5)
            assert "ConnectError" in log[0]["attempts"][0]["error"] and log[0]["attempts"][-1]["status_code"] == 204
            got = receiver.for_call(call["id"])
            assert [p["sequence"] for p in got] == sorted(p["sequence"] for p in got)
            assert [p["type"] for p in got] == ["call.queued", "call.ringing", "call.in-progress", "gather.completed", "call.completed"]


def test_a_later_event_waits_behind_an_earlier_one_still_retrying(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    receiver = FlakyReceiver(lambda payload, count: 503 if payload["type"] == "call.queued" and count < 3 else 204).start()
    caplog.set_level(logging.INFO, logger="ivrsim.webhooks.dispatcher")
    try:
        with BackgroundServer(settings_for(tmp_path)) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as http:
            call = place(http, to=BUSY, tts={"text": "Hi."}, webhook_url=f"{receiver.url}/order?token=secret")
            queued, busy = settled(http, call["id"], 2)
    finally:
        receiver.stop()
    assert [p["type"] for p in receiver.for_call(call["id"])] == ["call.queued", "call.busy"]
    assert [a["status_code"] for a in queued["attempts"]] == [503, 503, 503, 204]
    assert [a["status_code"] for a in busy["attempts"]] == [204]
    assert epoch(busy["attempts"][0]["at"]) >= epoch(queued["attempts"][-1]["at"])  # busy went only after queued arrived
    lines = [r.getMessage() for r in caplog.records]
    shown = f"{receiver.url}/order"
    assert f"webhook call.queued #{queued['id']} to {shown}: 503, retry 2/8 in" in "\n".join(lines)
    assert not any("token=secret" in line for line in lines)  # a query string may hold a token: never logged


def test_a_restart_resumes_retries_on_their_stored_schedule(tmp_path: Path, receiver: FlakyReceiver) -> None:
    settings = {"webhook_backoff_s": 2.0, "webhook_backoff_factor": 1.0, "webhook_jitter": 0.0}
    with BackgroundServer(settings_for(tmp_path, **settings)) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as http:
        call = place(http, to=BUSY, tts={"text": "Hi."}, webhook_url=f"{receiver.url}/later")
        wait_until(lambda: (log := deliveries(http, call["id"])) and len(log) == 2 and log[0]["attempts"])
    store = Store(tmp_path / "ivrsim.sqlite3")
    before = store.deliveries(call_id=call["id"])
    store.close()
    assert [d["status"] for d in before] == ["pending", "pending"] and before[0]["next_attempt_at"]
    due = epoch(before[0]["next_attempt_at"])
    made = len(before[0]["attempts"])
    receiver.start()
    with BackgroundServer(settings_for(tmp_path, **settings)) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as http:
        log = settled(http, call["id"], 2)
    resumed = log[0]["attempts"][made]
    assert log[0]["attempts"][:made] == before[0]["attempts"]  # the first run's attempts are kept
    assert resumed["status_code"] == 204 and epoch(resumed["at"]) >= due - 0.001  # not before its stored time
    assert [p["type"] for p in receiver.for_call(call["id"])] == ["call.queued", "call.busy"]


def test_an_unusable_url_is_a_failed_attempt_never_a_stuck_delivery(tmp_path: Path) -> None:
    async def scenario() -> list[dict[str, Any]]:
        store = Store(tmp_path / "hooks.sqlite3")
        for call_id, url in (("call_bracket", "http://[::1/x"), ("call_ftp", "ftp://example.com/x"), ("call_nohost", "http:///x")):
            store.insert_call(call_id, "+15550100001", FROM, {"webhook_url": url})
        dispatcher = WebhookDispatcher(store, WebhookSettings(attempts=3, backoff_s=0.01))
        for call_id in ("call_bracket", "call_ftp", "call_nohost"):
            for sequence, kind in enumerate(("call.queued", "call.busy"), start=1):
                dispatcher.on_event(CallEvent(call_id, sequence, kind, 0.0, "2026-01-01T00:00:00Z", {"status": kind[5:]}))
        await asyncio.wait_for(dispatcher.drain(), timeout=10)
        await dispatcher.close()
        rows = store.deliveries()
        store.close()
        return rows

    rows = asyncio.run(scenario())
    assert len(rows) == 6
    for row in rows:
        assert row["status"] == "failed" and len(row["attempts"]) == 1  # permanent: not retried
        assert row["attempts"][0]["error"].startswith("invalid webhook URL") and row["attempts"][0]["status_code"] is None


def test_a_receiver_that_does_not_speak_http_is_named_never_quoted(tmp_path: Path) -> None:
    """The delivery log keeps a fixed phrase, never the bytes the receiver sent (h11 quotes them)."""

    async def scenario(url: str) -> list[dict[str, Any]]:
        store = Store(tmp_path / "hooks.sqlite3")
        store.insert_call("call_raw", "+15550100001", FROM, {"webhook_url": url})
        dispatcher = WebhookDispatcher(store, WebhookSettings(attempts=2, backoff_s=0.01, backoff_cap_s=0.01))
        dispatcher.on_event(CallEvent("call_raw", 1, "call.queued", 0.0, "2026-01-01T00:00:00Z", {"status": "queued"}))
        await asyncio.wait_for(dispatcher.drain(), timeout=10)
        await dispatcher.close()
        rows = store.deliveries()
        store.close()
        return rows

    with serve_raw(b"SECRET-TOKEN=hunter2\r\n\r\n") as raw:
        (row,) = asyncio.run(scenario(f"{raw}/hooks"))
    assert row["status"] == "failed" and len(row["attempts"]) == 2  # retried: the receiver may come back
    for attempt in row["attempts"]:
        assert attempt["status_code"] is None and attempt["error"] == "RemoteProtocolError: the reply is not valid HTTP"
    assert "hunter2" not in json.dumps(row) and "SECRET" not in json.dumps(row)


# -- the list of deliveries, and retry --------------------------------------------------------------------


def test_list_undelivered_page_them_and_retry_keeping_the_log(tmp_path: Path) -> None:
    gate = {"open": False}
    receiver = FlakyReceiver(lambda payload, count: 204 if gate["open"] else 400).start()
    try:
        with BackgroundServer(settings_for(tmp_path)) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as http:
            call = place(http, to=BUSY, tts={"text": "Hi."}, webhook_url=f"{receiver.url}/gate")
            queued, busy = settled(http, call["id"], 2, status="failed")  # a 400 is final
            listed = http.get("/v1/voice/webhooks", params={"status": "failed", "call_id": call["id"]}).json()
            assert [d["id"] for d in listed["data"]] == [busy["id"], queued["id"]]  # newest first
            assert listed["has_more"] is False and listed["data"][0]["attempts"][0]["status_code"] == 400
            first = http.get("/v1/voice/webhooks", params={"status": "failed", "call_id": call["id"], "limit": 1}).json()
            assert [d["id"] for d in first["data"]] == [busy["id"]] and first["has_more"] and first["next_starting_after"] == busy["id"]
            second = http.get("/v1/voice/webhooks", params={"status": "failed", "call_id": call["id"], "limit": 1, "starting_after": busy["id"]}).json()
            assert [d["id"] for d in second["data"]] == [queued["id"]] and not second["has_more"]
            assert http.get("/v1/voice/webhooks", params={"status": "delivered", "call_id": call["id"]}).json()["data"] == []

            bad = http.get("/v1/voice/webhooks", params={"status": "lost"})
            assert bad.status_code == 422 and bad.json()["error"]["param"] == "status"
            unknown_page = http.get("/v1/voice/webhooks", params={"starting_after": 999_999})
            assert unknown_page.status_code == 404 and unknown_page.json()["error"]["param"] == "starting_after"
            missing = http.post("/v1/voice/webhooks/999999/retry")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
            assert http.post("/v1/voice/webhooks/abc/retry").status_code == 422
            assert httpx.post(f"{running.base_url}/v1/voice/webhooks/{queued['id']}/retry").status_code == 401

            gate["open"] = True
            for delivery in (queued, busy):
                again = http.post(f"/v1/voice/webhooks/{delivery['id']}/retry")
                assert again.status_code == 202 and again.json()["status"] in ("pending", "delivered")
            queued_after, busy_after = settled(http, call["id"], 2)
            assert [a["status_code"] for a in queued_after["attempts"]] == [400, 204]  # the log is kept
            assert [a["attempt"] for a in busy_after["attempts"]] == [1, 2]
            conflict = http.post(f"/v1/voice/webhooks/{queued['id']}/retry")
            assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "already_delivered"
    finally:
        receiver.stop()
    assert [p["type"] for p in receiver.for_call(call["id"])] == ["call.queued", "call.busy"]


def test_a_retried_earlier_delivery_goes_before_a_later_one_of_its_call(tmp_path: Path) -> None:
    """call.queued failed for good (400); call.busy is retrying (503). Retried, call.queued goes first."""
    gate = {"open": False}

    def answer(payload: dict[str, Any], count: int) -> int:
        if gate["open"]:
            return 204
        return 400 if payload["type"] == "call.queued" else 503

    receiver = FlakyReceiver(answer).start()
    try:
        settings = settings_for(tmp_path, webhook_backoff_s=1.0, webhook_backoff_factor=1.0)
        with BackgroundServer(settings) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as http:
            call = place(http, to=BUSY, tts={"text": "Hi."}, webhook_url=f"{receiver.url}/retry-order")
            queued, _ = wait_until(lambda: (log := deliveries(http, call["id"])) and len(log) == 2 and log[0]["status"] == "failed"
                                   and log[1]["attempts"] and log)
            gate["open"] = True
            assert http.post(f"/v1/voice/webhooks/{queued['id']}/retry").status_code == 202
            settled(http, call["id"], 2)
    finally:
        receiver.stop()
    assert [p["type"] for p in receiver.for_call(call["id"])] == ["call.queued", "call.busy"]


def test_cli_lists_and_retries_deliveries(tmp_path: Path) -> None:
    gate = {"open": False}
    receiver = FlakyReceiver(lambda payload, count: 204 if gate["open"] else 400).start()
    runner = CliRunner()
    try:
        with BackgroundServer(settings_for(tmp_path)) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as http:
            env = {"IVRSIM_BASE_URL": running.base_url, "IVRSIM_API_KEY": KEY}
            call = place(http, to=BUSY, tts={"text": "Hi."}, webhook_url=f"{receiver.url}/cli")
            queued, busy = settled(http, call["id"], 2, status="failed")

            listed = runner.invoke(main, ["webhooks", "list", "--status", "failed", "--json"], env=env)
            assert listed.exit_code == 0, listed.output
            rows = [json.loads(line) for line in listed.stdout.splitlines()]
            assert [r["id"] for r in rows if r["call_id"] == call["id"]] == [busy["id"], queued["id"]]
            table = runner.invoke(main, ["webhooks", "list", "--call-id", call["id"]], env=env)
            assert table.exit_code == 0 and "call.busy" in table.stdout and "400" in table.stdout

            assert runner.invoke(main, ["webhooks", "retry"], env=env).exit_code == 2  # no id and no --all-failed
            assert runner.invoke(main, ["webhooks", "retry", "7", "--all-failed"], env=env).exit_code == 2
            assert runner.invoke(main, ["webhooks", "list", "--status", "lost"], env=env).exit_code == 2
            gate["open"] = True
            retried = runner.invoke(main, ["webhooks", "retry", "--all-failed"], env=env)
            assert retried.exit_code == 0, retried.output
            settled(http, call["id"], 2)
            again = runner.invoke(main, ["webhooks", "retry", str(queued["id"]), "999999"], env=env)
            assert again.exit_code == 1 and "already_delivered" in again.stderr and "999999" in again.stderr
        down = runner.invoke(main, ["webhooks", "list"], env={"IVRSIM_BASE_URL": f"http://127.0.0.1:{free_port()}", "IVRSIM_API_KEY": KEY})
        assert down.exit_code == 1 and "ivrsim serve" in down.stderr
    finally:
        receiver.stop()


# -- reset, shutdown, and what recording.completed says ---------------------------------------------------


def test_reset_stops_pending_deliveries_and_removes_recordings(tmp_path: Path, receiver: FlakyReceiver) -> None:
    settings = settings_for(tmp_path, webhook_backoff_s=30.0)  # the receiver stays down: deliveries wait to retry
    with BackgroundServer(settings) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as http:
        dispatcher = running.app.state.services.dispatcher
        call = place(http, to="+15550100001", tts={"text": "PIN please."}, gather={"num_digits": 4}, record=True, webhook_url=f"{receiver.url}/reset")
        ended(http, call["id"])
        recording = http.get(f"/v1/voice/calls/{call['id']}/recording").json()
        wav = tmp_path / "recordings" / f"{recording['id']}.wav"
        assert wav.is_file()
        wait_until(lambda: http.get("/v1/voice/webhooks", params={"status": "pending", "call_id": call["id"]}).json()["data"])
        assert dispatcher.active_calls == 1
        mp3 = wav.with_suffix(".mp3")  # as GET .../{id}.mp3 leaves it
        mp3.write_bytes(b"ID3")
        elsewhere = tmp_path.parent / f"{tmp_path.name}-outside" / wav.name  # a stored path outside the data folder
        elsewhere.parent.mkdir()
        elsewhere.write_bytes(wav.read_bytes())
        with sqlite3.connect(tmp_path / "ivrsim.sqlite3", timeout=10) as db:
            db.execute("UPDATE recordings SET path = ? WHERE id = ?", (str(elsewhere), recording["id"]))
        response = http.post("/_sim/reset")
        assert response.status_code == 200 and response.json()["recordings_removed"] == 1
        assert not wav.exists() and not mp3.exists()
        assert elsewhere.is_file()  # reset deletes inside data_dir/recordings only
        assert dispatcher.active_calls == 0
        assert http.get("/v1/voice/webhooks").json()["data"] == []


def test_recording_completed_carries_the_url_and_both_durations(tmp_path: Path, receiver: FlakyReceiver) -> None:
    receiver.start()
    with BackgroundServer(settings_for(tmp_path)) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as http:
        call = place(http, to="+15550100001", tts={"text": "PIN please."}, gather={"num_digits": 4}, record=True, webhook_url=f"{receiver.url}/rec")
        final = ended(http, call["id"])
        completed = wait_until(lambda: next((p for p in receiver.for_call(call["id"]) if p["type"] == "recording.completed"), None))
        assert "path" not in completed and completed["url"].startswith(running.base_url + "/v1/voice/recordings/")
        assert isinstance(completed["duration"], int) and completed["duration"] == round(completed["duration_s"])
        assert completed["duration_s"] == pytest.approx(final["duration"], abs=0.001)
        wav = httpx.get(completed["url"])
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
        # virtual clock: answered_at and ended_at follow call time, so they agree with the duration
        assert epoch(final["ended_at"]) - epoch(final["answered_at"]) == pytest.approx(final["duration"], abs=0.002)
        events = http.get(f"/v1/voice/calls/{call['id']}/events").json()["data"]
        assert epoch(final["ended_at"]) - epoch(final["created_at"]) == pytest.approx(events[-1]["call_time_s"], abs=0.002)


def test_public_url_setting_overrides_the_bound_address(tmp_path: Path, receiver: FlakyReceiver) -> None:
    receiver.start()
    settings = settings_for(tmp_path, public_url="https://ivrsim.example.test/")
    with BackgroundServer(settings) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as http:
        call = place(http, to="+15550100001", tts={"text": "PIN please."}, gather={"num_digits": 4}, record=True, webhook_url=f"{receiver.url}/pub")
        completed = wait_until(lambda: next((p for p in receiver.for_call(call["id"]) if p["type"] == "recording.completed"), None))
    assert completed["url"] == f"https://ivrsim.example.test/v1/voice/recordings/{completed['recording_id']}.wav"


def test_a_shutdown_completes_answered_calls_and_fails_ringing_ones(tmp_path: Path, receiver: FlakyReceiver) -> None:
    receiver.start()
    with BackgroundServer(settings_for(tmp_path, clock="realtime")) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as http:
        answered = place(http, to="+15550100002", tts={"text": "Hold on."}, gather={"timeout": 60}, webhook_url=f"{receiver.url}/stop")
        ringing = place(http, to="+15550100408", tts={"text": "Hi."}, timeout=60, webhook_url=f"{receiver.url}/stop")
        wait_until(lambda: http.get(f"/v1/voice/calls/{answered['id']}").json()["status"] == "in-progress")
        wait_until(lambda: http.get(f"/v1/voice/calls/{ringing['id']}").json()["status"] == "ringing")
    # the server has stopped; the final webhooks went out while it shut down
    store = Store(tmp_path / "ivrsim.sqlite3")
    try:
        first, second = store.get_call(answered["id"]), store.get_call(ringing["id"])
    finally:
        store.close()
    assert first is not None and second is not None
    assert (first.status, second.status) == ("completed", "failed")
    assert "ivrsim stopped" in (first.reason or "") and "ivrsim stopped" in (second.reason or "")
    assert first.duration_s is not None and first.duration_s > 0
    assert receiver.for_call(answered["id"])[-1]["type"] == "call.completed"
    assert receiver.for_call(ringing["id"])[-1]["type"] == "call.failed"

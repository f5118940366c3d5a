"""Retention (prune), snapshots and the data folder's lock, through the real CLI, a real server on
loopback, a real webhook receiver and real SQLite."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ivrsim.api.server import BackgroundServer
from ivrsim.settings import Settings
from ivrsim.store.maintenance import DATABASE_NAME, LOCK_NAME
from ivrsim.webhooks.receiver import WebhookReceiver
from ivrsim.testing.waiting import wait_until
from ivrsim.testing.processes import free_port

KEY = "maintenance-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FINAL = {"completed", "busy", "no-answer", "failed"}


def ivrsim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ivrsim", *args], capture_output=True, text=True, timeout=120, env=env)


def settings_for(folder: Path, **overrides: Any) -> Settings:
    return Settings(**{"api_key": KEY, "port": 0, "data_dir": folder, "webhook_attempts": 2, "webhook_backoff_s": 0.05, **overrides})


def place_and_settle(http: httpx.Client, webhook_url: str, count: int) -> list[str]:
    """Place ``count`` recorded calls and wait until each has ended and its webhooks are all delivered."""
    ids = []
    for _ in range(count):
        response = http.post("/v1/voice/calls", json={"to": "+15550100001", "from": "+15559876543", "tts": {"text": "Enter your PIN."},
                                                        "gather": {"num_digits": 4}, "record": True, "webhook_url": webhook_url})
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    for call_id in ids:
        wait_until(lambda: http.get(f"/v1/voice/calls/{call_id}").json()["status"] in FINAL)
        wait_until(lambda: all(d["status"] == "delivered" for d in http.get(f"/v1/voice/calls/{call_id}/webhooks").json()["data"]))
    return ids


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A stopped server's data folder with three completed, recorded calls whose webhooks were delivered."""
    folder = tmp_path_factory.mktemp("history") / "data"
    with WebhookReceiver() as receiver, BackgroundServer(settings_for(folder)) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        ids = place_and_settle(http, f"{receiver.url}/hook", 3)
    return folder, ids


@pytest.fixture
def data(history: tuple[Path, list[str]], tmp_path: Path) -> tuple[Path, list[str]]:
    """A private copy of ``history`` for one test."""
    folder = tmp_path / "data"
    shutil.copytree(history[0], folder)
    return folder, list(history[1])


def age(folder: Path, call_ids: list[str], days: float) -> None:
    """Make calls look as if they ended ``days`` ago (the one thing a test cannot wait for)."""
    when = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with sqlite3.connect(folder / DATABASE_NAME, timeout=10) as db:
        db.executemany("UPDATE calls SET ended_at = ?, updated_at = ? WHERE id = ?", [(when, when, i) for i in call_ids])


def recording_file(folder: Path, call_id: str) -> Path:
    with sqlite3.connect(folder / DATABASE_NAME, timeout=10) as db:
        (recording_id,) = db.execute("SELECT id FROM recordings WHERE call_id = ?", (call_id,)).fetchone()
    return folder / "recordings" / f"{recording_id}.wav"


def test_prune_removes_old_calls_and_their_files_while_the_server_runs_and_spares_live_ones(data: tuple[Path, list[str]]) -> None:
    folder, (old1, old2, recent) = data
    files = {i: recording_file(folder, i) for i in (old1, old2, recent)}
    assert all(f.is_file() for f in files.values())
    age(folder, [old1, old2], days=30)
    with BackgroundServer(settings_for(folder, clock="manual")) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        live = http.post("/v1/voice/calls", json={"to": "+15550100001", "from": "+15559876543", "tts": {"text": "hi"}}).json()["id"]
        assert http.get(f"/v1/voice/calls/{live}").json()["status"] not in FINAL

        dry = ivrsim("prune", "--data-dir", str(folder), "--older-than-days", "7", "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        would = json.loads(dry.stdout)
        assert (would["dry_run"], would["calls"], would["rows"]["recordings"], would["recording_files"]) == (True, 2, 2, 2)
        assert all(f.is_file() for f in files.values()) and http.get(f"/v1/voice/calls/{old1}").status_code == 200

        result = ivrsim("prune", "--data-dir", str(folder), "--older-than-days", "7", "--json")
        assert result.returncode == 0, result.stderr
        pruned = json.loads(result.stdout)
        assert {k: pruned[k] for k in ("calls", "recording_files", "bytes_freed")} == {k: would[k] for k in ("calls", "recording_files", "bytes_freed")}
        assert pruned["rows"] == would["rows"]
        assert pruned["rows"]["events"] > 0 and pruned["rows"]["webhook_deliveries"] > 0
        for call_id in (old1, old2):
            assert http.get(f"/v1/voice/calls/{call_id}").status_code == 404
            assert http.get(f"/v1/voice/calls/{call_id}/webhooks").status_code == 404
            assert not files[call_id].exists()
        assert http.get(f"/v1/voice/calls/{recent}").status_code == 200 and files[recent].is_file()

        everything = ivrsim("prune", "--data-dir", str(folder), "--older-than-days", "0")
        assert everything.returncode == 0, everything.stderr
        assert everything.stdout.startswith("pruned 1 call(s)")
        assert http.get(f"/v1/voice/calls/{recent}").status_code == 404 and not files[recent].exists()
        assert http.get(f"/v1/voice/calls/{live}").json()["status"] not in FINAL  # the live call was never touched
        # the server keeps working on the folder it shares with prune: the live call runs to its end
        assert http.post("/_sim/clock", json={"advance_s": 60}).status_code == 200
        wait_until(lambda: http.get(f"/v1/voice/calls/{live}").json()["status"] == "completed")


def test_prune_names_a_folder_without_a_database(tmp_path: Path) -> None:
    result = ivrsim("prune", "--data-dir", str(tmp_path), "--older-than-days", "1")
    assert result.returncode == 1
    assert f"no ivrsim database in {tmp_path}" in result.stderr and len(result.stderr.splitlines()) == 1
    usage = ivrsim("prune", "--data-dir", str(tmp_path), "--older-than-days", "-1")
    assert usage.returncode == 2 and "--older-than-days" in usage.stderr


def test_serve_retain_days_prunes_at_start(data: tuple[Path, list[str]]) -> None:
    folder, (old, kept, _) = data
    age(folder, [old], days=10)
    old_file, kept_file = recording_file(folder, old), recording_file(folder, kept)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "ivrsim", "serve", "--port", str(port), "--data-dir", str(folder), "--retain-days", "7"],
                              env={**os.environ, "IVRSIM_API_KEY": KEY}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=5) as http:
            def status(call_id: str) -> int | None:
                try:
                    return http.get(f"/v1/voice/calls/{call_id}").status_code
                except httpx.TransportError:
                    assert server.poll() is None, "ivrsim serve exited"
                    return None

            wait_until(lambda: status(old) == 404)
            assert status(kept) == 200
        assert not old_file.exists() and kept_file.is_file()
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_snapshot_saved_under_load_loads_into_a_new_folder_that_serves_it(data: tuple[Path, list[str]], tmp_path: Path) -> None:
    folder, ids = data
    archive = tmp_path / "state.tar.gz"
    stop = threading.Event()
    placed: list[str] = []
    with WebhookReceiver() as receiver, BackgroundServer(settings_for(folder)) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:

        def keep_calling() -> None:  # calls are written while the snapshot is taken
            while not stop.is_set():
                placed.extend(place_and_settle(http, f"{receiver.url}/hook", 1))

        writer = threading.Thread(target=keep_calling)
        writer.start()
        try:
            wait_until(lambda: placed)
            result = ivrsim("snapshot", "save", str(archive), "--data-dir", str(folder), "--json")
        finally:
            stop.set()
            writer.join(timeout=60)
        assert result.returncode == 0, result.stderr
        manifest = json.loads(result.stdout)

        refused = ivrsim("snapshot", "load", str(archive), "--data-dir", str(folder), "--force")
        assert refused.returncode == 3
        assert f"in use by a running ivrsim server (pid {os.getpid()}" in refused.stderr and f"kill {os.getpid()}" in refused.stderr

    assert (manifest["format"], manifest["version"]) == ("ivrsim-snapshot", 1)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert f"data/{DATABASE_NAME}" in names and f"data/{LOCK_NAME}" not in names and "manifest.json" in names
    assert manifest["counts"]["calls"] >= len(ids) + 1

    target = tmp_path / "restored"
    loaded = ivrsim("snapshot", "load", str(archive), "--data-dir", str(target), "--json")
    assert loaded.returncode == 0, loaded.stderr
    with sqlite3.connect(target / DATABASE_NAME) as db:
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []  # one consistent state, taken mid-write
        counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("calls", "events", "recordings")}
        stored = [row[0] for row in db.execute("SELECT id FROM calls")]
    assert counts == {t: manifest["counts"][t] for t in counts}
    with BackgroundServer(settings_for(target)) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        for call_id in ids:
            assert http.get(f"/v1/voice/calls/{call_id}").json()["status"] == "completed"
        recording = http.get(f"/v1/voice/calls/{ids[0]}/recording")
        assert recording.status_code == 200, recording.text
    assert set(ids) <= set(stored)
    assert recording_file(target, ids[0]).stat().st_size == recording_file(folder, ids[0]).stat().st_size

    not_empty = ivrsim("snapshot", "load", str(archive), "--data-dir", str(target))
    assert not_empty.returncode == 3 and "is not empty" in not_empty.stderr and "--force" in not_empty.stderr
    (target / "stray.txt").write_text("left from before")
    forced = ivrsim("snapshot", "load", str(archive), "--data-dir", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert not (target / "stray.txt").exists() and (target / DATABASE_NAME).is_file()


@pytest.mark.parametrize("content", [b"not a tarball at all", b""])
def test_snapshot_load_refuses_a_file_that_is_not_a_snapshot(tmp_path: Path, content: bytes) -> None:
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(content)
    result = ivrsim("snapshot", "load", str(bogus), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 1
    assert "not a readable ivrsim snapshot" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "data").exists()


def test_snapshot_load_refuses_a_tarball_without_a_manifest_or_with_escaping_paths(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tar.gz"
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    with tarfile.open(plain, "w:gz") as tar:
        tar.add(payload, arcname="../escape.txt")
    result = ivrsim("snapshot", "load", str(plain), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 1 and "no manifest.json" in result.stderr
    assert not (tmp_path / "escape.txt").exists()


def test_snapshot_save_without_a_database_fails_cleanly(tmp_path: Path) -> None:
    result = ivrsim("snapshot", "save", str(tmp_path / "s.tar.gz"), "--data-dir", str(tmp_path))
    assert result.returncode == 1 and "no ivrsim database" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def running(tmp_path: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer(settings_for(tmp_path / "held")) as server:
        yield server


def test_a_second_server_on_a_held_folder_is_refused_in_one_line(running: BackgroundServer) -> None:
    folder = running.settings.data_dir
    result = ivrsim("serve", "--data-dir", str(folder), "--port", "0", env={**os.environ, "IVRSIM_API_KEY": KEY})
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1].startswith(f"ivrsim: error: data folder {folder} is in use")
    assert "Traceback" not in result.stderr
    demo = ivrsim("demo", "--data-dir", str(folder))
    assert demo.returncode == 3 and "own --data-dir" in demo.stderr


def test_retention_runs_again_while_the_server_is_up(data: tuple[Path, list[str]]) -> None:
    folder, (first, second, third) = data
    with BackgroundServer(settings_for(folder, retain_days=7, retention_interval_s=0.1)) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        assert http.get(f"/v1/voice/calls/{first}").status_code == 200
        age(folder, [first], days=8)  # it grows old while the server runs
        wait_until(lambda: http.get(f"/v1/voice/calls/{first}").status_code == 404)
        assert [http.get(f"/v1/voice/calls/{i}").status_code for i in (second, third)] == [200, 200]


# -- review fixes: prune beside a busy server, Idempotency-Keys, the lock taken before uvicorn --------------


def add_old_calls(folder: Path, count: int, events_each: int) -> None:
    """``count`` calls that ended a year ago, each with ``events_each`` events and a delivered webhook
    (rows written straight into SQLite: a year of history cannot be waited for)."""
    when = (datetime.now(UTC) - timedelta(days=365)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with sqlite3.connect(folder / DATABASE_NAME, timeout=10) as db:
        db.executemany(
            "INSERT INTO calls (id, to_number, from_number, status, created_at, updated_at, ended_at, request_json)"
            " VALUES (?, '+15550100001', '+15559876543', 'completed', ?, ?, ?, '{}')",
            [(f"call_old{i:05d}", when, when, when) for i in range(count)],
        )
        db.executemany(
            "INSERT INTO events (call_id, sequence, type, call_time_s, timestamp, data_json) VALUES (?, ?, 'call.note', 0, ?, '{}')",
            [(f"call_old{i:05d}", n, when) for i in range(count) for n in range(1, events_each + 1)],
        )
        db.executemany(
            "INSERT INTO webhook_deliveries (call_id, sequence, event_type, url, payload_json, status, created_at)"
            " VALUES (?, 1, 'call.note', 'http://127.0.0.1:9/x', '{}', 'delivered', ?)",
            [(f"call_old{i:05d}",) + (when,) for i in range(count)],
        )


def test_prune_beside_a_busy_server_never_makes_its_requests_fail(tmp_path: Path) -> None:
    """Many old calls pruned while the server places calls and claims Idempotency-Keys: every request
    succeeds (prune's transactions are small, the server's store waits for them instead of failing)."""
    folder = tmp_path / "busy"
    with BackgroundServer(settings_for(folder)):
        pass  # makes the database
    add_old_calls(folder, 600, 40)
    outcome: dict[str, Any] = {}
    with BackgroundServer(settings_for(folder)) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        from ivrsim.store.maintenance import prune

        pruner = threading.Thread(target=lambda: outcome.update(result=prune(folder, 7)))
        pruner.start()
        answers = []
        while pruner.is_alive() or len(answers) < 5:
            response = http.post("/v1/voice/calls", headers={"Idempotency-Key": f"busy-{len(answers)}"},
                                 json={"to": "+15550100001", "from": "+15559876543", "tts": {"text": "hi"}, "gather": {"num_digits": 4}})
            answers.append((response.status_code, response.text))
        pruner.join()
        assert [a for a in answers if a[0] != 200] == []
        for call_id in [json.loads(text)["id"] for _, text in answers]:
            wait_until(lambda: http.get(f"/v1/voice/calls/{call_id}").json()["status"] in FINAL)
    assert outcome["result"].calls == 600 and outcome["result"].rows["events"] == 600 * 40


def add_idempotency_keys(folder: Path, ages_s: dict[str, float]) -> None:
    now = time.time()
    with sqlite3.connect(folder / DATABASE_NAME, timeout=10) as db:
        db.executemany("INSERT INTO idempotency_keys (scope, key, fingerprint, status_code, response_json, created_at) VALUES ('calls', ?, 'f', 200, '{}', ?)",
                       [(key, now - age_s) for key, age_s in ages_s.items()])


def idempotency_keys(folder: Path) -> set[str]:
    with sqlite3.connect(folder / DATABASE_NAME, timeout=10) as db:
        return {row[0] for row in db.execute("SELECT key FROM idempotency_keys")}


def test_prune_forgets_idempotency_keys_past_their_ttl(data: tuple[Path, list[str]]) -> None:
    folder, _ = data
    add_idempotency_keys(folder, {"stale": 7200.0, "fresh": 10.0})
    dry = ivrsim("prune", "--data-dir", str(folder), "--older-than-days", "30", "--idempotency-ttl-s", "3600", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["rows"] == {"idempotency_keys": 1} and idempotency_keys(folder) == {"stale", "fresh"}
    result = ivrsim("prune", "--data-dir", str(folder), "--older-than-days", "30", "--json",
                    env={**os.environ, "IVRSIM_IDEMPOTENCY_TTL_S": "3600"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == {"idempotency_keys": 1} and idempotency_keys(folder) == {"fresh"}
    assert "Idempotency-Keys" in ivrsim("prune", "--help").stdout


def test_housekeeping_forgets_idempotency_keys_without_retention(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    with BackgroundServer(settings_for(folder, idempotency_ttl_s=3600, retention_interval_s=0.1)) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        add_idempotency_keys(folder, {"stale": 7200.0, "fresh": 10.0})
        wait_until(lambda: idempotency_keys(folder) == {"fresh"})
        assert http.get("/_sim/health").status_code == 200


def test_a_held_folder_is_refused_before_the_server_starts_and_a_failed_start_releases_it(running: BackgroundServer, tmp_path: Path) -> None:
    from ivrsim.store.maintenance import DataDirInUse, lock_holder

    with pytest.raises(DataDirInUse, match="is in use by a running ivrsim server"):
        BackgroundServer(settings_for(running.settings.data_dir)).__enter__()
    assert lock_holder(running.settings.data_dir)["listen"] == running.base_url  # still the first server's
    bad_book = tmp_path / "bad.yaml"
    bad_book.write_text("numbers: [not, a, mapping\n")
    folder = tmp_path / "fails"
    with pytest.raises(RuntimeError, match="did not start"):
        BackgroundServer(settings_for(folder, phonebook=bad_book)).__enter__()  # the lifespan's set-up raises
    assert lock_holder(folder) is None
    with BackgroundServer(settings_for(folder)) as again:
        assert lock_holder(folder)["listen"] == again.base_url
    assert lock_holder(folder) is None

"""Crash recovery that tells the receiver: `ivrsim serve` is SIGKILLed mid-call (realtime clock) and started
again on the same data folder; the calls it left live end, their recordings are finalised, and the webhook
receiver hears both through the normal delivery path. Also: `serve --port 0` says its real port, and a
port in use is one clean line and exit code 3.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import soundfile

from ivrsim.webhooks.receiver import WebhookReceiver
from ivrsim.testing.waiting import wait_until

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FROM = "+15559876543"
BANNER = re.compile(r"Canary Voice API on (http://127\.0\.0\.1:(\d+))")


class ServeProcess:
    """`python -m ivrsim serve` in a subprocess; its stderr is read on a thread, line by line."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "IVRSIM_API_KEY": KEY, "IVRSIM_WEBHOOK_BACKOFF_S": "0.2", "IVRSIM_WEBHOOK_BACKOFF_CAP_S": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "ivrsim", "serve", *args], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def base_url(self, timeout_s: float = 60.0) -> str:
        """The URL the banner names, once the server answers there."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = next((m for line in list(self.lines) if (m := BANNER.search(line))), None)
            if found is not None:
                try:
                    if httpx.get(f"{found.group(1)}/_sim/health", timeout=5).status_code == 200:
                        return found.group(1)
                except httpx.HTTPError:
                    pass
            if self.process.poll() is not None:
                raise AssertionError(f"ivrsim serve exited {self.process.returncode}: {self.lines}")
            time.sleep(0.05)
        raise AssertionError(f"ivrsim serve did not start: {self.lines}")

    def wait(self, timeout_s: float = 60.0) -> int:
        code = self.process.wait(timeout=timeout_s)
        self._reader.join(timeout=5)
        return code

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.wait()


@pytest.fixture
def servers() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for server in started:  # whatever a failing test left running
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=30)


def status_of(http: httpx.Client, call_id: str) -> str:
    return str(http.get(f"/v1/voice/calls/{call_id}").json()["status"])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("workers", ["0", "2"])
def test_sigkill_mid_call_then_restart_finalises_and_tells_the_receiver(tmp_path: Path, servers: list[ServeProcess], workers: str) -> None:
    """In the server's own process (--workers 0) and on local workers: the server is SIGKILLed; its
    workers die with it, and the restarted server ends the calls and finalises the recording."""
    data = tmp_path / "data"
    with WebhookReceiver() as receiver:
        first = ServeProcess("--port", "0", "--clock", "realtime", "--data-dir", str(data), "--workers", workers)
        servers.append(first)
        with httpx.Client(base_url=first.base_url(), headers=AUTH, timeout=30) as http:
            hook = f"{receiver.url}/hooks"
            answered = http.post("/v1/voice/calls", json={"to": "+15550100002", "from": FROM, "tts": {"text": "Please hold."},
                                                          "gather": {"timeout": 120}, "record": True, "webhook_url": hook}).json()
            ringing = http.post("/v1/voice/calls", json={"to": "+15550100408", "from": FROM, "tts": {"text": "Hi."}, "timeout": 120,
                                                         "webhook_url": hook}).json()
            wait_until(lambda: status_of(http, answered["id"]) == "in-progress" and status_of(http, ringing["id"]) == "ringing")
            # more than a second of dual-channel 8 kHz audio is on disk (the recorder writes every 0.5 s)
            wav = wait_until(lambda: next((p for p in (data / "recordings").glob("*.wav") if p.stat().st_size > 44 + 8000 * 4), None))
            assert receiver.wait_for(answered["id"], "call.in-progress")
            def connected() -> tuple[list[int]] | None:
                pids = [w["pid"] for w in http.get("/_sim/workers").json()["workers"]]
                return (pids,) if len(pids) == int(workers) else None

            (worker_pids,) = wait_until(connected)
        first.process.send_signal(signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
        wait_until(lambda: not any(alive(pid) for pid in worker_pids), timeout_s=15)  # local workers never outlive their server
        if not worker_pids:
            riff_bytes = int.from_bytes(wav.read_bytes()[4:8], "little")
            assert riff_bytes < 100 < wav.stat().st_size  # the crash left the header claiming no audio, though audio was written

        second = ServeProcess("--port", "0", "--clock", "realtime", "--data-dir", str(data))
        servers.append(second)
        base_url = second.base_url()
        with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as http:
            assert receiver.wait_for(answered["id"], "call.completed", timeout_s=60)
            assert receiver.wait_for(ringing["id"], "call.failed", timeout_s=60)
            call = http.get(f"/v1/voice/calls/{answered['id']}").json()
            assert call["status"] == "completed" and "ivrsim stopped" in call["reason"]
            not_answered = http.get(f"/v1/voice/calls/{ringing['id']}").json()
            assert not_answered["status"] == "failed" and "ivrsim stopped" in not_answered["reason"]

            hooks = [w.payload for w in receiver.received if w.payload["call_id"] == answered["id"]]
            assert [h["type"] for h in hooks][-2:] == ["recording.completed", "call.completed"]
            assert [h["sequence"] for h in hooks] == sorted(h["sequence"] for h in hooks)
            completed = hooks[-2]
            assert completed["url"].startswith(base_url) and completed["duration_s"] > 1.0
            assert completed["duration"] == round(completed["duration_s"])

            recording = http.get(f"/v1/voice/calls/{answered['id']}/recording")
            assert recording.status_code == 200, recording.text
            assert recording.json()["duration_s"] == pytest.approx(completed["duration_s"], abs=0.001)
            assert recording.json()["url"] == completed["url"]
            with wave.open(str(wav)) as header:  # the header now matches the audio, which is kept
                assert header.getnframes() == int(round(completed["duration_s"] * 8000))
            info = soundfile.info(wav)
            assert info.channels == 2 and info.frames / info.samplerate == pytest.approx(completed["duration_s"], abs=0.001)
            audio, _ = soundfile.read(wav, dtype="float32")
            assert abs(audio[:, 0]).max() > 0.01  # the prompt is there
            fetched = httpx.get(completed["url"])
            assert fetched.status_code == 200 and len(fetched.content) == wav.stat().st_size
            log = wait_until(lambda: (d := http.get(f"/v1/voice/calls/{answered['id']}/webhooks").json()["data"])
                             and all(x["status"] == "delivered" for x in d) and d)
            assert [d["event_type"] for d in log][-2:] == ["recording.completed", "call.completed"]
        assert second.stop() == 0


def test_serve_port_zero_says_its_port_and_a_taken_port_is_one_clean_line(tmp_path: Path, servers: list[ServeProcess]) -> None:
    running = ServeProcess("--port", "0", "--data-dir", str(tmp_path / "one"))
    servers.append(running)
    base_url = running.base_url()
    port = int(base_url.rsplit(":", 1)[1])
    assert port != 0
    clash = ServeProcess("--port", str(port), "--data-dir", str(tmp_path / "two"))
    servers.append(clash)
    assert clash.wait() == 3
    assert clash.lines == [f"ivrsim: error: port {port} on 127.0.0.1 is in use; pick another with --port (0 picks a free one)"]
    assert running.stop() == 0


def test_repair_wav_keeps_the_audio_and_cuts_a_torn_frame(tmp_path: Path) -> None:
    import shutil

    import numpy as np

    from ivrsim.engine.recorder import CallRecorder, repair_wav

    recorder = CallRecorder(tmp_path / "live.wav", 8000, "dual")
    rng = np.random.default_rng(3)
    frames = [(rng.uniform(-0.5, 0.5, 160).astype(np.float32), rng.uniform(-0.5, 0.5, 160).astype(np.float32)) for _ in range(60)]
    for platform, callee in frames:
        recorder.write(platform, callee)
    recorder.flush()
    crashed = tmp_path / "crashed.wav"
    shutil.copy(recorder.path, crashed)  # what a SIGKILL leaves: the audio, and a header from before it
    recorder.close()
    with open(crashed, "ab") as handle:
        handle.write(b"\x01")  # half a sample of a frame that was being written
    assert repair_wav(crashed) == pytest.approx(60 * 160 / 8000)
    repaired, _ = soundfile.read(crashed, dtype="int16")
    complete, _ = soundfile.read(recorder.path, dtype="int16")
    assert np.array_equal(repaired, complete)
    with wave.open(str(crashed)) as header:
        assert header.getnframes() == 60 * 160
    with pytest.raises(ValueError, match="not a WAV"):
        (tmp_path / "x.wav").write_bytes(b"ID3 not audio at all")
        repair_wav(tmp_path / "x.wav")


@pytest.mark.parametrize("fmt_bytes", [0, 8, 13])
def test_a_truncated_wav_header_is_a_value_error_not_a_struct_error(tmp_path: Path, fmt_bytes: int) -> None:
    from ivrsim.engine.recorder import repair_wav

    body = b"fmt " + fmt_bytes.to_bytes(4, "little") + b"\x01\x00" * (fmt_bytes // 2) + b"\x00" * (fmt_bytes % 2)
    body += b"data" + (0).to_bytes(4, "little") + b"\x00" * 320
    path = tmp_path / "cut.wav"
    path.write_bytes(b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WAVE" + body)
    with pytest.raises(ValueError, match="format chunk"):
        repair_wav(path)
    cut_short = tmp_path / "cut-short.wav"  # the file ends inside its fmt chunk
    cut_short.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x02\x00")
    with pytest.raises(ValueError, match="format chunk"):
        repair_wav(cut_short)


def test_a_recording_that_cannot_be_repaired_is_left_and_the_server_still_starts(tmp_path: Path) -> None:
    """A call a crash left in-progress, whose WAV header was cut short: the server starts, the call ends
    completed, the recording is completed with duration 0 and its file is left as it was."""
    from ivrsim.api.server import BackgroundServer
    from ivrsim.settings import Settings
    from ivrsim.store.maintenance import DATABASE_NAME
    from ivrsim.store.sqlite import Store

    folder = tmp_path / "data"
    wav = folder / "recordings" / "rec_cut.wav"
    wav.parent.mkdir(parents=True)
    damaged = b"RIFF\x00\x00\x00\x00WAVEfmt \x08\x00\x00\x00\x01\x00\x02\x00\x40\x1f\x00\x00data\x00\x00\x00\x00" + b"\x00" * 640
    wav.write_bytes(damaged)
    store = Store(folder / DATABASE_NAME)
    store.insert_call("call_cut", "+15550100001", FROM, {"to": "+15550100001", "from": FROM})
    store.update_call("call_cut", status="in-progress")
    store.insert_recording("rec_cut", "call_cut", str(wav), "dual")
    store.close()
    settings = Settings(api_key=KEY, port=0, data_dir=folder)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        call = http.get("/v1/voice/calls/call_cut").json()
        assert call["status"] == "completed"
        events = http.get("/v1/voice/calls/call_cut/events").json()["data"]
        assert [e["type"] for e in events[-2:]] == ["recording.completed", "call.completed"]
        assert events[-2]["recording_id"] == "rec_cut" and events[-2]["duration_s"] == 0
    assert wav.read_bytes() == damaged

"""Scale: 1,000 calls from 50 clients with calls in the API's process, in 1 or 2 local workers over the
embedded queue, and in 1 or 2 local workers over Redis (issue 9's benchmark; figures, not assertions).

Usage: .venv/bin/python bench/scale.py [--calls 1000] [--clients 50] [--rate 0] [--analyses 100] [--configs inproc,1,2,redis1,redis2]
                                       [--no-redis] [--json] [--keep]

What it does, for each configuration in turn, with nothing shared between them:

1. a fresh temporary folder and a fresh ``ivrsim serve --port 0 --data-dir DIR --workers N [--queue URL]``
   on the virtual clock (its URL read from its stdout, its stderr to ``server.log`` in the folder); the Redis
   configurations get a ``redis-server`` of their own (``ivrsim.testing.processes.RedisServer``, in the folder);
2. warm-up: waits until ``/_sim/workers`` lists the N workers, then places 5 calls and waits for them to end
   (the prompt is rendered once into the shared prompt cache; TTS and codecs are loaded);
3. load: ``--clients`` clients (coroutines of one asyncio loop in this process, each with its own
   ``httpx.AsyncClient`` keep-alive connection, opened before measuring) send ``--calls`` POST
   /v1/voice/calls back to back (a closed loop), or with ``--rate R`` each at its own time, R per second in
   all (an open loop: how fast the server answers while the workers are saturated, not how long a queue of
   50 waiting clients is), to the phonebook's press-1 caller, every tenth one recorded; each POST is timed
   (perf_counter around the request);
4. waits until ``/_sim/workers`` says nothing is queued or live and every call placed has an end status
   (completed, busy, no-answer, failed: the call list, paged), then stops the server with SIGTERM (it
   stops its own workers), SIGKILL after a timeout.

Figures per configuration: POST p50/p99/max in ms (target: p99 under 20 ms while the workers are
saturated: the peak queue depth seen during the load is printed so you can tell whether they were; in this
closed loop a POST's latency is at least clients / the server's POST throughput, so 50 clients meet the
target only above 2,500 POSTs a second: bench/api_speed.py's paced phase is the open-loop view); non-200
answers (and requests that got no answer at all); calls ended per second and aggregate x real time, both over
the wall time from the first POST to the moment the last call was seen ended (polled every 0.1 s). A call's
call time is ``ended_at - created_at`` from its record: on the virtual clock both are call-time stamps, so
this is the ring time plus the duration, the same as its last event's ``call_time_s``. CPU seconds and CPU
% of the load phase's wall time for the server process, each worker process, redis-server and this bench
process (utime+stime from /proc/<pid>/stat at the first POST, when the last POST returned, and when the last
call ended), over the whole load and over the placing alone; the peak of /_sim/workers' ``live_calls`` (in
worker mode: every call not ended, queued ones too) and of the calls running in workers (the sum of the
workers' own ``live_calls``); calls run per worker during the load (``calls_run``, minus the warm-up's); the
end statuses; the first lines of the server's log (its workers log there too) that look like trouble.

Caveats: the machine has 2 cores and this process (the 50 clients) competes with the server and the workers
for them: its own CPU is printed as "bench". The load average at the start of the run and of each load phase
is printed too: other work on the machine skews every figure.

Analyses: after the calls, ``--analyses`` (default 100) ``POST /_sim/analyses`` of one two-party recording
(``ANALYSIS_CALL_S`` seconds of espeak-ng turns, a file in the server's media root) are queued at once;
jobs per hour = their number over the wall time until the last has ended, and each job's own run time
(``completed_at - started_at``). With ``--workers 0`` they run on the server's own threads (two at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from ivrsim.testing.processes import RedisServer

KEY = "scale-bench-key"
BODY: dict[str, Any] = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Press 1 for sales, 2 for support."},
                        "gather": {"type": "dtmf", "num_digits": 1}}
FINAL = {"completed", "busy", "no-answer", "failed"}
CONFIGS = {  # name: (local workers, over Redis)
    "inproc": (0, False),
    "1": (1, False),
    "2": (2, False),
    "redis1": (1, True),
    "redis2": (2, True),
}
P99_TARGET_MS = 20.0
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
#: The recording every analysis job reads: a two-party call of this many seconds, made with ivrsim's TTS.
ANALYSIS_CALL_S = 120


def cpu_s(pid: int) -> float | None:
    """utime + stime of a process, in seconds (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": fields[0] is the state (field 3)
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # fields 14 and 15 of proc(5)


def percentiles_ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def stamp_s(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass
class Result:
    """One configuration's figures."""

    config: str
    workers: int
    queue: str
    calls: int
    clients: int
    load_average_at_start: list[float]
    post_ms: dict[str, float | None] = field(default_factory=dict)
    p99_target_ms: float = P99_TARGET_MS
    non_200: int = 0
    transport_errors: int = 0
    first_error: str | None = None
    placing_s: float = 0.0
    wall_s: float = 0.0
    calls_ended_per_s: float = 0.0
    call_time_s: float = 0.0
    call_time_check_max_diff_s: float = 0.0
    x_real_time: float = 0.0
    peak_queued: int = 0
    peak_live_calls: int = 0
    peak_running: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    not_ended: int = 0
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    cpu_placing: dict[str, dict[str, float]] = field(default_factory=dict)
    calls_per_worker: dict[str, int] = field(default_factory=dict)
    folder: str = ""
    server_log_errors: list[str] = field(default_factory=list)
    analyses: int = 0
    analyses_failed: int = 0
    analyses_wall_s: float = 0.0
    analyses_per_hour: float = 0.0
    analysis_run_ms: dict[str, float | None] = field(default_factory=dict)
    #: Why this configuration has no figures (it could not be run), else None.
    failed: str | None = None


class Server:
    """``ivrsim serve`` as a subprocess on a free port; its URL comes from its stdout."""

    def __init__(self, folder: Path, workers: int, queue_url: str | None, media_root: Path) -> None:
        self.command = [sys.executable, "-m", "ivrsim", "serve", "--port", "0", "--data-dir", str(folder / "data"),
                        "--workers", str(workers), "--clock", "virtual", "--media-root", str(media_root)]
        if queue_url:
            self.command += ["--queue", queue_url]
        self.log = folder / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.worker_pids: set[int] = set()

    def start(self, timeout_s: float = 60.0) -> None:
        env = {**os.environ, "IVRSIM_API_KEY": KEY}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        lines: list[bytes] = []
        reader = threading.Thread(target=lambda: lines.append(self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout_s)
        if not lines or not lines[0].strip():
            code = self.process.poll()
            why = f"exited with code {code}" if code is not None else f"did not print its URL within {timeout_s:.0f} s"
            raise RuntimeError(f"ivrsim serve {why}; see {self.log}")
        self.url = lines[0].decode().strip()

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM (the server stops its local workers), SIGKILL after ``timeout_s``; then any worker still there."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                print(f"scale: the server did not stop in {timeout_s:.0f} s; killed", file=sys.stderr)
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        deadline = time.monotonic() + 15.0
        for pid in self.worker_pids:  # workers die with their server; make sure of it
            while _is_worker(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _is_worker(pid):
                print(f"scale: worker {pid} outlived its server; killed", file=sys.stderr)
                os.kill(pid, signal.SIGKILL)


def _is_worker(pid: int) -> bool:
    """Whether ``pid`` is still an ``ivrsim worker`` (not a reused pid)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return b"ivrsim" in command and b"worker" in command and state != "Z"


async def wait_for(http: httpx.AsyncClient, what: str, check: Any, timeout_s: float, every_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check(http)
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"scale: timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(every_s)


async def all_calls(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    calls: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        page = (await http.get("/v1/voice/calls", params={"limit": 200, **({"starting_after": cursor} if cursor else {})})).json()
        calls.update({c["id"]: c for c in page["data"]})
        if not page["has_more"]:
            return calls
        cursor = page["next_starting_after"]


def two_party_call(path: Path, seconds: int = ANALYSIS_CALL_S) -> Path:
    """A dual-channel 8 kHz WAV of ``seconds``: the assistant (left) and the user (right) take turns, with
    a latency of 0.6 to 1.4 s, one barge-in a minute and one dead-air gap (espeak-ng speech)."""
    import numpy as np
    import soundfile

    from ivrsim.speech.tts import SpeechSynthesizer, TtsRequest

    synthesizer = SpeechSynthesizer()
    lines = {0: ["Thank you for calling. How can I help you today?", "I can help with that. What is your account number?",
                 "Thanks. Your balance is forty two dollars."],
             1: ["I have a question about my bill.", "It is one two three four five.", "Great, thank you."]}
    prompts = {side: [synthesizer.synthesize(TtsRequest(text, rate_hz=8000)).samples for text in texts] for side, texts in lines.items()}
    synthesizer.close()
    rate_hz, audio = 8000, np.zeros((seconds * 8000, 2), dtype=np.float32)
    at_s, turn = 0.5, 0
    while True:
        side = turn % 2
        prompt = prompts[side][(turn // 2) % 3]
        start = int(at_s * rate_hz)
        if start + len(prompt) > len(audio):
            break
        audio[start:start + len(prompt), side] += prompt
        gap_s = 0.6 + 0.8 * ((turn * 7) % 5) / 4
        if turn % 12 == 11:
            gap_s = -0.8  # a barge-in
        if turn % 17 == 16:
            gap_s = 4.0  # dead air
        at_s += len(prompt) / rate_hz + gap_s
        turn += 1
    audio += np.random.default_rng(7).normal(0, 1e-3, audio.shape).astype(np.float32)
    soundfile.write(path, audio, rate_hz, subtype="PCM_16")
    return path


async def run_analyses(http: httpx.AsyncClient, location: str, count: int, result: Result) -> None:
    """``count`` analyses of ``location`` queued at once; jobs per hour over the wall time until the last ends."""
    started = time.perf_counter()
    ids = []
    for _ in range(count):
        response = await http.post("/_sim/analyses", json={"location": location})
        response.raise_for_status()
        ids.append(response.json()["id"])

    async def all_done(h: httpx.AsyncClient) -> list[dict[str, Any]] | None:
        done = []
        for status in ("completed", "failed"):
            done += (await h.get("/_sim/analyses", params={"status": status, "limit": 200})).json()["data"]
        return done if len(done) >= count else None

    done = await wait_for(http, "every analysis to end", all_done, 3600, every_s=0.2)
    wall_s = time.perf_counter() - started
    result.analyses = count
    result.analyses_failed = sum(1 for job in done if job["status"] == "failed")
    result.analyses_wall_s = round(wall_s, 2)
    result.analyses_per_hour = round(count / wall_s * 3600)
    result.analysis_run_ms = percentiles_ms([stamp_s(j["completed_at"]) - stamp_s(j["started_at"]) for j in done if j["started_at"]])


async def run_config(name: str, folder: Path, server: Server, workers: int, queue: str, calls: int, clients: int,
                     extra_pids: dict[str, int], rate: float = 0.0, analyses: int = 0, recording: Path | None = None) -> Result:
    result = Result(config=name, workers=workers, queue=queue, calls=calls, clients=clients, load_average_at_start=[],
                    folder=str(folder))
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as http:
        async def workers_listed(h: httpx.AsyncClient) -> Any:
            state = (await h.get("/_sim/workers")).json()
            return state if len(state["workers"]) >= workers else None

        state = await wait_for(http, f"{workers} workers to connect", workers_listed, 120)
        # warm-up
        warm_ids = []
        for n in range(5):
            response = await http.post("/v1/voice/calls", json={**BODY, "record": n == 0})
            response.raise_for_status()
            warm_ids.append(response.json()["id"])

        async def warm_ended(h: httpx.AsyncClient) -> bool:
            statuses = [(await h.get(f"/v1/voice/calls/{i}")).json()["status"] for i in warm_ids]
            return all(s in FINAL for s in statuses)

        await wait_for(http, "the warm-up calls to end", warm_ended, 120, every_s=0.2)
        state = await wait_for(http, f"{workers} workers to connect", workers_listed, 60)
        runs_before = {w["name"]: int(w["calls_run"]) for w in state["workers"]}
        pids = {"server": server.process.pid, **extra_pids}  # type: ignore[union-attr]
        for w in state["workers"]:
            pids[f"worker {w['name']}"] = int(w["pid"])
            server.worker_pids.add(int(w["pid"]))
        pids["bench"] = os.getpid()

        # load
        result.load_average_at_start = [round(x, 2) for x in os.getloadavg()]
        latencies: list[float] = []
        placed: list[str] = []
        errors: list[str] = []
        connections = [httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) for _ in range(clients)]
        try:
            await asyncio.gather(*(c.get("/_sim/health") for c in connections))  # keep-alive connections opened first
            next_index = 0
            placing = True
            peaks = {"queued": 0, "live_calls": 0, "running": 0}

            async def client(http_client: httpx.AsyncClient) -> None:
                nonlocal next_index
                while next_index < calls:
                    index = next_index
                    next_index += 1
                    body = {**BODY, "record": True} if index % 10 == 0 else BODY
                    if rate > 0:  # open loop: call i leaves at first_post + i / rate, however the server is doing
                        await asyncio.sleep(max(0.0, first_post + index / rate - time.perf_counter()))
                    started = time.perf_counter()
                    try:
                        response = await http_client.post("/v1/voice/calls", json=body)
                    except httpx.HTTPError as error:
                        latencies.append(time.perf_counter() - started)
                        result.transport_errors += 1
                        errors.append(f"{type(error).__name__}: {error}")
                        continue
                    latencies.append(time.perf_counter() - started)
                    if response.status_code == 200:
                        placed.append(response.json()["id"])
                    else:
                        result.non_200 += 1
                        errors.append(f"{response.status_code}: {response.text[:200]}")

            async def sample() -> None:
                while placing:
                    state = (await http.get("/_sim/workers")).json()
                    peaks["queued"] = max(peaks["queued"], int(state["queued"]))
                    peaks["live_calls"] = max(peaks["live_calls"], int(state["live_calls"]))
                    peaks["running"] = max(peaks["running"], sum(int(w["live_calls"]) for w in state["workers"]))
                    await asyncio.sleep(0.25)

            cpu_before = {label: cpu_s(pid) for label, pid in pids.items()}
            first_post = time.perf_counter()
            sampler = asyncio.create_task(sample())
            await asyncio.gather(*(client(c) for c in connections))
            placed_at = time.perf_counter()
            cpu_placed = {label: cpu_s(pid) for label, pid in pids.items()}
            result.placing_s = round(placed_at - first_post, 2)
            placing = False
            await sampler
        finally:
            await asyncio.gather(*(c.aclose() for c in connections))

        async def drained(h: httpx.AsyncClient) -> bool:
            state = (await h.get("/_sim/workers")).json()
            peaks["queued"] = max(peaks["queued"], int(state["queued"]))
            peaks["live_calls"] = max(peaks["live_calls"], int(state["live_calls"]))
            peaks["running"] = max(peaks["running"], sum(int(w["live_calls"]) for w in state["workers"]))
            return int(state["queued"]) == 0 and int(state["live_calls"]) == 0

        while True:
            await wait_for(http, "every call to end", drained, 1800)
            ended_at = time.perf_counter()
            records = await all_calls(http)
            if all(records.get(i, {}).get("status") in FINAL for i in placed):
                break
            await asyncio.sleep(0.1)  # placed but not yet started: not live, not queued (the API's own hand-off)
        cpu_after = {label: cpu_s(pid) for label, pid in pids.items()}
        state = (await http.get("/_sim/workers")).json()
        # ended_at - created_at stands for the call time: check it against the last event's call_time_s on a sample
        for call_id in placed[:: max(1, len(placed) // 10)]:
            events = (await http.get(f"/v1/voice/calls/{call_id}/events")).json()["data"]
            record = records[call_id]
            if events and record.get("ended_at"):
                difference = abs(stamp_s(record["ended_at"]) - stamp_s(record["created_at"]) - max(float(e["call_time_s"]) for e in events))
                result.call_time_check_max_diff_s = round(max(result.call_time_check_max_diff_s, difference), 3)

    result.wall_s = round(ended_at - first_post, 2)
    result.post_ms = percentiles_ms(latencies)
    result.first_error = errors[0] if errors else None
    result.peak_queued, result.peak_live_calls, result.peak_running = peaks["queued"], peaks["live_calls"], peaks["running"]
    mine = [records[i] for i in placed if i in records]
    result.not_ended = sum(1 for c in mine if c["status"] not in FINAL)
    for c in mine:
        result.statuses[c["status"]] = result.statuses.get(c["status"], 0) + 1
    call_time_s = sum(stamp_s(c["ended_at"]) - stamp_s(c["created_at"]) for c in mine if c.get("ended_at"))
    result.call_time_s = round(call_time_s, 1)
    result.x_real_time = round(call_time_s / result.wall_s, 1) if result.wall_s else 0.0
    result.calls_ended_per_s = round(len(mine) / result.wall_s, 1) if result.wall_s else 0.0
    result.cpu = cpu_use(cpu_before, cpu_after, ended_at - first_post)
    result.cpu_placing = cpu_use(cpu_before, cpu_placed, placed_at - first_post)
    for w in state["workers"]:
        result.calls_per_worker[w["name"]] = int(w["calls_run"]) - runs_before.get(w["name"], 0)
    if analyses and recording is not None:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as http:
            await run_analyses(http, str(recording), analyses, result)
    return result


def cpu_use(before: dict[str, float | None], after: dict[str, float | None], wall_s: float) -> dict[str, dict[str, float]]:
    """CPU seconds of each process between two readings, and as % of the wall time between them."""
    use = {}
    for label, start in before.items():
        end = after.get(label)
        if start is not None and end is not None and wall_s > 0:
            use[label] = {"cpu_s": round(end - start, 2), "cpu_pct": round(100 * (end - start) / wall_s, 1)}
    return use


def server_log_errors(log: Path, limit: int = 5) -> list[str]:
    """The first lines of the server's log that look like trouble (the workers log to it too)."""
    found = []
    try:
        for line in log.read_text(errors="replace").splitlines():
            if any(word in line for word in ("ERROR", "Traceback", "WARNING", "exception", "Exception")):
                found.append(line.strip()[:300])
                if len(found) >= limit:
                    break
    except OSError:
        pass
    return found


def one_config(name: str, calls: int, clients: int, keep: bool, rate: float, analyses: int, recording: Path) -> Result:
    workers, redis = CONFIGS[name]
    folder = Path(tempfile.mkdtemp(prefix=f"ivrsim-scale-{name}-"))
    print(f"scale: {name}: {folder}", file=sys.stderr)
    server: Server | None = None
    try:
        if redis:
            with RedisServer(folder / "redis") as queue:
                extra = {"redis-server": queue.process.pid} if queue.process else {}  # type: ignore[union-attr]
                server = Server(folder, workers, queue.url, recording.parent)
                try:
                    server.start()
                    result = asyncio.run(run_config(name, folder, server, workers, "redis", calls, clients, extra, rate, analyses, recording))
                finally:
                    server.stop()
        else:
            server = Server(folder, workers, None, recording.parent)
            try:
                server.start()
                result = asyncio.run(run_config(name, folder, server, workers, "embedded" if workers else "-", calls, clients, {}, rate,
                                                analyses, recording))
            finally:
                server.stop()
        result.server_log_errors = server_log_errors(server.log)
        return result
    except (RuntimeError, OSError, httpx.HTTPError, KeyError, ValueError) as error:  # one configuration that cannot run does not cost the others their figures
        print(f"scale: {name}: {type(error).__name__}: {error}", file=sys.stderr)
        result = Result(config=name, workers=workers, queue="redis" if redis else "embedded" if workers else "-", calls=calls,
                        clients=clients, load_average_at_start=[], folder=str(folder), failed=f"{type(error).__name__}: {error}")
        if server is not None:
            try:  # its last words: the exception that stopped it, usually
                result.server_log_errors = [line.strip()[:300] for line in server.log.read_text(errors="replace").splitlines() if line.strip()][-3:]
            except OSError:
                pass
        return result
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def print_table(results: list[Result], start_load: list[float]) -> None:
    print(f"load average at start: {start_load[0]:.2f} {start_load[1]:.2f} {start_load[2]:.2f} (2 cores; the bench's clients share them)")
    header = (f"{'config':>7} {'workers':>7} {'queue':>8} {'p50 ms':>8} {'p99 ms':>8} {'(target)':>8} {'max ms':>8} {'non200':>6} "
              f"{'calls/s':>7} {'x real':>7} {'wall s':>7} {'peak q':>6} {'loadavg':>7}")
    print(header)
    for r in results:
        if r.failed:
            print(f"{r.config:>7} {r.workers:>7} {r.queue:>8} not run: {r.failed}")
            for line in r.server_log_errors:
                print(f"{'':>7} server.log: {line}")
            continue
        m = r.post_ms
        print(f"{r.config:>7} {r.workers:>7} {r.queue:>8} {m['p50_ms']:>8} {m['p99_ms']:>8} {'<' + str(int(r.p99_target_ms)):>8} "
              f"{m['max_ms']:>8} {r.non_200 + r.transport_errors:>6} {r.calls_ended_per_s:>7} {r.x_real_time:>7} {r.wall_s:>7} "
              f"{r.peak_queued:>6} {r.load_average_at_start[0]:>7}")
    print()
    results = [r for r in results if not r.failed]
    print("CPU from the first POST to the last call ended (seconds, % of that wall time; 200 % = both cores):")
    for r in results:
        parts = [f"{label} {c['cpu_s']} s ({c['cpu_pct']} %)" for label, c in r.cpu.items()]
        print(f"{r.config:>7}: " + "; ".join(parts))
    print("CPU while the POSTs were being sent (the first placing_s seconds of that):")
    for r in results:
        parts = [f"{label} {c['cpu_s']} s ({c['cpu_pct']} %)" for label, c in r.cpu_placing.items()]
        print(f"{r.config:>7}: " + "; ".join(parts))
    print()
    print("calls run per worker during the load, end statuses:")
    for r in results:
        per_worker = ", ".join(f"{k} {v}" for k, v in r.calls_per_worker.items()) or "(in the API's process)"
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(r.statuses.items()))
        extra = f"; not ended {r.not_ended}" if r.not_ended else ""
        print(f"{r.config:>7}: {per_worker}; {statuses}{extra}; placing took {r.placing_s} s; "
              f"peak calls not ended {r.peak_live_calls} (the API's live_calls: queued ones too), of them running in workers {r.peak_running}")
    for r in results:
        if r.first_error:
            print(f"{r.config:>7}: first error: {r.first_error}")
        for line in r.server_log_errors:
            print(f"{r.config:>7}: server.log: {line}")
    print()
    print("x real = sum of call times (ended_at - created_at: ring + duration) / wall time from first POST to last call ended;")
    print("         on a sample of calls that differs from the last event's call_time_s by at most "
          + ", ".join(f"{r.config} {r.call_time_check_max_diff_s} s" for r in results))
    print()
    print(f"analyses of a {ANALYSIS_CALL_S} s two-party recording (a file in a media root), queued at once, after the calls:")
    for r in results:
        if r.analyses:
            m = r.analysis_run_ms
            print(f"{r.config:>7}: {r.analyses} in {r.analyses_wall_s} s = {r.analyses_per_hour:,.0f} jobs/hour; failed {r.analyses_failed}; "
                  f"one job runs p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="calls per second in all, paced (an open loop: each call leaves at its time); 0: back to back")
    parser.add_argument("--analyses", type=int, default=100, help="analysis jobs per configuration, after the calls (0: none)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis configurations")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (server.log, data, redis)")
    args = parser.parse_args()
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"--configs: unknown {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    if args.no_redis:
        names = [n for n in names if not CONFIGS[n][1]]
    start_load = [round(x, 2) for x in os.getloadavg()]
    media = Path(tempfile.mkdtemp(prefix="ivrsim-scale-media-"))
    try:
        recording = two_party_call(media / "two-party.wav")
        results = [one_config(name, args.calls, args.clients, args.keep, args.rate, args.analyses, recording) for name in names]
    finally:
        shutil.rmtree(media, ignore_errors=True)
    if args.json:
        print(json.dumps({"load_average_at_start": start_load, "cpu_count": os.cpu_count(), "p99_target_ms": P99_TARGET_MS,
                          "configs": [asdict(r) for r in results]}, indent=2))
    else:
        print_table(results, start_load)


if __name__ == "__main__":
    main()

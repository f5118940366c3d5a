"""Analysis speed (issue 12's benchmark; figures, not assertions): how fast a call's recording is analysed,
how many Canonical jobs the worker pool gets through, and how fast POST /api/v1/call answers while the
workers are saturated.

Usage: .venv/bin/python bench/analysis_speed.py [--minutes 1,5,10] [--asr-minutes 1,5] [--mono-asr-minutes 1]
                                                [--configs 1,2] [--jobs 40] [--asr-jobs 4] [--job-minutes 1]
                                                [--post-configs 1,default] [--requests 1000] [--clients 50] [--rate 100]
                                                [--phases speed,jobs,post] [--json]

The recordings: synthetic two-party calls of espeak-ng speech (ivrsim's TTS, the assistant in the voice
``en-US-Neural2-F``, espeak-ng en-us+f3, the user in ``en-US-Neural2-D``, en-us+m3), taking turns with
latencies of 0.6 to 1.4 s, the user barging in once in 12 turns, the assistant once in 20, and 4 s of dead
air once in 17, over -60 dBFS seeded noise, 8 kHz 16-bit WAV; stereo (assistant left, user right)
and mono (the two channels mixed: the analysis diarizes it). What was built (latency count, interruptions
each way, dead-air count) is printed beside what the analysis found, as a sanity check.

1. Speed, in this process (one BLAS thread, as ivrsim's own processes run): ``jobs.run_analysis`` on a WAV in
   a media root (read, decode, VAD, metrics; diarization for mono; ASR when asked: pocketsphinx, English,
   per channel, the model loaded once before timing), for ``--minutes`` without transcription (median of 3
   runs) and ``--asr-minutes`` / ``--mono-asr-minutes`` with it (one run). Figures: seconds of analysis per
   minute of audio (target without transcription: under 0.5 s, i.e. 120x real time), wall and CPU of this
   process, x real time.
2. Jobs per minute: for each of ``--configs`` (local worker processes; ``default`` = one per core, ``0`` = run
   from the server's own process, two at a time), a fresh ``BackgroundServer`` (its own data folder) in this
   process; once its workers are connected and have each run a transcribed warm-up job (a job runs in a
   child process of its own: what is warmed is the fork server and the page cache),
   ``--jobs`` POST /api/v1/call without transcription, then ``--asr-jobs`` with it (``transcribe: true``),
   all queued at once, of one ``--job-minutes`` stereo recording served by a loopback file server
   (``ivrsim.testing.http.serve_bytes``); done when GET /api/v1/assistants counts them all completed or
   failed (polled every 0.1 s), then each call is read with GET /api/v1/call/{callId}. Jobs per minute over
   the wall time from the first POST, and each job's own run time (completedAt - startedAt).
3. POST /api/v1/call latency with ``--clients`` clients while the workers are saturated: for each of
   ``--post-configs`` (default: one worker, which leaves the server a core on this 2-core machine as the
   README advises, and the default, one per core), a fresh server; a backlog of transcribed jobs is queued
   first and the load starts once every worker runs one (every POST queues another: the backlog only
   grows). The clients run in a separate process (httpx AsyncClients, each with its own keep-alive
   connection, opened before measuring): ``--requests`` back to back (a closed loop: the server's saturation
   throughput, where a POST's latency is mostly the queue of clients ahead of it), then ``--requests`` at
   ``--rate`` POSTs per second in all, evenly spaced (an open loop: the latency a caller sees). Target: p99
   under 20 ms. CPU % over each load (utime + stime from /proc, from the moment the clients are connected):
   each worker with its jobs' child processes (local workers run at nice 10, under the server), this
   process (the server, the file server and this bench's main thread, which only waits; its worker
   processes excluded) and the clients' process.

Caveats: the machine has 2 cores, shared by the server, the workers, the clients and whatever else runs
(the load average is printed at the start of each phase); other sessions' work skews every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import soundfile

KEY = "analysis-bench-key"
RATE_HZ = 8000
ASSISTANT_VOICE = "en-US-Neural2-F"  # espeak-ng en-us+f3
USER_VOICE = "en-US-Neural2-D"  # espeak-ng en-us+m3
LINES = {
    "assistant": ["Thank you for calling how can I help you today", "I can help with that what is your account number",
                  "Thanks your balance is forty two dollars", "Is there anything else I can do for you",
                  "Your payment has been received", "Let me check that for you"],
    "user": ["I have a question about my bill", "It is one two three four five", "Great thank you very much",
             "Can you repeat that please", "I want to pay my balance", "No that is all for today"],
}  # fmt: skip
NOISE_DBFS = -60.0
DEAD_AIR_S = 4.0
BARGE_IN_S = 0.5
T = TypeVar("T")


def load_average() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def percentiles_ms(values_s: list[float]) -> dict[str, float | int]:
    if not values_s:
        return {"count": 0}
    ordered = sorted(values_s)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p99_ms": round(float(np.percentile(ordered, 99)) * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2), "count": len(ordered)}


def _stat(pid: int | str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it has just ended
        return None


def own_cpu_s(pid: int) -> float:
    """utime + stime of one process (its threads), in seconds."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def cpu_s(pid: int) -> float:
    """CPU seconds of a process and everything under it: utime + stime + cutime + cstime of each live process
    of its tree (a job runs in a child of the worker's fork server; an ended child is in its parent's cutime)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(entry)) is not None:
            parents[int(entry)] = int(fields[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier and child not in tree]
        tree.update(children)
        frontier = children
    ticks = 0
    for member in tree:
        if (fields := _stat(member)) is not None:
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


# -- the recordings -------------------------------------------------------------------------------------


def render_lines() -> dict[str, list[np.ndarray]]:
    """Each line in its party's voice at 8 kHz, trimmed to its sound."""
    from ivrsim.speech.tts import SpeechSynthesizer, TtsRequest

    synth = SpeechSynthesizer()
    try:
        out: dict[str, list[np.ndarray]] = {}
        for party, voice in (("assistant", ASSISTANT_VOICE), ("user", USER_VOICE)):
            out[party] = []
            for text in LINES[party]:
                samples = synth.synthesize(TtsRequest(text=text, voice=voice, rate_hz=RATE_HZ)).samples.astype(np.float32)
                loud = np.flatnonzero(np.abs(samples) > 0.01)
                out[party].append(samples[loud[0]:loud[-1] + 1])
        return out
    finally:
        synth.close()


@dataclass
class Built:
    """A synthetic call and what went into it."""

    stereo: np.ndarray
    latencies: int = 0  # user -> assistant turn changes after a gap
    user_interrupted: int = 0  # the assistant barged in
    assistant_interrupted: int = 0  # the user barged in
    dead_air: int = 0

    @property
    def seconds(self) -> float:
        return len(self.stereo) / RATE_HZ


def two_party_call(lines: dict[str, list[np.ndarray]], seconds: float) -> Built:
    """Turns in alternation from 0.5 s (module docstring) until ``seconds`` are full."""
    built = Built(np.zeros((int(seconds * RATE_HZ), 2), dtype=np.float32))
    at_s, turn, previous_end_s = 0.5, 0, 0.0
    while True:
        party = ("assistant", "user")[turn % 2]
        clip = lines[party][(turn // 2) % len(lines[party])]
        start = int(at_s * RATE_HZ)
        if start + len(clip) > len(built.stereo):
            break
        built.stereo[start:start + len(clip), turn % 2] += 0.5 * clip
        if turn > 0:
            overlapped = at_s < previous_end_s
            if party == "assistant":
                built.user_interrupted += overlapped
                built.latencies += not overlapped
            else:
                built.assistant_interrupted += overlapped
            built.dead_air += at_s - previous_end_s > 3.0
        end_s = at_s + len(clip) / RATE_HZ
        previous_end_s = max(end_s, previous_end_s) if at_s < previous_end_s else end_s
        gap_s = 0.6 + 0.8 * ((turn * 7) % 5) / 4
        if turn % 17 == 16:
            gap_s = DEAD_AIR_S
        elif turn % 12 == 10 or turn % 20 == 15:  # the assistant's turn (even) or the user's (odd)
            gap_s = -BARGE_IN_S  # the next party starts before this one ends
        at_s = end_s + gap_s
        turn += 1
    noise = np.random.default_rng(20240613).normal(0.0, 10 ** (NOISE_DBFS / 20), built.stereo.shape).astype(np.float32)
    built.stereo += noise
    return built


def wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, RATE_HZ, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def mono_of(stereo: np.ndarray) -> np.ndarray:
    return np.clip(stereo.sum(axis=1), -1.0, 1.0)


# -- 1. speed of one analysis -----------------------------------------------------------------------------


def found_vs_built(result: dict[str, Any], built: Built) -> dict[str, str]:
    interruptions = result["interruptions"]
    return {
        "latencies": f"{result['latency_ms']['num']}/{built.latencies}",
        "user_interrupted": f"{interruptions['num_user_interrupted']}/{built.user_interrupted}",
        "assistant_interrupted": f"{interruptions['num_assistant_interrupted']}/{built.assistant_interrupted}",
        "dead_air": f"{result['dead_air']['count']}/{built.dead_air}",
    }


def analysis_speed(folder: Path, lines: dict[str, list[np.ndarray]], minutes: list[float], asr_minutes: list[float],
                   mono_asr_minutes: list[float]) -> dict[str, Any]:
    """Phase 1 (module docstring)."""
    from ivrsim.analysis.jobs import JobContext, run_analysis
    from ivrsim.media.audio_url import AudioUrlLoader, MediaSettings

    context = JobContext(AudioUrlLoader(MediaSettings(allowed_roots=(folder,), max_bytes=1 << 30)))
    started = time.perf_counter()
    context.speech.engine_for("en-US").transcribe(lines["user"][0], RATE_HZ)  # load the model and make a decoder
    model_load_s = time.perf_counter() - started
    rows = []
    cases = ([(m, 2, False) for m in minutes] + [(m, 1, False) for m in minutes] + [(m, 2, True) for m in asr_minutes]
             + [(m, 1, True) for m in mono_asr_minutes])
    for length_min, channels, transcribe in cases:
        built = two_party_call(lines, length_min * 60)
        path = folder / f"call-{length_min}m-{channels}ch.wav"
        if not path.exists():
            soundfile.write(path, built.stereo if channels == 2 else mono_of(built.stereo), RATE_HZ, subtype="PCM_16")
        runs = []
        for _ in range(1 if transcribe else 3):
            wall, cpu = time.perf_counter(), time.process_time()
            result = run_analysis({"location": str(path), "transcribe": transcribe}, context)
            runs.append((time.perf_counter() - wall, time.process_time() - cpu))
        wall_s, cpu_used_s = sorted(runs)[len(runs) // 2]
        row = {"minutes": length_min, "channels": channels, "transcribe": transcribe, "wall_s": round(wall_s, 3),
               "cpu_s": round(cpu_used_s, 3), "s_per_audio_minute": round(wall_s / length_min, 3),
               "x_real_time": round(length_min * 60 / wall_s, 1), "found/built": found_vs_built(result, built)}
        if transcribe:
            row["words"] = {name: result["speakers"][name]["words"] for name in ("assistant", "user")}
            row["transcript_reason"] = result["transcript"].get("reason")
        rows.append(row)
    return {"asr_model_load_s": round(model_load_s, 2), "runs": rows}


# -- servers and clients -------------------------------------------------------------------------------------


def parse_stamp(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float, every_s: float = 0.1) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(every_s)


def server_settings(folder: Path, workers: int | None) -> Any:
    from ivrsim.settings import Settings

    return Settings(api_key=KEY, port=0, data_dir=folder, workers=workers)


def call_body(location: str, call_id: str, assistant_id: str, transcribe: bool) -> dict[str, Any]:
    return {"assistant": {"id": assistant_id, "speaksFirst": True, "description": "bench"}, "location": location, "callId": call_id,
            "transcribe": transcribe}


def worker_state(http: httpx.Client) -> dict[str, Any]:
    return http.get("/_sim/workers", headers={"Authorization": f"Bearer {KEY}"}).json()


def assistant_done(http: httpx.Client, assistant_id: str, count: int) -> dict[str, Any] | None:
    for row in http.get("/api/v1/assistants", params={"limit": 1000}).json()["data"]:
        if row["id"] == assistant_id and row["completed"] + row["failed"] >= count:
            return row
    return None


def run_batch(http: httpx.Client, location: str, assistant_id: str, count: int, transcribe: bool, timeout_s: float) -> dict[str, Any]:
    """``count`` calls posted at once; jobs per minute to the last one ended."""
    started = time.perf_counter()
    ids = [f"{assistant_id}-{n}" for n in range(count)]
    for call_id in ids:
        response = http.post("/api/v1/call", json=call_body(location, call_id, assistant_id, transcribe))
        response.raise_for_status()
    wait_for(f"{count} {assistant_id} jobs to end", lambda: assistant_done(http, assistant_id, count), timeout_s)
    wall_s = time.perf_counter() - started
    calls = [http.get(f"/api/v1/call/{call_id}").json() for call_id in ids]
    run_s = [parse_stamp(c["completedAt"]) - parse_stamp(c["startedAt"]) for c in calls if c["startedAt"] and c["completedAt"]]
    failed = [c["failureReason"] for c in calls if c["status"] != "completed"]
    return {"jobs": count, "transcribe": transcribe, "wall_s": round(wall_s, 2), "jobs_per_minute": round(count / wall_s * 60, 1),
            "job_run_s_p50": round(statistics.median(run_s), 3) if run_s else None,
            "job_run_s_max": round(max(run_s), 3) if run_s else None, "failed": len(failed),
            **({"first_failure": failed[0]} if failed else {})}


def connected(http: httpx.Client, workers: int) -> list[dict[str, Any]]:
    """Wait until ``workers`` workers are connected; their sessions."""
    if workers == 0:
        return []
    return wait_for(f"{workers} workers to connect", lambda: (worker_state(http)["workers"] if len(worker_state(http)["workers"]) >= workers
                                                              else None), 120)


def warm_up(http: httpx.Client, location: str, workers: int) -> None:
    """One transcribed job per worker (two for in-process threads), at once: each loads the ASR model."""
    run_batch(http, location, "warm-up", max(workers, 2), True, 300)


def jobs_per_minute(folder: Path, configs: list[str], location: str, jobs: int, asr_jobs: int,
                    warm_location: str) -> list[dict[str, Any]]:
    """Phase 2 (module docstring)."""
    from ivrsim.api.server import BackgroundServer

    rows = []
    for config in configs:
        workers = None if config == "default" else int(config)
        data = folder / f"jobs-{config}"
        data.mkdir()
        settings = server_settings(data, workers)
        count = settings.local_workers
        row: dict[str, Any] = {"config": config, "workers": count, "mode": "in-process threads" if count == 0 else "worker process(es)",
                               "load_at_start": load_average()}
        with BackgroundServer(settings) as server, httpx.Client(base_url=server.base_url, headers={"X-Canonical-Api-Key": KEY},
                                                                 timeout=60) as http:
            connected(http, count)
            warm_up(http, warm_location, count)
            row["plain"] = run_batch(http, location, f"plain-{config}", jobs, False, 600)
            row["asr"] = run_batch(http, location, f"asr-{config}", asr_jobs, True, 3600) if asr_jobs else None
            if count:
                row["jobs_run_per_worker"] = [w["jobs_run"] for w in worker_state(http)["workers"]]
        rows.append(row)
    return rows


async def post_calls(base_url: str, total: int, clients: int, location: str, tag: str, rate_per_s: float | None,
                     on_ready: Callable[[], None]) -> tuple[list[float], dict[str, int], float, float]:
    """``total`` POST /api/v1/call from ``clients`` clients: their latencies, the count of each non-200 answer (or
    error), the seconds from the first POST to the last answer and this process's CPU seconds over them. The
    connections are opened first; ``on_ready`` is called then, 0.1 s before the first POST."""
    latencies: list[float] = []
    failures: dict[str, int] = {}
    per_client = total // clients
    interval = clients / rate_per_s if rate_per_s else 0.0
    ready = asyncio.Event()
    opened = 0
    start = cpu_at_start = 0.0

    async def client(index: int) -> None:
        nonlocal opened, start, cpu_at_start
        async with httpx.AsyncClient(base_url=base_url, headers={"X-Canonical-Api-Key": KEY}, timeout=30) as http:
            await http.get("/_sim/health")  # open the keep-alive connection before measuring
            opened += 1
            if opened == clients:
                on_ready()
                start, cpu_at_start = time.perf_counter() + 0.1, time.process_time()
                ready.set()
            await ready.wait()
            for k in range(per_client):
                if interval:
                    await asyncio.sleep(max(0.0, start + (k + index / clients) * interval - time.perf_counter()))
                body = call_body(location, f"{tag}-{index}-{k}", "load", True)
                began = time.perf_counter()
                try:
                    response = await http.post("/api/v1/call", json=body)
                except httpx.HTTPError as error:
                    failures[type(error).__name__] = failures.get(type(error).__name__, 0) + 1
                    continue
                latencies.append(time.perf_counter() - began)
                if response.status_code != 200:
                    failures[str(response.status_code)] = failures.get(str(response.status_code), 0) + 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, failures, time.perf_counter() - start, time.process_time() - cpu_at_start


def load_process(base_url: str, total: int, clients: int, location: str, tag: str, rate_per_s: float | None,
                 results: multiprocessing.Queue) -> None:
    """The clients, in their own process: "ready" once connected, then post_calls' figures."""
    results.put(asyncio.run(post_calls(base_url, total, clients, location, tag, rate_per_s, lambda: results.put("ready"))))


def run_load(base_url: str, total: int, clients: int, location: str, tag: str, rate_per_s: float | None,
             at_start: Callable[[], None]) -> tuple[list[float], dict[str, int], float, float]:
    """The clients in a process of their own; ``at_start`` runs once they are connected, just before the load."""
    spawn = multiprocessing.get_context("spawn")  # this process runs the server's threads: no fork
    results: multiprocessing.Queue = spawn.Queue()
    process = spawn.Process(target=load_process, args=(base_url, total, clients, location, tag, rate_per_s, results))
    process.start()
    try:
        if results.get(timeout=120) != "ready":
            raise RuntimeError("the load process did not start")
        at_start()
        return results.get(timeout=900)
    finally:
        process.join(timeout=30)


def post_latency(folder: Path, config: str, location: str, requests: int, clients: int, rate_per_s: float) -> dict[str, Any]:
    """Phase 3 (module docstring), with ``config`` local workers (``default``: one per core)."""
    from ivrsim.api.server import BackgroundServer

    data = folder / f"post-{config}"
    data.mkdir()
    settings = server_settings(data, None if config == "default" else int(config))
    workers = settings.local_workers
    if workers == 0:
        raise ValueError("--post-configs: the POST latency needs worker processes (1 or more, or default)")
    out: dict[str, Any] = {"config": config, "workers": workers, "clients": clients}
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.base_url, headers={"X-Canonical-Api-Key": KEY},
                                                             timeout=60) as http:
        sessions = connected(http, workers)
        pids = [s["pid"] for s in sessions]
        for n in range(4 * max(workers, 1)):
            http.post("/api/v1/call", json=call_body(location, f"backlog-{n}", "backlog", True)).raise_for_status()
        wait_for("every worker to run a job", lambda: sum(w["running_jobs"] for w in worker_state(http)["workers"]) >= workers, 120)
        for name, rate in (("back_to_back", None), ("paced", rate_per_s)):
            load_at_start = load_average()
            before: dict[int, float] = {}
            latencies, failures, wall_s, clients_cpu_s = run_load(server.base_url, requests, clients, location, name, rate,
                                                                  lambda into=before: into.update({**{pid: cpu_s(pid) for pid in pids}, 0: own_cpu_s(os.getpid())}))
            used = {pid: cpu_s(pid) - before[pid] for pid in pids} | {0: own_cpu_s(os.getpid()) - before[0]}
            span_s = wall_s + 0.1  # the CPU was sampled 0.1 s before the first POST
            state = worker_state(http)
            out[name] = {
                "rate_per_s": rate, "posts_per_s": round(len(latencies) / wall_s, 1), **percentiles_ms(latencies), "failures": failures,
                "load_at_start": load_at_start,
                "worker_cpu_pct": [round(100 * used[pid] / span_s) for pid in pids],
                "server_process_cpu_pct": round(100 * used[0] / span_s), "clients_cpu_pct": round(100 * clients_cpu_s / wall_s),
                "running_jobs_at_end": sum(w["running_jobs"] for w in state["workers"]), "queued_jobs_at_end": state["queued_jobs"],
            }
    return out


# -- main -----------------------------------------------------------------------------------------------------


def numbers(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


@dataclass
class Report:
    arguments: dict[str, Any]
    load_at_start: str
    cores: int | None = field(default_factory=os.cpu_count)
    speed: dict[str, Any] | None = None
    jobs: list[dict[str, Any]] | None = None
    post: list[dict[str, Any]] | None = None


def print_report(report: Report) -> None:
    print(f"{report.cores} cores; at the start: {report.load_at_start}")
    if report.speed is not None:
        print(f"\n1. one analysis (jobs.run_analysis on a WAV file, this process; pocketsphinx model load {report.speed['asr_model_load_s']} s, "
              "before timing):")
        print(f"   {'audio':>8} {'ch':>3} {'asr':>4} {'wall s':>8} {'cpu s':>8} {'s/min':>7} {'x real':>7}  found/built")
        for row in report.speed["runs"]:
            checks = " ".join(f"{k}={v}" for k, v in row["found/built"].items())
            words = f" words={row['words']}" if row.get("words") else ""
            reason = f" (transcript: {row['transcript_reason']})" if row.get("transcript_reason") else ""
            print(f"   {row['minutes']:>6g} m {row['channels']:>3} {'yes' if row['transcribe'] else 'no':>4} {row['wall_s']:>8.3f} "
                  f"{row['cpu_s']:>8.3f} {row['s_per_audio_minute']:>7.3f} {row['x_real_time']:>7.1f}  {checks}{words}{reason}")
    if report.jobs is not None:
        print(f"\n2. jobs per minute (POST /api/v1/call, {report.arguments['job_minutes']:g}-minute stereo calls, all queued at once):")
        for row in report.jobs:
            print(f"   --workers {row['config']} ({row['workers']} {row['mode']}; {row['load_at_start']}):")
            for name in ("plain", "asr"):
                batch = row[name]
                if batch is None:
                    continue
                print(f"      transcribe {str(batch['transcribe']).lower():<5}: {batch['jobs']} jobs in {batch['wall_s']} s = "
                      f"{batch['jobs_per_minute']} jobs/min; a job runs {batch['job_run_s_p50']} s (p50), {batch['job_run_s_max']} s (max); "
                      f"failed {batch['failed']}" + (f" ({batch['first_failure']})" if batch.get("first_failure") else ""))
            if row.get("jobs_run_per_worker"):
                print(f"      jobs run per worker (warm-up included): {row['jobs_run_per_worker']}")
    for post in report.post or []:
        print(f"\n3. POST /api/v1/call, {post['clients']} clients in a separate process, --workers {post['config']} "
              f"({post['workers']} worker process(es)), saturated:")
        for name in ("back_to_back", "paced"):
            phase = post[name]
            how = "back to back" if name == "back_to_back" else f"at {phase['rate_per_s']:g} POSTs/s in all"
            print(f"   {how}: {phase['posts_per_s']} POSTs/s; p50 {phase.get('p50_ms')} ms, p99 {phase.get('p99_ms')} ms, "
                  f"max {phase.get('max_ms')} ms ({phase['count']} answers, non-200/errors {phase['failures'] or 0})")
            print(f"      CPU: workers {phase['worker_cpu_pct']} %, this process (server) {phase['server_process_cpu_pct']} %, "
                  f"clients {phase['clients_cpu_pct']} %; "
                  f"at the end: {phase['running_jobs_at_end']} jobs running, {phase['queued_jobs_at_end']} queued; {phase['load_at_start']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="1,5,10", help="call lengths for the speed without transcription (stereo and mono)")
    parser.add_argument("--asr-minutes", default="1,5", help="stereo call lengths for the speed with transcription")
    parser.add_argument("--mono-asr-minutes", default="1", help="mono call lengths for the speed with transcription")
    parser.add_argument("--configs", default="1,2", help="worker counts for the jobs per minute: N, or default (one per core)")
    parser.add_argument("--jobs", type=int, default=40, help="jobs without transcription per configuration")
    parser.add_argument("--asr-jobs", type=int, default=4, help="jobs with transcription per configuration")
    parser.add_argument("--job-minutes", type=float, default=1.0, help="length of the calls the jobs analyse")
    parser.add_argument("--post-configs", default="1,default",
                        help="worker counts for the POST latency (1 leaves the server a core on a 2-core machine, as the README advises)")
    parser.add_argument("--requests", type=int, default=1000, help="POSTs in each load phase")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100.0, help="POSTs per second, in all, for the paced phase")
    parser.add_argument("--phases", default="speed,jobs,post", help="which of speed, jobs, post to run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    phases = {p.strip() for p in args.phases.split(",")}

    from ivrsim.blas import one_blas_thread
    from ivrsim.testing.http import serve_bytes

    one_blas_thread()  # as ivrsim's own processes (the CLI's server, every worker) run
    report = Report(arguments=vars(args), load_at_start=load_average())
    lines = render_lines()
    with tempfile.TemporaryDirectory(prefix="analysis-bench-") as temp:
        folder = Path(temp)
        if "speed" in phases:
            report.speed = analysis_speed(folder, lines, numbers(args.minutes), numbers(args.asr_minutes), numbers(args.mono_asr_minutes))
        job_call = wav_bytes(two_party_call(lines, args.job_minutes * 60).stereo)
        warm_call = wav_bytes(two_party_call(lines, 10.0).stereo)
        with serve_bytes(job_call, "audio/wav") as job_url, serve_bytes(warm_call, "audio/wav") as warm_url:
            location = f"{job_url}/call.wav"
            if "jobs" in phases:
                report.jobs = jobs_per_minute(folder, [c.strip() for c in args.configs.split(",") if c.strip()], location, args.jobs,
                                              args.asr_jobs, f"{warm_url}/warm.wav")
            if "post" in phases:
                report.post = [post_latency(folder, config.strip(), location, args.requests, args.clients, args.rate)
                               for config in args.post_configs.split(",") if config.strip()]
    if args.json:
        print(json.dumps(report.__dict__, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()

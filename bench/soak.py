"""Soak: many calls from many clients while the webhook receiver flaps and the server is SIGKILLed once.

Usage: .venv/bin/python bench/soak.py [--calls 1000] [--clients 50] [--kill-after 0.5] [--idle-s 60] [--json]

What it does, with three kinds of process as in real use (the server, ``ivrsim serve`` on the virtual clock;
the clients, threads of this process; the webhook receiver, a thread of this process):

1. starts the server and samples its resident memory (VmRSS) every 0.25 s;
2. ``--clients`` clients place ``--calls`` calls in all (every tenth one recorded), each with an
   ``Idempotency-Key``, so a POST whose answer was lost to the crash can be sent again without placing a
   second call; a call counts as acknowledged when a 200 came back;
3. meanwhile the receiver goes down for 3 s every 7 s (connections refused) for the first minute;
4. when ``--kill-after`` of the calls are acknowledged, the server is SIGKILLed and started again on the
   same data folder (its recovery ends the calls that were live and tells their receivers);
5. waits until every acknowledged call has ended and no delivery is pending, then ``--idle-s`` more.

Figures (no assertion; the targets are issue 8's): calls acknowledged vs present after the restart
(target: equal), events delivered vs expected (every event routed to the call's ``webhook_url``, as stored:
target every one), calls whose events arrived out of order (target 0), duplicates (allowed: delivery is at
least once; counted), and the server's RSS at start (cold, and warm: after five calls and an idle check, once the TTS
engine and codecs are loaded), at peak and after the idle time (target: back within 20 % of the start).
The restarted server's RSS is what "after" means; "start" is the first server's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from ivrsim.testing.processes import free_port

KEY = "soak-key"
FROM = "+15559876543"
TO = "+15550100001"  # the default phonebook's PIN caller: answers, waits for the prompt, presses 1234
FINAL = {"completed", "busy", "no-answer", "failed"}
#: Event types that go to the call's webhook_url when the gather has none of its own.
ROUTED = ("call.", "recording.completed", "transcription.completed", "gather.completed")


class FlappingReceiver:
    """A webhook receiver on a fixed port that can be taken down (connections refused) and brought back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.arrivals: dict[str, list[int]] = defaultdict(list)
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                except (OSError, ValueError):
                    return  # the receiver went down mid-request: ivrsim counts it as a failed attempt
                with receiver.lock:
                    receiver.arrivals[body["call_id"]].append(int(body["sequence"]))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Quiet(ThreadingHTTPServer):
            allow_reuse_address = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # resets while going down are the point of the exercise

        self._server = Quiet(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class Server:
    """``ivrsim serve`` as a subprocess, with its RSS sampled."""

    def __init__(self, port: int, data_dir: Path, env: dict[str, str]) -> None:
        self.port, self.data_dir, self.env = port, data_dir, env
        self.process: subprocess.Popen[bytes] | None = None
        self.rss_kib: list[int] = []

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ivrsim", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=open(self.data_dir.parent / "server.log", "ab"),
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/_sim/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("soak: the server did not start; see server.log")
            time.sleep(0.1)
        process = self.process
        threading.Thread(target=self._sample, args=(process,), daemon=True).start()

    def _sample(self, process: subprocess.Popen[bytes]) -> None:
        while process.poll() is None:
            rss = self.rss()
            if rss:
                self.rss_kib.append(rss)
            time.sleep(0.25)

    def rss(self) -> int:
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():  # type: ignore[union-attr]
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, AttributeError):
            pass
        return 0

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--kill-after", type=float, default=0.5, help="Share of calls acknowledged before the SIGKILL.")
    parser.add_argument("--idle-s", type=float, default=60.0, help="Idle time after the work, before the last RSS reading.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="ivrsim-soak-"))
    data_dir = folder / "data"
    data_dir.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "IVRSIM_API_KEY": KEY,
        # a retry schedule short enough to see through within the run (the default spans days)
        "IVRSIM_WEBHOOK_BACKOFF_S": "0.5",
        "IVRSIM_WEBHOOK_BACKOFF_FACTOR": "2",
        "IVRSIM_WEBHOOK_BACKOFF_CAP_S": "4",
        "IVRSIM_WEBHOOK_ATTEMPTS": "20",
        "IVRSIM_WEBHOOK_TIMEOUT_S": "5",
    }
    receiver = FlappingReceiver(free_port())
    receiver.up()
    server = Server(port, data_dir, env)
    server.start()
    time.sleep(1.0)
    rss_start_kib = server.rss()
    # a warm start: the same server after a few calls (TTS engine, voices and codecs loaded once per process)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as warm:
        ids = [warm.post("/v1/voice/calls", json={"to": TO, "from": FROM, "tts": {"text": "Enter your PIN."},
                                                   "gather": {"num_digits": 4}, "record": True}).json()["id"] for _ in range(5)]
        while any(warm.get(f"/v1/voice/calls/{i}").json()["status"] not in FINAL for i in ids):
            time.sleep(0.1)
    time.sleep(15.0)  # one idle check of the server's memory trimmer
    rss_warm_kib = server.rss()

    rss_restarted_kib = 0
    acknowledged: set[str] = set()
    lost_posts = 0
    lock = threading.Lock()
    killed = threading.Event()
    server_back = threading.Event()
    server_back.set()
    flapping = threading.Event()

    def flap() -> None:
        end = time.monotonic() + 60
        while time.monotonic() < end and not flapping.is_set():
            time.sleep(4)
            receiver.down()
            time.sleep(3)
            receiver.up()

    def client(index: int, count: int) -> None:
        nonlocal lost_posts
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
            for n in range(count):
                body: dict[str, Any] = {"to": TO, "from": FROM, "tts": {"text": "Enter your PIN."}, "gather": {"num_digits": 4},
                                        "webhook_url": f"{receiver.url}/hook", "record": (index * count + n) % 10 == 0}
                key = str(uuid.uuid4())
                deadline = time.monotonic() + 120
                while True:
                    server_back.wait(timeout=60)
                    try:
                        response = http.post("/v1/voice/calls", json=body, headers={"Idempotency-Key": key})
                    except httpx.HTTPError:
                        if time.monotonic() > deadline:
                            with lock:
                                lost_posts += 1
                            break
                        time.sleep(0.2)
                        continue
                    if response.status_code == 200:
                        with lock:
                            acknowledged.add(response.json()["id"])
                    break

    started = time.perf_counter()
    threading.Thread(target=flap, daemon=True).start()
    per_client = [args.calls // args.clients + (1 if i < args.calls % args.clients else 0) for i in range(args.clients)]
    threads = [threading.Thread(target=client, args=(i, c)) for i, c in enumerate(per_client)]
    for thread in threads:
        thread.start()
    while not killed.is_set():
        with lock:
            done = len(acknowledged)
        if done >= args.kill_after * args.calls:
            server_back.clear()
            server.kill()
            killed.set()
            server.start()
            rss_restarted_kib = server.rss()
            server_back.set()
        elif all(not t.is_alive() for t in threads):
            break
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    placed_s = time.perf_counter() - started
    flapping.set()

    http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    present: dict[str, str] = {}
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        present = {}
        cursor = None
        while True:
            page = http.get("/v1/voice/calls", params={"limit": 200, **({"starting_after": cursor} if cursor else {})}).json()
            present.update({c["id"]: c["status"] for c in page["data"]})
            if not page["has_more"]:
                break
            cursor = page["next_starting_after"]
        pending = http.get("/v1/voice/webhooks", params={"status": "pending", "limit": 1}).json()
        if all(status in FINAL for status in present.values()) and not pending.get("data"):
            break
        time.sleep(1.0)
    settled_s = time.perf_counter() - started

    expected = 0
    delivered = 0
    duplicates = 0
    out_of_order = 0
    missing_calls = 0
    with receiver.lock:
        arrivals = {k: list(v) for k, v in receiver.arrivals.items()}
    for call_id in acknowledged:
        if call_id not in present:
            missing_calls += 1
            continue
        events = http.get(f"/v1/voice/calls/{call_id}/events").json()["data"]
        wanted = [e["sequence"] for e in events if e["type"].startswith(ROUTED)]
        got = arrivals.get(call_id, [])
        firsts = list(dict.fromkeys(got))
        expected += len(wanted)
        delivered += len(set(wanted) & set(got))
        duplicates += len(got) - len(firsts)
        if firsts != sorted(firsts):
            out_of_order += 1
    time.sleep(args.idle_s)
    rss_after_kib = server.rss()
    server.stop()
    receiver.down()
    figures = {
        "calls": args.calls,
        "clients": args.clients,
        "acknowledged": len(acknowledged),
        "present_after_restart": sum(1 for c in acknowledged if c in present),
        "acknowledged_missing": missing_calls,
        "posts_given_up": lost_posts,
        "events_expected": expected,
        "events_delivered": delivered,
        "calls_out_of_order": out_of_order,
        "duplicates": duplicates,
        "placing_s": round(placed_s, 1),
        "settled_s": round(settled_s, 1),
        "rss_start_mib": round(rss_start_kib / 1024, 1),
        "rss_peak_mib": round(max(server.rss_kib or [0]) / 1024, 1),
        "rss_restarted_mib": round(rss_restarted_kib / 1024, 1),
        "rss_after_idle_mib": round(rss_after_kib / 1024, 1),
        "rss_warm_mib": round(rss_warm_kib / 1024, 1),
        "rss_after_vs_start": round(rss_after_kib / rss_start_kib, 2) if rss_start_kib else None,
        "rss_after_vs_warm": round(rss_after_kib / rss_warm_kib, 2) if rss_warm_kib else None,
        "data_dir": str(data_dir),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for name, value in figures.items():
            print(f"{name:>24}: {value}")


if __name__ == "__main__":
    main()

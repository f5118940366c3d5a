"""API speed on loopback: POST /v1/voice/calls latency under 50 concurrent clients, and event-to-webhook
delivery latency.

Usage: .venv/bin/python bench/api_speed.py [--requests 1000] [--clients 50] [--json]

Two phases: first the clients send back to back (a closed loop: the server's saturation throughput, where
latency is just the queue of 50 clients); then the same clients send at ``--rate`` calls per second in all
(default 100), evenly spaced (an open loop below saturation: the latency a caller sees).

Three processes, as in real use: the server (``ivrsim serve``: uvicorn, one worker, virtual clock), the
load (httpx AsyncClients, each with its own keep-alive connection, opened before measuring) and the webhook receiver (this
process); they share the machine's 2 cores. Calls go to a busy number, so the engine's work per call is
small and what is measured is the HTTP path: validation, SQLite insert, the 200. Delivery latency is the
time from an event's wall-clock timestamp to its arrival at the webhook receiver.
Targets (issue 5): p99 under 20 ms for both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime

import httpx

from ivrsim.webhooks.receiver import WebhookReceiver

KEY = "bench-key"


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "count": len(ordered),
    }


async def post_calls(base_url: str, total: int, clients: int, webhook_url: str, rate_per_s: float | None = None) -> list[float]:
    body = {"to": "+15550100486", "from": "+15559876543", "tts": {"text": "Hello! This is a call from Canary. Press 1 to confirm."}, "webhook_url": webhook_url}
    latencies: list[float] = []
    per_client = total // clients

    interval = clients / rate_per_s if rate_per_s else 0.0
    ready = asyncio.Event()
    connected = 0
    start = 0.0

    async def client(index: int) -> None:
        nonlocal connected, start
        async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
            await http.get("/_sim/health")  # open the keep-alive connection before measuring
            connected += 1
            if connected == clients:
                start = time.perf_counter() + 0.05
                ready.set()
            await ready.wait()
            for k in range(per_client):
                if interval:
                    await asyncio.sleep(max(0.0, start + (k + index / clients) * interval - time.perf_counter()))
                started = time.perf_counter()
                response = await http.post("/v1/voice/calls", json=body)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies


def load(base_url: str, total: int, clients: int, webhook_url: str, rate_per_s: float | None, results: multiprocessing.Queue) -> None:
    """The load generator, in its own process: (latencies, wall seconds)."""
    started = time.perf_counter()
    latencies = asyncio.run(post_calls(base_url, total, clients, webhook_url, rate_per_s))
    results.put((latencies, time.perf_counter() - started))


def run_load(base_url: str, total: int, clients: int, webhook_url: str, rate_per_s: float | None = None) -> tuple[list[float], float]:
    results: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=load, args=(base_url, total, clients, webhook_url, rate_per_s, results))
    process.start()
    outcome = results.get(timeout=600)
    process.join()
    return outcome


def start_server(folder: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "IVRSIM_API_KEY": KEY}
    server = subprocess.Popen([sys.executable, "-m", "ivrsim", "serve", "--port", str(port), "--data-dir", folder], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise RuntimeError("ivrsim serve did not start") from None
            time.sleep(0.1)


def settle(receiver: WebhookReceiver, path: str, expected: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(1 for w in receiver.received if w.path == path) < expected and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100.0, help="calls per second, in all, for the paced phase")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, WebhookReceiver() as receiver:
        server, base_url = start_server(folder)
        try:
            run_load(base_url, args.clients, args.clients, f"{receiver.url}/warm")  # renders the prompt once
            saturated, wall_s = run_load(base_url, args.requests, args.clients, f"{receiver.url}/saturated")
            throughput = len(saturated) / wall_s
            settle(receiver, "/saturated", 2 * len(saturated))
            latencies, _ = run_load(base_url, args.requests, args.clients, f"{receiver.url}/hooks", rate_per_s=args.rate)
            settle(receiver, "/hooks", 2 * len(latencies))  # call.queued and call.busy for each call
        finally:
            server.terminate()
            server.wait(timeout=30)
        delivery = []
        for hook in receiver.received:
            if hook.path != "/hooks":
                continue
            sent = datetime.fromisoformat(hook.payload["timestamp"].replace("Z", "+00:00")).timestamp()
            delivery.append(max(hook.received_at - sent, 0.0))
    figures = {
        "clients": args.clients,
        "saturated": {"calls_per_s": round(throughput), **percentiles(saturated)},
        "paced_calls_per_s": args.rate,
        "post_calls": percentiles(latencies),
        "event_to_webhook": percentiles(delivery),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"saturation, {args.clients} clients back to back: {figures['saturated']}")
        print(f"POST /v1/voice/calls, {args.clients} clients at {figures['paced_calls_per_s']} calls/s in all: {figures['post_calls']}")
        print(f"event to webhook delivery at that rate: {figures['event_to_webhook']}")


if __name__ == "__main__":
    main()

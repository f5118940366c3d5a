"""Dashboard speed (issue 14) with 10,000 calls stored: the call list and a call page (server time over
loopback), the waveform envelope JSON of a 10-minute dual recording (cold and cached), and the time from an
event to its row on the open list page in headless Chromium.

Usage: .venv/bin/python bench/ui_speed.py [--calls 10000] [--requests 200] [--live-rows 20] [--no-browser] [--json]

Two processes: the server (``ivrsim serve``, uvicorn, virtual clock) and this one (httpx on one keep-alive
connection, one request at a time, so each figure is a request's own time, not a queue). The store is filled
before the server starts, with direct inserts (each call completed, with its four status events). Times
are loopback round trips measured here (the server's time plus well under a millisecond of client and
socket). The cold envelope asks a different ``columns`` each time (each is a miss in the server's cache:
the file is read and reduced again; the operating system's page cache is warm, as it is for a page opened
after the call). Event to row: the list page is open, a call is placed through the API, and a
MutationObserver in the page notes when the call's row appears; the figure is that moment (browser clock)
minus the ``call.queued`` event's wall-clock timestamp (server clock; the same machine).
Targets (issue 14): under 50 ms each. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile

from ivrsim.engine.events import CallEvent, epoch_of, iso_after, utc_now
from ivrsim.store.sqlite import Store

KEY = "bench-ui-key"
FROM = "+15559876543"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
RECORDING_S = 600.0
RATE_HZ = 8000


def percentiles(values_s: list[float]) -> dict[str, float]:
    ordered = sorted(values_s)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "count": len(ordered),
    }


def fill_store(folder: Path, calls: int) -> tuple[str, str]:
    """``calls`` completed calls with their events, one of them (the newest) with a 10-minute dual recording
    of speech-like noise bursts; returns (a call in the middle of the list, the recorded call)."""
    store = Store(folder / "ivrsim.sqlite3")
    statuses = ("completed", "completed", "completed", "busy", "no-answer", "failed")
    middle = ""
    for i in range(calls):
        call_id = f"call_{uuid.uuid4().hex[:20]}"
        status = statuses[i % len(statuses)]
        to = f"+1555010{i % 10000:04d}"
        store.insert_call(call_id, to, FROM, {"to": to, "from": FROM, "tts": {"text": "Hello."}})
        answered = status == "completed"
        now = utc_now()
        store.update_call(call_id, status=status, answered_at=now if answered else None, ended_at=now, duration_s=12.3 if answered else None,
                          reason="the callee hung up" if answered else status)
        for sequence, (kind, t) in enumerate((("call.queued", 0.0), ("call.ringing", 0.0), ("call.in-progress", 2.0), (f"call.{status}", 14.3)), 1):
            store.insert_event(CallEvent(call_id, sequence, kind, t, now, {}))
        if i == calls // 2:
            middle = call_id
    recorded = f"call_{uuid.uuid4().hex[:20]}"
    store.insert_call(recorded, "+15550100001", FROM, {"to": "+15550100001", "from": FROM, "record": True, "tts": {"text": "Ten minutes."}})
    now = utc_now()
    store.update_call(recorded, status="completed", answered_at=now, ended_at=iso_after(now, RECORDING_S), duration_s=RECORDING_S, reason="the callee hung up")
    for sequence, (kind, t) in enumerate((("call.queued", 0.0), ("call.ringing", 0.0), ("call.in-progress", 4.0), ("call.completed", 604.0)), 1):
        store.insert_event(CallEvent(recorded, sequence, kind, t, now, {}))
    for k in range(40):  # DTMF marks for the page to draw
        store.insert_event(CallEvent(recorded, 5 + k, "dtmf.received", 4.0 + 15 * k, now, {"digit": "5", "start_s": 4.0 + 15 * k, "end_s": 4.1 + 15 * k}))
    recording_id = f"rec_{uuid.uuid4().hex[:20]}"
    path = folder / "recordings" / f"{recording_id}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(14)
    with soundfile.SoundFile(path, "w", RATE_HZ, 2, "PCM_16", format="WAV") as wav:
        for second in range(int(RECORDING_S)):  # written a second at a time: memory stays small here too
            burst = (second // 3) % 2
            block = rng.standard_normal((RATE_HZ, 2)).astype(np.float32) * np.array([0.3 * burst, 0.2 * (1 - burst)], dtype=np.float32)
            wav.write(block.clip(-1, 1))
    store.insert_recording(recording_id, recorded, str(path), "dual")
    store.complete_recording(recording_id, RECORDING_S)
    store.close()
    return middle, recorded


def start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "IVRSIM_API_KEY": KEY}
    server = subprocess.Popen([sys.executable, "-m", "ivrsim", "serve", "--port", str(port), "--data-dir", str(folder)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("ivrsim serve did not start") from None
            time.sleep(0.1)


def log_in(client: httpx.Client) -> None:
    form = client.get("/ui/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if token is None:
        raise RuntimeError(f"no login form at /ui/login (HTTP {form.status_code})")
    response = client.post("/ui/login", data={"csrf_token": token.group(1), "api_key": KEY, "next": "/ui"})
    if "ivrsim_session" not in client.cookies:
        raise RuntimeError(f"login failed (HTTP {response.status_code})")


def timed(client: httpx.Client, url: str, requests: int, params: list[dict[str, Any]] | None = None) -> dict[str, float]:
    """``requests`` GETs of ``url`` (params cycling through ``params``), after 5 unmeasured ones."""
    params = params or [{}]
    for i in range(5):
        client.get(url, params=params[i % len(params)]).raise_for_status()
    times_s = []
    for i in range(5, 5 + requests):
        start = time.perf_counter()
        response = client.get(url, params=params[i % len(params)])
        response.read()
        times_s.append(time.perf_counter() - start)
        response.raise_for_status()
    return percentiles(times_s)


def event_to_row(base_url: str, rows: int) -> dict[str, float]:
    """The list page open in headless Chromium; ``rows`` calls placed one by one; each row's appearance."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    api = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    try:
        driver.get(f"{base_url}/ui/login")
        driver.find_element("id", "api_key").send_keys(KEY)
        driver.find_element("css selector", "form[action='/ui/login'] button[type=submit]").click()
        driver.get(f"{base_url}/ui/calls")
        # Notes when a node naming a call id is added: the page's live row, whatever its markup.
        driver.execute_script("""
            window.__seen = {};
            new MutationObserver((records) => {
              const now = Date.now();
              for (const r of records) for (const n of r.addedNodes) {
                const text = n.outerHTML || n.textContent || "";
                for (const m of text.matchAll(/call_[A-Za-z0-9]+/g)) if (!(m[0] in window.__seen)) window.__seen[m[0]] = now;
              }
            }).observe(document.body, {childList: true, subtree: true, characterData: true});
        """)
        delays_s = []
        for _ in range(rows):
            call = api.post("/v1/voice/calls", json={"from": FROM, "to": "+15550100486", "tts": {"text": "Hi."}}).json()
            deadline = time.monotonic() + 10
            seen_ms = None
            while seen_ms is None and time.monotonic() < deadline:
                seen_ms = driver.execute_script("return window.__seen[arguments[0]] || null", call["id"])
                if seen_ms is None:
                    time.sleep(0.01)
            if seen_ms is None:
                raise RuntimeError(f"the row of {call['id']} did not appear on the list page within 10 s")
            queued = api.get(f"/v1/voice/calls/{call['id']}/events").json()["data"][0]
            delays_s.append(seen_ms / 1000.0 - epoch_of(queued["timestamp"]))
            time.sleep(0.2)  # one call at a time: each row is measured on a quiet page
        return percentiles(delays_s)
    finally:
        api.close()
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--live-rows", type=int, default=20)
    parser.add_argument("--no-browser", action="store_true", help="skip the event-to-row figure (no Chromium)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures: dict[str, Any] = {"calls_stored": args.calls}
    with tempfile.TemporaryDirectory(prefix="ivrsim-ui-bench-") as name:
        folder = Path(name)
        start = time.perf_counter()
        middle, recorded = fill_store(folder, args.calls)
        figures["fill_s"] = round(time.perf_counter() - start, 1)
        server, base_url = start_server(folder)
        try:
            with httpx.Client(base_url=base_url, timeout=30) as client:
                log_in(client)
                figures["call_list_first_page"] = timed(client, "/ui/calls", args.requests)
                figures["call_list_filtered"] = timed(client, "/ui/calls", args.requests,
                                                      [{"status": "busy"}, {"number": "+15550100123"}, {"status": "completed", "number": "555010"}])
                figures["call_list_deep_page"] = timed(client, "/ui/calls", args.requests, [{"starting_after": middle}])
                figures["call_page"] = timed(client, f"/ui/calls/{middle}", args.requests)
                figures["call_page_recorded"] = timed(client, f"/ui/calls/{recorded}", args.requests)
                url = f"/ui/api/calls/{recorded}/envelope.json"
                cold = min(args.requests, 60)
                figures["envelope_cold"] = timed(client, url, cold, [{"columns": 1000 + i} for i in range(cold + 5)])
                figures["envelope_cached"] = timed(client, url, args.requests, [{"columns": 2000}])
                figures["envelope_bytes"] = len(client.get(url).content)
            if not args.no_browser:
                figures["event_to_row_on_list"] = event_to_row(base_url, args.live_rows)
        finally:
            server.terminate()
            server.wait(timeout=30)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"dashboard speed, {args.calls:,} calls stored (filled in {figures['fill_s']} s); loopback round trips; target < 50 ms each")
    for name, value in figures.items():
        if isinstance(value, dict):
            print(f"  {name:24s} p50 {value['p50_ms']:7.2f} ms  p95 {value['p95_ms']:7.2f} ms  max {value['max_ms']:7.2f} ms  (n={value['count']})")
    print(f"  envelope JSON: {figures['envelope_bytes']:,} bytes (2 lanes x 2,000 columns, a 10-minute dual recording)")


if __name__ == "__main__":
    main()

"""Call engine speed: N concurrent scripted calls of about 30 s of call time, on the virtual clock.

Usage: .venv/bin/python bench/engine_speed.py [--calls 100] [--json]

Each call: one ring, a TTS prompt (about 5 s, the same text for every call, so it renders once), a gather
(timeout 30 s), a dual-channel recording, and a scripted caller that waits for the prompt to end, thinks
for 20 s and keys in 1234#; line model with G.711 mu-law and noise at 30 dB SNR; the streaming DTMF
receiver on the inbound side. Reported: aggregate call time over wall time (multiples of real time),
the slowest call's wall time, and memory per live call (peak resident memory over the baseline before
the calls were placed, divided by N). One asyncio loop, so this is one core's worth of calls.
Targets (issue 4): >= 200x real time aggregate (100 calls in under 15 s), under 5 MB per live call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from ivrsim.audio.line import LineSettings
from ivrsim.engine.callees import Phonebook
from ivrsim.engine.engine import CallEngine, CallRequest, EngineSettings, GatherSpec, TtsSpec
from ivrsim.speech.tts import PromptCache, SpeechSynthesizer

CALLER = {
    "kind": "scripted",
    "script": {
        "name": "thinker",
        "answer_after_rings": 1,
        "steps": [{"wait_for_prompt": {"silence_ms": 800}}, {"pause": {"seconds": 20}}, {"press": {"digits": "1234#"}}],
    },
}
PROMPT = "Thank you for calling. Please enter your account number, followed by the pound key."


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


async def run(calls: int, folder: Path) -> dict[str, object]:
    book = Phonebook.default_book()
    book.entries["+15558880000"] = CALLER
    settings = EngineSettings(folder / "data", line=LineSettings(snr_db=30.0), seed=1)
    synthesizer = SpeechSynthesizer(cache=PromptCache(folder / "prompts"))
    async with CallEngine(settings, phonebook=book, synthesizer=synthesizer) as engine:
        request = CallRequest(to="+15558880000", from_="+15559876543", tts=TtsSpec(PROMPT), gather=GatherSpec(timeout_s=30), record=True)
        warm = await engine.place(request)  # renders the prompt once, warms the caches
        await engine.wait(warm.id)
        baseline = resident_mb()
        peak = baseline
        stop = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, resident_mb())
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        records = [await engine.place(request) for _ in range(calls)]
        finished_at: dict[str, float] = {}

        async def finish(call_id: str) -> None:
            await engine.wait(call_id)
            finished_at[call_id] = time.perf_counter() - started

        await asyncio.gather(*(finish(r.id) for r in records))
        wall = time.perf_counter() - started
        stop.set()
        await sampler
        finals = [engine.store.get_call(r.id) for r in records]
        call_seconds = []
        for final in finals:
            events = engine.store.events(final.id)
            call_seconds.append(events[-1].call_time_s)
        digits_ok = sum(
            1 for final in finals if any(e.type == "gather.completed" and e.data["digits"] == "1234" for e in engine.store.events(final.id))
        )
    return {
        "calls": calls,
        "call_time_s_each": round(sum(call_seconds) / len(call_seconds), 2),
        "wall_s": round(wall, 2),
        "aggregate_x_realtime": round(sum(call_seconds) / wall),
        "slowest_call_wall_s": round(max(finished_at.values()), 2),
        "mb_per_live_call": round((peak - baseline) / calls, 2),
        "gathers_exact": f"{digits_ok}/{calls}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100, help="number of concurrent calls")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        figures = asyncio.run(run(args.calls, Path(folder)))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()

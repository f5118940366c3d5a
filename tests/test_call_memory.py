"""A live call's memory does not grow with its call time (issue 8: a held call of hours must not cost a
gigabyte). Calls run on the virtual clock through the full engine (real TTS, line model, scripted callee,
streaming DTMF receiver, SQLite store); the measure is tracemalloc's peak, so it is deterministic, not timed.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import pytest

from ivrsim.engine.engine import CallEngine, CallRequest, EngineSettings, GatherSpec, TtsSpec
from ivrsim.speech.tts import PromptCache, SpeechSynthesizer

#: The phonebook's listener: answers and never presses a key, so the gather waits out its whole timeout.
LISTENER = "+15550100002"
FROM = "+15559876543"
SEED = 11
#: Slack over 1.5x the short call's peak, in bytes: allocator and event noise, far below one call-minute
#: of the leak this pins (about 50 KB per call-second).
SLACK_BYTES = 200_000


async def _peak_bytes(engine: CallEngine, hold_s: float) -> int:
    """Traced peak of new allocations while one call holds in a gather for ``hold_s`` seconds of call time."""
    request = CallRequest(to=LISTENER, from_=FROM, tts=TtsSpec("hold"), gather=GatherSpec(timeout_s=hold_s))
    tracemalloc.start()
    try:
        placed = await engine.place(request)
        final = await asyncio.wait_for(engine.wait(placed.id), timeout=600)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert final.status == "completed"
    assert final.duration_s is not None and final.duration_s >= hold_s  # it really held that long
    gathers = [e.data for e in engine.store.events(final.id) if e.type == "gather.completed"]
    assert [g["reason"] for g in gathers] == ["timeout"]
    return peak


@pytest.mark.slow
def test_a_ten_times_longer_call_peaks_at_about_the_same_memory(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        synthesizer = SpeechSynthesizer(cache=PromptCache(tmp_path / "prompts"))
        async with CallEngine(EngineSettings(tmp_path / "engine", seed=SEED), synthesizer=synthesizer) as engine:
            await _peak_bytes(engine, 2.0)  # warm: prompt rendered and cached, phonebook and imports loaded
            return await _peak_bytes(engine, 60.0), await _peak_bytes(engine, 600.0)

    short, long = asyncio.run(scenario())
    assert long <= 1.5 * short + SLACK_BYTES, f"60 s call peaked at {short} B, 600 s call at {long} B"

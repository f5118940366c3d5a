"""The idle memory trimmer: once after each busy spell, never while calls or deliveries are live."""

from __future__ import annotations

import asyncio

from ivrsim.api.memory import IdleMemoryTrimmer, _malloc_trim, release_free_memory


def test_trims_once_after_activity_and_only_when_idle() -> None:
    async def scenario() -> list[str]:
        log: list[str] = []
        busy = True
        trimmer = IdleMemoryTrimmer(busy=lambda: busy, check_s=0.01, release=lambda: log.append("trim"))
        trimmer.start()
        trimmer.on_event(object())
        for _ in range(10):  # busy: events happened, but calls are live
            await asyncio.sleep(0.01)
        log.append("idle")
        busy = False
        while "trim" not in log:
            await asyncio.sleep(0.01)
        for _ in range(10):  # idle and nothing new: no second trim
            await asyncio.sleep(0.01)
        trimmer.on_event(object())
        while log.count("trim") < 2:
            await asyncio.sleep(0.01)
        await trimmer.stop()
        return log

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=30)) == ["idle", "trim", "trim"]


def test_glibc_trim_is_found_and_runs() -> None:
    assert _malloc_trim() is not None  # Debian: glibc, so the trim is not silently skipped
    release_free_memory()

"""Clocks that pace a call's 20 ms frames of call time.

The engine counts call time in frames; a clock only decides how fast those frames pass in wall time:
``VirtualClock`` as fast as the CPU allows (yielding to the event loop between frames, so that many calls
interleave), ``RealtimeClock`` one frame per 20 ms of wall time. Events depend only on frames, never on the
clock, so the same call gives the same events at the same call times on both. A sound card drives its own
clock by blocking until its frames are played (the devices issue implements that ``Clock``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

#: Length of one frame of call time, in seconds (DESIGN.md: 20 ms frames).
FRAME_S = 0.02


class Clock(Protocol):
    """Paces frames. ``advance(n)`` returns when ``n`` more frames of call time may be processed."""

    name: str

    async def advance(self, frames: int = 1) -> None: ...


class VirtualClock:
    """As fast as the CPU allows. It yields to the event loop every ``YIELD_FRAMES`` frames (100 ms of
    call time), so that many calls interleave without paying for a task switch every frame."""

    name = "virtual"
    YIELD_FRAMES = 5

    def __init__(self) -> None:
        self._frames = 0

    async def advance(self, frames: int = 1) -> None:
        before = self._frames // self.YIELD_FRAMES
        self._frames += frames
        if self._frames // self.YIELD_FRAMES != before:
            await asyncio.sleep(0)


class RealtimeClock:
    """One frame per ``FRAME_S`` of wall time, from the moment of the first ``advance``; no drift builds
    up, because each deadline is computed from the start, not from the previous frame."""

    name = "realtime"

    def __init__(self) -> None:
        self._start: float | None = None
        self._frames = 0

    async def advance(self, frames: int = 1) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        self._frames += frames
        delay = self._start + self._frames * FRAME_S - now
        await asyncio.sleep(max(delay, 0.0))


def make_clock(name: str) -> Clock:
    """A new clock by name: "virtual" or "realtime"."""
    if name == "virtual":
        return VirtualClock()
    if name == "realtime":
        return RealtimeClock()
    raise ValueError(f"clock must be 'virtual' or 'realtime', got {name!r}")

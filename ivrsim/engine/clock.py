"""Clocks that pace a call's 20 ms frames of call time.

The engine counts call time in frames; a clock only decides how fast those frames pass in wall time:
``VirtualClock`` as fast as the CPU allows (yielding to the event loop between frames, so that many calls
interleave), ``RealtimeClock`` one frame per 20 ms of wall time, ``ManualClock`` only as far as a shared
``ManualTimeline`` has been stepped (``POST /_sim/clock``). Events depend only on frames, never on the
clock, so the same call gives the same events at the same call times on both. A call answered by the
sound card runs on the card's own clock (``ivrsim.devices.soundcard.DeviceClock``, "device"): a frame is due
when the card's input has delivered it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

#: Length of one frame of call time, in seconds (DESIGN.md: 20 ms frames).
FRAME_S = 0.02
#: Longest a manual step waits for the calls to catch up with it, in seconds.
SETTLE_TIMEOUT_S = 30.0


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


class ManualTimeline:
    """Simulated time that moves only when told (``POST /_sim/clock``): every call on a ``ManualClock``
    runs as fast as the CPU allows up to the timeline's present, then waits for the next step."""

    def __init__(self) -> None:
        self.now_frames = 0
        self._moved = asyncio.Condition()
        #: The frame each waiting call waits for (a call woken by a step stays here until it has run).
        self._waiting_for: list[int] = []

    @property
    def now_s(self) -> float:
        return round(self.now_frames * FRAME_S, 3)

    async def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (rounded to whole frames); returns the new present."""
        async with self._moved:
            self.now_frames += int(round(seconds / FRAME_S))
            self._moved.notify_all()
        return self.now_s

    async def move_to(self, frames: int) -> float:
        """Set the present to ``frames`` (a worker's copy of the API's timeline; never backwards)."""
        async with self._moved:
            self.now_frames = max(self.now_frames, frames)
            self._moved.notify_all()
        return self.now_s

    async def wait_until(self, frame: int) -> None:
        if frame <= self.now_frames:
            return
        self._waiting_for.append(frame)
        try:
            async with self._moved:
                await self._moved.wait_for(lambda: frame <= self.now_frames)
        finally:
            self._waiting_for.remove(frame)

    async def settle(self, running: Callable[[], int], timeout_s: float = SETTLE_TIMEOUT_S) -> bool:
        """Wait until every one of the ``running()`` calls waits for the next step (each has processed
        the time it was given), so that a step's effects are there when ``POST /_sim/clock`` answers;
        False when that takes longer than ``timeout_s`` (a call busy rendering a long prompt)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while sum(1 for frame in self._waiting_for if frame > self.now_frames) < running():
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.002)
        return True


class ManualClock:
    """A call's clock on a ``ManualTimeline``: its call time starts at ``start_frame`` (where the timeline
    was when the call was placed), or where the timeline is now."""

    name = "manual"

    def __init__(self, timeline: ManualTimeline, start_frame: int | None = None) -> None:
        self.timeline = timeline
        self._start = timeline.now_frames if start_frame is None else start_frame
        self._frames = 0
        self._virtual = VirtualClock()

    async def advance(self, frames: int = 1) -> None:
        self._frames += frames
        await self.timeline.wait_until(self._start + self._frames)
        await self._virtual.advance(frames)


CLOCKS = ("virtual", "realtime", "manual")


def make_clock(name: str, timeline: ManualTimeline | None = None, start_frame: int | None = None) -> Clock:
    """A new clock by name: "virtual", "realtime", or "manual" (on ``timeline``, from ``start_frame``)."""
    if name == "virtual":
        return VirtualClock()
    if name == "realtime":
        return RealtimeClock()
    if name == "manual":
        if timeline is None:
            raise ValueError("a manual clock needs the engine's timeline")
        return ManualClock(timeline, start_frame)
    raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {name!r}")

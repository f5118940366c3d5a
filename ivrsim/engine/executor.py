"""Where placed calls run: the seam between the API-side engine and the call runners.

``CallEngine`` hands each ``CallJob`` to a ``CallExecutor`` with the ``CallOutput`` to report to.
``InProcessExecutor`` runs them as asyncio tasks on this event loop (today's mode, and ``--workers 0``
mode); ``ivrsim.workers.hub.WorkerHub`` sends them to worker processes through a queue instead, and
answers ``live_call`` with a handle that forwards to the worker running the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from ivrsim.audio.dtmf_generator import DtmfToneSpec
from ivrsim.engine.job import CallJob
from ivrsim.engine.output import CallOutput
from ivrsim.engine.runner import CallRunner, Injected, LiveCallHandle


class CallExecutor(Protocol):
    """Runs placed calls. A call counts as live from ``submit`` until it has reported its end."""

    def bind(self, end_orphaned: Callable[[str, str, str | None, float | None], None]) -> None:
        """Hear how to end a call that nothing runs any more: (call_id, reason, status or None)."""

    def submit(self, job: CallJob, output: CallOutput) -> None:
        """Start the call (returns at once)."""

    def live_call(self, call_id: str) -> LiveCallHandle | None:
        """The live call's handle, or None when it is not live (ended, or unknown)."""

    @property
    def live_count(self) -> int: ...

    async def settle_clock(self, now_frames: int) -> None:
        """Return once every live call has processed the manual clock up to ``now_frames``."""

    async def wait(self, call_id: str) -> None:
        """Return once the call has ended (at once when it is not live)."""

    async def close(self) -> None:
        """Stop the live calls (they report their end) and wait for them."""


class PendingCall:
    """The handle of a call accepted but not yet started by its runner: it is ``queued`` and takes no
    audio (the /_sim routes refuse a call that is not in progress before they would inject)."""

    status = "queued"

    def __init__(self, rate_hz: int) -> None:
        self.rate_hz = rate_hz

    def check_room(self, seconds: float) -> None:
        raise RuntimeError("the call is queued: nothing can be injected before it is in progress")

    async def hangup(self) -> float:
        raise RuntimeError("the call is queued: it can be hung up once it is in progress")

    async def press(self, digits: str, spec: DtmfToneSpec) -> Injected:
        raise RuntimeError("the call is queued: nothing can be injected before it is in progress")

    async def say(self, text: str, voice: str | None = None) -> Injected:
        raise RuntimeError("the call is queued: nothing can be injected before it is in progress")


class InProcessExecutor:
    """Each call an asyncio task on this loop, run by ``runner``."""

    def __init__(self, runner: CallRunner) -> None:
        self.runner = runner
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def bind(self, end_orphaned: Callable[[str, str, str | None, float | None], None]) -> None:
        """Nothing to do: in this process a call always reports its own end."""

    def submit(self, job: CallJob, output: CallOutput) -> None:
        task = asyncio.create_task(self._run(job, output), name=job.call_id)
        self._tasks[job.call_id] = task
        # A task cancelled before it started never runs ``_run``'s finally: let go of it when it is done.
        task.add_done_callback(lambda done: self._tasks.pop(job.call_id, None) if self._tasks.get(job.call_id) is done else None)

    async def _run(self, job: CallJob, output: CallOutput) -> None:
        try:
            await self.runner.run(job, output)
        finally:  # right after the runner lets go of it: the call is never seen as neither live nor ended
            self._tasks.pop(job.call_id, None)

    def live_call(self, call_id: str) -> LiveCallHandle | None:
        running = self.runner.live_call(call_id)
        if running is not None:
            return running
        if call_id in self._tasks:  # its task has not started yet
            return PendingCall(self.runner.settings.line.rate_hz)
        return None

    @property
    def live_count(self) -> int:
        return len(self._tasks)

    async def settle_clock(self, now_frames: int) -> None:
        if self.runner.timeline is not None:
            await self.runner.timeline.settle(lambda: self.runner.timeline_count)

    async def wait(self, call_id: str) -> None:
        task = self._tasks.get(call_id)
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.runner.aclose()

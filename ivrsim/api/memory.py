"""Giving memory back after a burst: when the server falls idle, collect garbage and trim the C heap.

CPython frees objects into its own arenas and glibc's malloc keeps freed pages for reuse, so after a
burst of a thousand calls the resident size stays near its peak although the memory is free. Once no call
is live and no webhook is pending, ``IdleMemoryTrimmer`` runs a full collection and glibc's
``malloc_trim(0)``, which returns the free pages at the top of each heap to the kernel. Elsewhere than
glibc the trim is skipped (the collection still runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: How often the server looks whether it has fallen idle, in seconds.
IDLE_CHECK_S = 10.0


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_free_memory() -> None:
    """One full collection, then hand glibc's free heap pages back to the kernel."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class IdleMemoryTrimmer:
    """Runs ``release_free_memory`` off the event loop once after each busy spell: when events have happened
    since the last trim and ``busy()`` (live calls, pending deliveries; cheap) is false now. Subscribe
    ``on_event`` to the event bus."""

    def __init__(self, busy: Callable[[], bool], check_s: float = IDLE_CHECK_S, release: Callable[[], None] = release_free_memory) -> None:
        self._busy = busy
        self._check_s = check_s
        self._release = release
        self._dirty = False
        self._task: asyncio.Task[None] | None = None

    def on_event(self, _event: object) -> None:
        self._dirty = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="ivrsim-memory-trim")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._check_s)
            if self._dirty and not self._busy():
                self._dirty = False
                await asyncio.to_thread(self._release)
                logger.debug("idle: garbage collected and free heap pages returned")

"""A single-producer single-consumer float32 ring buffer between a PortAudio callback and the call.

The callback must never block, allocate much or take a lock (a lock held by the event loop's thread
would stall the audio thread), so the ring keeps two monotonically growing counters: the producer alone
moves ``_written``, the consumer alone moves ``_read``; each publishes its counter only after copying,
and a Python int assignment is atomic under the GIL. What does not fit is dropped and reported by the
return value, never waited for.
"""

from __future__ import annotations

import numpy as np


class SampleRing:
    """Mono float32 samples, ``capacity`` of them at most."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self._buffer = np.zeros(self.capacity, dtype=np.float32)
        self._written = 0
        self._read = 0

    @property
    def available(self) -> int:
        """Samples that can be read now."""
        return self._written - self._read

    @property
    def space(self) -> int:
        """Samples that can be written now without dropping any."""
        return self.capacity - (self._written - self._read)

    def write(self, samples: np.ndarray) -> int:
        """Producer side: copy as many of ``samples`` as fit; returns how many (the rest is dropped)."""
        count = min(len(samples), self.space)
        if count <= 0:
            return 0
        start = self._written % self.capacity
        first = min(count, self.capacity - start)
        self._buffer[start:start + first] = samples[:first]
        if count > first:
            self._buffer[:count - first] = samples[first:count]
        self._written += count
        return count

    def read(self, out: np.ndarray) -> int:
        """Consumer side: fill the start of ``out`` with up to ``len(out)`` samples; returns how many."""
        count = min(len(out), self.available)
        if count <= 0:
            return 0
        start = self._read % self.capacity
        first = min(count, self.capacity - start)
        out[:first] = self._buffer[start:start + first]
        if count > first:
            out[first:count] = self._buffer[:count - first]
        self._read += count
        return count

    def skip(self, count: int) -> int:
        """Consumer side: drop up to ``count`` of the oldest samples (to keep latency bounded)."""
        count = max(0, min(int(count), self.available))
        self._read += count
        return count

    def clear(self) -> None:
        """Consumer side: drop everything readable now."""
        self._read = self._written

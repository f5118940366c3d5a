"""A queue of audio waiting to be played into a line, taken a frame at a time (pure: arrays in, arrays out).

Keys pressed on the desktop phone and the /_sim DTMF and speech injected into a call both wait here until
their frames come.
"""

from __future__ import annotations

import numpy as np


class AudioQueue:
    """Clips queued one after another; ``take(count)`` gives the next ``count`` samples (zeros after the
    last clip), or None when nothing waits."""

    def __init__(self) -> None:
        self._clips: list[np.ndarray] = []

    def put(self, samples: np.ndarray) -> None:
        self._clips.append(np.asarray(samples, dtype=np.float32))

    @property
    def queued_samples(self) -> int:
        return sum(len(clip) for clip in self._clips)

    def take(self, count: int) -> np.ndarray | None:
        if not self._clips:
            return None
        out = np.zeros(count, dtype=np.float32)
        filled = 0
        while self._clips and filled < count:
            head = self._clips[0]
            take = min(count - filled, len(head))
            out[filled : filled + take] = head[:take]
            filled += take
            if take == len(head):
                self._clips.pop(0)
            else:
                self._clips[0] = head[take:]
        return out

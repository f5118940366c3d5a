"""The call recorder: a WAV streamed to disk while the call runs, never the whole call in memory.

Dual channel (the default): channel 1 (left) is what the platform played, channel 2 (right) is the callee;
the two are written frame by frame from the same call-time frames, so they are aligned to the sample.
Mono: the two sides mixed (summed, as a conference bridge does, then clipped). 16-bit PCM.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile

Channels = Literal["dual", "mono"]


class CallRecorder:
    """Writes a call's audio to ``path`` as it happens; a context manager, and ``close()`` twice is safe."""

    def __init__(self, path: str | os.PathLike[str], rate_hz: int, channels: Channels = "dual") -> None:
        if channels not in ("dual", "mono"):
            raise ValueError(f"recording_channels must be 'dual' or 'mono', got {channels!r}")
        self.path = Path(path)
        self.rate_hz = int(rate_hz)
        self.channels = channels
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = soundfile.SoundFile(
            self.path, mode="w", samplerate=self.rate_hz, channels=2 if channels == "dual" else 1, subtype="PCM_16", format="WAV"
        )
        self.frames_written = 0

    @property
    def duration_s(self) -> float:
        return self.frames_written / self.rate_hz

    def write(self, platform: np.ndarray, callee: np.ndarray) -> None:
        """Append one frame of each side (float32 at ``rate_hz``); the shorter is padded with silence."""
        a = np.asarray(platform, dtype=np.float32).reshape(-1)
        b = np.asarray(callee, dtype=np.float32).reshape(-1)
        length = max(len(a), len(b))
        if length == 0:
            return
        if len(a) < length:
            a = np.pad(a, (0, length - len(a)))
        if len(b) < length:
            b = np.pad(b, (0, length - len(b)))
        if self.channels == "dual":
            block = np.stack([a, b], axis=1)
        else:
            block = (a + b)[:, None]
        self._file.write(np.clip(block, -1.0, 32767 / 32768))
        self.frames_written += length

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> CallRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

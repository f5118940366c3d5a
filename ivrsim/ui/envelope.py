"""The waveform's min/max envelope: a recording reduced to ``columns`` (min, max) pairs per channel.

The dashboard draws recordings on a canvas from this, never from the raw WAV in the browser (a 10-minute
dual recording is 19 MB of samples; its envelope at 2,000 columns is 8,000 numbers). The WAV is read by
soundfile in blocks of ``BLOCK_FRAMES`` as int16, so memory stays bounded whatever the recording's length;
each block is reduced with ``np.minimum.reduceat`` / ``np.maximum.reduceat`` over the column edges it
holds, and a column that spans two blocks is merged. Channel 1 (left) is the platform, channel 2 (right)
the callee (ivrsim/engine/recorder.py); a mono recording is one lane, the mix.

Pure computation on a file: no FastAPI here (the route is ivrsim/ui/waveform_routes.py).
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

#: Columns when the request names none: about a 1280-pixel canvas at HiDPI.
DEFAULT_COLUMNS = 2000
MIN_COLUMNS = 10
MAX_COLUMNS = 8000
#: Frames read per block: 2^18 frames of dual int16 are 1 MB.
BLOCK_FRAMES = 1 << 18
#: Digits the JSON's numbers are rounded to.
ROUND_DIGITS = 4
#: Lane names by channel count: channel 1 is the platform, channel 2 the callee.
LANE_NAMES = {1: ("mix",), 2: ("platform", "callee")}


@dataclass(frozen=True)
class Lane:
    """One channel's envelope: ``min[i]`` and ``max[i]`` of column ``i``, in [-1, 1]."""

    name: str
    min: np.ndarray
    max: np.ndarray


@dataclass(frozen=True)
class Envelope:
    """A recording's envelope; ``columns`` may be fewer than asked when the recording has fewer samples."""

    rate_hz: int
    frames: int
    columns: int
    lanes: tuple[Lane, ...]

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate_hz if self.rate_hz else 0.0

    def document(self, answered_s: float | None) -> dict[str, Any]:
        """The JSON the page reads: numbers rounded to ``ROUND_DIGITS`` digits."""
        return {
            "rate_hz": self.rate_hz,
            "duration_s": round(self.duration_s, ROUND_DIGITS),
            "answered_s": None if answered_s is None else round(answered_s, ROUND_DIGITS),
            "columns": self.columns,
            "lanes": [
                {"name": lane.name, "min": _rounded(lane.min), "max": _rounded(lane.max)}
                for lane in self.lanes
            ],
        }


def _rounded(values: np.ndarray) -> list[float]:
    """Rounded in float64: a float32's own digits would print as 0.12340000271797180 (longer JSON, slower)."""
    return np.round(values.astype(np.float64), ROUND_DIGITS).tolist()


def column_edges(frames: int, columns: int) -> np.ndarray:
    """``columns + 1`` frame indices: column ``i`` holds frames ``edges[i]:edges[i+1]`` (never empty when
    ``columns <= frames``)."""
    return (np.arange(columns + 1, dtype=np.int64) * frames) // columns


def compute_envelope(path: str | os.PathLike[str], columns: int = DEFAULT_COLUMNS, block_frames: int = BLOCK_FRAMES) -> Envelope:
    """The min/max envelope of the WAV at ``path`` at ``columns`` columns (clamped to [MIN_COLUMNS,
    MAX_COLUMNS] and to the number of frames), read in blocks of ``block_frames``."""
    columns = max(MIN_COLUMNS, min(MAX_COLUMNS, int(columns)))
    with soundfile.SoundFile(str(path)) as wav:
        rate_hz, frames, channels = int(wav.samplerate), int(wav.frames), int(wav.channels)
        names = LANE_NAMES.get(channels, tuple(f"channel {i + 1}" for i in range(channels)))
        columns = min(columns, frames)
        if columns == 0:
            empty = np.zeros(0, dtype=np.float32)
            return Envelope(rate_hz, frames, 0, tuple(Lane(name, empty, empty) for name in names))
        edges = column_edges(frames, columns)
        low = np.full((columns, channels), np.iinfo(np.int16).max, dtype=np.int16)
        high = np.full((columns, channels), np.iinfo(np.int16).min, dtype=np.int16)
        start = 0
        for block in wav.blocks(blocksize=block_frames, dtype="int16", always_2d=True):
            end = start + len(block)
            first = int(np.searchsorted(edges, start, side="right")) - 1  # the column holding the block's first frame
            last = int(np.searchsorted(edges, end, side="left"))  # one past the column holding its last frame
            starts = np.concatenate(([start], edges[first + 1 : last])) - start
            segment = slice(first, first + len(starts))
            np.minimum(low[segment], np.minimum.reduceat(block, starts, axis=0), out=low[segment])
            np.maximum(high[segment], np.maximum.reduceat(block, starts, axis=0), out=high[segment])
            start = end
    scale = np.float32(1.0 / 32768.0)
    return Envelope(
        rate_hz, frames, columns,
        tuple(Lane(name, low[:, i].astype(np.float32) * scale, high[:, i].astype(np.float32) * scale) for i, name in enumerate(names)),
    )


class EnvelopeCache:
    """Envelope documents (JSON bytes) kept per (recording file, its mtime and size, columns, answered_s):
    a file written again is read again. Bounded to ``max_entries`` (least recently used goes first);
    safe across threads. Repeat requests then cost a dictionary look-up, not a read and a JSON encoding."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int, int, int, float | None], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def document_json(self, path: str | os.PathLike[str], columns: int = DEFAULT_COLUMNS, answered_s: float | None = None) -> bytes:
        """The envelope's JSON document, computed on a miss (call it off the event loop: a miss reads the file)."""
        stat = Path(path).stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size, int(columns), answered_s)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                return cached
        body = json.dumps(compute_envelope(path, columns).document(answered_s), separators=(",", ":")).encode()
        with self._lock:
            self._entries[key] = body
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return body

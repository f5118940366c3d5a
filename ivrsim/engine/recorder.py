"""The call recorder: a WAV streamed to disk while the call runs, never the whole call in memory.

Dual channel (the default): channel 1 (left) is what the platform played, channel 2 (right) is the callee;
the two are written frame by frame from the same call-time frames, so they are aligned to the sample.
Mono: the two sides mixed (summed, as a conference bridge does, then clipped). 16-bit PCM.

Frames are gathered into blocks of ``BLOCK_S`` before each write: libsndfile's per-call cost is larger than
a 20 ms frame's worth of work, and half a second is all a crash can lose. After a crash the header still says
0 data bytes (libsndfile writes the sizes on close): ``repair_wav`` sets them from the file's size.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import struct
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile

Channels = Literal["dual", "mono"]

#: Audio gathered before each write to disk, in seconds.
BLOCK_S = 0.5


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
        self._pending: list[np.ndarray] = []
        self._pending_frames = 0
        self._block_frames = int(BLOCK_S * self.rate_hz)

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
        self._pending.append(block)
        self._pending_frames += length
        self.frames_written += length
        if self._pending_frames >= self._block_frames:
            self.flush()

    def flush(self) -> None:
        """Write what is gathered to disk now."""
        if self._pending and not self._file.closed:
            self._file.write(np.clip(np.concatenate(self._pending), -1.0, 32767 / 32768))
            self._pending = []
            self._pending_frames = 0

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()

    def __enter__(self) -> CallRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: The bytes of a ``fmt `` chunk that repair reads: format, channels, rate, byte rate, block align.
_FMT_BYTES = 14


def detach_file(path: str | os.PathLike[str]) -> None:
    """Replace ``path`` by a copy of itself: a process that still holds the old file open writes to a file
    no one will read (the name now points at the copy)."""
    path = Path(path)
    if not path.exists():
        return
    copy = path.with_name(f".{path.name}.detached")
    shutil.copyfile(path, copy)
    os.replace(copy, path)


def repair_wav(path: str | os.PathLike[str]) -> float:
    """Make the RIFF and ``data`` sizes of a WAV left open by a crash match the audio written (whole
    frames; a torn last frame is cut); returns its duration in seconds. The audio is kept as written.
    Raises ValueError (never anything else for bad content) when the file is not a PCM WAV or its header
    is cut short."""
    with open(path, "r+b") as handle:
        riff = handle.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            raise ValueError(f"{path} is not a WAV file")
        size = os.fstat(handle.fileno()).st_size
        block_align = rate_hz = None
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"fmt ":
                fmt = handle.read(min(chunk_size, 16))
                if chunk_size < _FMT_BYTES or len(fmt) < _FMT_BYTES:  # a header cut short: nothing to trust
                    raise ValueError(f"{path} has a format chunk of {min(chunk_size, len(fmt))} bytes (a WAV needs {_FMT_BYTES} or more)")
                _, _, rate_hz, _, block_align = struct.unpack("<HHIIH", fmt[:_FMT_BYTES])
            elif chunk_id == b"data":
                if block_align is None or rate_hz is None:
                    raise ValueError(f"{path} has its data before its format")
                if not block_align or not rate_hz:
                    raise ValueError(f"{path} has a format chunk with a sample rate or block size of 0")
                data_bytes = (size - offset - 8) // block_align * block_align
                handle.truncate(offset + 8 + data_bytes)
                handle.seek(offset + 4)
                handle.write(struct.pack("<I", data_bytes))
                handle.seek(4)
                handle.write(struct.pack("<I", offset + 8 + data_bytes - 8))
                return data_bytes / block_align / rate_hz
            offset += 8 + chunk_size + (chunk_size & 1)
        raise ValueError(f"{path} has no data chunk")


#: Where the API serves a recording (``{public_url}{RECORDINGS_PATH}/{id}.wav``).
RECORDINGS_PATH = "/v1/voice/recordings"


def recording_url(public_url: str | None, recording_id: str) -> str:
    return f"{public_url or ''}{RECORDINGS_PATH}/{recording_id}.wav"


def recording_id_for(call_id: str, seed: int | None) -> str:
    """The call's recording id: derived from the call id and the seed when there is one, so that a worker
    process gives the same id as this one; random otherwise."""
    if seed is None:
        return f"rec_{secrets.token_hex(10)}"
    return f"rec_{hashlib.blake2b(f'{seed}:{call_id}'.encode(), digest_size=10).hexdigest()}"

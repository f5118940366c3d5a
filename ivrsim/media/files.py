"""Audio files on disk: read any format libsndfile knows (WAV, FLAC, OGG, MP3), write by extension.

Every failure becomes an ``AudioFileError`` that names the file and the problem.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from ivrsim.exceptions import AudioFileError
from ivrsim.media.sniff import HEAD_BYTES, may_be_mpeg

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioClip:
    """Decoded audio: ``samples`` float32 (frames, channels) in [-1, 1], at ``rate_hz``."""

    samples: np.ndarray
    rate_hz: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate_hz


def read_audio_file(path: str | os.PathLike[str]) -> AudioClip:
    """Read a whole audio file; raises AudioFileError naming the file and what is wrong with it."""
    name = os.fspath(path)
    file = Path(name)
    if not file.exists():
        raise AudioFileError(name, "no such file")
    if file.is_dir():
        raise AudioFileError(name, "is a directory, not an audio file")
    if file.stat().st_size == 0:
        raise AudioFileError(name, "is empty (0 bytes)")
    try:
        with file.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
        with quiet_c_stderr() if may_be_mpeg(head) else contextlib.nullcontext():  # only libmpg123 prints
            samples, rate_hz = soundfile.read(name, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as error:
        raise AudioFileError(name, f"not a readable audio file ({error.error_string})") from error
    except (RuntimeError, ValueError, OSError) as error:
        raise AudioFileError(name, f"not a readable audio file ({error})") from error
    if len(samples) == 0:
        raise AudioFileError(name, "contains no audio (0 frames)")
    return AudioClip(samples=samples, rate_hz=int(rate_hz))


def write_audio_file(path: str | os.PathLike[str], samples: np.ndarray, rate_hz: int) -> None:
    """Write float audio (frames[, channels]) as 16-bit PCM; the format follows the extension
    (.wav, .flac, .ogg, .mp3 and the others libsndfile knows)."""
    name = os.fspath(path)
    extension = Path(name).suffix.lower().lstrip(".")
    known = {k.lower() for k in soundfile.available_formats()}
    if extension not in known:
        raise AudioFileError(name, f"unknown audio format {extension!r}: use .wav, .flac, .ogg or .mp3")
    subtype = "PCM_16" if extension in {"wav", "flac", "aiff", "aif", "au", "w64", "caf"} else None
    try:
        soundfile.write(name, np.asarray(samples, dtype=np.float32), int(rate_hz), subtype=subtype)
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as error:
        raise AudioFileError(name, f"cannot be written ({error})") from error


class _CStderrSink:
    """A temporary file that C's ``stderr`` points at while an MP3 decodes, opened once and never closed.

    C's ``stderr`` is one pointer for the whole process, so this is process-wide by nature. The sink stays
    open for the life of the process: a C write that picked up the pointer just before it was put back
    lands in a file that still exists (closing it would free memory another thread may still write to).
    Between swaps it is read and emptied under the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._opened = False
        self._libc: ctypes.CDLL | None = None
        self._stream: ctypes.c_void_p | None = None  # C's ``stderr`` variable
        self._sink: int | None = None  # the FILE* of the temporary file

    def _open(self) -> None:
        """Find C's ``stderr`` and open the sink, once; where either fails (not glibc), decodes run as is."""
        self._opened = True
        try:
            libc = ctypes.CDLL(None)
            stream = ctypes.c_void_p.in_dll(libc, "stderr")
            libc.tmpfile.restype = ctypes.c_void_p
            for name in ("fflush", "rewind", "fileno"):
                getattr(libc, name).argtypes = [ctypes.c_void_p]
            libc.fread.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p]
            libc.fread.restype = ctypes.c_size_t
            sink = libc.tmpfile()
        except (OSError, ValueError, AttributeError):
            return
        if sink:
            self._libc, self._stream, self._sink = libc, stream, sink

    def _drain(self) -> bytes:
        """What C printed into the sink since the last drain; leaves it empty. Called with the lock held."""
        assert self._libc is not None and self._sink is not None
        libc, sink = self._libc, self._sink
        libc.fflush(sink)
        libc.rewind(sink)
        buffer = ctypes.create_string_buffer(2048)
        count = libc.fread(buffer, 1, len(buffer), sink)
        with contextlib.suppress(OSError):
            os.ftruncate(libc.fileno(sink), 0)
        libc.rewind(sink)
        return buffer.raw[:count]

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        with self._lock:
            if not self._opened:
                self._open()
            if self._stream is None or self._sink is None:
                yield
                return
            original = self._stream.value
            self._stream.value = self._sink
            try:
                yield
            finally:
                self._stream.value = original
                notes = self._drain()
        if notes:
            logger.debug("decoder notes: %s", notes.decode("utf-8", "replace").strip())


_C_STDERR = _CStderrSink()


def quiet_c_stderr() -> contextlib.AbstractContextManager[None]:
    """Send what C code prints to ``stderr`` meanwhile (libmpg123, inside libsndfile, prints notes such as
    "Xing stream size off" with no way to turn them off) to the debug log instead of the terminal.

    Python's own writes go to file descriptor 2 and are untouched: only the C library's ``stderr``
    stream is swapped, for as long as the decode runs. Decodes under it run one at a time, so use it only
    around decodes that may reach libmpg123 (``ivrsim.media.sniff``)."""
    return _C_STDERR.quiet()

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
        with quiet_c_stderr():
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


_C_STDERR_LOCK = threading.Lock()  # guards the process-wide C ``stderr`` while it is swapped


@contextlib.contextmanager
def quiet_c_stderr() -> Iterator[None]:
    """Send what C code prints to ``stderr`` meanwhile (libmpg123, inside libsndfile, prints notes such as
    "Xing stream size off" with no way to turn them off) to the debug log instead of the terminal.

    Python's own writes go to file descriptor 2 and are untouched: only the C library's ``stderr``
    stream is swapped, for as long as the decode runs. Where that stream cannot be found (not glibc), the
    decode runs as is."""
    try:
        libc = ctypes.CDLL(None)
        c_stderr = ctypes.c_void_p.in_dll(libc, "stderr")
        libc.tmpfile.restype = ctypes.c_void_p
        for name in ("fflush", "fclose", "rewind"):
            getattr(libc, name).argtypes = [ctypes.c_void_p]
        libc.fread.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p]
        libc.fread.restype = ctypes.c_size_t
    except (OSError, ValueError, AttributeError):
        yield
        return
    with _C_STDERR_LOCK:
        sink = libc.tmpfile()
        if not sink:
            yield
            return
        original = c_stderr.value
        c_stderr.value = sink
        try:
            yield
        finally:
            c_stderr.value = original
            libc.fflush(sink)
            libc.rewind(sink)
            buffer = ctypes.create_string_buffer(2048)
            count = libc.fread(buffer, 1, len(buffer), sink)
            libc.fclose(sink)
            if count:
                logger.debug("decoder notes: %s", buffer.raw[:count].decode("utf-8", "replace").strip())

"""Audio files on disk: read any format libsndfile knows (WAV, FLAC, OGG, MP3), write by extension.

Every failure becomes an ``AudioFileError`` that names the file and the problem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from ivrsim.exceptions import AudioFileError


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

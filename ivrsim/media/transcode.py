"""Recordings in other containers: the WAV a call recorded, as MP3 (the format of the hosted API's example
URL), converted by soundfile (libsndfile with LAME; no ffmpeg) and cached beside the WAV."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import soundfile as sf

#: Frames converted per block: bounds memory for recordings of hours.
BLOCK_FRAMES = 65_536


def wav_to_mp3(wav: Path, mp3: Path) -> Path:
    """Write ``mp3`` from ``wav`` through a temporary file, so no reader ever sees a half-written MP3."""
    with sf.SoundFile(wav) as source:
        handle, temporary = tempfile.mkstemp(prefix=f".{mp3.stem}.", suffix=".mp3", dir=mp3.parent)
        os.close(handle)
        try:
            with sf.SoundFile(temporary, "w", samplerate=source.samplerate, channels=source.channels, format="MP3", subtype="MPEG_LAYER_III") as target:
                for block in source.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
                    target.write(block)
            os.replace(temporary, mp3)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return mp3


async def mp3_beside(wav: Path) -> Path:
    """The MP3 beside ``wav`` (same name, ``.mp3``), made on a worker thread when missing or older than the
    WAV. Two first requests at once may both convert; the atomic rename keeps the file whole either way."""
    mp3 = wav.with_suffix(".mp3")
    try:
        if mp3.stat().st_mtime_ns >= wav.stat().st_mtime_ns:
            return mp3
    except FileNotFoundError:
        pass
    return await asyncio.to_thread(wav_to_mp3, wav, mp3)

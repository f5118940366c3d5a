"""Recordings in other containers: the WAV a call recorded, as MP3 (the format of the hosted API's example
URL), converted by soundfile (libsndfile with LAME; no ffmpeg) and cached beside the WAV."""

from __future__ import annotations

import asyncio
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
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


class Mp3Transcoder:
    """MP3s beside recordings' WAVs, made on a one-thread pool of its own (``ivrsim-mp3``), never asyncio's
    default pool (which TTS and file reads share), and once per recording: requests that arrive while a
    recording is being encoded wait for that encode instead of starting their own. One per app; use it
    from one event loop.

    The pool exists only while there is work: its thread ends when the last encode does, so nothing
    outlives the server and the app needs no shutdown hook."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: dict[Path, asyncio.Future[Path]] = {}
        #: Encodes started since this transcoder was made (cached MP3s and joined requests start none).
        self.encodes_started = 0

    async def mp3_beside(self, wav: Path) -> Path:
        """The MP3 beside ``wav`` (same name, ``.mp3``), encoded when missing or older than the WAV."""
        mp3 = wav.with_suffix(".mp3")
        try:
            if mp3.stat().st_mtime_ns >= wav.stat().st_mtime_ns:
                return mp3
        except FileNotFoundError:
            pass
        future = self._inflight.get(wav)
        if future is None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ivrsim-mp3")
            future = asyncio.wrap_future(self._executor.submit(wav_to_mp3, wav, mp3))
            self.encodes_started += 1
            self._inflight[wav] = future
            future.add_done_callback(lambda _: self._finished(wav))
        # shielded: a client that goes away cancels its own wait, not the encode others are waiting for
        return await asyncio.shield(future)

    def _finished(self, wav: Path) -> None:
        del self._inflight[wav]
        if not self._inflight and self._executor is not None:
            self._executor.shutdown(wait=False)  # idle: let the thread end; the next encode makes a new one
            self._executor = None

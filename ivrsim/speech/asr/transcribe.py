"""Transcripts of whole recordings: per channel (``platform`` = left, ``callee`` = right), VAD segments
decoded and merged in time order. The shape ``Transcript.as_dict()`` is what the recording API serves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ivrsim.media.files import read_audio_file
from ivrsim.speech.asr.base import Segment, SpeechEngine

#: Channel names of a dual-channel call recording (DESIGN.md: left = platform, right = callee).
CHANNEL_NAMES = ("platform", "callee")


@dataclass(frozen=True)
class Transcript:
    """A whole recording: ``text`` is every segment in time order; ``confidence`` the mean word confidence."""

    text: str
    confidence: float
    segments: tuple[Segment, ...]
    engine: str
    model: str
    language: str
    duration_s: float = field(default=0.0, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "confidence": self.confidence,
            "segments": [
                {"channel": s.channel, "start": s.start, "end": s.end, "text": s.text, "confidence": s.confidence}
                for s in self.segments
            ],
            "engine": self.engine,
            "model": self.model,
            "language": self.language,
        }


def transcribe_signal(
    samples: np.ndarray,
    rate_hz: int,
    engine: SpeechEngine,
    channel_names: Sequence[str] = CHANNEL_NAMES,
    hints: Sequence[str] | None = None,
    channel_hints: Sequence[Sequence[str] | None] | None = None,
) -> Transcript:
    """Transcribe a mono (N,) or multi-channel (N, channels) signal, each channel on its own; with
    ``hints`` for every channel, or ``channel_hints`` for each (None: free transcription)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"samples must be (N,) or (N, channels), got shape {x.shape}")
    segments: list[Segment] = []
    for index in range(x.shape[1]):
        name = channel_names[index] if index < len(channel_names) else f"channel{index + 1}"
        if not len(x):
            continue
        own_hints = channel_hints[index] if channel_hints is not None and index < len(channel_hints) else hints
        for result in engine.transcribe(x[:, index], rate_hz, own_hints, repeat=True):  # a transcript is any sequence of the hints
            segments.append(Segment(name, result.start_s, result.end_s, result.text, result.confidence, result.words))
    segments.sort(key=lambda s: (s.start, s.channel))
    words = [w for s in segments for w in s.words]
    confidence = round(float(np.mean([w.confidence for w in words])), 4) if words else 0.0
    info = engine.info
    return Transcript(
        text=" ".join(s.text for s in segments),
        confidence=confidence,
        segments=tuple(segments),
        engine=info.engine,
        model=info.model,
        language=info.language,
        duration_s=len(x) / rate_hz if rate_hz else 0.0,
    )


def transcribe_file(
    path: Path | str,
    engine: SpeechEngine,
    channel_names: Sequence[str] = CHANNEL_NAMES,
    hints: Sequence[str] | None = None,
) -> Transcript:
    """Transcribe an audio file at its own rate, channels kept (stereo call recordings per party);
    ``AudioFileError`` names a file that cannot be read."""
    clip = read_audio_file(path)
    return transcribe_signal(clip.samples, clip.rate_hz, engine, channel_names, hints)

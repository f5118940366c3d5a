"""Speech recognition, the one interface: stream audio in, get partial and final results with word timings
and confidences; or transcribe a whole signal. Every result names the engine, the model and the language
that made it (DESIGN.md, "Engines that need data").

Audio in is float32 in [-1, 1] at any rate (telephone audio is 8 kHz); an engine resamples to what its model
wants. Times are seconds from the first sample the stream was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from ivrsim.exceptions import IvrsimError


class AsrError(IvrsimError):
    """Speech recognition that cannot be done; the message names the input and the fix."""

    code = "asr_error"


class NoSpeechModelError(AsrError):
    """No engine has a model for the language asked for; the message says which command installs one."""

    code = "no_speech_model"


class SpeechModelError(AsrError):
    """A model folder that is missing, incomplete or corrupt; the message names the folder and the fix."""

    code = "speech_model_error"


@dataclass(frozen=True)
class Word:
    """One recognised word: ``start_s`` / ``end_s`` from the start of the stream, ``confidence`` in [0, 1]."""

    text: str
    start_s: float
    end_s: float
    confidence: float


@dataclass(frozen=True)
class Recognition:
    """What an engine heard: a partial result (may change) or a final one (an utterance, never changes).

    ``confidence`` is the mean word confidence (0.0 when there are no words); ``start_s`` / ``end_s`` span
    the words (for a partial, the audio heard so far of the utterance)."""

    text: str
    final: bool
    engine: str
    model: str
    language: str
    words: tuple[Word, ...] = ()
    confidence: float = 0.0
    start_s: float = 0.0
    end_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["words"] = [asdict(word) for word in self.words]
        return document


@dataclass(frozen=True)
class EngineInfo:
    """Which engine, model and language: stated in every result and event."""

    engine: str
    model: str
    language: str


class RecognizerStream(Protocol):
    """One stream of audio (one channel of one call). Not thread-safe: one stream, one thread at a time."""

    info: EngineInfo
    rate_hz: int

    @property
    def in_speech(self) -> bool:
        """Whether voice activity detection hears someone speaking now (barge-in)."""

    def accept(self, samples: np.ndarray) -> list[Recognition]:
        """Feed the next samples (at ``rate_hz``); returns the results they produced (partials that
        changed, and finals), in order."""

    def finish(self) -> list[Recognition]:
        """The end of the audio: the last final result, if anything was still being heard."""

    def close(self) -> None:
        """Give back what the stream holds (its recognizer), without a result: it is not needed any more."""


class SpeechEngine(Protocol):
    """An engine with its model loaded (loading is done once per process: ``ivrsim.speech.asr.engines``)."""

    info: EngineInfo

    def stream(
        self, rate_hz: int, hints: Sequence[str] | None = None, end_silence_s: float = 0.8, partials: bool = True, repeat: bool = False
    ) -> RecognizerStream:
        """A new VAD-gated stream; with ``hints``, only those phrases (grammar mode; an utterance is one
        phrase, or with ``repeat`` any sequence of them: a closed vocabulary). An utterance ends (a final
        result) after ``end_silence_s`` of silence; ``partials=False`` skips partial results."""

    def transcribe(self, samples: np.ndarray, rate_hz: int, hints: Sequence[str] | None = None, repeat: bool = False) -> list[Recognition]:
        """The final results of a whole signal, in time order."""


@dataclass(frozen=True)
class Segment:
    """One utterance of a transcript: its channel's party (``platform`` / ``callee``), times in seconds
    from the start of the recording, its text and mean word confidence."""

    channel: str
    start: float
    end: float
    text: str
    confidence: float
    words: tuple[Word, ...] = field(default=(), compare=False)

"""A recognizer stream gated by voice activity: only speech is decoded, one decoder per utterance.

Shared by both engines: the engine supplies an ``UtteranceDecoder`` (Vosk's recognizer, a pooled
pocketsphinx decoder); this class does the framing, the VAD, the pre-roll, partial pacing, the end of an
utterance after ``end_silence_s`` of silence, and stream times (seconds from the stream's first sample).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import numpy as np

from ivrsim.speech.asr.base import EngineInfo, Recognition, Word
from ivrsim.speech.asr.vad import VadSettings, VoiceActivityDetector

#: Longest utterance decoded as one; longer speech is cut into several finals (bounds memory and latency).
MAX_UTTERANCE_S = 30.0
#: Partials are asked of the decoder at most this often, in seconds of audio.
PARTIAL_INTERVAL_S = 0.25


class UtteranceDecoder(Protocol):
    """Decodes one utterance; times are seconds from the first sample given to ``accept``."""

    def accept(self, samples: np.ndarray) -> None: ...

    def partial(self) -> str: ...

    def final(self) -> list[Word]: ...

    def close(self) -> None: ...


def mono_float32(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim > 1:
        x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    return x.reshape(-1)


class GatedStream:
    """A ``RecognizerStream``: feed audio with ``accept``; finals come ``end_silence_s`` after speech ends."""

    def __init__(
        self,
        info: EngineInfo,
        rate_hz: int,
        open_decoder: Callable[[], UtteranceDecoder],
        end_silence_s: float = 0.8,
        vad_settings: VadSettings | None = None,
        partial_interval_s: float = PARTIAL_INTERVAL_S,
        max_utterance_s: float = MAX_UTTERANCE_S,
        partials: bool = True,
    ) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.info = info
        self.rate_hz = int(rate_hz)
        settings = vad_settings or VadSettings()
        if end_silence_s != settings.end_silence_s:
            settings = replace(settings, end_silence_s=end_silence_s)
        self._vad = VoiceActivityDetector(self.rate_hz, settings)
        self._open_decoder = open_decoder
        self._partials = partials
        self._partial_interval_n = max(1, round(partial_interval_s * self.rate_hz))
        self._max_utterance_n = max(1, round(max_utterance_s * self.rate_hz))
        frame_len = self._vad.frame_len
        keep_frames = int(np.ceil((settings.pre_roll_s + settings.start_s) / self._vad.frame_s)) + 2
        self._history: deque[np.ndarray] = deque(maxlen=keep_frames)
        self._history_start_n = 0  # stream index of the first sample in _history
        self._pending = np.zeros(0, dtype=np.float32)
        self._seen_n = 0  # samples framed so far
        self._pre_roll_n = round(settings.pre_roll_s * self.rate_hz)
        self._frame_len = frame_len
        self._decoder: UtteranceDecoder | None = None
        self._utterance_start_n = 0
        self._utterance_n = 0
        self._since_partial_n = 0
        self._last_partial = ""
        self._reopen = False

    @property
    def in_speech(self) -> bool:
        """Whether the VAD hears someone speaking now (for barge-in)."""
        return self._vad.in_speech

    def accept(self, samples: np.ndarray) -> list[Recognition]:
        x = mono_float32(samples)
        if len(self._pending):
            x = np.concatenate([self._pending, x])
        results: list[Recognition] = []
        whole = len(x) - len(x) % self._frame_len
        for begin in range(0, whole, self._frame_len):
            self._frame(x[begin : begin + self._frame_len], results)
        self._pending = x[whole:].copy()
        return results

    def finish(self) -> list[Recognition]:
        results: list[Recognition] = []
        if self._decoder is not None and len(self._pending):
            self._decoder.accept(self._pending)
        self._pending = np.zeros(0, dtype=np.float32)
        self._vad.finish()
        self._final(results)
        return results

    def close(self) -> None:
        """Give the decoder back without a result (a stream abandoned mid-utterance)."""
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None

    def _frame(self, frame: np.ndarray, results: list[Recognition]) -> None:
        frame_start_n = self._seen_n
        if len(self._history) == self._history.maxlen:
            self._history_start_n += self._frame_len
        self._history.append(frame)
        self._seen_n += self._frame_len
        event = self._vad.process_frame(frame)
        if event is not None and event.kind == "start" and self._decoder is None:
            speech_start_n = round(event.start_s * self.rate_hz)
            first_n = max(self._history_start_n, speech_start_n - self._pre_roll_n)
            audio = np.concatenate(list(self._history))[first_n - self._history_start_n :]
            self._open(first_n)
            self._feed(audio, results)
        elif self._decoder is None and self._reopen and self._vad.in_speech:
            self._open(frame_start_n)
            self._feed(frame, results)
        elif self._decoder is not None:
            self._feed(frame, results)
        if self._decoder is not None and (
            (event is not None and event.kind == "end") or self._utterance_n >= self._max_utterance_n
        ):
            self._reopen = self._vad.in_speech
            self._final(results)
        elif not self._vad.in_speech:
            self._reopen = False

    def _open(self, first_n: int) -> None:
        self._decoder = self._open_decoder()
        self._utterance_start_n = first_n
        self._utterance_n = 0
        self._since_partial_n = 0
        self._last_partial = ""

    def _feed(self, audio: np.ndarray, results: list[Recognition]) -> None:
        assert self._decoder is not None
        self._decoder.accept(audio)
        self._utterance_n += len(audio)
        self._since_partial_n += len(audio)
        if self._partials and self._since_partial_n >= self._partial_interval_n:
            self._since_partial_n = 0
            text = self._decoder.partial().strip()
            if text and text != self._last_partial:
                self._last_partial = text
                start_s = self._utterance_start_n / self.rate_hz
                end_s = (self._utterance_start_n + self._utterance_n) / self.rate_hz
                results.append(self._recognition(text, False, (), start_s, end_s))

    def _final(self, results: list[Recognition]) -> None:
        decoder, self._decoder = self._decoder, None
        if decoder is None:
            return
        try:
            words = decoder.final()
        finally:
            decoder.close()
        offset_s = self._utterance_start_n / self.rate_hz
        shifted = tuple(
            Word(w.text, round(w.start_s + offset_s, 3), round(w.end_s + offset_s, 3), w.confidence) for w in words
        )
        if shifted:
            text = " ".join(w.text for w in shifted)
            results.append(self._recognition(text, True, shifted, shifted[0].start_s, shifted[-1].end_s))

    def _recognition(
        self, text: str, final: bool, words: tuple[Word, ...], start_s: float, end_s: float
    ) -> Recognition:
        confidence = float(np.mean([w.confidence for w in words])) if words else 0.0
        return Recognition(
            text=text,
            final=final,
            engine=self.info.engine,
            model=self.info.model,
            language=self.info.language,
            words=words,
            confidence=round(confidence, 4),
            start_s=round(start_s, 3),
            end_s=round(end_s, 3),
        )

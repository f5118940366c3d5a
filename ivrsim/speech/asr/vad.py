"""Streaming voice-activity detection for telephone audio, frame by frame, pure numpy.

Why: decoding is the costly part of recognition (pocketsphinx runs ~2.5x faster than real time on free
speech), so only what this detector marks as speech is decoded; and a speech gather ends when the caller
has been silent for ``end_silence_s``.

A frame is *loud* when its energy is ``threshold_db`` above an adaptive noise floor (and above an absolute
minimum); it is *voiced* when it is loud and not noise-like (spectral flatness in the telephone band below
``noise_flatness``: white line noise is flat, vowels are not). Speech starts after ``start_s`` of voiced
frames; it ends after ``end_silence_s`` without a loud frame (the hangover). The noise floor falls at once
to quieter frames, rises quickly towards loud but noise-like frames outside speech, and only slowly during
speech. ``pre_roll_s`` is how much audio before the detected start a consumer should keep (the onset of
the first word, quieter than what triggered the detector).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Band where the flatness is measured, in Hz (the telephone band).
FLATNESS_BAND_HZ = (300.0, 3400.0)
_EPS = 1e-12


@dataclass(frozen=True)
class VadSettings:
    """Tuning of ``VoiceActivityDetector``; the defaults suit 8 kHz G.711 speech at 10 dB SNR or better."""

    frame_s: float = 0.02
    threshold_db: float = 10.0
    min_level_dbfs: float = -50.0
    noise_flatness: float = 0.45
    start_s: float = 0.06
    end_silence_s: float = 0.8
    pre_roll_s: float = 0.3
    initial_floor_dbfs: float = -60.0
    floor_rise_noise_s: float = 0.2
    floor_rise_quiet_s: float = 0.5
    floor_rise_speech_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0.005 <= self.frame_s <= 0.1:
            raise ValueError(f"frame_s must be within 0.005..0.1 s, got {self.frame_s}")
        if self.end_silence_s < self.frame_s or not math.isfinite(self.end_silence_s):
            raise ValueError(f"end_silence_s must be at least one frame ({self.frame_s} s), got {self.end_silence_s}")
        if self.start_s < 0 or self.pre_roll_s < 0:
            raise ValueError("start_s and pre_roll_s must not be negative")


@dataclass(frozen=True)
class VadEvent:
    """``kind`` "start" (``end_s`` None) or "end"; ``start_s`` / ``end_s`` are where the speech is, ``at_s``
    when the detector decided (later, by ``start_s`` or ``end_silence_s``). Seconds from the first sample."""

    kind: str
    at_s: float
    start_s: float
    end_s: float | None = None


def _alpha(frame_s: float, time_constant_s: float) -> float:
    return 1.0 if time_constant_s <= 0 else 1.0 - math.exp(-frame_s / time_constant_s)


class VoiceActivityDetector:
    """Feed samples of any length (``process``) or whole frames (``process_frame``); ``in_speech`` says
    whether someone is speaking now. Not thread-safe: one detector per channel."""

    def __init__(self, rate_hz: int, settings: VadSettings | None = None) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.rate_hz = int(rate_hz)
        self.settings = settings or VadSettings()
        self.frame_len = max(1, round(self.settings.frame_s * self.rate_hz))
        self.frame_s = self.frame_len / self.rate_hz
        self.noise_floor_dbfs = self.settings.initial_floor_dbfs
        self.in_speech = False
        self.speech_start_s: float | None = None
        self._frames = 0
        self._run = 0
        self._start_frames = max(1, round(self.settings.start_s / self.frame_s))
        self._silence_s = 0.0
        self._last_loud_end_s = 0.0
        self._pending = np.zeros(0, dtype=np.float32)
        self._window = np.hanning(self.frame_len).astype(np.float32)
        freqs = np.fft.rfftfreq(self.frame_len, 1.0 / self.rate_hz)
        band = (freqs >= FLATNESS_BAND_HZ[0]) & (freqs <= min(FLATNESS_BAND_HZ[1], self.rate_hz / 2))
        self._band = band if band.sum() >= 4 else freqs > 0
        self._a_down = _alpha(self.frame_s, 0.04)
        self._a_noise = _alpha(self.frame_s, self.settings.floor_rise_noise_s)
        self._a_quiet = _alpha(self.frame_s, self.settings.floor_rise_quiet_s)
        self._a_speech = _alpha(self.frame_s, self.settings.floor_rise_speech_s)

    @property
    def time_s(self) -> float:
        """Seconds of audio framed so far."""
        return self._frames * self.frame_s

    def features(self, frame: np.ndarray) -> tuple[float, float]:
        """(energy in dBFS, spectral flatness in [0, 1]) of one frame."""
        x = np.asarray(frame, dtype=np.float32)
        energy_dbfs = 10.0 * math.log10(float(np.mean(x * x)) + _EPS)
        if len(x) != self.frame_len:
            return energy_dbfs, 1.0
        power = np.abs(np.fft.rfft(x * self._window))[self._band] ** 2 + _EPS
        flatness = float(np.exp(np.mean(np.log(power))) / np.mean(power))
        return energy_dbfs, flatness

    def process_frame(self, frame: np.ndarray) -> VadEvent | None:
        """One frame of ``frame_len`` samples; returns the event it caused, if any."""
        s = self.settings
        energy, flatness = self.features(frame)
        self._frames += 1
        frame_end_s = self.time_s
        loud = energy > max(self.noise_floor_dbfs + s.threshold_db, s.min_level_dbfs)
        voiced = loud and flatness < s.noise_flatness
        event: VadEvent | None = None
        if not self.in_speech:
            self._run = self._run + 1 if voiced else 0
            if self._run >= self._start_frames:
                self.in_speech = True
                self.speech_start_s = frame_end_s - self._run * self.frame_s
                self._silence_s = 0.0
                self._last_loud_end_s = frame_end_s
                event = VadEvent("start", frame_end_s, self.speech_start_s)
        else:
            if loud:
                self._silence_s = 0.0
                self._last_loud_end_s = frame_end_s
            else:
                self._silence_s += self.frame_s
                if self._silence_s >= s.end_silence_s - 1e-9:
                    event = self._end(frame_end_s)
        # The adaptive noise floor.
        if energy < self.noise_floor_dbfs:
            self.noise_floor_dbfs += (energy - self.noise_floor_dbfs) * self._a_down
        elif not loud:
            self.noise_floor_dbfs += (energy - self.noise_floor_dbfs) * self._a_quiet
        elif not self.in_speech and not voiced:
            self.noise_floor_dbfs += (energy - self.noise_floor_dbfs) * self._a_noise
        else:
            self.noise_floor_dbfs += (energy - self.noise_floor_dbfs) * self._a_speech
        return event

    def _end(self, at_s: float) -> VadEvent:
        start = self.speech_start_s if self.speech_start_s is not None else 0.0
        self.in_speech = False
        self.speech_start_s = None
        self._run = 0
        return VadEvent("end", at_s, start, self._last_loud_end_s)

    def process(self, samples: np.ndarray) -> list[VadEvent]:
        """Samples of any length (mono float); a partial frame waits for the next call."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if len(self._pending):
            x = np.concatenate([self._pending, x])
        events: list[VadEvent] = []
        whole = len(x) - len(x) % self.frame_len
        for begin in range(0, whole, self.frame_len):
            event = self.process_frame(x[begin : begin + self.frame_len])
            if event is not None:
                events.append(event)
        self._pending = x[whole:].copy()
        return events

    def finish(self) -> list[VadEvent]:
        """The end of the audio: closes speech still open (its end is the last loud frame)."""
        self._pending = np.zeros(0, dtype=np.float32)
        return [self._end(self.time_s)] if self.in_speech else []


def speech_segments(samples: np.ndarray, rate_hz: int, settings: VadSettings | None = None) -> list[tuple[float, float]]:
    """(start_s, end_s) of each stretch of speech in a whole mono signal."""
    vad = VoiceActivityDetector(rate_hz, settings)
    events = vad.process(samples) + vad.finish()
    return [(e.start_s, e.end_s) for e in events if e.kind == "end" and e.end_s is not None]

"""Answering-machine detection: who picked up, from the callee's first seconds of audio.

Two streaming pieces, fed the callee's audio as the platform receives it (after the line), in frames of any
length:

``BeepDetector``
    finds a voicemail beep: one steady tone (400-2000 Hz is typical, the phonebook's machine beeps at
    1 kHz) lasting at least ``min_duration_s``. Every 10 ms it takes the spectrum of the last 20 ms (Hann
    window, zero-padded FFT) and asks three questions: is the block loud enough, is it *pure* (the main
    lobe around the strongest peak in the band carries ``min_purity`` of the block's power: speech spreads
    its power over many harmonics and formants, DTMF over two tones, so neither passes), and is the peak's
    frequency *stable* (within ``max_drift_hz`` of the run's own median). A run of such blocks lasting
    ``min_duration_s`` is a beep. Its start is then measured to a few milliseconds from the tone's
    envelope (complex demodulation at the measured frequency over the recent samples), not from the
    10 ms block grid.

``AnsweringMachineDetector``
    decides, as Twilio's ``AnsweredBy`` does, between ``human``, ``machine_start``, ``machine_end_beep`` and
    ``unknown``, from the length of the callee's first utterance (an energy VAD with an adaptive noise
    floor) and the beep detector. See its docstring for the thresholds and why.

Pure DSP: numpy arrays in, small dataclasses out, no I/O and no clock of its own (time is the number of
samples fed, so the virtual clock and faster-than-real-time runs give the same answers).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ivrsim.audio.goertzel import hann_window
from ivrsim.audio.levels import power_to_dbm0

#: The values ``AmdResult.answered_by`` takes (Twilio's ``AnsweredBy`` names).
ANSWERED_BY_VALUES = ("human", "machine_start", "machine_end_beep", "unknown")

#: Analysis hop of both detectors, in seconds: decisions and beep runs move in steps of this.
HOP_S = 0.010
#: Length of the beep detector's analysis block, in seconds (two hops: 50 Hz resolution, good time grid).
BLOCK_S = 0.020


# -- beep detector ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Beep:
    """A beep found: where it starts (seconds from the first sample fed), its frequency and level, and when
    the detector was sure (``confirmed_at_s``: the start plus at least ``min_duration_s``)."""

    start_s: float
    frequency_hz: float
    level_dbm0: float
    confirmed_at_s: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class BeepDetector:
    """Streaming detector of one steady single tone (a voicemail beep); see the module docstring.

    Args:
        rate_hz: sample rate of the audio fed.
        min_duration_s: how long the tone must last before it counts (shorter tones are ignored).
        band_hz: where the tone may be; the peak is searched only there.
        min_purity: share of the block's power in the main lobe of the peak (a clean tone through a
            G.711 line with 30 dB SNR scores 0.999; espeak-ng speech through the same line at most 0.94, DTMF
            at most 0.8: a tone must stand 15 dB above everything else in its block).
        max_drift_hz: how far each block's frequency may be from the run's median.
        min_level_dbm0: quieter blocks are not a beep (machines beep at -20 .. -5 dBm0).
    """

    def __init__(
        self,
        rate_hz: int,
        min_duration_s: float = 0.15,
        band_hz: tuple[float, float] = (350.0, 2100.0),
        min_purity: float = 0.97,
        max_drift_hz: float = 20.0,
        min_level_dbm0: float = -40.0,
    ) -> None:
        if rate_hz < 4000:
            raise ValueError(f"rate_hz must be at least 4000, got {rate_hz}")
        if not 0.0 < band_hz[0] < band_hz[1] <= rate_hz / 2:
            raise ValueError(f"band_hz must be (low, high) within 0 .. {rate_hz / 2:g} Hz, got {band_hz}")
        if not min_duration_s >= 2 * BLOCK_S:
            raise ValueError(f"min_duration_s must be at least {2 * BLOCK_S:g} s, got {min_duration_s}")
        self.rate_hz = int(rate_hz)
        self.min_duration_s = float(min_duration_s)
        self.min_purity = float(min_purity)
        self.max_drift_hz = float(max_drift_hz)
        self.min_level_dbm0 = float(min_level_dbm0)
        self.hop_samples = max(1, round(HOP_S * rate_hz))
        self.block_samples = 2 * self.hop_samples
        self._fft_size = 1 << math.ceil(math.log2(4 * self.block_samples))
        self._window = hann_window(self.block_samples).astype(np.float64)
        self._bin_hz = self.rate_hz / self._fft_size
        self._lo_bin = math.ceil(band_hz[0] / self._bin_hz)
        self._hi_bin = math.floor(band_hz[1] / self._bin_hz)
        # The Hann main lobe is +-2 bins of the unpadded block: +-2 * rate / block Hz; one bin more for leakage.
        self._lobe_bins = math.ceil(2.0 * self.rate_hz / self.block_samples / self._bin_hz) + 1
        self._min_run_hops = math.ceil(self.min_duration_s / HOP_S)
        # Recent samples for measuring the start of a tone: the run plus a margin on either side.
        self._history_samples = int((self.min_duration_s + 4 * BLOCK_S) * rate_hz) + self.block_samples
        self.reset()

    def reset(self) -> None:
        """Forget everything fed so far (time starts again at zero)."""
        self._pending = np.zeros(0, dtype=np.float64)
        self._tail = np.zeros(self.hop_samples, dtype=np.float64)  # the hop before the pending one
        self._hops = 0  # hops analysed; hop k's block ends at sample (k + 1) * hop_samples
        self._fed = 0  # samples fed
        self._history: deque[np.ndarray] = deque()
        self._history_len = 0
        self._run_first_hop: int | None = None
        self._run_freqs: list[float] = []
        self._run_levels: list[float] = []
        self._run_reported = False
        #: Every beep confirmed so far, in order.
        self.beeps: list[Beep] = []

    @property
    def time_s(self) -> float:
        """Seconds of audio analysed so far (whole hops)."""
        return self._hops * self.hop_samples / self.rate_hz

    def feed(self, samples: np.ndarray) -> Beep | None:
        """Analyse more audio; the beep confirmed in it, if any (each beep is reported once)."""
        found: Beep | None = None
        for hop, block in self._blocks(samples):
            beep = self._step(hop, block)
            if beep is not None and found is None:
                found = beep
        return found

    def _blocks(self, samples: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Complete hops in ``samples`` (with what was pending), each as (hop index, its 20 ms block)."""
        x = np.asarray(samples, dtype=np.float64).ravel()
        self._fed += x.size
        if x.size:
            self._history.append(x)
            self._history_len += x.size
            while self._history_len - len(self._history[0]) >= self._history_samples:
                self._history_len -= len(self._history.popleft())
        data = np.concatenate([self._pending, x]) if self._pending.size else x
        count = len(data) // self.hop_samples
        self._pending = data[count * self.hop_samples :].copy()
        if count == 0:
            return []
        hops = data[: count * self.hop_samples].reshape(count, self.hop_samples)
        previous = np.vstack([self._tail[None, :], hops[:-1]])
        self._tail = hops[-1].copy()
        blocks = np.hstack([previous, hops])
        first = self._hops
        self._hops += count
        return [(first + i, blocks[i]) for i in range(count)]

    def analyse(self, block: np.ndarray) -> tuple[float, float, float]:
        """(purity, peak frequency in Hz, level in dBm0) of one ``block_samples`` block."""
        level = power_to_dbm0(float(np.mean(block * block)))
        spectrum = np.fft.rfft(block * self._window, self._fft_size)
        power = spectrum.real**2 + spectrum.imag**2
        total = float(power.sum())
        if total <= 0.0:
            return 0.0, 0.0, level
        band = power[self._lo_bin : self._hi_bin + 1]
        peak = self._lo_bin + int(np.argmax(band))
        lobe = float(power[max(0, peak - self._lobe_bins) : peak + self._lobe_bins + 1].sum())
        # Parabolic interpolation of the log magnitude around the peak: a fraction of a bin.
        offset = 0.0
        if 0 < peak < len(power) - 1:
            a, b, c = (math.log(max(power[i], 1e-30)) for i in (peak - 1, peak, peak + 1))
            denominator = a - 2.0 * b + c
            if denominator < 0.0:
                offset = 0.5 * (a - c) / denominator
        return lobe / total, (peak + offset) * self._bin_hz, level

    def _step(self, hop: int, block: np.ndarray) -> Beep | None:
        purity, frequency, level = self.analyse(block)
        tonal = purity >= self.min_purity and level >= self.min_level_dbm0
        if tonal and self._run_first_hop is not None:
            median = float(np.median(self._run_freqs))
            if abs(frequency - median) > self.max_drift_hz:
                self._end_run()  # a different tone: start a new run from this block
        if not tonal:
            self._end_run()
            return None
        if self._run_first_hop is None:
            self._run_first_hop = hop
        self._run_freqs.append(frequency)
        self._run_levels.append(level)
        if self._run_reported or len(self._run_freqs) < self._min_run_hops:
            return None
        self._run_reported = True
        frequency_hz = float(np.median(self._run_freqs))
        confirmed_at_s = (hop + 1) * self.hop_samples / self.rate_hz
        start_s = self._measure_start(self._run_first_hop, hop, frequency_hz)
        level_dbm0 = float(np.median(self._run_levels))
        beep = Beep(round(start_s, 4), round(frequency_hz, 1), round(level_dbm0, 1), round(confirmed_at_s, 4))
        self.beeps.append(beep)
        return beep

    def _end_run(self) -> None:
        self._run_first_hop = None
        self._run_freqs = []
        self._run_levels = []
        self._run_reported = False

    def _measure_start(self, first_hop: int, hop: int, frequency_hz: float) -> float:
        """Where the tone starts, from its envelope: complex demodulation at ``frequency_hz`` and a 5 ms
        moving average; the start is the last point before the steady tone where the envelope was below
        half its steady value, less half the averaging length (the average's delay to half rise)."""
        end = (hop + 1) * self.hop_samples  # absolute index of the end of the confirming hop
        recent = np.concatenate(list(self._history)) if self._history else np.zeros(0)
        base = self._fed - len(recent)  # absolute index of recent[0]
        x = recent[: end - base]
        # The first tonal block begins at (first_hop - 1) * hop: the tone starts within it or a little after.
        block_start = (first_hop - 1) * self.hop_samples
        fallback = (block_start + self.hop_samples) / self.rate_hz
        average = max(2, round(0.005 * self.rate_hz))
        lo = max(block_start - self.block_samples, base)
        if end - lo < 4 * self.block_samples:
            return fallback
        n = np.arange(lo, end, dtype=np.float64)
        mixed = x[lo - base :] * np.exp(-2j * np.pi * frequency_hz * n / self.rate_hz)
        kernel = np.ones(average) / average
        envelope = np.abs(np.convolve(mixed, kernel, mode="full")[: len(mixed)])  # causal: delay average/2
        steady_from = block_start + 2 * self.block_samples - lo
        steady = float(np.median(envelope[steady_from:])) if steady_from < len(envelope) else 0.0
        if steady <= 0.0:
            return fallback
        below = np.flatnonzero(envelope[:steady_from] < 0.5 * steady)
        if below.size == 0:
            return (lo - average / 2) / self.rate_hz
        crossing = lo + int(below[-1]) + 1
        return max(0.0, (crossing - average / 2) / self.rate_hz)


# -- answering-machine detection --------------------------------------------------------------------------


@dataclass(frozen=True)
class AmdResult:
    """The decision: ``answered_by`` (one of ``ANSWERED_BY_VALUES``), when it was made (seconds of callee
    audio from the answer), where the beep started (for ``machine_end_beep``), how much speech the decision
    rests on (seconds, the first utterance, the beep not counted), and why, in words."""

    answered_by: str
    decided_at_s: float
    beep_at_s: float | None
    speech_s: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AnsweringMachineDetector:
    """Human or machine, from the callee's audio after the answer (Twilio's ``AnsweredBy``).

    The rules follow Twilio's AMD (the first utterance's length decides), with thresholds set for the
    faster default decision this simulator needs (``decision_s`` = 4 s rather than Twilio's 30 s
    ``MachineDetectionTimeout``):

    - ``machine_speech_s`` = 2.4 s, Twilio's ``MachineDetectionSpeechThreshold`` (2400 ms): speech going on
      that long without a pause of ``speech_end_s`` is a recorded greeting, not someone saying "hello?".
      People answer with 0.4-1.3 s ("hello", "yes, hello", "hi, who is this"); greetings run 3 s and more.
    - ``speech_end_s`` = 0.8 s: the silence that ends an utterance. Twilio's ``SpeechEndThreshold`` is
      1200 ms; 0.8 s answers a human 0.4 s sooner, and is still twice the longest pause inside a TTS
      greeting (0.35 s between sentences in espeak-ng), so a greeting stays one utterance. With 2.4 s of
      speech at most, 0.8 s of silence and a start within 0.8 s, every human is decided by the 4 s default.
    - ``decision_s`` = 4 s: with no speech by then (Twilio's ``MachineDetectionSilenceTimeout`` is 5000 ms,
      shortened to fit inside the decision time) or no decision, ``unknown``.
    - A beep (``BeepDetector``) heard before any other decision is ``machine_end_beep``.
    - ``wait_for_beep`` (Twilio's ``DetectMessageEnd``): once the greeting is known to be a machine, the
      decision waits for the beep (``machine_end_beep``, ``beep_at_s`` set), or for ``greeting_end_s`` of
      silence after the greeting (Twilio ends a greeting on its 1200 ms ``SpeechEndThreshold``), or for
      ``beep_timeout_s`` from the answer; the last two report ``machine_start`` with the reason (Twilio
      would say ``machine_end_silence`` / ``machine_end_other``; this detector keeps to the four values).

    The VAD: 10 ms frames are speech when their level is 10 dB above the noise floor (the lowest level of
    the last 1.5 s, so it follows a noisy line up and a quiet one down) and above -50 dBm0, never
    requiring more than -35 dBm0; an utterance starts with 20 ms of speech.
    """

    def __init__(
        self,
        rate_hz: int,
        decision_s: float = 4.0,
        wait_for_beep: bool = False,
        beep_timeout_s: float = 30.0,
        machine_speech_s: float = 2.4,
        speech_end_s: float = 0.8,
        greeting_end_s: float = 1.2,
        beep_detector: BeepDetector | None = None,
    ) -> None:
        for name, value in (("decision_s", decision_s), ("machine_speech_s", machine_speech_s), ("speech_end_s", speech_end_s),
                            ("greeting_end_s", greeting_end_s), ("beep_timeout_s", beep_timeout_s)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")
        if wait_for_beep and beep_timeout_s < decision_s:
            raise ValueError(f"beep_timeout_s ({beep_timeout_s}) must be at least decision_s ({decision_s})")
        self.rate_hz = int(rate_hz)
        self.decision_s = float(decision_s)
        self.wait_for_beep = bool(wait_for_beep)
        self.beep_timeout_s = float(beep_timeout_s)
        self.machine_speech_s = float(machine_speech_s)
        self.speech_end_s = float(speech_end_s)
        self.greeting_end_s = float(greeting_end_s)
        self.beep_detector = beep_detector or BeepDetector(rate_hz)
        self.hop_samples = self.beep_detector.hop_samples
        self._floor_hops = round(1.5 / HOP_S)
        self._levels: deque[float] = deque(maxlen=self._floor_hops)
        self._pending = np.zeros(0, dtype=np.float64)
        self._hops = 0
        self._run = 0  # consecutive speech hops
        self._utterance_start: float | None = None
        self._spurts: deque[list[float]] = deque(maxlen=64)  # recent bursts of speech: [start_s, end_s]
        self._last_speech_end = 0.0
        self._machine_at_s: float | None = None  # when the greeting passed machine_speech_s (wait_for_beep)
        self._result: AmdResult | None = None

    @property
    def result(self) -> AmdResult | None:
        """The decision, once made (None before)."""
        return self._result

    @property
    def time_s(self) -> float:
        """Seconds of callee audio analysed so far."""
        return self._hops * self.hop_samples / self.rate_hz

    def feed(self, samples: np.ndarray) -> AmdResult | None:
        """Analyse the next callee audio; the result on the call that decides, None on every other."""
        if self._result is not None:
            return None
        x = np.asarray(samples, dtype=np.float64).ravel()
        beep = self.beep_detector.feed(x)
        data = np.concatenate([self._pending, x]) if self._pending.size else x
        count = len(data) // self.hop_samples
        self._pending = data[count * self.hop_samples :].copy()
        if count:
            hops = data[: count * self.hop_samples].reshape(count, self.hop_samples)
            levels = [power_to_dbm0(float(p)) for p in np.mean(hops * hops, axis=1)]
            for level in levels:
                self._hops += 1
                if beep is not None and self.time_s >= beep.confirmed_at_s - 1e-9:
                    return self._decide("machine_end_beep", beep.start_s, f"a {beep.frequency_hz:.0f} Hz beep at {beep.start_s:.2f} s")
                decided = self._vad_step(level)
                if decided is not None:
                    return decided
        return None

    def finish(self) -> AmdResult | None:
        """The callee's audio has ended: decide with what was heard (if not decided yet); the result."""
        if self._result is None:
            if self._machine_at_s is not None:
                self._decide("machine_start", None, "a greeting, and the audio ended before a beep")
            elif self._utterance_start is None:
                self._decide("unknown", None, "silence until the audio ended")
            else:
                self._decide("unknown", None, "the audio ended before a decision")
        return self._result

    def _vad_step(self, level: float) -> AmdResult | None:
        now = self.time_s
        self._levels.append(level)
        floor = min(self._levels)
        threshold = min(max(floor + 10.0, -50.0), -35.0)
        self._run = self._run + 1 if level > threshold else 0
        if self._run >= 2:
            if self._utterance_start is None:
                self._utterance_start = now - self._run * HOP_S
            if self._run == 2:
                self._spurts.append([now - self._run * HOP_S, now])
            self._spurts[-1][1] = now
            self._last_speech_end = now
        if self._utterance_start is not None:
            span = self._last_speech_end - self._utterance_start
            silence = now - self._last_speech_end
            if self._machine_at_s is None and span >= self.machine_speech_s:
                if not self.wait_for_beep:
                    return self._decide("machine_start", None, f"{span:.1f} s of speech without a pause of {self.speech_end_s:g} s: a greeting")
                self._machine_at_s = now
            if self._machine_at_s is not None:
                if silence >= self.greeting_end_s:
                    return self._decide("machine_start", None, f"a greeting, then {silence:.1f} s of silence and no beep")
            elif silence >= self.speech_end_s:
                return self._decide("human", None, f"{span:.2f} s of speech, then {silence:.1f} s of silence")
        if self._machine_at_s is not None:
            if now >= self.beep_timeout_s - 1e-9:
                return self._decide("machine_start", None, f"a greeting, and no beep within {self.beep_timeout_s:g} s")
        elif now >= self.decision_s - 1e-9:
            if self._utterance_start is None:
                return self._decide("unknown", None, f"silence for {self.decision_s:g} s")
            return self._decide("unknown", None, f"speech still going on at {self.decision_s:g} s, too short for a greeting")
        return None

    def _speech_s(self, beep_at_s: float | None) -> float:
        """Span of the utterance the decision rests on; with a beep, up to the end of the last burst of
        speech before it (the greeting, without the gap and the beep)."""
        if self._utterance_start is None:
            return 0.0
        end = self._last_speech_end
        if beep_at_s is not None:
            before = [spurt[1] for spurt in self._spurts if spurt[0] < beep_at_s - HOP_S]
            end = min(before[-1], beep_at_s) if before else self._utterance_start
        return round(max(0.0, end - self._utterance_start), 3)

    def _decide(self, answered_by: str, beep_at_s: float | None, reason: str) -> AmdResult:
        self._result = AmdResult(answered_by, round(self.time_s, 3), beep_at_s, round(self._speech_s(beep_at_s), 3), reason)
        return self._result

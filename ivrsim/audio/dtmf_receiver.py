"""DTMF receiver: a Goertzel filter bank, a per-window classifier and a segment validator.

Specification (ITU-T Q.24, AT&T column; Mitel/Bellcore practice as followed by spandsp and Asterisk):

=========================  ======================================  =====================================
requirement                accept                                  reject
=========================  ======================================  =====================================
frequency deviation        within +-1.5 % on each tone             +-3.5 % and beyond
level, per tone            0 .. -25 dBm0 (35 dB dynamic range)     -55 dBm0 and below
twist                      low tone up to 8 dB louder (normal),    beyond those, with a 1 dB margin
                           high tone up to 4 dB louder (reverse)
tone duration              40 ms and longer                        23 ms and shorter
interdigit pause           40 ms splits two equal digits           a dropout of 10 ms or less is bridged
signal to noise            15 dB (white noise, per tone / total)
talk-off                   no digits from speech, music, or dial / ringback / busy tones
=========================  ======================================  =====================================

How it works, stage by stage (each a named function below):

1. ``half_block_spectra``: the complex DFT at the eight DTMF frequencies over half-blocks of 6.375 ms
   (51 samples at 8 kHz), phase-referred to absolute time, and each half-block's energy.
2. ``window_powers``: adjacent half-blocks summed into 12.75 ms windows (102 samples at 8 kHz, the block
   spandsp uses) every 6.375 ms: tone power per frequency and mean power of the window.
3. ``classify_windows``: a window holds a digit when its strongest row and column tones are both above
   the level threshold, within a loose twist limit, each at least 8 dB above the runner-up of its group
   (relative peak), and together carry most of the window's energy (share of total energy).
4. Runs of windows with the same digit become tone segments; ``refine_edges`` measures where the tone
   starts and ends to about a millisecond from how much of each edge half-block it fills, so that the
   23 ms / 40 ms duration rule and the 10 ms / 40 ms gap rule are decided on measured times, not on
   block counts. Segments of one digit separated by a measured gap of at most ``bridge_gap_ms`` merge.
5. ``measure_tones``: over the segment, Hann-windowed DFTs (sidelobes low enough that the other group's
   tone does not disturb the phase) give each tone's frequency from the turn of its phase between
   windows 6.375 ms apart, the coherence of that turn (a steady sine scores 1, speech much less), and
   the tone levels corrected for the window's response at the measured offset. ``validate_segment``
   accepts the digit when duration, frequency, coherence and twist all pass.

The receiver is pure: float samples in, ``DtmfDigit`` events out. ``DtmfReceiver`` is fed frames of any
size and reports each digit once it has ended; ``detect_dtmf`` runs it over a whole signal. Both give the
same digits, to the sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ivrsim.audio.dtmf_keys import COL_FREQUENCIES_HZ, DTMF_FREQUENCIES_HZ, KEYS_BY_INDEX, ROW_FREQUENCIES_HZ, DtmfKey
from ivrsim.audio.goertzel import GoertzelBank, hann_window, window_response
from ivrsim.audio.levels import db_to_power_ratio, dbm0_to_power, power_to_dbm0

#: Length of a half-block, in seconds: 51 samples at 8 kHz. Two make the 12.75 ms analysis window.
HALF_BLOCK_S = 0.006375

#: Sample rates the receiver runs at natively, in Hz. Others are resampled by the caller (see cli).
MIN_RATE_HZ = 8000
MAX_RATE_HZ = 96000

#: The band in which a DTMF pair must stand alone, in Hz: it holds both groups and their analysis lobes,
#: and leaves out dial tone (350/440 Hz), mains hum and the voice fundamental.
DTMF_BAND_HZ = (600.0, 1750.0)
#: The rest of the telephone band above it, in Hz (ITU-T G.712's passband ends at 3400 Hz).
UPPER_BAND_HZ = (1750.0, 3400.0)
#: Longest stretch of one tone analysed for purity, in seconds (bounds the cost of a held key).
PURITY_MAX_S = 0.25
#: Time left out at each end of a tone before the purity analysis, in seconds (switching transients).
PURITY_EDGE_S = 0.004

_NO_DIGIT = -1


@dataclass(frozen=True)
class DtmfThresholds:
    """Decision thresholds of the receiver, each derived from the limit it implements.

    Every field carries its unit. The defaults put each threshold midway between the accept and the
    reject limit of the specification (module docstring), so that measurement error has room both ways.
    """

    #: Weakest tone level that can start a detection, in dBm0 (accept -25, reject -55; 35 dB range + margin).
    min_tone_level_dbm0: float = -40.0
    #: Normal twist (low tone louder) accepted, in dB (Q.24 AT&T: 8 dB).
    max_normal_twist_db: float = 8.0
    #: Reverse twist (high tone louder) accepted, in dB (Q.24 AT&T: 4 dB).
    max_reverse_twist_db: float = 4.0
    #: Measurement margin added to both twist limits, in dB.
    twist_margin_db: float = 1.0
    #: Strongest tone of a group over the runner-up of the same group, in dB.
    min_relative_peak_db: float = 6.0
    #: Share of the window's power that the two tones must carry (0.5 with dial tone at the same level).
    min_energy_share: float = 0.4
    #: Largest accepted frequency deviation of either tone, in percent (accept 1.5 %, reject 3.5 %).
    max_frequency_deviation_pct: float = 2.5
    #: Steadiness of each tone's phase turn across the segment (1.0 for a pure tone).
    min_phase_coherence: float = 0.9
    #: Power left in 600-1750 Hz once the two tones are taken out, relative to the tones (-12 dB).
    #: A DTMF pair is alone in that band; voiced speech and music bring more harmonics into it.
    max_inband_residual: float = 0.06
    #: Power in 1750-3400 Hz relative to the two tones (-8 dB): speech formants and fricatives live there.
    max_upper_band_ratio: float = 0.15
    #: Shortest tone accepted as a digit, in ms (accept 40 ms, reject 23 ms).
    min_tone_ms: float = 31.5
    #: Longest gap inside one tone that is bridged, in ms (bridge 10 ms, split at 40 ms).
    bridge_gap_ms: float = 25.0


@dataclass(frozen=True)
class DtmfDigit:
    """One detected key press.

    Times are in seconds from the start of the stream; levels in dBm0; frequencies are the measured ones,
    in Hz. ``twist_db`` is the low (row) tone's level minus the high (column) tone's: positive is normal
    twist, negative is reverse twist.
    """

    key: DtmfKey
    start_s: float
    end_s: float
    row_hz: float
    col_hz: float
    row_level_dbm0: float
    col_level_dbm0: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def twist_db(self) -> float:
        return self.row_level_dbm0 - self.col_level_dbm0

    def as_dict(self) -> dict[str, float | str]:
        """A JSON-ready dict: key, times in seconds, measured frequencies in Hz, levels in dBm0, twist in dB."""
        return {
            "key": str(self.key),
            "start_s": round(self.start_s, 4),
            "end_s": round(self.end_s, 4),
            "duration_ms": round(self.duration_s * 1000.0, 1),
            "row_hz": round(self.row_hz, 1),
            "col_hz": round(self.col_hz, 1),
            "row_level_dbm0": round(self.row_level_dbm0, 1),
            "col_level_dbm0": round(self.col_level_dbm0, 1),
            "twist_db": round(self.twist_db, 1),
        }


# ---------------------------------------------------------------------------------------------------------
# Stage 2 and 3: window powers and the per-window classifier (vectorised over many windows).


def window_powers(
    half_spectra: np.ndarray, half_energy: np.ndarray, window_samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Tone powers and mean power of windows made of adjacent half-block pairs.

    Args:
        half_spectra: complex (n, 8) absolute-phase DFT terms of n consecutive half-blocks.
        half_energy: (n,) sum of squares of each half-block.
        window_samples: samples in one window (two half-blocks).

    Returns:
        (tone_power (n-1, 8), mean_power (n-1,)), both as mean-square power: a tone of amplitude A at
        exactly its frequency gives A**2 / 2.
    """
    spectrum = half_spectra[:-1] + half_spectra[1:]
    tone_power = (2.0 / window_samples**2) * (spectrum.real**2 + spectrum.imag**2)
    mean_power = (half_energy[:-1] + half_energy[1:]) / window_samples
    return tone_power, mean_power


def classify_windows(tone_power: np.ndarray, mean_power: np.ndarray, thresholds: DtmfThresholds) -> np.ndarray:
    """The digit index (row * 4 + col) each window holds, or -1.

    Checks, all required: both tones at or above the level threshold; twist within the limits plus a
    generous pre-filter margin (the exact twist is checked on the whole segment); each tone at least
    ``min_relative_peak_db`` above the others of its group; the two tones carry at least
    ``min_energy_share`` of the window's power.
    """
    count = len(tone_power)
    rows = tone_power[:, :4]
    cols = tone_power[:, 4:]
    best_row = np.argmax(rows, axis=1)
    best_col = np.argmax(cols, axis=1)
    index = np.arange(count)
    row_power = rows[index, best_row]
    col_power = cols[index, best_col]

    threshold = dbm0_to_power(thresholds.min_tone_level_dbm0)
    loose_margin_db = thresholds.twist_margin_db + 3.0
    normal_twist = db_to_power_ratio(thresholds.max_normal_twist_db + loose_margin_db)
    reverse_twist = db_to_power_ratio(thresholds.max_reverse_twist_db + loose_margin_db)
    relative_peak = db_to_power_ratio(thresholds.min_relative_peak_db)

    ok = (row_power >= threshold) & (col_power >= threshold)
    ok &= (row_power <= col_power * normal_twist) & (col_power <= row_power * reverse_twist)
    ok &= row_power + col_power >= thresholds.min_energy_share * mean_power
    runner_up_rows = rows.copy()
    runner_up_rows[index, best_row] = 0.0
    runner_up_cols = cols.copy()
    runner_up_cols[index, best_col] = 0.0
    ok &= row_power >= relative_peak * runner_up_rows.max(axis=1)
    ok &= col_power >= relative_peak * runner_up_cols.max(axis=1)
    return np.where(ok, best_row * 4 + best_col, _NO_DIGIT).astype(np.int8)


# ---------------------------------------------------------------------------------------------------------
# Stage 4 and 5: segments.


@dataclass
class _Segment:
    """Windows (history-relative indices) of one digit's tone, possibly across bridged dropouts."""

    label: int
    first_window: int
    last_window: int
    start_half_blocks: float
    end_half_blocks: float
    #: (first_window, last_window, start_half_blocks, end_half_blocks) of each run bridged into the segment.
    runs: list[tuple[int, int, float, float]] = field(default_factory=list)


def refine_edges(
    magnitudes: np.ndarray, first_window: int, last_window: int, row: int, col: int
) -> tuple[float, float]:
    """Start and end of the tone of a run of windows, in half-blocks of the history.

    Windows ``first_window .. last_window`` hold the digit, so half-blocks ``first_window + 1 ..
    last_window`` are filled by the tone; the tone's edges lie in the two half-blocks on either side.
    Each edge half-block is filled by the fraction of the run's peak tone magnitude it reaches (a tone
    filling a fraction p of a half-block gives p times the full magnitude).
    """
    count = len(magnitudes)
    a, b = first_window, last_window
    peak_row = float(magnitudes[a : b + 2, row].max())
    peak_col = float(magnitudes[a : b + 2, col].max())

    def filled(j: int) -> float:
        if j < 0 or j >= count or peak_row <= 0.0 or peak_col <= 0.0:
            return 0.0
        p = 0.5 * (magnitudes[j, row] / peak_row + magnitudes[j, col] / peak_col)
        return min(max(float(p), 0.0), 1.0)

    start = a + 1 - filled(a - 1) - filled(a)
    end = b + 1 + filled(b + 1) + filled(b + 2)
    return start, end


def tone_purity(samples: np.ndarray, rate_hz: float, row_hz: float, col_hz: float) -> tuple[float, float]:
    """How alone the two tones are: (residual in ``DTMF_BAND_HZ``, power in ``UPPER_BAND_HZ``), both
    relative to the power of the two tones.

    A Hann-windowed spectrum of the whole tone (25 Hz resolution for 40 ms) resolves the harmonics of
    a voice or an instrument that a 12.75 ms block cannot; what lies within the main lobe of either tone
    counts as tone, everything else in the band as residual.
    """
    n = len(samples)
    size = 1 << int(math.ceil(math.log2(4 * n)))
    spectrum = np.abs(np.fft.rfft(samples * hann_window(n), size)) ** 2
    frequency = np.fft.rfftfreq(size, 1.0 / rate_hz)
    lobe_hz = 2.2 * rate_hz / n
    near = (np.abs(frequency - row_hz) < lobe_hz) | (np.abs(frequency - col_hz) < lobe_hz)
    tones = float(spectrum[near].sum())
    if tones <= 0.0:
        return math.inf, math.inf
    band = (frequency >= DTMF_BAND_HZ[0]) & (frequency <= DTMF_BAND_HZ[1]) & ~near
    upper = (frequency > UPPER_BAND_HZ[0]) & (frequency <= UPPER_BAND_HZ[1])
    return float(spectrum[band].sum()) / tones, float(spectrum[upper].sum()) / tones


@dataclass(frozen=True)
class _ToneMeasurement:
    offset_hz: float
    coherence: float
    power: float


def measure_tones(
    hann_spectra: np.ndarray,
    windows: np.ndarray,
    tone: int,
    frequency_hz: float,
    hop_samples: int,
    rate_hz: float,
    hann: np.ndarray,
    hann_gain: float,
) -> _ToneMeasurement:
    """Frequency offset, phase coherence and power of one tone over the given windows.

    The frequency comes from the phase turn between windows ``hop_samples`` apart (a pulse-pair
    estimate): ``offset_hz = angle(sum Y[w+1] * conj(Y[w])) * rate / (2 pi hop)``, unambiguous within
    +-rate / (2 hop) = +-78 Hz. Only pairs of consecutive windows both in the segment count.
    """
    values = hann_spectra[windows, tone]
    consecutive = np.flatnonzero(np.diff(windows) == 1)
    if len(consecutive) == 0:
        return _ToneMeasurement(offset_hz=math.inf, coherence=0.0, power=0.0)
    pairs = values[consecutive + 1] * np.conj(values[consecutive])
    total = complex(pairs.sum())
    magnitude_sum = float(np.abs(pairs).sum())
    offset_hz = math.atan2(total.imag, total.real) * rate_hz / (2.0 * math.pi * hop_samples)
    coherence = abs(total) / magnitude_sum if magnitude_sum > 0.0 else 0.0
    # Level from the windows inside the tone (both neighbours in the segment), else from the strongest.
    inner = np.flatnonzero((np.diff(windows[:-1]) == 1) & (np.diff(windows[1:]) == 1)) + 1
    magnitude_sq = values.real**2 + values.imag**2
    mean_sq = float(magnitude_sq[inner].mean()) if len(inner) else float(magnitude_sq.max())
    response = window_response(hann, offset_hz, rate_hz)
    amplitude = 2.0 * math.sqrt(mean_sq) / (hann_gain * max(response, 1e-6))
    return _ToneMeasurement(offset_hz=offset_hz, coherence=coherence, power=amplitude**2 / 2.0)


class DtmfReceiver:
    """Streaming DTMF receiver: feed float samples in frames of any size, get digits as they end.

    Args:
        rate_hz: sample rate of the input, 8,000 to 96,000 Hz.
        thresholds: decision thresholds; the defaults meet the specification in the module docstring.

    A digit is reported by the ``feed`` call in which it is certain that it has ended (its tone has been
    off for longer than ``bridge_gap_ms``), about 60 ms after the key is released; ``flush`` reports a
    digit still sounding at the end of the stream and resets the receiver.
    """

    def __init__(self, rate_hz: int, thresholds: DtmfThresholds | None = None) -> None:
        if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
            raise ValueError(f"rate_hz must be between {MIN_RATE_HZ} and {MAX_RATE_HZ} Hz, got {rate_hz}")
        self.rate_hz = int(rate_hz)
        self.thresholds = thresholds or DtmfThresholds()
        self.half_block_samples = int(round(self.rate_hz * HALF_BLOCK_S))
        self.window_samples = 2 * self.half_block_samples
        self._bank = GoertzelBank(DTMF_FREQUENCIES_HZ, self.rate_hz, self.half_block_samples)
        self._hann = hann_window(self.window_samples)
        self._hann_bank = GoertzelBank(DTMF_FREQUENCIES_HZ, self.rate_hz, self.window_samples, window=self._hann)
        self._gate_power = dbm0_to_power(self.thresholds.min_tone_level_dbm0) / 2.0
        self._bridge_half_blocks = self.thresholds.bridge_gap_ms / 1000.0 * self.rate_hz / self.half_block_samples
        self._min_tone_half_blocks = self.thresholds.min_tone_ms / 1000.0 * self.rate_hz / self.half_block_samples
        # A segment whose last window is this many windows old can no longer be extended by a bridge.
        self._settle_windows = 5 + int(math.floor(self._bridge_half_blocks))
        self.reset()

    def reset(self) -> None:
        """Forget all state: the next sample fed is time zero."""
        m = self.half_block_samples
        self._pending = np.zeros(0, dtype=np.float32)
        self._next_half_block = 0
        self._last_spectrum: np.ndarray | None = None
        self._last_energy = 0.0
        self._last_samples = np.zeros(m, dtype=np.float32)
        # History, from absolute half-block/window index self._history_first on:
        # window i spans half-blocks i and i+1, so there is one more magnitude row than windows.
        self._history_first = 0
        self._magnitudes = np.zeros((0, 8), dtype=np.float32)
        self._samples = np.zeros((0, m), dtype=np.float32)
        self._labels = np.zeros(0, dtype=np.int8)
        self._hann_spectra = np.zeros((0, 8), dtype=np.complex64)
        # Absolute index of the last window of the newest segment already decided.
        self._decided_through = -1

    # -- input ----------------------------------------------------------------------------------------

    def feed(self, samples: np.ndarray) -> list[DtmfDigit]:
        """Process ``samples`` (float, mono, any length); return the digits that ended."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if len(self._pending):
            x = np.concatenate([self._pending, x])
        m = self.half_block_samples
        count = len(x) // m
        self._pending = x[count * m :].copy()
        if count == 0:
            return []
        self._process_half_blocks(x[: count * m].reshape(count, m))
        return self._decide(final=False)

    def flush(self) -> list[DtmfDigit]:
        """End of stream: report any digit still pending, then reset."""
        m = self.half_block_samples
        tail = np.zeros(3 * m, dtype=np.float32)
        tail[: len(self._pending)] = self._pending
        self._pending = np.zeros(0, dtype=np.float32)
        self._process_half_blocks(tail.reshape(3, m))
        digits = self._decide(final=True)
        self.reset()
        return digits

    def _process_half_blocks(self, blocks: np.ndarray) -> None:
        m = self.half_block_samples
        count = len(blocks)
        first = self._next_half_block
        self._next_half_block += count
        energy = np.einsum("ij,ij->i", blocks, blocks)
        starts = (first + np.arange(count)) * m
        spectra = self._bank.spectra(blocks, starts)
        if self._last_spectrum is None:
            # The first half-block of the stream opens no window.
            all_spectra, all_energy, all_samples = spectra, energy, blocks
            window_first = first
        else:
            all_spectra = np.vstack([self._last_spectrum[None, :], spectra])
            all_energy = np.concatenate([[self._last_energy], energy])
            all_samples = np.vstack([self._last_samples[None, :], blocks])
            window_first = first - 1
        self._last_spectrum = spectra[-1]
        self._last_energy = float(energy[-1])
        self._last_samples = blocks[-1].copy()

        windows = len(all_spectra) - 1
        labels = np.full(windows, _NO_DIGIT, dtype=np.int8)
        hann_spectra = np.zeros((windows, 8), dtype=np.complex64)
        if windows > 0:
            mean_power_max = float((all_energy[:-1] + all_energy[1:]).max()) / self.window_samples
            if mean_power_max >= self._gate_power:
                tone_power, mean_power = window_powers(all_spectra, all_energy, self.window_samples)
                labels = classify_windows(tone_power, mean_power, self.thresholds)
                candidates = np.flatnonzero(labels >= 0)
                if len(candidates):
                    frames = np.concatenate([all_samples[candidates], all_samples[candidates + 1]], axis=1)
                    hann_spectra[candidates] = self._hann_bank.spectra(frames, (window_first + candidates) * m)

        magnitudes = np.abs(spectra).astype(np.float32)
        self._magnitudes = np.vstack([self._magnitudes, magnitudes])
        self._samples = np.vstack([self._samples, blocks])
        self._labels = np.concatenate([self._labels, labels])
        self._hann_spectra = np.vstack([self._hann_spectra, hann_spectra])

    # -- decisions ------------------------------------------------------------------------------------

    def _segments(self) -> list[_Segment]:
        """Runs of equal labels, refined and merged across bridged gaps."""
        labels = self._labels
        candidates = np.flatnonzero(labels >= 0)
        if len(candidates) == 0:
            return []
        breaks = np.flatnonzero((np.diff(candidates) != 1) | (np.diff(labels[candidates]) != 0)) + 1
        run_firsts = candidates[np.concatenate([[0], breaks])]
        run_lasts = candidates[np.concatenate([breaks - 1, [len(candidates) - 1]])]
        segments: list[_Segment] = []
        for a, b in zip(run_firsts.tolist(), run_lasts.tolist()):
            label = int(labels[a])
            row, col = divmod(label, 4)
            start, end = refine_edges(self._magnitudes, a, b, row, 4 + col)
            merged = False
            for i in range(len(segments) - 1, -1, -1):
                earlier = segments[i]
                if start - earlier.end_half_blocks > self._bridge_half_blocks:
                    break
                if earlier.label == label:
                    earlier.last_window = b
                    earlier.end_half_blocks = end
                    earlier.runs.append((a, b, start, end))
                    del segments[i + 1 :]  # glitches inside a bridged gap
                    merged = True
                    break
            if not merged:
                segments.append(_Segment(label, a, b, start, end, [(a, b, start, end)]))
        return segments

    def _decide(self, final: bool) -> list[DtmfDigit]:
        segments = self._segments()
        windows = len(self._labels)
        digits: list[DtmfDigit] = []
        keep_from = max(windows - 2, 0)
        for segment in segments:
            if self._history_first + segment.last_window <= self._decided_through:
                continue
            if not final and windows - 1 - segment.last_window < self._settle_windows:
                keep_from = min(keep_from, max(segment.first_window - 2, 0))
                break
            self._decided_through = self._history_first + segment.last_window
            digit = self._validate(segment)
            if digit is not None:
                digits.append(digit)
        self._drop_history(keep_from)
        return digits

    def _validate(self, segment: _Segment) -> DtmfDigit | None:
        """Accept a segment as a digit when duration, frequency, coherence and twist all pass."""
        t = self.thresholds
        duration = segment.end_half_blocks - segment.start_half_blocks
        if duration < self._min_tone_half_blocks:
            return None
        row, col = divmod(segment.label, 4)
        windows = np.concatenate([np.arange(a, b + 1) for a, b, _, _ in segment.runs])
        measured = []
        for tone, frequency_hz in ((row, ROW_FREQUENCIES_HZ[row]), (4 + col, COL_FREQUENCIES_HZ[col])):
            m = measure_tones(
                self._hann_spectra,
                windows,
                tone,
                frequency_hz,
                self.half_block_samples,
                self.rate_hz,
                self._hann,
                self._hann_bank.gain,
            )
            if abs(m.offset_hz) > frequency_hz * t.max_frequency_deviation_pct / 100.0:
                return None
            if m.coherence < t.min_phase_coherence:
                return None
            measured.append(m)
        row_hz = ROW_FREQUENCIES_HZ[row] + measured[0].offset_hz
        col_hz = COL_FREQUENCIES_HZ[col] + measured[1].offset_hz
        # Purity over the longest unbroken stretch: a bridged dropout would splatter the spectrum.
        m = self.half_block_samples
        _, _, start, end = max(segment.runs, key=lambda run: run[3] - run[2])
        edge = int(round(PURITY_EDGE_S * self.rate_hz))
        first = int(round(start * m)) + edge
        last = min(int(round(end * m)) - edge, first + int(PURITY_MAX_S * self.rate_hz))
        residual, upper = tone_purity(self._samples.reshape(-1)[first:last], self.rate_hz, row_hz, col_hz)
        if residual > t.max_inband_residual or upper > t.max_upper_band_ratio:
            return None
        row_dbm0 = power_to_dbm0(measured[0].power)
        col_dbm0 = power_to_dbm0(measured[1].power)
        twist_db = row_dbm0 - col_dbm0
        if twist_db > t.max_normal_twist_db + t.twist_margin_db:
            return None
        if -twist_db > t.max_reverse_twist_db + t.twist_margin_db:
            return None
        to_s = self.half_block_samples / self.rate_hz
        origin = self._history_first
        return DtmfDigit(
            key=KEYS_BY_INDEX[segment.label],
            start_s=(origin + segment.start_half_blocks) * to_s,
            end_s=(origin + segment.end_half_blocks) * to_s,
            row_hz=row_hz,
            col_hz=col_hz,
            row_level_dbm0=row_dbm0,
            col_level_dbm0=col_dbm0,
        )

    def _drop_history(self, windows: int) -> None:
        if windows <= 0:
            return
        self._history_first += windows
        self._magnitudes = self._magnitudes[windows:]
        self._samples = self._samples[windows:]
        self._labels = self._labels[windows:]
        self._hann_spectra = self._hann_spectra[windows:]


def detect_dtmf(samples: np.ndarray, rate_hz: int, thresholds: DtmfThresholds | None = None) -> list[DtmfDigit]:
    """All digits in a whole mono signal (float samples at ``rate_hz``)."""
    receiver = DtmfReceiver(rate_hz, thresholds)
    return receiver.feed(samples) + receiver.flush()

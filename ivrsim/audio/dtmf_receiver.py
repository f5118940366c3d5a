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
from functools import lru_cache
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
# Stages 2 and 3: window powers and the per-window classifier, vectorised over any number of windows.


def window_energies(
    half_spectra: np.ndarray, half_energy: np.ndarray, hop_rotation: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Tone energy ``|Y|**2`` per frequency and total energy of windows made of adjacent half-blocks.

    Args:
        half_spectra: complex (n, 8) DFT terms of n consecutive half-blocks, each in its own phase.
        half_energy: (n,) sum of squares of each half-block.
        hop_rotation: (8,) phase correction that brings a half-block to its predecessor's reference.

    Returns:
        (tone_energy (n-1, 8), window_energy (n-1,)). For a window of W samples, a tone of amplitude A at
        exactly its frequency gives tone_energy (A*W/2)**2; a signal of mean power P gives window_energy W*P.
    """
    spectrum = half_spectra[:-1] + half_spectra[1:] * hop_rotation
    return spectrum.real**2 + spectrum.imag**2, half_energy[:-1] + half_energy[1:]


class WindowClassifier:
    """Stage 3: which digit, if any, each analysis window holds.

    Checks, all required: both tones at or above ``min_tone_level_dbm0``; twist within the limits plus a
    wide margin (the exact twist is checked on the whole tone); each tone at least
    ``min_relative_peak_db`` above the runner-up of its group; the two tones together carry at least
    ``min_energy_share`` of the window's power. Thresholds are scaled once to the window's raw energies.
    """

    def __init__(self, thresholds: DtmfThresholds, window_samples: int) -> None:
        w = float(window_samples)
        # Tone power P = 2 |Y|^2 / W^2 and mean power = energy / W: fold both scales into the thresholds.
        self.min_tone_energy = dbm0_to_power(thresholds.min_tone_level_dbm0) * w * w / 2.0
        self.share_scale = thresholds.min_energy_share * w / 2.0
        loose_margin_db = thresholds.twist_margin_db + 3.0
        self.normal_twist = db_to_power_ratio(thresholds.max_normal_twist_db + loose_margin_db)
        self.reverse_twist = db_to_power_ratio(thresholds.max_reverse_twist_db + loose_margin_db)
        self.relative_peak = db_to_power_ratio(thresholds.min_relative_peak_db)

    def classify(self, tone_energy: np.ndarray, window_energy: np.ndarray) -> np.ndarray:
        """Digit index (row * 4 + col) per window, or -1; int8 (n,)."""
        groups = tone_energy.reshape(len(tone_energy), 2, 4)
        best = groups.argmax(axis=2)
        ordered = np.sort(groups, axis=2)
        top = ordered[:, :, 3]
        row, col = top[:, 0], top[:, 1]
        ok = np.minimum(row, col) >= self.min_tone_energy
        ok &= (row <= col * self.normal_twist) & (col <= row * self.reverse_twist)
        ok &= (ordered[:, :, 2] * self.relative_peak <= top).all(axis=1)
        ok &= row + col >= self.share_scale * window_energy
        return np.where(ok, best[:, 0] * 4 + best[:, 1], _NO_DIGIT).astype(np.int8)


# ---------------------------------------------------------------------------------------------------------
# Stages 4 and 5: tone segments, their edges, their tones.


@dataclass
class _Segment:
    """One digit's tone: windows (history positions), possibly across bridged dropouts.

    Edges are in half-blocks from the start of the history.
    """

    label: int
    first_window: int
    last_window: int
    start_half_blocks: float
    end_half_blocks: float
    #: (first_window, last_window, start_half_blocks, end_half_blocks) of each run bridged into the segment.
    runs: list[tuple[int, int, float, float]] = field(default_factory=list)


def refine_edges(tone_magnitudes: np.ndarray) -> tuple[float, float]:
    """How far a run's tone reaches into the half-blocks around it, as (start_fill, end_fill).

    ``tone_magnitudes`` (L, 2) are the two tones' DFT magnitudes over half-blocks ``a-1 .. b+2`` of a run
    of windows ``a .. b``: half-blocks ``a+1 .. b`` are filled by the tone, and its edges lie in the
    two half-blocks on either side. A tone filling a fraction p of a half-block gives p times the
    full magnitude, so each edge half-block counts with its share of the mean magnitude of the filled
    ones. (Over 51 samples the other group's tone leaks about 15 % into each bin, beating from block to
    block; the mean, unlike the peak, does not bias the shares, and the beat leaves about 1 ms of error
    per edge.)
    The tone then starts ``start_fill`` half-blocks before half-block ``a+1`` and ends ``end_fill``
    half-blocks after the end of half-block ``b``.
    """
    filled_blocks = tone_magnitudes[2:-2]
    peak = filled_blocks.mean(axis=0) if len(filled_blocks) else tone_magnitudes[1:-1].max(axis=0)
    if np.any(peak <= 0.0):
        return 0.0, 0.0
    filled = np.clip((tone_magnitudes / peak).mean(axis=1), 0.0, 1.0)
    return float(filled[0] + filled[1]), float(filled[-2] + filled[-1])


@lru_cache(maxsize=64)
def _purity_grid(length: int, rate_hz: float) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]:
    size = 1 << int(math.ceil(math.log2(2 * length)))
    frequency = np.fft.rfftfreq(size, 1.0 / rate_hz)
    band = (frequency >= DTMF_BAND_HZ[0]) & (frequency <= DTMF_BAND_HZ[1])
    upper = (frequency > UPPER_BAND_HZ[0]) & (frequency <= UPPER_BAND_HZ[1])
    return hann_window(length).astype(np.float32), size, frequency, band, upper


def tone_purity(samples: np.ndarray, rate_hz: float, row_hz: float, col_hz: float) -> tuple[float, float]:
    """How alone the two tones are: (residual in ``DTMF_BAND_HZ``, power in ``UPPER_BAND_HZ``), both
    relative to the power of the two tones.

    A Hann-windowed spectrum of the whole tone (25 Hz resolution for 40 ms) resolves the harmonics of
    a voice or an instrument that a 12.75 ms block cannot; what lies within the main lobe of either tone
    counts as tone, everything else in the band as residual.
    """
    n = len(samples)
    window, size, frequency, band, upper = _purity_grid(n, float(rate_hz))
    spectrum = np.abs(np.fft.rfft(samples * window, size)) ** 2
    lobe_hz = 2.2 * rate_hz / n
    near = (np.abs(frequency - row_hz) < lobe_hz) | (np.abs(frequency - col_hz) < lobe_hz)
    tones = float(spectrum[near].sum())
    if tones <= 0.0:
        return math.inf, math.inf
    return float(spectrum[band & ~near].sum()) / tones, float(spectrum[upper].sum()) / tones


@dataclass(frozen=True)
class ToneMeasurement:
    """Both tones of a segment, measured: offsets from nominal in Hz, phase coherence, mean power."""

    offset_hz: np.ndarray
    coherence: np.ndarray
    power: np.ndarray


class ToneMeter:
    """Stage 5: frequency, steadiness and level of a digit's two tones from Hann-windowed DFTs.

    The frequency comes from the phase turn between windows ``hop_samples`` apart (a pulse-pair
    estimate): ``offset_hz = angle(sum Y[w+1] * conj(Y[w])) * rate / (2 pi hop)``, unambiguous within
    +-rate / (2 hop) = +-78 Hz. Only pairs of consecutive windows both in the segment count. The Hann
    window keeps the other group's tone 40 dB down, so that 8 dB of twist does not bend the phase.
    """

    def __init__(self, bank: GoertzelBank, window: np.ndarray, hop_samples: int) -> None:
        self.rate_hz = bank.rate_hz
        self.hop_samples = hop_samples
        self.gain = bank.gain
        self.hop_rotation = bank.hop_rotation(hop_samples)
        self._offsets_hz = np.linspace(-100.0, 100.0, 801)
        self._response = window_response(window, self._offsets_hz, self.rate_hz)

    def measure(self, values: np.ndarray, windows: np.ndarray, tones: tuple[int, int]) -> ToneMeasurement | None:
        """Measure tones ``tones`` from ``values`` (nwin, 2) at window positions ``windows``; None if no
        two consecutive windows exist."""
        consecutive = np.flatnonzero(np.diff(windows) == 1)
        if len(consecutive) == 0:
            return None
        pairs = values[consecutive + 1] * np.conj(values[consecutive])
        total = pairs.sum(axis=0) * self.hop_rotation[list(tones)]
        offset_hz = np.angle(total) * self.rate_hz / (2.0 * math.pi * self.hop_samples)
        coherence = np.abs(total) / np.maximum(np.abs(pairs).sum(axis=0), 1e-30)
        # Level from windows inside the tone (both neighbours in the segment), else from the strongest.
        magnitude_sq = values.real**2 + values.imag**2
        inner = np.flatnonzero((np.diff(windows[:-1]) == 1) & (np.diff(windows[1:]) == 1)) + 1
        mean_sq = magnitude_sq[inner].mean(axis=0) if len(inner) else magnitude_sq.max(axis=0)
        response = np.interp(offset_hz, self._offsets_hz, self._response)
        amplitude = 2.0 * np.sqrt(mean_sq) / (self.gain * np.maximum(response, 1e-6))
        return ToneMeasurement(offset_hz=offset_hz, coherence=coherence, power=amplitude**2 / 2.0)


class _History:
    """Half-blocks kept since the oldest one a pending decision may need, in growable arrays.

    Position i holds half-block ``first + i`` (absolute), its samples, and the label and Hann spectrum
    of the window that starts with it (spanning half-blocks i and i+1; unset for the newest).
    """

    def __init__(self, block_samples: int) -> None:
        self.first = 0
        self.count = 0
        self.samples = np.zeros((64, block_samples), dtype=np.float32)
        self.labels = np.full(64, _NO_DIGIT, dtype=np.int8)
        self.hann = np.zeros((64, 8), dtype=np.complex64)

    def append(self, blocks: np.ndarray) -> int:
        """Add half-blocks; return the position of the first one."""
        needed = self.count + len(blocks)
        if needed > len(self.labels):
            capacity = max(needed, 2 * len(self.labels))
            self.samples = _grow(self.samples, capacity)
            self.labels = _grow(self.labels, capacity, _NO_DIGIT)
            self.hann = _grow(self.hann, capacity)
        position = self.count
        self.samples[position:needed] = blocks
        self.labels[position:needed] = _NO_DIGIT
        self.hann[position:needed] = 0.0
        self.count = needed
        return position

    def drop(self, count: int) -> None:
        """Forget the oldest ``count`` half-blocks."""
        if count <= 0:
            return
        keep = self.count - count
        self.samples[:keep] = self.samples[count : self.count]
        self.labels[:keep] = self.labels[count : self.count]
        self.hann[:keep] = self.hann[count : self.count]
        self.first += count
        self.count = keep


def _grow(array: np.ndarray, capacity: int, fill: float = 0) -> np.ndarray:
    grown = np.full((capacity,) + array.shape[1:], fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


class DtmfReceiver:
    """Streaming DTMF receiver: feed float samples in frames of any size, get digits as they end.

    Args:
        rate_hz: sample rate of the input, 8,000 to 96,000 Hz.
        thresholds: decision thresholds; the defaults meet the specification in the module docstring.
        chunk_ms: input is analysed once at least this much has arrived, in ms. Larger chunks cost less per
            second of audio (numpy's per-call overhead is paid once per chunk); smaller ones report digits
            sooner. Digits and their times do not depend on it.

    A digit is reported by the ``feed`` call in which it is certain that the key was released (its tone
    has been off for longer than ``bridge_gap_ms``): about 60 ms plus up to ``chunk_ms`` after the
    release. ``flush`` reports a digit still sounding at the end of the stream and resets the receiver.
    """

    def __init__(self, rate_hz: int, thresholds: DtmfThresholds | None = None, chunk_ms: float = 40.0) -> None:
        if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
            raise ValueError(f"rate_hz must be between {MIN_RATE_HZ} and {MAX_RATE_HZ} Hz, got {rate_hz}")
        if chunk_ms < 0:
            raise ValueError(f"chunk_ms must not be negative, got {chunk_ms}")
        self.rate_hz = int(rate_hz)
        self.thresholds = thresholds or DtmfThresholds()
        self.half_block_samples = int(round(self.rate_hz * HALF_BLOCK_S))
        self.window_samples = 2 * self.half_block_samples
        m = self.half_block_samples
        self._chunk_samples = max(m, int(round(chunk_ms / 1000.0 * self.rate_hz)))
        self._bank = GoertzelBank(DTMF_FREQUENCIES_HZ, self.rate_hz, m)
        self._hop_rotation = self._bank.hop_rotation(m)
        hann = hann_window(self.window_samples)
        self._hann_bank = GoertzelBank(DTMF_FREQUENCIES_HZ, self.rate_hz, self.window_samples, window=hann)
        self._meter = ToneMeter(self._hann_bank, hann, m)
        self._classifier = WindowClassifier(self.thresholds, self.window_samples)
        # Below this window energy neither tone can reach the level threshold (|Y|^2 <= W * energy).
        self._gate_energy = self._classifier.min_tone_energy / self.window_samples
        t = self.thresholds
        self._bridge_half_blocks = t.bridge_gap_ms / 1000.0 * self.rate_hz / m
        self._min_tone_half_blocks = t.min_tone_ms / 1000.0 * self.rate_hz / m
        # A segment whose last window is this many windows old can no longer be extended by a bridge.
        self._settle_windows = 5 + int(math.floor(self._bridge_half_blocks))
        self.reset()

    def reset(self) -> None:
        """Forget all state: the next sample fed is time zero."""
        self._pending: list[np.ndarray] = []
        self._pending_samples = 0
        self._history = _History(self.half_block_samples)
        self._last_spectrum: np.ndarray | None = None
        self._last_energy: float | None = None
        #: Absolute index of the last window of the newest segment already decided.
        self._decided_through = -1
        self._undecided = False
        #: Measured edges of complete runs, by (absolute first window, absolute last window, label).
        self._run_edges: dict[tuple[int, int, int], tuple[float, float]] = {}

    # -- input ----------------------------------------------------------------------------------------

    def feed(self, samples: np.ndarray) -> list[DtmfDigit]:
        """Process ``samples`` (float, mono, any length); return the digits that ended."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if len(x) == 0:
            return []
        self._pending.append(x)
        self._pending_samples += len(x)
        if self._pending_samples < self._chunk_samples:
            return []
        x = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        m = self.half_block_samples
        count = len(x) // m
        rest = x[count * m :]
        self._pending = [rest.copy()] if len(rest) else []
        self._pending_samples = len(rest)
        self._analyse(x[: count * m].reshape(count, m))
        return self._decide(final=False) if self._undecided else []

    def flush(self) -> list[DtmfDigit]:
        """End of stream: report any digit still pending, then reset."""
        m = self.half_block_samples
        x = np.concatenate(self._pending) if self._pending else np.zeros(0, dtype=np.float32)
        # Pad to whole half-blocks plus two of silence, so that a tone cut by the end gets its edge.
        count = -(-len(x) // m) + 2
        padded = np.zeros(count * m, dtype=np.float32)
        padded[: len(x)] = x
        self._analyse(padded.reshape(count, m))
        digits = self._decide(final=True)
        self.reset()
        return digits

    def _analyse(self, blocks: np.ndarray) -> None:
        """Stages 1-3 over new half-blocks; store them with the labels of the windows they complete."""
        history = self._history
        position = history.append(blocks)
        energy = np.einsum("ij,ij->i", blocks, blocks)
        previous = self._last_energy
        self._last_energy = float(energy[-1])
        if previous is None:
            window_energy = energy[:-1] + energy[1:]
            first_window = position
        else:
            window_energy = np.concatenate([[previous], energy])
            window_energy = window_energy[:-1] + window_energy[1:]
            first_window = position - 1
        if len(window_energy) == 0 or float(window_energy.max()) < self._gate_energy:
            self._last_spectrum = None  # computed again from the samples if the next chunk needs it
            return
        spectra = self._bank.spectra(blocks)
        if previous is not None:
            last = self._last_spectrum
            if last is None:
                last = self._bank.spectra(history.samples[position - 1 : position])[0]
            spectra_all = np.vstack([last[None, :], spectra])
            energy_all = np.concatenate([[previous], energy])
        else:
            spectra_all, energy_all = spectra, energy
        self._last_spectrum = spectra[-1]
        tone_energy, window_energy = window_energies(spectra_all, energy_all, self._hop_rotation)
        labels = self._classifier.classify(tone_energy, window_energy)
        candidates = np.flatnonzero(labels >= 0)
        if len(candidates) == 0:
            return
        windows = first_window + candidates
        history.labels[windows] = labels[candidates]
        frames = np.concatenate([history.samples[windows], history.samples[windows + 1]], axis=1)
        history.hann[windows] = self._hann_bank.spectra(frames)
        self._undecided = True

    # -- decisions ------------------------------------------------------------------------------------

    def _segments(self) -> list[_Segment]:
        """Stage 4: runs of equal labels with measured edges, merged across bridged gaps."""
        history = self._history
        labels = history.labels[: max(history.count - 1, 0)]
        candidates = np.flatnonzero(labels >= 0)
        if len(candidates) == 0:
            return []
        breaks = np.flatnonzero((np.diff(candidates) != 1) | (np.diff(labels[candidates]) != 0)) + 1
        run_firsts = candidates[np.concatenate([[0], breaks])].tolist()
        run_lasts = candidates[np.concatenate([breaks - 1, [len(candidates) - 1]])].tolist()
        segments: list[_Segment] = []
        origin = history.first
        for a, b in zip(run_firsts, run_lasts):
            label = int(labels[a])
            key = (origin + a, origin + b, label)
            fills = self._run_edges.get(key)
            if fills is None:
                fills = refine_edges(self._tone_magnitudes(a - 1, b + 2, label))
                if b + 2 < history.count:  # both edge half-blocks seen: the run is complete
                    self._run_edges[key] = fills
            start, end = a + 1 - fills[0], b + 1 + fills[1]
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

    def _tone_magnitudes(self, first: int, last: int, label: int) -> np.ndarray:
        """|DFT| of a digit's two tones over history half-blocks ``first .. last`` (zero outside)."""
        row, col = divmod(label, 4)
        history = self._history
        lo, hi = max(first, 0), min(last, history.count - 1)
        magnitudes = np.zeros((last - first + 1, 2), dtype=np.float32)
        spectra = self._bank.spectra(history.samples[lo : hi + 1])
        magnitudes[lo - first : hi - first + 1] = np.abs(spectra[:, [row, 4 + col]])
        return magnitudes

    def _decide(self, final: bool) -> list[DtmfDigit]:
        history = self._history
        windows = max(history.count - 1, 0)
        digits: list[DtmfDigit] = []
        keep_from = max(windows - 2, 0)
        undecided = False
        for segment in self._segments():
            if history.first + segment.last_window <= self._decided_through:
                continue
            if not final and windows - 1 - segment.last_window < self._settle_windows:
                keep_from = min(keep_from, max(segment.first_window - 2, 0))
                undecided = True
                break
            self._decided_through = history.first + segment.last_window
            digit = self._validate(segment)
            if digit is not None:
                digits.append(digit)
        self._undecided = undecided
        history.drop(keep_from)
        if not undecided:
            self._run_edges.clear()
        elif len(self._run_edges) > 256:
            self._run_edges = {k: v for k, v in self._run_edges.items() if k[0] >= history.first}
        return digits

    def _validate(self, segment: _Segment) -> DtmfDigit | None:
        """Stage 5: accept a segment when duration, frequency, coherence, purity and twist all pass."""
        t = self.thresholds
        if segment.end_half_blocks - segment.start_half_blocks < self._min_tone_half_blocks:
            return None
        row, col = divmod(segment.label, 4)
        history = self._history
        windows = np.concatenate([np.arange(a, b + 1) for a, b, _, _ in segment.runs])
        measured = self._meter.measure(history.hann[windows][:, [row, 4 + col]], windows, (row, 4 + col))
        if measured is None:
            return None
        nominal_hz = np.array([ROW_FREQUENCIES_HZ[row], COL_FREQUENCIES_HZ[col]])
        if np.any(np.abs(measured.offset_hz) > nominal_hz * t.max_frequency_deviation_pct / 100.0):
            return None
        if np.any(measured.coherence < t.min_phase_coherence):
            return None
        row_hz, col_hz = (nominal_hz + measured.offset_hz).tolist()
        row_dbm0, col_dbm0 = (power_to_dbm0(float(p)) for p in measured.power)
        twist_db = row_dbm0 - col_dbm0
        if twist_db > t.max_normal_twist_db + t.twist_margin_db:
            return None
        if -twist_db > t.max_reverse_twist_db + t.twist_margin_db:
            return None
        # Purity over the longest unbroken stretch: a bridged dropout would splatter the spectrum.
        m = self.half_block_samples
        _, _, start, end = max(segment.runs, key=lambda run: run[3] - run[2])
        edge = int(round(PURITY_EDGE_S * self.rate_hz))
        first = int(round(start * m)) + edge
        last = min(int(round(end * m)) - edge, first + int(PURITY_MAX_S * self.rate_hz))
        samples = history.samples[: history.count].reshape(-1)[first:last]
        residual, upper = tone_purity(samples, self.rate_hz, row_hz, col_hz)
        if residual > t.max_inband_residual or upper > t.max_upper_band_ratio:
            return None
        to_s = m / self.rate_hz
        return DtmfDigit(
            key=KEYS_BY_INDEX[segment.label],
            start_s=(history.first + segment.start_half_blocks) * to_s,
            end_s=(history.first + segment.end_half_blocks) * to_s,
            row_hz=row_hz,
            col_hz=col_hz,
            row_level_dbm0=row_dbm0,
            col_level_dbm0=col_dbm0,
        )


def detect_dtmf(samples: np.ndarray, rate_hz: int, thresholds: DtmfThresholds | None = None) -> list[DtmfDigit]:
    """All digits in a whole mono signal (float samples at ``rate_hz``)."""
    receiver = DtmfReceiver(rate_hz, thresholds, chunk_ms=0.0)
    return receiver.feed(samples) + receiver.flush()

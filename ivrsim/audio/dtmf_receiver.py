"""DTMF receiver: a Goertzel filter bank, a per-window classifier and a segment validator.

Specification (ITU-T Q.24, AT&T column; Mitel/Bellcore practice as followed by spandsp and Asterisk):

=========================  ======================================  =====================================
requirement                accept                                  reject
=========================  ======================================  =====================================
frequency deviation        within +-1.5 % on each tone             +-3.5 % and beyond
level, per tone            0 .. -25 dBm0 (down to -41 here)        -55 dBm0 and below
twist                      low tone up to 8 dB louder (normal),    beyond those, with a 1 dB margin
                           high tone up to 4 dB louder (reverse)
tone duration              40 ms and longer                        23 ms and shorter
interdigit pause           40 ms splits two equal digits           a dropout of 10 ms or less is bridged
signal to noise            15 dB (white noise, per tone / total)
talk-off                   no digits from speech, music, or dial / ringback / busy tones
=========================  ======================================  =====================================

How it works, stage by stage (each a named function or class here or in ``dtmf_kernels``):

1. The complex DFT at the eight DTMF frequencies over half-blocks of 6.375 ms (51 samples at 8 kHz;
   ``GoertzelBank``'s basis), and each half-block's energy.
2. Adjacent half-blocks combined into 12.75 ms windows (102 samples at 8 kHz, the block spandsp uses)
   every 6.375 ms: energy per tone and in total.
3. ``WindowClassifier``: a window holds a digit when its strongest row and column tones are both above
   the level threshold, within a loose twist limit, each at least 6 dB above the runner-up of its group
   (relative peak), and together carry enough of the window's energy (share of total energy).
4. ``runs_and_segments``: runs of windows with the same digit; where each tone starts and ends, to about
   a millisecond, from how much of each edge half-block it fills, so that the 23 ms / 40 ms duration rule
   and the 10 ms / 40 ms gap rule are decided on measured times, not on block counts; runs of one digit
   separated by at most ``bridge_gap_ms`` join into one segment.
5. ``SegmentJudge._measure`` (the tone meter): over each segment, Hann-windowed DFTs (sidelobes low
   enough that the other group's tone does not disturb the phase) give each tone's frequency from the
   turn of its phase between windows 6.375 ms apart, the coherence of that turn (a steady sine scores 1),
   and the tone levels corrected for the window's response at the measured offset.
   ``SegmentJudge.purity`` looks at the whole tone at 25 Hz resolution: a DTMF pair stands alone in
   600-1750 Hz with little above it, while the harmonics of a voice or an instrument that happen to hit
   two DTMF frequencies do not.
6. What a key has and speech or music lacks, each measured over the segment: one run holds the pair for
   three windows (``SegmentJudge._holds``); neither tone drifts between the segment's halves nor swells
   and fades (the meter's drift and level spread); and where both tones fit one fundamental, its other
   harmonics are absent (the harmonic comb in ``SegmentJudge.purity``: espeak-ng's raised voices put
   their 3rd and 7th harmonics on key A). A segment is a digit when duration, frequencies, coherence,
   twist, purity and these all pass. A segment that fails while a busy or reorder tone (480 + 620 Hz)
   sounds is judged again with 620 Hz notched out (``SegmentJudge.decide``); one that fails purity gets a
   second look between its short dropouts (``SegmentJudge._longest_unbroken``), and a last one over the
   whole segment with a lone break of up to 10 ms filled by the pair fitted around it
   (``SegmentJudge._lone_break``; such a break also leaves the windows it dims out of the level spread).

The receiver is pure: float samples in, ``DtmfDigit`` events out. ``DtmfReceiver`` is fed frames of any
size and reports each digit once it has ended; ``detect_dtmf`` runs it over a whole signal. Both give the
same digits, to the sample. Stages 1-6 and the streaming state run compiled (``dtmf_kernels``, Cython):
written with numpy, a streamed digit took a few hundred small calls, and a digit every 100 ms held the
receiver to 60x real time; this module keeps the specification, the limits and the constants.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.fft

from ivrsim.audio import dtmf_kernels
from ivrsim.audio.dtmf_keys import COL_FREQUENCIES_HZ, DTMF_FREQUENCIES_HZ, KEYS_BY_INDEX, ROW_FREQUENCIES_HZ, DtmfKey
from ivrsim.audio.goertzel import GoertzelBank, hann_window, window_response
from ivrsim.audio.levels import ZERO_DBM0_POWER, db_to_power_ratio, dbm0_to_power

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
#: Call-progress pairs with a tone inside ``DTMF_BAND_HZ``, in Hz: the North American busy and reorder tone
#: (ANSI T1.401, 480 + 620 Hz). Where both sound, steady and exact, the 620 Hz tone is background, not a
#: sign of speech: a caller may key a digit over it. (Dial tone and ringback lie below the band.)
CALL_PROGRESS_PAIRS_HZ = ((480.0, 620.0),)
#: Samples notched before a segment when a call-progress tone is taken out, in seconds (the notch settles).
CALL_PROGRESS_LEAD_S = 0.012
#: Call-progress tones of the world's dial, ringback and busy tones below 700 Hz (ITU-T E.180), in Hz.
CALL_PROGRESS_TONES_HZ = (350.0, 400.0, 425.0, 440.0, 450.0, 480.0, 620.0)
#: Harmonic comb (``SegmentJudge.purity``): the largest harmonic number a row tone is tried as, the lowest
#: fundamental tried, in Hz, how close both tones must lie to multiples of it, in percent (a close fit, and a
#: wide one for a voice whose pitch glides, judged with the contrast given here, a power ratio: 19.5 dB), and
#: the band looked at, in Hz. A robot voice's 3rd and 5th harmonics on key 1 fit 0.8 % off with a contrast over
#: 128; keys at -10 dBm0 with espeak-ng speech 10 dB under them lost none more up to a wide contrast of 48-64.
COMB_MAX_ROW_HARMONIC = 8
COMB_MIN_F0_HZ = 85.0
COMB_MATCH_PCT = 0.3
COMB_WIDE_MATCH_PCT = 1.0
MIN_WIDE_COMB_CONTRAST = 90.0
COMB_BAND_HZ = (150.0, 3400.0)
#: Shortest stretch the comb is judged on, in seconds (50 Hz resolution; the 12 ms left of a 20 ms piece
#: between dropouts is too coarse: the tones' own lobes cover the harmonics).
COMB_MIN_S = 0.02
#: Longest stretch of one tone analysed for purity, in seconds (bounds the cost of a held key).
PURITY_MAX_S = 0.25
#: Shortest stretch analysed for purity when the tone's runs allow it, in seconds (about 30 Hz resolution).
PURITY_MIN_S = 0.032
#: Gaps between a segment's runs holding at least this share of the runs' power are not dropouts.
BEATING_GAP_POWER = 0.25
#: Windows in a row (12.75 ms each, 6.375 ms apart: 25.5 ms of tone) that one run of a segment holds,
#: unless the breaks between its runs are dropouts of at least ``MIN_DROPOUT_S`` (``SegmentJudge._holds``).
MIN_HOLD_WINDOWS = 3
MIN_DROPOUT_S = 0.002
#: Breaks shorter than a half-block are found in blocks of this length, in seconds, where the tone's power
#: stays under this share of its median block's for ``MIN_DROPOUT_S``; a tone may have one such break, of up
#: to ``MAX_BREAK_S`` (the longest interruption Q.24 bridges), to be measured around (``SegmentJudge._lone_break``).
BREAK_BLOCK_S = 0.001
BREAK_POWER = 0.1
MAX_BREAK_S = 0.010
#: Time left out at each end of a tone before the purity analysis, in seconds (switching transients).
PURITY_EDGE_S = 0.004
#: Largest angle between one phase turn and its segment's mean turn that the drift measure keeps, in
#: radians: a 12 Hz glide bends the end turns by 0.24 rad, a dropped block by anything up to pi.
MAX_TURN_DEVIATION_RAD = 0.5
#: Offsets from a tone's nominal frequency at which the tone meter tabulates its window's response, in Hz.
METER_OFFSETS_HZ = np.linspace(-100.0, 100.0, 801)
#: A window whose magnitude at a tone is under this share of the tone's mean magnitude is dimmed by a
#: dropout (the tone meter's level spread leaves it out).
DROPOUT_MAGNITUDE = 0.7
#: A block of a tone holding less than this share of the tone's median block power is taken for a dropout.
#: Two tones beat, but over a 6.375 ms block the beat moves the power by at most +-15 %; a 5 ms break
#: takes at least 39 % out of the block it touches most.
DROPOUT_POWER = 0.7

_NO_DIGIT = -1
#: Half-blocks the streaming receiver keeps while no tone is pending: the last window (two half-blocks)
#: and the one before it, for the next run's leading edge; what ``_decide`` keeps once all is decided.
IDLE_KEEP_HALF_BLOCKS = 3
#: Half-blocks the history starts with, and the capacity above which it is given back once mostly empty.
HISTORY_MIN_CAPACITY = 64
HISTORY_SHRINK_FROM = 256


def harmonic_ratios(accept_deviation_pct: float = 1.5, guard_pct: float = 0.3, widest_pct: float = 0.5) -> tuple[tuple[float, float], ...]:
    """Frequency ratios of partials of one musical note or voiced sound (p/q, q <= 5) that no DTMF key can
    show within ``accept_deviation_pct`` on each tone, each with how close (in percent) a measured pair
    must come to be taken for harmonics: the room left to the nearest key, less ``guard_pct``, at most
    ``widest_pct``. Two DTMF tones are never in such a ratio; a note and its octave (2:1) or fifth (3:2)
    are, and can otherwise land within the frequency tolerance of a key (G#5 = 830.6 Hz and its octave,
    1661 Hz, look like 852 + 1633 Hz, key C).
    """
    slack = (1 + accept_deviation_pct / 100) / (1 - accept_deviation_pct / 100)
    keys = [col / row for row in ROW_FREQUENCIES_HZ for col in COL_FREQUENCIES_HZ]
    ratios = []
    for den in range(1, 6):
        for num in range(den + 1, 3 * den):
            ratio = num / den
            if math.gcd(num, den) != 1 or not 1.2 <= ratio <= 2.5:
                continue
            room_pct = min(max(k / slack - ratio, ratio - k * slack) / ratio * 100 for k in keys)
            if room_pct - guard_pct > 0.1:
                ratios.append((ratio, min(room_pct - guard_pct, widest_pct)))
    return tuple(sorted(ratios))


#: The harmonic ratios stage 5 refuses, with their tolerances in percent.
HARMONIC_RATIOS = harmonic_ratios()


@dataclass(frozen=True)
class DtmfThresholds:
    """Decision thresholds of the receiver, each derived from the limit it implements.

    Every field carries its unit. Each default lies between the accept and the reject limit of the
    specification (module docstring), with room for measurement error on the accept side; where talk-off
    asked for it, closer to the accept limit than midway (level, frequency, duration), as each says.
    """

    #: Weakest tone level that can start a detection, in dBm0 (accept -25, reject -55): keys at -41 dBm0 per
    #: tone still pass, with 2 dB for G.711 and noise.
    min_tone_level_dbm0: float = -43.0
    #: Normal twist (low tone louder) accepted, in dB (Q.24 AT&T: 8 dB).
    max_normal_twist_db: float = 8.0
    #: Reverse twist (high tone louder) accepted, in dB (Q.24 AT&T: 4 dB).
    max_reverse_twist_db: float = 4.0
    #: Measurement margin added to both twist limits, in dB.
    twist_margin_db: float = 1.0
    #: Strongest tone of a group over the runner-up of the same group, in dB. (spandsp uses 8 dB; at 8 dB
    #: twist the other group's tone leaks into a 12.75 ms block's bins up to -7.5 dB, so 8 dB would fail.)
    min_relative_peak_db: float = 6.0
    #: Share of the window's power that the two tones must carry (0.5 with dial tone at the same level).
    min_energy_share: float = 0.4
    #: Largest accepted frequency deviation of either tone, in percent (accept 1.5 %, reject 3.5 %). Keys
    #: 1.5 % off measure at most 1.56 % (any level, twist, 40 ms, G.711, noise); the pairs that recorded
    #: voices and chords put near keys sit 1.7-2.4 % off, inside the band Q.24 leaves open.
    max_frequency_deviation_pct: float = 1.7
    #: Steadiness of each tone's phase turn across the segment (1.0 for a pure tone).
    min_phase_coherence: float = 0.9
    #: Largest change of either tone's frequency from the first half of the tone to the second, in Hz.
    #: Keys measured (any level, twist and offset within the limits, noise 15 dB down, G.711): at most
    #: 2.5 Hz; a voice's partials glide with its pitch (a median of 12 Hz over espeak-ng's false pairs).
    max_drift_hz: float = 6.0
    #: Largest spread of either tone's magnitude across the windows inside the tone, over its mean. Keys
    #: measured: at most 0.075 with noise 15 dB down, 0.11 on a line at 10 dB SNR; a voice's partials swell
    #: and fade with its formants, a note decays.
    max_level_spread: float = 0.15
    #: Power left in 600-1750 Hz once the two tones are taken out, relative to the tones (-12 dB).
    #: A DTMF pair is alone in that band; voiced speech and music bring more harmonics into it.
    max_inband_residual: float = 0.06
    #: Power in 1750-3400 Hz relative to the two tones (-8 dB): speech formants and fricatives live there.
    max_upper_band_ratio: float = 0.15
    #: A pair whose tones are harmonics of one fundamental (the comb of ``SegmentJudge.purity``) is a voice's
    #: or a note's partials, not a key, when the other harmonics hold at least ``max_harmonic_comb`` of the
    #: pair's power (-11.5 dB), or at least ``max_standing_comb`` (-18 dB) standing out by ``min_comb_contrast``
    #: (a power ratio: 9 dB) from the spectrum between them. Keys measured with dial tone or ringback at
    #: their level: at most -13.4 dB (contrast under 0 dB). A key with a voice whose harmonics happen to
    #: fit it sounding within 10 dB of it can be refused (-13.9 dB, contrast 16 dB).
    max_harmonic_comb: float = 0.07
    max_standing_comb: float = 0.016
    min_comb_contrast: float = 8.0
    #: Largest distance between a tone's spectral peak and its measured frequency, in spectral
    #: resolutions (rate / samples analysed); a pure tone stays within about half of one.
    max_peak_miss: float = 1.0
    #: Shortest tone accepted as a digit, in ms (accept 40 ms, reject 23 ms). Above the midpoint: measured
    #: 40 ms tones come out no shorter than 37.8 ms under every impairment within the limits, while the
    #: rare pairs in recorded and synthetic speech that pass every other check last 35-37 ms.
    min_tone_ms: float = 37.0
    #: Longest gap inside one tone that is bridged, in ms (bridge 10 ms, split at 40 ms).
    bridge_gap_ms: float = 25.0


@dataclass(frozen=True, slots=True)
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
            "start_s": _rounded(self.start_s, 4),
            "end_s": _rounded(self.end_s, 4),
            "duration_ms": _rounded(self.duration_s * 1000.0, 1),
            "row_hz": _rounded(self.row_hz, 1),
            "col_hz": _rounded(self.col_hz, 1),
            "row_level_dbm0": _rounded(self.row_level_dbm0, 1),
            "col_level_dbm0": _rounded(self.col_level_dbm0, 1),
            "twist_db": _rounded(self.twist_db, 1),
        }


def _rounded(value: float, digits: int) -> float:
    return round(value, digits) + 0.0  # + 0.0 turns -0.0 into 0.0


# ---------------------------------------------------------------------------------------------------------
# Stages 2 and 3: window powers and the per-window classifier (run compiled by ``dtmf_kernels.ReceiverCore``).


def harmonic_pair(tones_hz: np.ndarray) -> np.ndarray:
    """True for each (row, col) pair of measured frequencies in one of ``HARMONIC_RATIOS``."""
    return dtmf_kernels.harmonic_pair(np.ascontiguousarray(tones_hz, dtype=np.float64).reshape(-1, 2), HARMONIC_RATIOS)


class WindowClassifier:
    """Stage 3: which digit, if any, each analysis window holds.

    Checks, all required: both tones at or above ``min_tone_level_dbm0``; twist within the limits plus a
    wide margin (the exact twist is checked on the whole tone); each tone at least
    ``min_relative_peak_db`` above the runner-up of its group; the two tones together carry at least
    ``min_energy_share`` of the window's power. Thresholds are scaled once to the window's raw energies:
    for a window of W samples, a tone of amplitude A at exactly its frequency gives a tone energy
    ``|Y|**2`` of (A*W/2)**2, a signal of mean power P a window energy of W*P. The check runs compiled
    (``dtmf_kernels.ReceiverCore``).
    """

    def __init__(self, thresholds: DtmfThresholds, window_samples: int) -> None:
        w = float(window_samples)
        self.window_samples = w
        # Tone power P = 2 |Y|^2 / W^2 and mean power = energy / W: fold both scales into the thresholds.
        self.min_tone_energy = dbm0_to_power(thresholds.min_tone_level_dbm0) * w * w / 2.0
        self.share_scale = thresholds.min_energy_share * w / 2.0
        loose_margin_db = thresholds.twist_margin_db + 3.0
        self.normal_twist = db_to_power_ratio(thresholds.max_normal_twist_db + loose_margin_db)
        self.reverse_twist = db_to_power_ratio(thresholds.max_reverse_twist_db + loose_margin_db)
        self.relative_peak = db_to_power_ratio(thresholds.min_relative_peak_db)

    def scaled(self) -> dtmf_kernels.WindowThresholds:
        """The thresholds as ``dtmf_kernels.ReceiverCore`` takes them."""
        return dtmf_kernels.WindowThresholds(
            self.min_tone_energy,
            self.normal_twist,
            self.reverse_twist,
            self.relative_peak,
            self.share_scale,
            self.min_tone_energy / self.window_samples,
        )


# ---------------------------------------------------------------------------------------------------------
# Stages 4 and 5: tone runs, their edges, segments, and the tones measured over each segment. The loops are
# compiled (``dtmf_kernels``) and run over any number of runs and segments at once.


@lru_cache(maxsize=64)
def _window_response(window: bytes, rate_hz: float) -> np.ndarray:
    """``window_response`` over the tone meter's offsets, once per window and rate (it costs milliseconds,
    more than decoding a short clip)."""
    return window_response(np.frombuffer(window, dtype=np.float64), METER_OFFSETS_HZ, rate_hz)


@lru_cache(maxsize=1)
def rfft_rows() -> Callable[..., np.ndarray]:
    """The real FFT of each row of a 2-D float32 array (complex64), into ``out`` where one is given (the
    judge's scratch; a new array otherwise): scipy's pocketfft, called past ``scipy.fft``'s backend
    dispatch, which costs a streamed digit more than the transform itself (11 us a call against 7 us). The
    entry point is scipy's own but not public: it is checked once against ``scipy.fft.rfft``, and
    ``scipy.fft.rfft`` (always a new array) serves wherever it is missing or differs."""

    def public(frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return scipy.fft.rfft(frames, axis=1)

    try:
        from scipy.fft._pocketfft.pypocketfft import r2c
    except ImportError:
        return public

    def direct(frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return r2c(frames, (1,), True, 0, out, 1)

    probe = np.random.default_rng(0).standard_normal((3, 12)).astype(np.float32)
    try:
        fast = direct(probe)
        into = direct(probe, np.empty((3, 7), dtype=np.complex64))
    except (TypeError, ValueError, RuntimeError):
        return public
    same = fast.dtype == np.complex64 and np.array_equal(fast, public(probe)) and np.array_equal(into, fast)
    return direct if same else public


class CallProgressNotch:
    """Second-order sections notching the in-band tone of each call-progress pair (Q 8: -1.1 dB at 697 Hz,
    which the levels measured through it are corrected for), made when first needed: scipy.signal takes
    a second to import, and most processes never notch."""

    def __init__(self, rate_hz: int) -> None:
        self.rate_hz = rate_hz
        self._sections: np.ndarray | None = None

    @property
    def sections(self) -> np.ndarray:
        if self._sections is None:
            import scipy.signal

            design = [scipy.signal.tf2sos(*scipy.signal.iirnotch(pair[1], 8.0, self.rate_hz)) for pair in CALL_PROGRESS_PAIRS_HZ]
            self._sections = np.vstack(design)
        return self._sections

    def apply(self, samples: np.ndarray) -> np.ndarray:
        """``samples`` through the notch, as float32."""
        from scipy.signal import sosfilt

        return sosfilt(self.sections, samples).astype(np.float32)


def _as_float32(samples: np.ndarray) -> np.ndarray:
    """Samples as float32 in [-1, 1]: integer PCM is scaled by its type's full scale."""
    x = np.asarray(samples)
    if x.dtype.kind == "i":
        return x.astype(np.float32) / np.float32(2 ** (8 * x.dtype.itemsize - 1))
    if x.dtype.kind == "u":
        half = 2 ** (8 * x.dtype.itemsize - 1)
        return (x.astype(np.float32) - np.float32(half)) / np.float32(half)
    return x.astype(np.float32, copy=False)


#: Length of the pieces ``detect_dtmf`` feeds a whole signal in, in seconds.
BATCH_PIECE_S = 4.0

#: How much input the streaming receiver gathers before it analyses, in ms (``DtmfReceiver``'s ``chunk_ms``).
DEFAULT_CHUNK_MS = 40.0


class DtmfReceiver:
    """Streaming DTMF receiver: feed float samples in frames of any size, get digits as they end.

    Args:
        rate_hz: sample rate of the input, 8,000 to 96,000 Hz.
        thresholds: decision thresholds; the defaults meet the specification in the module docstring.
        chunk_ms: input is analysed once at least this much has arrived, in ms. Larger chunks cost less per
            second of audio (the fixed cost of an analysis is paid once per chunk); smaller ones report digits
            sooner. Digits and their times do not depend on it.

    A digit is reported by the ``feed`` call in which it is certain that the key was released (its tone
    has been off for longer than ``bridge_gap_ms``): about 60 ms plus up to ``chunk_ms`` after the
    release. ``flush`` reports a digit still sounding at the end of the stream and resets the receiver.
    """

    def __init__(self, rate_hz: int, thresholds: DtmfThresholds | None = None, chunk_ms: float = DEFAULT_CHUNK_MS) -> None:
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
        t = self.thresholds
        self._bridge_half_blocks = t.bridge_gap_ms / 1000.0 * self.rate_hz / m
        # Half-blocks kept before a pending segment for the call-progress notch to settle in, so that a
        # stream notches from the same sample as a whole signal does.
        self._lead_half_blocks = int(math.ceil(CALL_PROGRESS_LEAD_S * self.rate_hz / m))
        self._min_tone_half_blocks = t.min_tone_ms / 1000.0 * self.rate_hz / m
        # A segment whose last window is this many windows old can no longer be extended by a bridge.
        self._settle_windows = 5 + int(math.floor(self._bridge_half_blocks))
        self._judge_kernel = dtmf_kernels.SegmentJudge(
            self.rate_hz,
            m,
            self._hann_bank.hop_rotation(m),
            _window_response(hann.tobytes(), float(self.rate_hz)),
            float(METER_OFFSETS_HZ[0]),
            float(METER_OFFSETS_HZ[1] - METER_OFFSETS_HZ[0]),
            self._hann_bank.gain,
            self.thresholds,
            self._judge_settings(),
            rfft_rows(),
        )
        self._core = dtmf_kernels.ReceiverCore(
            self._judge_kernel,
            m,
            self._chunk_samples,
            IDLE_KEEP_HALF_BLOCKS + self._lead_half_blocks,
            self._bank.basis,
            self._hann_bank.basis,
            self._hop_rotation,
            WindowClassifier(self.thresholds, self.window_samples).scaled(),
            HISTORY_MIN_CAPACITY,
            HISTORY_SHRINK_FROM,
        )

    def _judge_settings(self) -> dict[str, Any]:
        """The constants stages 5 and 6 run on (``dtmf_kernels.SegmentJudge``), in samples at this rate."""
        rate = self.rate_hz
        return {
            "frequencies_hz": DTMF_FREQUENCIES_HZ,
            "harmonic_ratios": HARMONIC_RATIOS,
            "call_progress_tones_hz": CALL_PROGRESS_TONES_HZ,
            "zero_dbm0_power": ZERO_DBM0_POWER,
            "max_turn_deviation_rad": MAX_TURN_DEVIATION_RAD,
            "dropout_magnitude": DROPOUT_MAGNITUDE,
            "dropout_power": DROPOUT_POWER,
            "beating_gap_power": BEATING_GAP_POWER,
            "min_hold_windows": MIN_HOLD_WINDOWS,
            "min_dropout_samples": int(MIN_DROPOUT_S * rate),
            "break_block_samples": int(round(BREAK_BLOCK_S * rate)),
            "break_power": BREAK_POWER,
            "max_break_samples": int(round(MAX_BREAK_S * rate)),
            "purity_edge_samples": int(round(PURITY_EDGE_S * rate)),
            "purity_longest_samples": int(PURITY_MAX_S * rate),
            "purity_shortest_samples": int(PURITY_MIN_S * rate),
            "comb_min_samples": int(COMB_MIN_S * rate),
            "dtmf_band_hz": DTMF_BAND_HZ,
            "upper_band_hz": UPPER_BAND_HZ,
            "comb_band_hz": COMB_BAND_HZ,
            "comb_min_f0_hz": COMB_MIN_F0_HZ,
            "comb_match_pct": COMB_MATCH_PCT,
            "comb_wide_match_pct": COMB_WIDE_MATCH_PCT,
            "min_wide_comb_contrast": MIN_WIDE_COMB_CONTRAST,
            "comb_max_row_harmonic": COMB_MAX_ROW_HARMONIC,
            "bridge_half_blocks": self._bridge_half_blocks,
            "min_tone_half_blocks": self._min_tone_half_blocks,
            "settle_windows": self._settle_windows,
            "lead_half_blocks": self._lead_half_blocks,
            "call_progress_lead_samples": int(CALL_PROGRESS_LEAD_S * rate),
            "call_progress_pairs_hz": CALL_PROGRESS_PAIRS_HZ,
            "hann_basis": self._hann_bank.basis,
            "notch": CallProgressNotch(self.rate_hz),
            "digit_type": DtmfDigit,
            "digit_fields": [field.name for field in fields(DtmfDigit)],
            "keys": KEYS_BY_INDEX,
        }

    def reset(self) -> None:
        """Forget all state: the next sample fed is time zero."""
        self._core.reset()

    def feed(self, samples: np.ndarray) -> list[DtmfDigit]:
        """Process ``samples`` (mono, any length); return the digits that ended.

        Float samples are taken as they are (full scale 1.0); integer samples (int16 PCM, or any signed
        or unsigned integer type) are scaled to full scale first.
        """
        return self._core.feed(np.ascontiguousarray(_as_float32(samples).reshape(-1)))

    def flush(self) -> list[DtmfDigit]:
        """End of stream: report any digit still pending, then reset."""
        return self._core.flush()


def detect_dtmf(samples: np.ndarray, rate_hz: int, thresholds: DtmfThresholds | None = None) -> list[DtmfDigit]:
    """All digits in a whole mono signal (float samples at ``rate_hz``).

    The signal is fed in pieces of ``BATCH_PIECE_S``: the same digits as all at once (the receiver does not
    depend on how its input is cut), with a history that stays small and warm in the cache instead of
    megabytes of fresh pages for a long recording."""
    receiver = DtmfReceiver(rate_hz, thresholds, chunk_ms=0.0)
    x = np.asarray(samples).reshape(-1)
    piece = int(BATCH_PIECE_S * rate_hz)
    digits: list[DtmfDigit] = []
    for offset in range(0, len(x), piece):
        digits += receiver.feed(x[offset : offset + piece])
    return digits + receiver.flush()

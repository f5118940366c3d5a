"""Two speakers in one mono channel, without a model: voice activity segments clustered by voice.

A mono recording holds both parties in one channel, so the per-channel VAD of ``ivrsim.analysis.timing``
cannot tell who spoke. ``diarize`` splits it in four steps, all plain DSP (deterministic, no download):

1. Voice activity: ``channel_activity`` on the mono channel (the same energy VAD, thresholds and edges as
   a stereo channel), giving speech segments (dips under 150 ms bridged).
2. DTMF: digits found by the DTMF receiver; segments that are mostly key tones are set aside (they are
   not a voice) and given to the user, who is the one pressing keys in a voice-agent call.
3. A voice print per segment: the median log pitch of its voiced 40 ms frames (autocorrelation, 60 to
   400 Hz), the share of voiced frames, and MFCC-like coefficients (a DCT of level-normalised log band
   energies on 18 mel-spaced bands, 100 to 3800 Hz), averaged over the segment's speech frames.
4. Two clusters: features standardised over the segments, pitch weighted ``PITCH_WEIGHT`` and the
   cepstra together as much as one feature (per segment they move with what is said as much as with
   who says it; pitch is the steadier mark of a voice), split in two along
   their first principal axis, then k-means (two centroids, segments weighted by duration) until the
   labels settle. The cluster of the first segment is the first speaker; the assistant is the first
   speaker when ``speaks_first``, else the other one. The clusters are two voices when their median
   pitches are ``MIN_PITCH_GAP_ST`` semitones apart or more, or, with at least
   ``MIN_SEGMENTS_FOR_SEPARATION`` voice segments, their centroids ``MIN_SEPARATION`` pooled standard
   deviations apart or more (k-means splits even one voice in two, by about 1.5 to 2 standard deviations,
   and on four segments of one voice by up to 3.5: a few segments are told apart by pitch alone);
   otherwise, and with fewer than two voice segments, everything is one speaker: the first.

Limits: overlapping speech cannot be split in one channel. Two parties speaking at once form one VAD
segment, which goes whole to one of them (whoever dominates its voice print): so a mono call's
interruptions and talk-over are found only where the two speakers' segments touch within the turn gap
(rarely), and its latencies only between segments separated by silence. Turn changes without a pause of
at least 150 ms are also one segment. Two similar voices (same sex, same pitch) may not separate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ivrsim.analysis.timing import (
    DTMF_FALLBACK_RATE_HZ,
    FRAME_S,
    HOP_S,
    TURN_GAP_S,
    ChannelActivity,
    _merge_close,
    channel_activity,
    frame_energies_dbfs,
)
from ivrsim.audio.dtmf_receiver import MAX_RATE_HZ as DTMF_MAX_RATE_HZ
from ivrsim.audio.dtmf_receiver import MIN_RATE_HZ as DTMF_MIN_RATE_HZ
from ivrsim.audio.dtmf_receiver import detect_dtmf
from ivrsim.audio.resample import resample

#: How the speakers were told apart, as the result states it.
METHOD = "energy-vad segments, pitch + mfcc-like features, 2-means"
#: Feature frame and hop, in seconds (40 ms holds two periods of a 60 Hz voice).
FEATURE_FRAME_S = 0.040
FEATURE_HOP_S = 0.020
#: Pitch search range, in Hz.
PITCH_MIN_HZ, PITCH_MAX_HZ = 60.0, 400.0
#: A frame is voiced when its normalised autocorrelation peak reaches this.
VOICED_MIN_CORRELATION = 0.45
#: Mel-spaced bands for the spectral features, and their range in Hz.
N_BANDS = 18
BAND_RANGE_HZ = (100.0, 3800.0)
#: MFCC-like coefficients kept (c1..cN; c0, the level, is dropped: loudness is not a voice).
N_CEPSTRA = 8
#: Weight of the pitch feature, after standardisation, against the cepstra (together weighted 1) and
#: the voiced share (weighted 1).
PITCH_WEIGHT = 2.0
#: Clusters whose median pitches are this far apart, in semitones, are two voices.
MIN_PITCH_GAP_ST = 2.0
#: Clusters whose centroids are this far apart, in pooled within-cluster standard deviations, are two voices.
MIN_SEPARATION = 3.0
#: Fewer voice segments than this are split by pitch only (their separation is noise: see the docstring).
MIN_SEGMENTS_FOR_SEPARATION = 6
#: A segment this much covered by DTMF tones is key presses, not a voice.
DTMF_SHARE = 0.5
#: Feature frames computed at a time (bounds memory on long calls).
BLOCK_FRAMES = 4096
#: Most k-means rounds (it settles in a few).
MAX_ROUNDS = 50

_EMPTY = np.zeros((0, 2), dtype=np.float64)


@dataclass(frozen=True)
class Diarization:
    """Who spoke when in a mono recording: each speaker's activity (segments and turns, the mono channel's
    levels), the segments in time order with their speaker, and how the split was made."""

    assistant: ChannelActivity
    user: ChannelActivity
    segments: list[dict[str, Any]]
    speakers_found: int
    separation: float | None
    pitch_gap_st: float | None
    dtmf: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        """The ``diarization`` block of a result: plain JSON."""
        return {
            "method": METHOD,
            "speakers": 2,
            "speakers_found": self.speakers_found,
            "separation": None if self.separation is None else round(float(self.separation), 2),
            "min_separation": MIN_SEPARATION,
            "pitch_gap_st": None if self.pitch_gap_st is None else round(float(self.pitch_gap_st), 1),
            "min_pitch_gap_st": MIN_PITCH_GAP_ST,
            "segments": self.segments,
            "overlap": "overlapping speech in one channel is one segment, given whole to one speaker",
            "dtmf_attributed_to": "user",
        }


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _band_matrix(n_fft: int, rate_hz: int) -> np.ndarray:
    """Triangular mel filters, (N_BANDS, n_fft // 2 + 1)."""
    low, high = BAND_RANGE_HZ[0], min(BAND_RANGE_HZ[1], 0.475 * rate_hz)
    edges_mel = np.linspace(_mel(low), _mel(high), N_BANDS + 2)
    edges_hz = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate_hz)
    bands = np.zeros((N_BANDS, len(freqs)))
    for b in range(N_BANDS):
        lo, mid, hi = edges_hz[b : b + 3]
        rising = (freqs - lo) / (mid - lo)
        falling = (hi - freqs) / (hi - mid)
        bands[b] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bands


def _dct_matrix() -> np.ndarray:
    """DCT-II rows 1..N_CEPSTRA over the bands."""
    k = np.arange(1, N_CEPSTRA + 1)[:, None]
    n = np.arange(N_BANDS)[None, :]
    return np.cos(np.pi * k * (2 * n + 1) / (2 * N_BANDS))


def _pitch_and_cepstra(frames: np.ndarray, rate_hz: int) -> tuple[np.ndarray, np.ndarray]:
    """Log2 pitch (NaN where unvoiced) and cepstra of a block of frames, (n, frame_len)."""
    frame_len = frames.shape[1]
    window = np.hanning(frame_len)
    frames = (frames - frames.mean(axis=1, keepdims=True)) * window[None, :]
    n_fft = 1 << int(np.ceil(np.log2(2 * frame_len)))
    power = np.abs(np.fft.rfft(frames, n_fft, axis=1)) ** 2
    # pitch: the autocorrelation (inverse FFT of the power), normalised by lag 0 and by the window's own
    correlation = np.fft.irfft(power, n_fft, axis=1)[:, :frame_len]
    window_correlation = np.correlate(window, window, "full")[frame_len - 1 :]
    lag_lo = max(2, int(rate_hz / PITCH_MAX_HZ))
    lag_hi = min(frame_len - 1, int(np.ceil(rate_hz / PITCH_MIN_HZ)))
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = correlation[:, lag_lo : lag_hi + 1] / (correlation[:, :1] * window_correlation[None, lag_lo : lag_hi + 1]
                                                            / window_correlation[0])
    normalised = np.nan_to_num(normalised, nan=0.0, posinf=0.0, neginf=0.0)
    best = np.argmax(normalised, axis=1)
    peak = normalised[np.arange(len(frames)), best]
    log_pitch = np.where(peak >= VOICED_MIN_CORRELATION, np.log2(rate_hz / (best + lag_lo)), np.nan)
    bands = np.log(power @ _band_matrix(n_fft, rate_hz).T + 1e-12)
    bands -= bands.mean(axis=1, keepdims=True)
    return log_pitch, bands @ _dct_matrix().T


def frame_features(samples: np.ndarray, rate_hz: int, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The feature frames inside ``segments`` (and the nearest one to each segment shorter than a frame),
    in blocks of ``BLOCK_FRAMES`` (memory stays bounded on long calls): start times in s, log2 pitch
    (NaN where unvoiced), cepstra (frames, N_CEPSTRA)."""
    frame_len = max(8, round(FEATURE_FRAME_S * rate_hz))
    hop = max(1, round(FEATURE_HOP_S * rate_hz))
    x = np.asarray(samples, dtype=np.float64)
    n_frames = 1 + (len(x) - frame_len) // hop if len(x) >= frame_len else 0
    if n_frames == 0 or len(segments) == 0:
        return np.zeros(0), np.zeros(0), np.zeros((0, N_CEPSTRA))
    centres = (np.arange(n_frames) * hop + frame_len / 2) / rate_hz
    which = np.searchsorted(segments[:, 0], centres, side="right") - 1
    chosen = (which >= 0) & (centres <= segments[np.maximum(which, 0), 1])
    middles = np.clip(np.rint(((segments[:, 0] + segments[:, 1]) / 2 * rate_hz - frame_len / 2) / hop).astype(int), 0, n_frames - 1)
    chosen[middles] = True
    indices = np.flatnonzero(chosen)
    log_pitch = np.empty(len(indices))
    cepstra = np.empty((len(indices), N_CEPSTRA))
    for first in range(0, len(indices), BLOCK_FRAMES):
        block = indices[first : first + BLOCK_FRAMES]
        frames = x[block[:, None] * hop + np.arange(frame_len)[None, :]]
        log_pitch[first : first + len(block)], cepstra[first : first + len(block)] = _pitch_and_cepstra(frames, rate_hz)
    return indices * hop / rate_hz, log_pitch, cepstra


def _segment_features(segments: np.ndarray, starts: np.ndarray, log_pitch: np.ndarray, cepstra: np.ndarray) -> np.ndarray:
    """One row per segment: median log pitch (NaN when none voiced), voiced share, mean cepstra."""
    rows = []
    centres = starts + FEATURE_FRAME_S / 2
    for start, end in segments:
        inside = (centres >= start) & (centres <= end)
        if not inside.any():  # shorter than a feature frame: the nearest frame
            inside = np.zeros(len(centres), dtype=bool)
            if len(centres):
                inside[int(np.argmin(np.abs(centres - (start + end) / 2)))] = True
        pitch = log_pitch[inside]
        voiced = pitch[np.isfinite(pitch)]
        median = float(np.median(voiced)) if len(voiced) else np.nan
        spectral = cepstra[inside].mean(axis=0) if inside.any() else np.zeros(N_CEPSTRA)
        rows.append([median, len(voiced) / max(1, int(inside.sum())), *spectral])
    return np.asarray(rows, dtype=np.float64).reshape(len(segments), 2 + N_CEPSTRA)


def _two_means(features: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Labels (0/1) and the separation of two clusters of rows; deterministic (principal-axis split, then k-means)."""
    x = features.copy()
    for column in range(x.shape[1]):  # a segment with no voiced frame takes the median pitch of the others
        missing = ~np.isfinite(x[:, column])
        if missing.all():
            x[:, column] = 0.0
        elif missing.any():
            x[missing, column] = np.median(x[~missing, column])
    spread = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(spread > 1e-9, spread, 1.0)
    x[:, 0] *= PITCH_WEIGHT
    x[:, 2:] /= np.sqrt(x.shape[1] - 2)
    centred = x - np.average(x, axis=0, weights=weights)
    _, _, axes = np.linalg.svd(centred * np.sqrt(weights)[:, None], full_matrices=False)
    projection = centred @ axes[0]
    labels = (projection > np.median(projection)).astype(int)
    if labels.min() == labels.max():
        labels[int(np.argmax(projection))] = 1
    for _ in range(MAX_ROUNDS):
        centroids = np.stack([np.average(x[labels == k], axis=0, weights=weights[labels == k]) for k in (0, 1)])
        distances = ((x[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
        new = np.argmin(distances, axis=1)
        if new.min() == new.max():
            break
        if np.array_equal(new, labels):
            break
        labels = new
    centroids = np.stack([np.average(x[labels == k], axis=0, weights=weights[labels == k]) for k in (0, 1)])
    within = sum(float(np.sum(weights[labels == k] * ((x[labels == k] - centroids[k]) ** 2).sum(axis=1))) for k in (0, 1))
    pooled_sd = np.sqrt(within / max(float(weights.sum()), 1e-9))
    separation = float(np.linalg.norm(centroids[0] - centroids[1]) / max(pooled_sd, 1e-9))
    return labels, separation


def _pitch_gap_st(log2_pitch: np.ndarray, labels: np.ndarray) -> float | None:
    """Semitones between the two clusters' median pitches (None when a cluster has no voiced segment)."""
    medians = []
    for k in (0, 1):
        pitch = log2_pitch[(labels == k) & np.isfinite(log2_pitch)]
        if not len(pitch):
            return None
        medians.append(float(np.median(pitch)))
    return abs(medians[0] - medians[1]) * 12.0


def _dtmf_spans(samples: np.ndarray, rate_hz: int) -> list[tuple[str, float, float]]:
    if len(samples) == 0:
        return []
    x = np.asarray(samples, dtype=np.float32)
    if not DTMF_MIN_RATE_HZ <= rate_hz <= DTMF_MAX_RATE_HZ:
        x, rate_hz = resample(x, rate_hz, DTMF_FALLBACK_RATE_HZ), DTMF_FALLBACK_RATE_HZ
    return [(str(d.key), float(d.start_s), float(d.end_s)) for d in detect_dtmf(x, rate_hz)]


def _speaker_activity(mono: ChannelActivity, segments: np.ndarray, energies: np.ndarray, hop_s: float) -> ChannelActivity:
    """One speaker's share of the mono channel's activity: its segments and turns, the channel's levels,
    the mean power of the speech frames inside its segments."""
    if len(segments) == 0:
        return ChannelActivity(mono.noise_floor_dbfs, mono.threshold_dbfs, mono.loudest_dbfs, 0.0, _EMPTY, _EMPTY)
    centres = np.arange(len(energies)) * hop_s + hop_s
    inside = np.zeros(len(energies), dtype=bool)
    for start, end in segments:
        inside |= (centres >= start) & (centres <= end)
    loud = inside & (energies >= mono.threshold_dbfs)
    power = float(np.mean(10.0 ** (energies[loud] / 10.0))) if loud.any() else 0.0
    return ChannelActivity(mono.noise_floor_dbfs, mono.threshold_dbfs, mono.loudest_dbfs, power, segments,
                           _merge_close(segments, TURN_GAP_S))


def diarize(samples: np.ndarray, rate_hz: int, speaks_first: bool = True) -> Diarization:
    """Split a mono call (float samples, shape (N,) or (N, 1)) into the assistant's and the user's voice
    activity (module docstring: method and limits)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"samples: expected mono samples of shape (N,) or (N, 1), got shape {x.shape}")
    x = np.where(np.isfinite(x), x, 0.0).astype(np.float32)
    rate_hz = int(rate_hz)
    mono = channel_activity(x, rate_hz)
    segments = mono.segments
    digits = _dtmf_spans(x, rate_hz)
    tones = np.zeros(len(segments), dtype=bool)
    for i, (start, end) in enumerate(segments):
        covered = sum(max(0.0, min(end, d_end) - max(start, d_start)) for _, d_start, d_end in digits)
        tones[i] = covered >= DTMF_SHARE * (end - start)
    voice = np.flatnonzero(~tones)
    labels = np.ones(len(segments), dtype=int)  # 0 first speaker, 1 the other; tones: the user, set below
    separation: float | None = None
    pitch_gap_st: float | None = None
    found = 1 if len(voice) else 0
    if len(voice) >= 2:
        starts, log_pitch, cepstra = frame_features(x, rate_hz, segments[voice])
        features = _segment_features(segments[voice], starts, log_pitch, cepstra)
        weights = np.maximum(segments[voice, 1] - segments[voice, 0], 0.05)
        voice_labels, separation = _two_means(features, weights)
        pitch_gap_st = _pitch_gap_st(features[:, 0], voice_labels)
        apart = separation >= MIN_SEPARATION and len(voice) >= MIN_SEGMENTS_FOR_SEPARATION
        if apart or (pitch_gap_st is not None and pitch_gap_st >= MIN_PITCH_GAP_ST):
            found = 2
            labels[voice] = (voice_labels != voice_labels[0]).astype(int)
        else:
            labels[voice] = 0
    elif len(voice) == 1:
        labels[voice] = 0
    assistant_label = 0 if speaks_first else 1
    is_assistant = (labels == assistant_label) & ~tones
    frame_len, hop = max(1, round(FRAME_S * rate_hz)), max(1, round(HOP_S * rate_hz))
    hop_s = hop / rate_hz
    energies = frame_energies_dbfs(np.square(x, dtype=np.float64), frame_len, hop)
    assistant = _speaker_activity(mono, segments[is_assistant], energies, hop_s)
    user = _speaker_activity(mono, segments[~is_assistant], energies, hop_s)
    listed = [
        {"start_s": round(float(s), 3), "end_s": round(float(e), 3), "speaker": "assistant" if a else "user",
         **({"dtmf": True} if t else {})}
        for (s, e), a, t in zip(segments, is_assistant, tones, strict=True)
    ]
    dtmf = [{"digit": key, "start_s": round(s, 3)} for key, s, _ in digits]
    return Diarization(assistant, user, listed, found, separation, pitch_gap_st, dtmf)

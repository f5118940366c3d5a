"""Timing metrics of a two-party call, one party per channel: pure DSP on numpy arrays, no I/O, no ASR.

The definitions follow the practice of the hosted voice-agent analytics (Retell's ``latency.e2e``,
Vapi's and Cekura's turn-taking metrics) and the open hotato methodology:

- Voice activity: an energy VAD per channel on 20 ms frames (``FRAME_S``) with a 10 ms hop (``HOP_S``).
  Frame energy is in dBFS, ``10 * log10(mean square)`` of float samples in [-1, 1] (a full-scale square
  wave is 0 dBFS, a full-scale sine -3 dBFS; clamped at ``ENERGY_FLOOR_DBFS`` so digital silence stays
  finite). The noise floor is the 10th percentile of the channel's frame energies
  (``NOISE_FLOOR_PERCENTILE``); the threshold is ``max(floor + 15 dB, -60 dBFS)``, capped at 22 dB under
  the loudest frame (``PEAK_CAP_DB``: a quiet speaker, or a channel so full of speech that its 10th
  percentile lies in speech, is still heard). Ours, on top: the cap never takes the threshold below
  ``floor + 6 dB`` (``GUARD_OVER_FLOOR_DB``) nor below -80 dBFS (``LOWEST_THRESHOLD_DBFS``), so that a
  channel holding only line noise or dither has no speech instead of all speech.
- Speech segments: runs of frames at or above the threshold; dips of up to 150 ms (``HANGOVER_S``) inside
  speech are bridged. A segment's edges are then placed to 2.5 ms (``EDGE_STEP_S``) inside its first and
  last frames, where the energy first and last reaches the threshold; the hangover is not added to a
  segment's end, so that latencies are not lengthened by it.
- Turns: a turn ends after 200 ms of silence (``TURN_GAP_S``): segments of one party closer than that
  are one turn. Talk time is the sum of a party's turns (short pauses inside a turn count as talk); talk
  ratio is that party's share of both parties' talk time.
- Latency: at every user -> assistant turn change, the user's end of turn to the assistant's first sound,
  when the assistant starts after the user ended and has not spoken since (an assistant start during a
  user turn is an interruption, not a latency). Reported as Retell's ``latency.e2e``: p50, p90, p95,
  p99 (numpy's linear percentiles), min, max, num and the values, in ms.
- Interruptions: a turn of one party that starts while the other party is in a turn.
  ``num_user_interrupted`` counts the assistant starting over the user, ``num_assistant_interrupted`` the
  user starting over the assistant. Each event has its time, the interrupter, the overlap (until either
  turn ends) and how long the interrupted party went on (``kept_talking_s``). Talk-over is the total time
  both parties are in a turn; ``assistant_kept_talking_s`` sums, over the user's interruptions, how long
  the assistant went on after the user started.
- Dead air: silences in which neither party is in a turn, longer than the threshold (default 3 s),
  between the first and the last speech of the call: leading silence (ringing, the wait for the first
  word) and trailing silence (after the last word, before the hang-up) are not dead air.
- SNR per channel: the mean power of the frames above the threshold, in dB, minus the noise floor.
- DTMF: the digits each party sent, heard by ``ivrsim.audio.detect_dtmf``.

Mono recordings are not handled here: splitting one channel into two speakers is diarization
(``ivrsim.analysis.diarization``), whose per-speaker activity ``activity_metrics`` measures the same way.
``analyze_channels`` takes stereo audio and a channel for the assistant; every number in its result
is a plain float (seconds rounded to the millisecond, ms as whole numbers), int, list or dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ivrsim.audio.dtmf_receiver import MAX_RATE_HZ as DTMF_MAX_RATE_HZ
from ivrsim.audio.dtmf_receiver import MIN_RATE_HZ as DTMF_MIN_RATE_HZ
from ivrsim.audio.dtmf_receiver import detect_dtmf
from ivrsim.audio.levels import power_to_dbm0
from ivrsim.audio.resample import resample

#: VAD frame length, in seconds.
FRAME_S = 0.020
#: VAD hop between frames, in seconds.
HOP_S = 0.010
#: Percentile of a channel's frame energies taken as its noise floor.
NOISE_FLOOR_PERCENTILE = 10.0
#: How far above the noise floor the speech threshold sits, in dB.
THRESHOLD_OVER_FLOOR_DB = 15.0
#: The threshold is never below this (before the peak cap), in dBFS.
MIN_THRESHOLD_DBFS = -60.0
#: The threshold is capped this far under the loudest frame, in dB.
PEAK_CAP_DB = 22.0
#: Ours: the peak cap never lowers the threshold below the floor plus this, in dB.
GUARD_OVER_FLOOR_DB = 6.0
#: Ours: the peak cap never lowers the threshold below this, in dBFS (16-bit dither is near -96 dBFS).
LOWEST_THRESHOLD_DBFS = -80.0
#: Frame energies are clamped to at least this, in dBFS, so that digital silence stays finite.
ENERGY_FLOOR_DBFS = -120.0
#: Dips in speech up to this long are bridged into one segment, in seconds.
HANGOVER_S = 0.150
#: Silence that ends a turn, in seconds: segments of one party closer than this are one turn.
TURN_GAP_S = 0.200
#: Resolution to which segment edges are placed inside their edge frames, in seconds.
EDGE_STEP_S = 0.0025
#: Default shortest silence counted as dead air, in seconds.
DEFAULT_DEAD_AIR_THRESHOLD_S = 3.0
#: Rate DTMF detection runs at when the recording's rate is outside the receiver's range, in Hz.
DTMF_FALLBACK_RATE_HZ = 8000
#: Lowest sample rate accepted, in Hz (a 10 ms hop must hold at least one sample).
MIN_RATE_HZ = 100

#: The latency percentiles reported, as in Retell's ``latency.e2e``.
LATENCY_PERCENTILES = (50, 90, 95, 99)

_EMPTY_INTERVALS = np.zeros((0, 2), dtype=np.float64)


@dataclass(frozen=True)
class ChannelActivity:
    """Voice activity of one channel. Levels in dBFS; ``segments`` and ``turns`` are (n, 2) arrays of
    start and end times in seconds; ``speech_power`` is the mean square of the speech frames (0 if none)."""

    noise_floor_dbfs: float
    threshold_dbfs: float
    loudest_dbfs: float
    speech_power: float
    segments: np.ndarray
    turns: np.ndarray

    @property
    def has_speech(self) -> bool:
        return len(self.segments) > 0

    @property
    def first_speech_s(self) -> float | None:
        return float(self.segments[0, 0]) if self.has_speech else None

    @property
    def speech_level_dbfs(self) -> float | None:
        return float(10.0 * np.log10(self.speech_power)) if self.has_speech and self.speech_power > 0 else None

    @property
    def snr_db(self) -> float | None:
        level = self.speech_level_dbfs
        return None if level is None else level - self.noise_floor_dbfs

    @property
    def talk_time_s(self) -> float:
        return float(np.sum(self.turns[:, 1] - self.turns[:, 0])) if len(self.turns) else 0.0


def _frame_sizes(rate_hz: int) -> tuple[int, int]:
    return max(1, round(FRAME_S * rate_hz)), max(1, round(HOP_S * rate_hz))


def frame_energies_dbfs(squares: np.ndarray, frame_len: int, hop: int) -> np.ndarray:
    """Energy in dBFS of every full frame of ``frame_len`` samples, ``hop`` apart, from squared samples."""
    n = len(squares)
    if n < frame_len:
        return np.zeros(0, dtype=np.float64)
    n_frames = 1 + (n - frame_len) // hop
    if frame_len == 2 * hop:  # the usual case (20 ms / 10 ms at any rate divisible by 100): two hop blocks
        blocks = squares[: (n_frames + 1) * hop].reshape(n_frames + 1, hop).sum(axis=1)
        sums = blocks[:-1] + blocks[1:]
    else:
        sums = np.lib.stride_tricks.sliding_window_view(squares, frame_len)[::hop].sum(axis=1)
    power = np.maximum(sums[:n_frames] / frame_len, 10.0 ** (ENERGY_FLOOR_DBFS / 10.0))
    return 10.0 * np.log10(power)


def speech_threshold_dbfs(energies_dbfs: np.ndarray) -> tuple[float, float, float]:
    """(noise floor, threshold, loudest frame) in dBFS for a channel's frame energies (module docstring)."""
    if len(energies_dbfs) == 0:
        return ENERGY_FLOOR_DBFS, float("inf"), ENERGY_FLOOR_DBFS
    floor = float(np.percentile(energies_dbfs, NOISE_FLOOR_PERCENTILE))
    loudest = float(np.max(energies_dbfs))
    threshold = min(max(floor + THRESHOLD_OVER_FLOOR_DB, MIN_THRESHOLD_DBFS), loudest - PEAK_CAP_DB)
    threshold = max(threshold, floor + GUARD_OVER_FLOOR_DB, LOWEST_THRESHOLD_DBFS)
    return floor, threshold, loudest


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index (inclusive) of every run of True in ``mask``."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1


def _edge_samples(squares: np.ndarray, frames: np.ndarray, frame_len: int, hop: int, step: int,
                  threshold_dbfs: float, first: bool) -> np.ndarray:
    """Sample index of each edge inside ``frames``: the start of the first step-long block at or above
    the threshold (``first``), or the end of the last one; the frame's centre when none is."""
    n_steps = frame_len // step
    centre = frames * hop + frame_len // 2
    if len(frames) == 0 or n_steps < 2:
        return centre
    index = frames[:, None] * hop + np.arange(n_steps * step)[None, :]
    power = squares[index].reshape(len(frames), n_steps, step).mean(axis=2)
    loud = power >= 10.0 ** (threshold_dbfs / 10.0)
    found = loud.any(axis=1)
    if first:
        position = frames * hop + np.argmax(loud, axis=1) * step
    else:
        position = frames * hop + (n_steps - np.argmax(loud[:, ::-1], axis=1)) * step
    return np.where(found, position, centre)


def _merge_close(intervals: np.ndarray, gap_s: float) -> np.ndarray:
    """Sorted, disjoint ``intervals`` with those less than ``gap_s`` apart joined."""
    if len(intervals) < 2:
        return intervals
    split = intervals[1:, 0] - intervals[:-1, 1] >= gap_s
    starts = intervals[np.concatenate(([True], split)), 0]
    ends = intervals[np.concatenate((split, [True])), 1]
    return np.stack([starts, ends], axis=1)


def channel_activity(samples: np.ndarray, rate_hz: int) -> ChannelActivity:
    """Voice activity of one channel (float samples at ``rate_hz``): segments and turns (module docstring)."""
    frame_len, hop = _frame_sizes(rate_hz)
    squares = np.square(np.asarray(samples), dtype=np.float64)
    if not np.isfinite(squares).all():  # NaN or inf samples (a corrupt decode) count as silence
        squares[~np.isfinite(squares)] = 0.0
    energies = frame_energies_dbfs(squares, frame_len, hop)
    floor, threshold, loudest = speech_threshold_dbfs(energies)
    active = energies >= threshold
    if not active.any():
        return ChannelActivity(floor, threshold, loudest, 0.0, _EMPTY_INTERVALS, _EMPTY_INTERVALS)
    speech_power = float(np.mean(10.0 ** (energies[active] / 10.0)))
    first, last = _runs(active)
    hangover_frames = round(HANGOVER_S / (hop / rate_hz))
    keep = first[1:] - last[:-1] - 1 > hangover_frames
    first = first[np.concatenate(([True], keep))]
    last = last[np.concatenate((keep, [True]))]
    step = max(1, round(EDGE_STEP_S * rate_hz))
    starts = _edge_samples(squares, first, frame_len, hop, step, threshold, first=True)
    ends = _edge_samples(squares, last, frame_len, hop, step, threshold, first=False)
    segments = np.stack([starts, np.maximum(ends, starts + 1)], axis=1).astype(np.float64) / rate_hz
    return ChannelActivity(floor, threshold, loudest, speech_power, segments, _merge_close(segments, TURN_GAP_S))


def _check_stereo(audio: np.ndarray, rate_hz: int) -> np.ndarray:
    x = np.asarray(audio)
    if x.ndim != 2 or x.shape[1] != 2:
        shape = "x".join(str(d) for d in x.shape) or "scalar"
        raise ValueError(
            f"audio: expected stereo samples of shape (frames, 2), one party per channel, got shape {shape}; "
            "mono recordings need diarization first"
        )
    if int(rate_hz) < MIN_RATE_HZ:
        raise ValueError(f"rate_hz: must be at least {MIN_RATE_HZ} Hz, got {rate_hz}")
    return x


def assistant_channel_for(audio: np.ndarray, rate_hz: int, speaks_first: bool) -> int:
    """The assistant's channel (0 or 1): the channel that speaks first when ``speaks_first``, else the
    other. The first speaker is the channel whose first speech starts earlier (channel 0 on a tie, and
    when neither channel speaks)."""
    x = _check_stereo(audio, rate_hz)
    firsts = [channel_activity(x[:, c], rate_hz).first_speech_s for c in (0, 1)]
    if firsts[1] is not None and (firsts[0] is None or firsts[1] < firsts[0]):
        first_speaker = 1
    else:
        first_speaker = 0
    return first_speaker if speaks_first else 1 - first_speaker


def _s(value: float) -> float:
    """Seconds rounded to the millisecond, as a plain float."""
    return round(float(value), 3)


def _ms(value_s: float) -> int:
    """Seconds as whole milliseconds."""
    return round(float(value_s) * 1000.0)


def _db(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 1)


def _latencies_s(assistant: np.ndarray, user: np.ndarray) -> list[float]:
    """User end of turn to assistant start, at each assistant turn that answers a finished user turn."""
    values: list[float] = []
    if len(assistant) == 0 or len(user) == 0:
        return values
    user_starts, user_ends = user[:, 0], user[:, 1]
    for k, (start, _end) in enumerate(assistant):
        j = int(np.searchsorted(user_ends, start, side="right")) - 1  # the last user turn ended by now
        if j < 0:
            continue
        if j + 1 < len(user) and user_starts[j + 1] < start:  # the user is speaking: an interruption
            continue
        if k > 0 and assistant[k - 1, 1] > user_ends[j]:  # the assistant spoke after the user ended
            continue
        values.append(float(start - user_ends[j]))
    return values


def _latency_summary(values_s: list[float]) -> dict[str, Any]:
    if not values_s:
        summary: dict[str, Any] = {f"p{p}": None for p in LATENCY_PERCENTILES}
        summary.update({"min": None, "max": None, "num": 0, "values": []})
        return summary
    ms = np.asarray(values_s) * 1000.0
    summary = {f"p{p}": round(float(np.percentile(ms, p))) for p in LATENCY_PERCENTILES}
    summary.update({
        "min": round(float(ms.min())),
        "max": round(float(ms.max())),
        "num": len(values_s),
        "values": [round(float(v)) for v in ms],
    })
    return summary


def _interruptions(assistant: np.ndarray, user: np.ndarray) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    kept_talking_s = 0.0
    for interrupter, turns, other in (("assistant", assistant, user), ("user", user, assistant)):
        if len(other) == 0:
            continue
        for start, end in turns:
            j = int(np.searchsorted(other[:, 0], start, side="left")) - 1  # the other's last turn begun before
            if j < 0 or other[j, 1] <= start:
                continue
            other_end = float(other[j, 1])
            went_on_s = other_end - float(start)
            events.append({
                "at_s": _s(start),
                "interrupter": interrupter,
                "overlap_s": _s(min(float(end), other_end) - float(start)),
                "kept_talking_s": _s(went_on_s),
            })
            if interrupter == "user":
                kept_talking_s += went_on_s
    events.sort(key=lambda event: event["at_s"])
    return {
        "num_user_interrupted": sum(1 for e in events if e["interrupter"] == "assistant"),
        "num_assistant_interrupted": sum(1 for e in events if e["interrupter"] == "user"),
        "events": events,
        "talk_over_s": _s(_overlap_s(assistant, user)),
        "assistant_kept_talking_s": _s(kept_talking_s),
    }


def _overlap_s(a: np.ndarray, b: np.ndarray) -> float:
    """Total time covered by both of two sorted, disjoint interval lists."""
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        total += max(0.0, min(a[i, 1], b[j, 1]) - max(a[i, 0], b[j, 0]))
        if a[i, 1] < b[j, 1]:
            i += 1
        else:
            j += 1
    return float(total)


def _dead_air(assistant: np.ndarray, user: np.ndarray, threshold_s: float) -> dict[str, Any]:
    both = np.concatenate([assistant, user])
    events: list[dict[str, float]] = []
    if len(both):
        both = both[np.argsort(both[:, 0], kind="stable")]
        covered_until = both[0, 1]
        for start, end in both[1:]:
            if start - covered_until > threshold_s:
                events.append({"start_s": _s(covered_until), "end_s": _s(start)})
            covered_until = max(covered_until, end)
    lengths = [e["end_s"] - e["start_s"] for e in events]
    return {
        "threshold_s": _s(threshold_s),
        "count": len(events),
        "total_s": _s(sum(lengths)),
        "longest_s": _s(max(lengths, default=0.0)),
        "events": events,
    }


def dtmf_digits(samples: np.ndarray, rate_hz: int) -> dict[str, Any]:
    """The DTMF digits in one channel and when each began: ``{"digits", "times_s"}``."""
    if len(samples) == 0:
        return {"digits": "", "times_s": []}
    if not DTMF_MIN_RATE_HZ <= rate_hz <= DTMF_MAX_RATE_HZ:
        samples, rate_hz = resample(samples, rate_hz, DTMF_FALLBACK_RATE_HZ), DTMF_FALLBACK_RATE_HZ
    digits = detect_dtmf(samples, rate_hz)
    return {"digits": "".join(str(d.key) for d in digits), "times_s": [_s(d.start_s) for d in digits]}


def _speaker(activity: ChannelActivity, channel: int, total_talk_s: float) -> dict[str, Any]:
    talk_s = activity.talk_time_s
    return {
        "channel": channel + 1,
        "talk_time_s": _s(talk_s),
        "talk_ratio": round(talk_s / total_talk_s, 4) if total_talk_s > 0 else 0.0,
        "turns": len(activity.turns),
        "turn_list": [{"start_s": _s(s), "end_s": _s(e)} for s, e in activity.turns],
        "snr_db": _db(activity.snr_db),
        "noise_floor_dbfs": _db(activity.noise_floor_dbfs),
        "threshold_dbfs": _db(activity.threshold_dbfs),
        "speech_level_dbm0": _db(power_to_dbm0(activity.speech_power)) if activity.has_speech else None,
    }


def vad_parameters() -> dict[str, Any]:
    """The VAD's definition, stated in every result so that results say how they were measured."""
    return {
        "method": "energy",
        "frame_s": FRAME_S,
        "hop_s": HOP_S,
        "noise_floor_percentile": NOISE_FLOOR_PERCENTILE,
        "threshold_over_floor_db": THRESHOLD_OVER_FLOOR_DB,
        "min_threshold_dbfs": MIN_THRESHOLD_DBFS,
        "peak_cap_db": PEAK_CAP_DB,
        "guard_over_floor_db": GUARD_OVER_FLOOR_DB,
        "lowest_threshold_dbfs": LOWEST_THRESHOLD_DBFS,
        "hangover_s": HANGOVER_S,
        "turn_gap_s": TURN_GAP_S,
        "edge_step_s": EDGE_STEP_S,
        "level_reference": "dBFS = 10*log10(mean square); full-scale square wave = 0 dBFS",
    }


def analyze_channels(
    audio: np.ndarray,
    rate_hz: int,
    assistant_channel: int,
    dead_air_threshold_s: float = DEFAULT_DEAD_AIR_THRESHOLD_S,
) -> dict[str, Any]:
    """Timing metrics of a stereo call (float samples, shape (frames, 2), one party per channel;
    ``assistant_channel`` 0 or 1, the other channel is the user). Definitions in the module docstring.
    Raises ValueError for audio that is not two-channel, or a bad rate, channel or threshold."""
    x = _check_stereo(audio, rate_hz)
    if assistant_channel not in (0, 1):
        raise ValueError(f"assistant_channel: must be 0 or 1 (the 0-based channel index), got {assistant_channel}")
    if not np.isfinite(dead_air_threshold_s) or dead_air_threshold_s <= 0:
        raise ValueError(f"dead_air_threshold_s: must be a positive number of seconds, got {dead_air_threshold_s}")
    rate_hz = int(rate_hz)
    if x.size and not np.isfinite(x).all():  # a corrupt decode: NaN or inf samples count as silence
        x = np.where(np.isfinite(x), x, 0.0)
    user_channel = 1 - assistant_channel
    assistant = channel_activity(x[:, assistant_channel], rate_hz)
    user = channel_activity(x[:, user_channel], rate_hz)
    dtmf = {
        "assistant": dtmf_digits(np.asarray(x[:, assistant_channel], dtype=np.float32), rate_hz),
        "user": dtmf_digits(np.asarray(x[:, user_channel], dtype=np.float32), rate_hz),
    }
    return activity_metrics(assistant, user, len(x) / rate_hz, dtmf, dead_air_threshold_s, (assistant_channel, user_channel))


def activity_metrics(
    assistant: ChannelActivity,
    user: ChannelActivity,
    duration_s: float,
    dtmf: dict[str, Any],
    dead_air_threshold_s: float = DEFAULT_DEAD_AIR_THRESHOLD_S,
    channels: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    """The metrics of ``analyze_channels`` from each party's voice activity, however it was found (one
    channel each, or one mono channel split by diarization); ``channels`` are the parties' 0-based
    channels, ``dtmf`` the digits per party (``dtmf_digits``)."""
    total_talk_s = assistant.talk_time_s + user.talk_time_s
    assistant_first = assistant.first_speech_s
    return {
        "duration_s": _s(duration_s),
        "diarized": False,
        "speakers": {
            "assistant": _speaker(assistant, channels[0], total_talk_s),
            "user": _speaker(user, channels[1], total_talk_s),
        },
        "latency_ms": _latency_summary(_latencies_s(assistant.turns, user.turns)),
        "time_to_first_assistant_word_ms": None if assistant_first is None else _ms(assistant_first),
        "interruptions": _interruptions(assistant.turns, user.turns),
        "dead_air": _dead_air(assistant.turns, user.turns, float(dead_air_threshold_s)),
        "dtmf": dtmf,
        "vad": vad_parameters(),
    }

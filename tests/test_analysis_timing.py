"""Timing analysis of two-party calls built from real espeak-ng speech placed at known times.

Where a prompt "is" speech is measured on the clean rendered prompt, independently of the analysis: the
first and last sample where its 5 ms RMS envelope reaches -45 dBFS (15 dB over the -60 dBFS noise added
to every channel). espeak-ng's trimmed prompts begin and end with quiet breath that no VAD calls speech.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from ivrsim.analysis.timing import (
    TURN_GAP_S,
    analyze_channels,
    assistant_channel_for,
    channel_activity,
)
from ivrsim.audio import generate_dtmf
from ivrsim.audio.resample import resample
from ivrsim.speech.tts import SpeechSynthesizer, TtsRequest

RATE_HZ = 8000
#: RMS of the white noise on every channel, in dBFS (10*log10 of its mean square).
NOISE_DBFS = -60.0
NOISE_SEED = 20240612
#: Level at which a clean prompt counts as speech for the construction's truth, in dBFS.
LOUD_DBFS = -45.0
TOLERANCE_S = 0.030

TEXTS = {
    "greeting": "Hello how can I help you today",
    "balance": "I want to check my balance",
    "moment": "Sure one moment please",
    "morning": "Good morning",
    "thanks": "Thank you very much",
}


@dataclass(frozen=True)
class Rendered:
    samples: np.ndarray
    loud_on_s: float  # where speech starts inside the prompt
    loud_off_s: float  # where it ends

    @property
    def loud_s(self) -> float:
        return self.loud_off_s - self.loud_on_s


def loud_extent_s(samples: np.ndarray, rate_hz: int) -> tuple[float, float]:
    """First and last time where the 5 ms RMS envelope of a clean prompt reaches ``LOUD_DBFS``."""
    window = int(0.005 * rate_hz)
    power = np.convolve(samples.astype(np.float64) ** 2, np.ones(window) / window, mode="same")
    loud = np.flatnonzero(power >= 10.0 ** (LOUD_DBFS / 10.0))
    return loud[0] / rate_hz, (loud[-1] + 1) / rate_hz


@pytest.fixture(scope="module")
def prompts() -> dict[str, Rendered]:
    synth = SpeechSynthesizer()
    try:
        rendered = {}
        for name, text in TEXTS.items():
            samples = synth.synthesize(TtsRequest(text=text, rate_hz=RATE_HZ)).samples
            on_s, off_s = loud_extent_s(samples, RATE_HZ)
            rendered[name] = Rendered(samples, on_s, off_s)
            # each phrase must be one turn on its own, or the construction below would not hold
            alone = channel_activity(np.concatenate([np.zeros(RATE_HZ, np.float32), samples]), RATE_HZ)
            assert len(alone.turns) == 1, f"{text!r} renders with a pause of {TURN_GAP_S} s or more"
        return rendered
    finally:
        synth.close()


class CallBuilder:
    """Places prompts on the assistant (0) or user (1) channel so that their speech starts at a given time,
    and remembers where each one's speech is."""

    def __init__(self, prompts: dict[str, Rendered], duration_s: float) -> None:
        self.prompts = prompts
        self.audio = np.zeros((int(duration_s * RATE_HZ), 2), dtype=np.float32)
        self.placed: list[tuple[int, float, float]] = []  # (channel, speech start s, speech end s)

    def say(self, channel: int, name: str, speech_at_s: float) -> tuple[float, float]:
        prompt = self.prompts[name]
        first = round((speech_at_s - prompt.loud_on_s) * RATE_HZ)
        self.audio[first : first + len(prompt.samples), channel] += prompt.samples
        start_s = first / RATE_HZ + prompt.loud_on_s
        self.placed.append((channel, start_s, start_s + prompt.loud_s))
        return start_s, start_s + prompt.loud_s

    def dtmf(self, channel: int, digits: str, at_s: float) -> tuple[float, float]:
        tones = generate_dtmf(digits, RATE_HZ)
        first = round(at_s * RATE_HZ)
        self.audio[first : first + len(tones), channel] += tones
        self.placed.append((channel, first / RATE_HZ, (first + len(tones)) / RATE_HZ - 0.08))  # minus the last off time
        return self.placed[-1][1:]

    def noisy(self) -> np.ndarray:
        rng = np.random.default_rng(NOISE_SEED)
        sigma = 10.0 ** (NOISE_DBFS / 20.0)
        return (self.audio + rng.normal(0.0, sigma, self.audio.shape)).astype(np.float32)

    def turns(self, channel: int) -> list[tuple[float, float]]:
        return sorted((s, e) for c, s, e in self.placed if c == channel)


@dataclass
class Call:
    audio: np.ndarray
    builder: CallBuilder
    marks: dict[str, tuple[float, float]]


@pytest.fixture(scope="module")
def call(prompts: dict[str, Rendered]) -> Call:
    """A two-party call: latencies of 800 and 1200 ms, the user interrupting once, the assistant once,
    4 s of dead air, a 2 s pause that is not dead air, DTMF from the user, 3.5 s of silence at each end."""
    b = CallBuilder(prompts, 40.0)
    marks = {}
    marks["a1"] = b.say(0, "greeting", 3.5)
    marks["u1"] = b.say(1, "balance", marks["a1"][1] + 0.6)
    marks["a2"] = b.say(0, "moment", marks["u1"][1] + 0.8)  # latency 800 ms
    marks["u2"] = b.say(1, "morning", marks["a2"][0] + 0.4)  # the user interrupts; the assistant goes on
    assert marks["u2"][1] < marks["a2"][1]
    marks["a3"] = b.say(0, "thanks", marks["a2"][1] + 4.0)  # dead air; no latency (the assistant spoke last)
    marks["u3"] = b.say(1, "balance", marks["a3"][1] + 2.0)  # a 2 s pause: not dead air
    marks["a4"] = b.say(0, "morning", marks["u3"][1] + 1.2)  # latency 1200 ms
    marks["u4"] = b.say(1, "balance", marks["a4"][1] + 0.7)
    marks["a5"] = b.say(0, "thanks", marks["u4"][0] + 0.6)  # the assistant interrupts the user
    marks["dtmf"] = b.dtmf(1, "12#", max(marks["a5"][1], marks["u4"][1]) + 1.0)
    assert marks["dtmf"][1] + 3.5 < 40.0
    return Call(b.noisy(), b, marks)


def close(measured: float, expected: float, tolerance: float = TOLERANCE_S) -> bool:
    return abs(measured - expected) <= tolerance


def assert_turns_match(turn_list: list[dict[str, float]], expected: list[tuple[float, float]]) -> None:
    assert len(turn_list) == len(expected), (turn_list, expected)
    for turn, (start_s, end_s) in zip(turn_list, expected):
        assert close(turn["start_s"], start_s), (turn, start_s, end_s)
        assert close(turn["end_s"], end_s), (turn, start_s, end_s)


def test_turns_start_and_end_where_the_speech_was_placed(call: Call) -> None:
    result = analyze_channels(call.audio, RATE_HZ, assistant_channel=0)
    assistant, user = result["speakers"]["assistant"], result["speakers"]["user"]
    assert (assistant["channel"], user["channel"]) == (1, 2)
    assert_turns_match(assistant["turn_list"], call.builder.turns(0))
    assert_turns_match(user["turn_list"], call.builder.turns(1))
    assert assistant["turns"] == 5 and user["turns"] == 5
    assert close(result["time_to_first_assistant_word_ms"] / 1000.0, call.marks["a1"][0])
    assert result["duration_s"] == 40.0
    for speaker in (assistant, user):
        assert speaker["snr_db"] > 30.0  # speech around -20 dBFS over -60 dBFS noise
        assert close(speaker["noise_floor_dbfs"], NOISE_DBFS - 0.6, 0.5)  # 10th percentile of 20 ms frames


def test_talk_time_and_ratio_follow_the_construction(call: Call) -> None:
    result = analyze_channels(call.audio, RATE_HZ, assistant_channel=0)
    speakers = result["speakers"]
    expected = {name: sum(e - s for s, e in call.builder.turns(ch)) for ch, name in ((0, "assistant"), (1, "user"))}
    for name in ("assistant", "user"):
        assert close(speakers[name]["talk_time_s"], expected[name], 2 * TOLERANCE_S * speakers[name]["turns"])
        assert abs(speakers[name]["talk_ratio"] - expected[name] / sum(expected.values())) < 0.02
    assert math.isclose(speakers["assistant"]["talk_ratio"] + speakers["user"]["talk_ratio"], 1.0, abs_tol=1e-3)


def test_latency_is_measured_at_each_answered_user_turn(call: Call) -> None:
    latency = analyze_channels(call.audio, RATE_HZ, assistant_channel=0)["latency_ms"]
    assert latency["num"] == 2
    assert [abs(v - e) <= TOLERANCE_S * 1000 for v, e in zip(latency["values"], (800, 1200))] == [True, True]
    assert latency["min"] == min(latency["values"]) and latency["max"] == max(latency["values"])
    # percentiles of the unrounded latencies, so within a millisecond of those of the rounded values
    assert abs(latency["p50"] - float(np.percentile(latency["values"], 50))) <= 1
    assert abs(latency["p99"] - float(np.percentile(latency["values"], 99))) <= 1
    assert set(latency) == {"p50", "p90", "p95", "p99", "min", "max", "num", "values"}


def test_interruptions_have_the_right_interrupter_and_overlap(call: Call) -> None:
    interruptions = analyze_channels(call.audio, RATE_HZ, assistant_channel=0)["interruptions"]
    m = call.marks
    assert interruptions["num_assistant_interrupted"] == 1
    assert interruptions["num_user_interrupted"] == 1
    by_user, by_assistant = interruptions["events"]
    assert by_user["interrupter"] == "user" and close(by_user["at_s"], m["u2"][0])
    assert close(by_user["overlap_s"], m["u2"][1] - m["u2"][0])  # the user's short turn lies inside the assistant's
    assert by_assistant["interrupter"] == "assistant" and close(by_assistant["at_s"], m["a5"][0])
    assert close(by_assistant["overlap_s"], m["u4"][1] - m["a5"][0])
    assert close(interruptions["assistant_kept_talking_s"], m["a2"][1] - m["u2"][0])
    assert close(interruptions["talk_over_s"], by_user["overlap_s"] + by_assistant["overlap_s"], 0.002)


def test_dead_air_counts_only_silences_over_the_threshold_inside_the_call(call: Call) -> None:
    result = analyze_channels(call.audio, RATE_HZ, assistant_channel=0)
    dead_air = result["dead_air"]
    assert dead_air["threshold_s"] == 3.0
    assert dead_air["count"] == 1  # the 4 s gap; not the 2 s one, nor 3.5 s of leading and trailing silence
    (event,) = dead_air["events"]
    assert close(event["start_s"], call.marks["a2"][1]) and close(event["end_s"], call.marks["a3"][0])
    assert close(dead_air["total_s"], 4.0, 2 * TOLERANCE_S) and dead_air["longest_s"] == dead_air["total_s"]
    lower = analyze_channels(call.audio, RATE_HZ, assistant_channel=0, dead_air_threshold_s=1.5)["dead_air"]
    assert lower["count"] == 2 and close(lower["events"][1]["end_s"] - lower["events"][1]["start_s"], 2.0, 2 * TOLERANCE_S)


def test_dtmf_digits_are_reported_for_the_party_that_sent_them(call: Call) -> None:
    dtmf = analyze_channels(call.audio, RATE_HZ, assistant_channel=0)["dtmf"]
    assert dtmf["user"]["digits"] == "12#"
    assert [close(t, call.marks["dtmf"][0] + 0.16 * i, 0.01) for i, t in enumerate(dtmf["user"]["times_s"])] == [True] * 3
    assert dtmf["assistant"] == {"digits": "", "times_s": []}


def test_swapping_the_assistant_channel_swaps_the_roles(call: Call) -> None:
    straight = analyze_channels(call.audio, RATE_HZ, assistant_channel=0)
    swapped = analyze_channels(call.audio[:, ::-1], RATE_HZ, assistant_channel=1)
    assert swapped["speakers"]["assistant"]["channel"] == 2
    assert swapped["speakers"]["assistant"]["turn_list"] == straight["speakers"]["assistant"]["turn_list"]
    assert swapped["latency_ms"] == straight["latency_ms"]
    assert swapped["dtmf"] == straight["dtmf"]


@pytest.mark.parametrize("rate_hz", [16000, 22050])
def test_other_sample_rates_give_the_same_timing(call: Call, rate_hz: int) -> None:
    base = analyze_channels(call.audio, RATE_HZ, assistant_channel=0)
    other = analyze_channels(resample(call.audio, RATE_HZ, rate_hz), rate_hz, assistant_channel=0)
    for name in ("assistant", "user"):
        assert_turns_match(other["speakers"][name]["turn_list"],
                           [(t["start_s"], t["end_s"]) for t in base["speakers"][name]["turn_list"]])
    assert other["latency_ms"]["num"] == 2 and other["dead_air"]["count"] == 1
    assert other["dtmf"]["user"]["digits"] == "12#"


def test_result_is_plain_json_with_the_method_stated(call: Call) -> None:
    result = analyze_channels(call.audio, RATE_HZ, assistant_channel=0)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert set(result) >= {"duration_s", "speakers", "latency_ms", "time_to_first_assistant_word_ms",
                           "interruptions", "dead_air", "dtmf", "vad"}
    assert result["vad"]["frame_s"] == 0.02 and result["vad"]["hop_s"] == 0.01 and result["vad"]["turn_gap_s"] == 0.2


def test_assistant_channel_for_picks_the_earlier_speaker(prompts: dict[str, Rendered]) -> None:
    b = CallBuilder(prompts, 4.0)
    b.say(1, "morning", 0.3)
    b.say(0, "thanks", 1.5)
    audio = b.noisy()
    assert assistant_channel_for(audio, RATE_HZ, speaks_first=True) == 1
    assert assistant_channel_for(audio, RATE_HZ, speaks_first=False) == 0
    assert assistant_channel_for(audio[:, ::-1], RATE_HZ, speaks_first=True) == 0
    quiet = CallBuilder(prompts, 2.0).noisy()
    assert assistant_channel_for(quiet, RATE_HZ, speaks_first=True) == 0  # nobody speaks: channel 0
    one_sided = quiet.copy()
    one_sided[:, 1] = b.noisy()[: len(quiet), 1]
    assert assistant_channel_for(one_sided, RATE_HZ, speaks_first=True) == 1


def assert_no_speech(result: dict, duration_s: float) -> None:
    assert json.loads(json.dumps(result, allow_nan=False)) == result  # no NaN or inf anywhere
    assert result["duration_s"] == duration_s
    for speaker in result["speakers"].values():
        assert speaker["talk_time_s"] == 0.0 and speaker["talk_ratio"] == 0.0
        assert speaker["turns"] == 0 and speaker["turn_list"] == [] and speaker["snr_db"] is None
    assert result["latency_ms"]["num"] == 0 and result["latency_ms"]["p50"] is None and result["latency_ms"]["values"] == []
    assert result["time_to_first_assistant_word_ms"] is None
    assert result["interruptions"]["events"] == [] and result["interruptions"]["talk_over_s"] == 0.0
    assert result["dead_air"]["count"] == 0 and result["dead_air"]["longest_s"] == 0.0
    assert result["dtmf"]["user"]["digits"] == "" and result["dtmf"]["assistant"]["digits"] == ""


@pytest.mark.parametrize("kind", ["noise", "digital_silence", "empty", "shorter_than_a_frame"])
def test_silent_and_empty_audio_give_zeros_and_nulls(kind: str) -> None:
    rng = np.random.default_rng(NOISE_SEED)
    audio, duration_s = {
        "noise": (rng.normal(0.0, 10.0 ** (NOISE_DBFS / 20.0), (5 * RATE_HZ, 2)), 5.0),
        "digital_silence": (np.zeros((5 * RATE_HZ, 2)), 5.0),
        "empty": (np.zeros((0, 2)), 0.0),
        "shorter_than_a_frame": (np.full((80, 2), 0.5), 0.01),
    }[kind]
    assert_no_speech(analyze_channels(audio.astype(np.float32), RATE_HZ, assistant_channel=1), duration_s)


def test_one_silent_channel_gives_the_other_all_the_talk(prompts: dict[str, Rendered]) -> None:
    b = CallBuilder(prompts, 4.0)
    b.say(0, "greeting", 0.5)
    result = analyze_channels(b.noisy(), RATE_HZ, assistant_channel=0)
    assert result["speakers"]["assistant"]["talk_ratio"] == 1.0 and result["speakers"]["user"]["talk_ratio"] == 0.0
    assert result["speakers"]["user"]["snr_db"] is None and result["latency_ms"]["num"] == 0
    assert result["dead_air"]["count"] == 0


def test_nan_samples_count_as_silence(prompts: dict[str, Rendered]) -> None:
    b = CallBuilder(prompts, 4.0)
    b.say(0, "greeting", 0.5)
    audio = b.noisy()
    audio[3 * RATE_HZ : 3 * RATE_HZ + 100, 1] = np.nan
    result = analyze_channels(audio, RATE_HZ, assistant_channel=0)
    assert json.dumps(result, allow_nan=False) and result["speakers"]["assistant"]["turns"] == 1


@pytest.mark.parametrize("shape", [(8000,), (8000, 1), (8000, 3), (2, 8000, 2)])
def test_anything_but_stereo_is_refused_with_a_clear_message(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"audio: expected stereo .*diarization"):
        analyze_channels(np.zeros(shape, dtype=np.float32), RATE_HZ, assistant_channel=0)
    with pytest.raises(ValueError, match="audio: expected stereo"):
        assistant_channel_for(np.zeros(shape, dtype=np.float32), RATE_HZ, speaks_first=True)


def test_bad_arguments_name_the_parameter() -> None:
    audio = np.zeros((8000, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="assistant_channel"):
        analyze_channels(audio, RATE_HZ, assistant_channel=2)
    with pytest.raises(ValueError, match="dead_air_threshold_s"):
        analyze_channels(audio, RATE_HZ, assistant_channel=0, dead_air_threshold_s=0.0)
    with pytest.raises(ValueError, match="rate_hz"):
        analyze_channels(audio, 0, assistant_channel=0)

"""The whole analysis (``ivrsim.analysis.conversation``, the ``analysis`` job, ``ivrsim analyze``) on
two-party calls built from real espeak-ng speech in two voices, placed at known times: stereo (one party
per channel) and the same call mixed to mono, which is diarized.

Where a prompt "is" speech is measured on the clean rendered prompt, as in test_analysis_timing: the
first and last sample where its 5 ms RMS envelope reaches -45 dBFS (15 dB over the -60 dBFS noise).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from ivrsim.analysis.conversation import (
    ConversationOptions,
    analyze_conversation,
    is_word,
)
from ivrsim.analysis.diarization import diarize
from ivrsim.analysis.jobs import JobContext, JobInputError, run_analysis
from ivrsim.audio import generate_dtmf
from ivrsim.cli import main
from ivrsim.media.audio_url import AudioUrlLoader, MediaSettings
from ivrsim.speech.asr.engines import SpeechEngines
from ivrsim.speech.tts import SpeechSynthesizer, TtsRequest

RATE_HZ = 8000
NOISE_DBFS = -60.0
NOISE_SEED = 20240613
LOUD_DBFS = -45.0
TOLERANCE_S = 0.040
ASSISTANT_VOICE = "en-US-Neural2-F"  # espeak-ng en-us+f3, about 200 Hz
USER_VOICE = "en-US-Neural2-D"  # en-us+m3, about 100 Hz

TEXTS = {
    "greeting": "Hello how can I help you today",
    "balance": "I want to check my balance",
    "moment": "Sure one moment please",
    "morning": "Good morning",
    "thanks": "Thank you very much",
    "repeat": "Can you repeat that",
}


@dataclass(frozen=True)
class Rendered:
    samples: np.ndarray
    loud_on_s: float
    loud_off_s: float


def loud_extent_s(samples: np.ndarray) -> tuple[float, float]:
    window = int(0.005 * RATE_HZ)
    power = np.convolve(samples.astype(np.float64) ** 2, np.ones(window) / window, mode="same")
    loud = np.flatnonzero(power >= 10.0 ** (LOUD_DBFS / 10.0))
    return loud[0] / RATE_HZ, (loud[-1] + 1) / RATE_HZ


@pytest.fixture(scope="module")
def prompts() -> dict[tuple[str, str], Rendered]:
    """Every text in both voices: ("assistant" | "user", name) -> the rendered prompt."""
    synth = SpeechSynthesizer()
    try:
        rendered = {}
        for party, voice in (("assistant", ASSISTANT_VOICE), ("user", USER_VOICE)):
            for name, text in TEXTS.items():
                samples = synth.synthesize(TtsRequest(text=text, voice=voice, rate_hz=RATE_HZ)).samples
                rendered[party, name] = Rendered(samples, *loud_extent_s(samples))
        return rendered
    finally:
        synth.close()


class CallBuilder:
    """Places speech on the assistant (channel 0) or the user (channel 1) so that it starts at a given
    time, and remembers where each piece is."""

    def __init__(self, prompts: dict[tuple[str, str], Rendered], duration_s: float) -> None:
        self.prompts = prompts
        self.audio = np.zeros((int(duration_s * RATE_HZ), 2), dtype=np.float32)
        self.placed: list[tuple[str, float, float]] = []

    def say(self, party: str, name: str, speech_at_s: float) -> tuple[float, float]:
        prompt = self.prompts[party, name]
        first = round((speech_at_s - prompt.loud_on_s) * RATE_HZ)
        self.audio[first : first + len(prompt.samples), 0 if party == "assistant" else 1] += prompt.samples
        start_s = first / RATE_HZ + prompt.loud_on_s
        self.placed.append((party, start_s, start_s + prompt.loud_off_s - prompt.loud_on_s))
        return self.placed[-1][1:]

    def dtmf(self, digits: str, at_s: float) -> tuple[float, float]:
        tones = generate_dtmf(digits, RATE_HZ)
        first = round(at_s * RATE_HZ)
        self.audio[first : first + len(tones), 1] += tones
        self.placed.append(("user", first / RATE_HZ, (first + len(tones)) / RATE_HZ - 0.08))  # minus the last off time
        return self.placed[-1][1:]

    def stereo(self) -> np.ndarray:
        rng = np.random.default_rng(NOISE_SEED)
        return (self.audio + rng.normal(0.0, 10.0 ** (NOISE_DBFS / 20.0), self.audio.shape)).astype(np.float32)

    def mono(self) -> np.ndarray:
        rng = np.random.default_rng(NOISE_SEED)
        mixed = self.audio.sum(axis=1)
        return (mixed + rng.normal(0.0, 10.0 ** (NOISE_DBFS / 20.0), mixed.shape)).astype(np.float32)

    def turns(self, party: str) -> list[tuple[float, float]]:
        return sorted((s, e) for p, s, e in self.placed if p == party)


@dataclass
class Call:
    builder: CallBuilder
    marks: dict[str, tuple[float, float]]


@pytest.fixture(scope="module")
def call(prompts: dict[tuple[str, str], Rendered]) -> Call:
    """Latencies of 900, 3500 and 1200 ms (the 3.5 s one is also dead air), a 2 s pause that is not
    dead air, the user's DTMF "12" at the end, 1 s of silence before and 2 s after; no overlaps."""
    b = CallBuilder(prompts, 24.0)
    m = {}
    m["a1"] = b.say("assistant", "greeting", 1.0)
    m["u1"] = b.say("user", "balance", m["a1"][1] + 0.7)
    m["a2"] = b.say("assistant", "moment", m["u1"][1] + 0.9)  # latency 900 ms
    m["u2"] = b.say("user", "morning", m["a2"][1] + 2.0)  # a 2 s pause, the user's: not dead air, not a latency
    m["a3"] = b.say("assistant", "thanks", m["u2"][1] + 3.5)  # latency 3500 ms, and dead air
    m["u3"] = b.say("user", "repeat", m["a3"][1] + 0.6)
    m["a4"] = b.say("assistant", "balance", m["u3"][1] + 1.2)  # latency 1200 ms
    m["dtmf"] = b.dtmf("12", m["a4"][1] + 1.0)
    assert m["dtmf"][1] + 2.0 < 24.0
    return Call(b, m)


def close(measured: float, expected: float, tolerance: float = TOLERANCE_S) -> bool:
    return abs(measured - expected) <= tolerance


def assert_matches_construction(result: dict, call: Call) -> None:
    """Every timing metric as the call was built."""
    m, b = call.marks, call.builder
    for party in ("assistant", "user"):
        turns = result["speakers"][party]["turn_list"]
        expected = b.turns(party)
        assert len(turns) == len(expected), (party, turns, expected)
        for turn, (start_s, end_s) in zip(turns, expected, strict=True):
            assert close(turn["start_s"], start_s) and close(turn["end_s"], end_s), (party, turn, start_s, end_s)
    talk = {p: sum(e - s for s, e in b.turns(p)) for p in ("assistant", "user")}
    for party in ("assistant", "user"):
        assert abs(result["speakers"][party]["talk_ratio"] - talk[party] / sum(talk.values())) < 0.02
    latency = result["latency_ms"]
    assert latency["num"] == 3
    for measured, expected in zip(latency["values"], (900, 3500, 1200), strict=True):
        assert abs(measured - expected) <= TOLERANCE_S * 1000, latency
    assert close(result["time_to_first_assistant_word_ms"] / 1000, m["a1"][0])
    assert result["interruptions"]["num_user_interrupted"] == 0 and result["interruptions"]["num_assistant_interrupted"] == 0
    dead_air = result["dead_air"]
    assert dead_air["count"] == 1, dead_air
    (event,) = dead_air["events"]
    assert close(event["start_s"], m["u2"][1]) and close(event["end_s"], m["a3"][0])
    assert result["dtmf"]["user"]["digits"] == "12" and result["dtmf"]["assistant"]["digits"] == ""
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_stereo_call_metrics_match_the_construction(call: Call) -> None:
    result = analyze_conversation(call.builder.stereo(), RATE_HZ)
    assert result["diarized"] is False and "diarization" not in result
    assert_matches_construction(result, call)
    assert result["transcript"]["source"] is None
    assert result["speakers"]["user"]["words"] is None and result["speakers"]["user"]["words_per_minute"] is None


def test_mono_call_is_diarized_and_its_metrics_match_the_construction(call: Call) -> None:
    result = analyze_conversation(call.builder.mono(), RATE_HZ)
    assert result["diarized"] is True
    diarization = result["diarization"]
    assert diarization["speakers"] == 2 and diarization["speakers_found"] == 2 and diarization["pitch_gap_st"] > 6
    # every placed utterance is one segment, on the right speaker
    placed = sorted(call.builder.placed, key=lambda p: p[1])
    assert len(diarization["segments"]) == len(placed)
    for segment, (party, start_s, end_s) in zip(diarization["segments"], placed, strict=True):
        assert segment["speaker"] == party and close(segment["start_s"], start_s) and close(segment["end_s"], end_s), (segment, party)
    assert diarization["segments"][-1].get("dtmf") is True
    assert_matches_construction(result, call)
    assert result["speakers"]["assistant"]["channel"] == result["speakers"]["user"]["channel"] == 1


def test_mono_with_the_user_speaking_first_swaps_the_roles(call: Call) -> None:
    mono = call.builder.mono()
    straight = analyze_conversation(mono, RATE_HZ)
    swapped = analyze_conversation(mono, RATE_HZ, ConversationOptions(speaks_first=False))
    # the first voice is now the user's; the DTMF tones stay the user's
    assert [t for t in swapped["speakers"]["user"]["turn_list"][:-1]] == straight["speakers"]["assistant"]["turn_list"]
    assert swapped["speakers"]["assistant"]["turn_list"] == straight["speakers"]["user"]["turn_list"][:-1]


def test_one_voice_in_mono_is_one_speaker(prompts: dict[tuple[str, str], Rendered]) -> None:
    b = CallBuilder(prompts, 10.0)
    at = 0.5
    for name in ("greeting", "balance", "moment", "thanks"):
        at = b.say("assistant", name, at)[1] + 0.8
    found = diarize(b.mono(), RATE_HZ)
    assert found.speakers_found == 1 and found.pitch_gap_st is not None and found.pitch_gap_st < 2.0
    assert {s["speaker"] for s in found.segments} == {"assistant"} and len(found.user.turns) == 0


def test_overlapping_speech_in_mono_is_one_segment_given_to_one_speaker(prompts: dict[tuple[str, str], Rendered]) -> None:
    """The documented limit: one channel cannot separate two voices at once."""
    b = CallBuilder(prompts, 8.0)
    a1 = b.say("assistant", "greeting", 0.5)
    b.say("user", "morning", a1[0] + 0.8)  # the user speaks over the assistant
    b.say("user", "balance", a1[1] + 1.0)
    result = analyze_conversation(b.mono(), RATE_HZ)
    segments = result["diarization"]["segments"]
    assert len(segments) == 2 and close(segments[0]["start_s"], a1[0]) and close(segments[0]["end_s"], a1[1])
    assert segments[0]["speaker"] != segments[1]["speaker"]
    assert result["interruptions"]["events"] == []


def write_wav(path: Path, audio: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio, RATE_HZ, subtype="PCM_16")
    return path


def retell_transcript(call: Call) -> list[dict]:
    """A Retell transcript_object for the call: each utterance's words spread over its speech."""
    objects = []
    for party, start_s, end_s in sorted(call.builder.placed, key=lambda p: p[1])[:-1]:  # not the DTMF
        name = next(n for n in TEXTS if call.builder.prompts[party, n].loud_off_s - call.builder.prompts[party, n].loud_on_s
                    == pytest.approx(end_s - start_s, abs=1e-6))
        words = TEXTS[name].split()
        step = (end_s - start_s) / len(words)
        objects.append({"role": "agent" if party == "assistant" else "user", "content": TEXTS[name] + ".",
                        "words": [{"word": w, "start": start_s + i * step, "end": start_s + (i + 1) * step} for i, w in enumerate(words)]})
    return [*objects, {"role": "transfer_target", "content": "ignored", "words": []}]


def test_the_job_uses_retell_transcript_object_for_words_and_words_per_minute(call: Call, tmp_path: Path) -> None:
    write_wav(tmp_path / "media" / "call.wav", call.builder.stereo())
    context = JobContext(AudioUrlLoader(MediaSettings(allowed_roots=(tmp_path / "media",))), tmp_path / "recordings")
    transcript_object = retell_transcript(call)
    try:
        result = run_analysis({"location": "call.wav", "transcript_object": transcript_object, "call_id": "c1", "assistant_id": "bot"}, context)
    finally:
        context.loader.close()
    assert_matches_construction({k: v for k, v in result.items() if k not in ("source", "call")} | {}, call)
    transcript = result["transcript"]
    assert transcript["source"] == "retell" and transcript["skipped"] == 1 and len(transcript["utterances"]) == 7
    first = transcript["utterances"][0]
    assert first["speaker"] == "assistant" and first["text"] == TEXTS["greeting"] + "." and close(first["start_s"], call.marks["a1"][0], 0.001)
    assert set(first["words"][0]) == {"word", "start_s", "end_s"}
    for party in ("assistant", "user"):
        speaker = result["speakers"][party]
        expected_words = sum(len(o["words"]) for o in transcript_object if o["role"] == ("agent" if party == "assistant" else "user"))
        assert speaker["words"] == expected_words
        assert speaker["words_per_minute"] == round(expected_words / (speaker["talk_time_s"] / 60), 1)
    assert result["source"]["location"] == "call.wav" and result["source"]["channels"] == 2
    assert result["call"] == {"call_id": "c1", "assistant_id": "bot"}


def test_a_malformed_transcript_object_or_missing_model_keeps_the_timing(call: Call) -> None:
    stereo = call.builder.stereo()
    bad = analyze_conversation(stereo, RATE_HZ, ConversationOptions(transcript_object=[{"role": "agent", "content": "hi",
                                                                                       "words": [{"word": "hi", "start": "soon", "end": 1}]}]))
    assert bad["transcript"]["reason"].startswith("transcript_object[0].words[0].start")
    assert bad["speakers"]["assistant"]["words"] is None and bad["latency_ms"]["num"] == 3
    zulu = analyze_conversation(stereo, RATE_HZ, ConversationOptions(transcribe=True, language="zu-ZA"), SpeechEngines(models_dirs=[]))
    assert zulu["transcript"]["source"] == "asr" and zulu["transcript"]["reason"].startswith("no model for zu-ZA")
    assert zulu["speakers"]["user"]["words_per_minute"] is None and zulu["dead_air"]["count"] == 1


def test_transcribe_gives_each_party_words_inside_its_speech(prompts: dict[tuple[str, str], Rendered]) -> None:
    b = CallBuilder(prompts, 7.0)
    b.say("assistant", "greeting", 0.5)
    b.say("user", "balance", 3.5)
    result = analyze_conversation(b.stereo(), RATE_HZ, ConversationOptions(transcribe=True), SpeechEngines(models_dirs=[]))
    transcript = result["transcript"]
    assert transcript["source"] == "asr" and transcript["engine"] in ("pocketsphinx", "vosk") and transcript["language"].startswith("en")
    assert "reason" not in transcript and {u["speaker"] for u in transcript["utterances"]} == {"assistant", "user"}
    for utterance in transcript["utterances"]:
        (start_s, end_s), = [(s, e) for p, s, e in b.placed if p == utterance["speaker"]]
        assert utterance["words"] and utterance["text"]
        for word in utterance["words"]:
            assert start_s - 0.15 <= word["start_s"] < word["end_s"] <= end_s + 0.15, (word, start_s, end_s)
            assert 0.0 <= word["confidence"] <= 1.0
    for party in ("assistant", "user"):
        speaker = result["speakers"][party]
        assert speaker["words"] > 0 and speaker["words_per_minute"] == round(speaker["words"] / (speaker["talk_time_s"] / 60), 1)


def test_the_job_reads_an_upload_from_the_recordings_folder_and_nothing_outside_it(call: Call, tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    write_wav(recordings / "uploads" / "abc.wav", call.builder.mono())
    context = JobContext(AudioUrlLoader(MediaSettings()), recordings)
    try:
        result = run_analysis({"upload": "uploads/abc.wav"}, context)
        with pytest.raises(JobInputError, match=r"^upload .*outside"):
            run_analysis({"upload": "../secret.wav"}, context)
        with pytest.raises(JobInputError, match="exactly one of location"):
            run_analysis({"upload": "uploads/abc.wav", "location": "x.wav"}, context)
        with pytest.raises(JobInputError, match="^colour: not an analysis input"):
            run_analysis({"upload": "uploads/abc.wav", "colour": "red"}, context)
        with pytest.raises(JobInputError, match="^upload: this worker cannot read"):
            run_analysis({"upload": "uploads/abc.wav"}, JobContext(context.loader, None))
    finally:
        context.loader.close()
    assert result["diarized"] is True and result["source"] == {"upload": "uploads/abc.wav", "channels": 1, "source_rate_hz": 8000,
                                                                "size_bytes": (recordings / "uploads" / "abc.wav").stat().st_size}
    assert result["latency_ms"]["num"] == 3


def test_three_channels_fail_the_job_naming_the_layout(tmp_path: Path) -> None:
    write_wav(tmp_path / "three.wav", np.zeros((8000, 3), dtype=np.float32))
    context = JobContext(AudioUrlLoader(MediaSettings(allowed_roots=(tmp_path,))), None)
    try:
        with pytest.raises(JobInputError, match=r"^location: the recording has 3 channels"):
            run_analysis({"location": "three.wav"}, context)
    finally:
        context.loader.close()


def test_is_word_counts_spoken_tokens_only() -> None:
    assert [is_word(t) for t in ("hello,", "42", "<sil>", "[noise]", "...", "-", "don't")] == [True, True, False, False, False, False, True]


def test_cli_analyze_prints_json_a_summary_and_exits_like_transcribe(call: Call, tmp_path: Path) -> None:
    stereo = write_wav(tmp_path / "stereo.wav", call.builder.stereo()[:, ::-1])  # the assistant on the right
    runner = CliRunner()
    as_json = runner.invoke(main, ["analyze", "--json", str(stereo)])
    assert as_json.exit_code == 0, as_json.output
    result = json.loads(as_json.stdout)
    assert result["speakers"]["assistant"]["channel"] == 2 and result["latency_ms"]["num"] == 3
    assert result["source"] == {"path": str(stereo), "channels": 2, "source_rate_hz": RATE_HZ}
    pinned = json.loads(runner.invoke(main, ["analyze", "--json", "--assistant-channel", "1", "--dead-air-s", "1.5", str(stereo)]).stdout)
    assert pinned["speakers"]["assistant"]["channel"] == 1 and pinned["dead_air"]["threshold_s"] == 1.5
    readable = runner.invoke(main, ["analyze", str(stereo)], terminal_width=160)
    assert readable.exit_code == 0
    for text in ("talk ratio", "turns", "p50", "p90", "p99", "interruptions", "dead air (over 3 s)", "time to first assistant word",
                 "DTMF", "12", "words per minute", "stereo"):
        assert text in readable.stdout, (text, readable.stdout)
    missing = runner.invoke(main, ["analyze", str(tmp_path / "nope.wav")])
    assert missing.exit_code == 1 and missing.stderr.strip() == f"ivrsim: error: {tmp_path / 'nope.wav'}: no such file"
    usage = runner.invoke(main, ["analyze", "--assistant-channel", "3", str(stereo)])
    assert usage.exit_code == 2
    mono = write_wav(tmp_path / "mono.wav", call.builder.mono())
    diarized = runner.invoke(main, ["analyze", str(mono)], terminal_width=160)
    assert diarized.exit_code == 0 and "diarized mono" in diarized.stdout
    pinned_mono = runner.invoke(main, ["analyze", "--json", "--assistant-channel", "2", str(mono)])
    assert pinned_mono.exit_code == 0 and json.loads(pinned_mono.stdout)["diarization"]["assistant_channel_ignored"] == 2
    stereo_3 = write_wav(tmp_path / "three.wav", np.zeros((8000, 3), dtype=np.float32))
    three = runner.invoke(main, ["analyze", str(stereo_3)])
    assert three.exit_code == 1 and three.stderr.startswith(f"ivrsim: error: {stereo_3}: the recording has 3 channels")
    no_model = runner.invoke(main, ["analyze", "--json", "--transcribe", "--language", "zu-ZA", str(stereo)])
    assert no_model.exit_code == 1 and "no transcript: no model for zu-ZA" in no_model.stderr
    assert json.loads(no_model.stdout)["latency_ms"]["num"] == 3  # the timing is still printed

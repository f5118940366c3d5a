"""The streaming voice-activity detector on real espeak-ng speech through the telephone line model."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from ivrsim.audio.line import LineModel, LineSettings
from ivrsim.speech.asr.base import EngineInfo, Word
from ivrsim.speech.asr.gated import GatedStream
from ivrsim.speech.asr.vad import VadSettings, VoiceActivityDetector, speech_segments
from ivrsim.speech.tts import SpeechSynthesizer, TtsRequest

RATE_HZ = 8000


@pytest.fixture(scope="module")
def phrases():  # type: ignore[no-untyped-def]
    """Three phrases after 0.5 s, 1.2 s and 1.9 s of silence; their non-silent spans in seconds."""
    synth = SpeechSynthesizer()
    try:
        parts, spans, at = [], [], 0
        for gap_s, text in ((0.5, "hello"), (1.2, "technical support please"), (1.9, "yes")):
            parts.append(np.zeros(int(gap_s * RATE_HZ), np.float32))
            at += len(parts[-1])
            audio = synth.synthesize(TtsRequest(text=text, voice="en-US-Neural2-F", rate_hz=RATE_HZ)).samples
            loud = np.nonzero(np.abs(audio) > 0.01)[0]
            spans.append(((at + loud[0]) / RATE_HZ, (at + loud[-1] + 1) / RATE_HZ))
            parts.append(audio)
            at += len(audio)
        parts.append(np.zeros(RATE_HZ, np.float32))
        return np.concatenate(parts), spans
    finally:
        synth.close()


@pytest.mark.parametrize("snr_db", [None, 30, 20])
def test_speech_is_found_where_it_is(phrases, snr_db) -> None:  # type: ignore[no-untyped-def]
    signal, spans = phrases
    heard = speech_segments(LineModel(LineSettings(law="ulaw", snr_db=snr_db)).process(signal), RATE_HZ)
    assert len(heard) == len(spans)
    for (start, end), (true_start, true_end) in zip(heard, spans):
        assert abs(start - true_start) <= 0.06
        assert true_end - 0.15 <= end <= true_end + 0.03


def test_any_chunk_size_gives_the_same_events(phrases) -> None:  # type: ignore[no-untyped-def]
    signal, _ = phrases
    noisy = LineModel(LineSettings(law="ulaw", snr_db=20)).process(signal)
    whole = VoiceActivityDetector(RATE_HZ)
    expected = whole.process(noisy) + whole.finish()
    chunked = VoiceActivityDetector(RATE_HZ)
    rng = np.random.default_rng(1)
    events, at = [], 0
    while at < len(noisy):
        size = int(rng.integers(1, 700))
        events += chunked.process(noisy[at : at + size])
        at += size
    assert events + chunked.finish() == expected
    assert [e.kind for e in expected] == ["start", "end"] * 3


@pytest.mark.parametrize("snr_db", [None, 20, 10])
def test_silence_and_line_noise_are_not_speech(snr_db) -> None:  # type: ignore[no-untyped-def]
    noise = LineModel(LineSettings(law="ulaw", snr_db=snr_db, seed=3)).process(np.zeros(5 * RATE_HZ, np.float32))
    vad = VoiceActivityDetector(RATE_HZ)
    assert vad.process(noise) == [] and not vad.in_speech and vad.finish() == []


def test_end_of_speech_waits_for_end_silence(phrases) -> None:  # type: ignore[no-untyped-def]
    signal, spans = phrases
    # 1.5 s of silence needed: the 1.2 s gap before the second phrase no longer splits it from the first.
    long_wait = speech_segments(signal, RATE_HZ, VadSettings(end_silence_s=1.5))
    assert len(long_wait) == 2
    vad = VoiceActivityDetector(RATE_HZ, VadSettings(end_silence_s=0.5))
    first_end = int(spans[0][1] * RATE_HZ)
    vad.process(signal[:first_end])
    assert vad.in_speech
    events = vad.process(signal[first_end : first_end + int(0.6 * RATE_HZ)])
    assert [e.kind for e in events] == ["end"] and not vad.in_speech
    assert events[0].at_s - events[0].end_s == pytest.approx(0.5, abs=0.03)


class RecordingDecoder:
    """Stands in for an engine's decoder, to check what the gate hands it: one word spanning its audio."""

    def __init__(self, opened: list[RecordingDecoder]) -> None:
        self.samples = 0
        opened.append(self)

    def accept(self, samples: np.ndarray) -> None:
        self.samples += len(samples)

    def partial(self) -> str:
        return f"heard {self.samples}"

    def final(self) -> list[Word]:
        return [Word("utterance", 0.0, self.samples / RATE_HZ, 0.5)]

    def close(self) -> None:
        pass


def test_gate_decodes_speech_with_pre_roll_and_cuts_long_utterances(phrases) -> None:  # type: ignore[no-untyped-def]
    signal, spans = phrases
    opened: list[RecordingDecoder] = []
    stream = GatedStream(EngineInfo("test", "none", "en-US"), RATE_HZ, lambda: RecordingDecoder(opened), end_silence_s=0.8)
    results = []
    for begin in range(0, len(signal), 160):
        results += stream.accept(signal[begin : begin + 160])
        if begin // 160 == int(spans[1][0] * RATE_HZ) // 160 + 5:
            assert stream.in_speech
    results += stream.finish()
    finals = [r for r in results if r.final]
    assert len(finals) == 3 and len(opened) == 3
    decoded_s = sum(d.samples for d in opened) / RATE_HZ
    # Only speech, its pre-roll (0.3 s) and the end_silence_s after it are decoded, not the rest.
    assert decoded_s <= sum(end - start + 0.3 + 0.8 + 0.1 for start, end in spans) < len(signal) / RATE_HZ
    for final, (start, end) in zip(finals, spans):
        # The utterance starts the pre-roll (0.3 s) before the speech and runs end_silence_s past it.
        assert final.start_s == pytest.approx(start - 0.3, abs=0.06)
        assert final.end_s == pytest.approx(end + 0.8, abs=0.1)
    partials = [r for r in results if not r.final]
    assert partials and all(b.end_s - a.end_s >= 0.25 - 1e-9 for a, b in pairwise(partials) if a.start_s == b.start_s)

    opened = []
    long_speech = np.concatenate([signal[int(spans[1][0] * RATE_HZ) : int(spans[1][1] * RATE_HZ)]] * 4)
    stream = GatedStream(EngineInfo("test", "none", "en-US"), RATE_HZ, lambda: RecordingDecoder(opened), max_utterance_s=1.0)
    finals = [r for r in stream.accept(long_speech) + stream.finish() if r.final]
    assert len(finals) >= 4 and all(d.samples <= 1.0 * RATE_HZ + 160 for d in opened)

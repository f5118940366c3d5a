"""Text to speech: the voice catalog, SSML, and real espeak-ng renders checked by measurement."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ivrsim.audio.levels import signal_level_dbm0
from ivrsim.exceptions import SsmlError, TtsSettingError, UnknownVoiceError
from ivrsim.speech.ssml import BreakSegment, Prosody, SpeechSegment, looks_like_ssml, parse_ssml
from ivrsim.speech.tts import PromptCache, SpeechSynthesizer, TtsRequest
from ivrsim.speech.voices import BUILTIN_VOICES_DIR, DEFAULT_VOICE_ID, VoiceCatalog

DOCUMENTED_VOICES = {
    "en-US-Neural2-F": ("en-US", "female"),
    "en-US-Neural2-D": ("en-US", "male"),
    "en-GB-Neural2-A": ("en-GB", "female"),
    "es-ES-Neural2-A": ("es-ES", "female"),
    "fr-FR-Neural2-A": ("fr-FR", "female"),
}


@pytest.fixture(scope="module")
def synthesizer():
    synth = SpeechSynthesizer()
    yield synth
    synth.close()


def fundamental_hz(samples: np.ndarray, rate_hz: int) -> float:
    """Median pitch of voiced 40 ms frames, by autocorrelation (70-400 Hz)."""
    frame = int(0.04 * rate_hz)
    pitches = []
    for start in range(0, len(samples) - frame, frame):
        x = samples[start : start + frame].astype(np.float64)
        if np.sqrt(np.mean(x**2)) < 0.02:
            continue
        corr = np.correlate(x, x, "full")[frame - 1 :]
        low, high = int(rate_hz / 400), int(rate_hz / 70)
        lag = low + int(np.argmax(corr[low:high]))
        if corr[lag] > 0.3 * corr[0]:
            pitches.append(rate_hz / lag)
    return float(np.median(pitches))


# -- catalog ----------------------------------------------------------------------------------------------


def test_catalog_has_the_documented_voices_and_40_languages() -> None:
    catalog = VoiceCatalog.load()
    for voice_id, (language, gender) in DOCUMENTED_VOICES.items():
        voice = catalog.get(voice_id)
        assert (voice.language, voice.gender, voice.type) == (language, gender, "Neural")
    assert len(catalog.languages) >= 40
    assert catalog.get(None).id == DEFAULT_VOICE_ID


def test_unknown_voice_suggests_the_closest_ids() -> None:
    with pytest.raises(UnknownVoiceError) as caught:
        VoiceCatalog.load().get("en-US-Neural2-G")
    assert caught.value.suggestions[0].startswith("en-US-Neural2-")
    assert "ivrsim voices" in str(caught.value)


def test_voice_ids_match_case_insensitively() -> None:
    assert VoiceCatalog.load().get("EN-us-neural2-f").id == "en-US-Neural2-F"


def test_users_extend_the_catalog_with_their_own_file(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(
        '[voice."en-US-Neural2-F"]\nlanguage = "en-US"\nlanguage_name = "English (US)"\ngender = "female"\n'
        'type = "Neural"\nespeak = "en-us+f5"\n\n[voice."nl-NL-Custom"]\nlanguage = "nl-NL"\n'
        'language_name = "Dutch"\ngender = "male"\ntype = "Standard"\nespeak = "nl"\n'
    )
    catalog = VoiceCatalog.load([BUILTIN_VOICES_DIR, tmp_path])
    assert catalog.get("en-US-Neural2-F").espeak == "en-us+f5"
    assert catalog.get("nl-NL-Custom").language == "nl-NL"


def test_a_broken_catalog_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[voice."x"]\nlanguage = "en"\n')
    with pytest.raises(ValueError, match=r"bad.toml: voice 'x' lacks language_name"):
        VoiceCatalog.load([tmp_path])


# -- SSML -------------------------------------------------------------------------------------------------


def test_the_documented_inline_say_as_digits() -> None:
    parsed = parse_ssml("Hello! Your verification code is <say-as interpret-as='digits'>123456</say-as>")
    assert parsed.segments == [SpeechSegment("Hello! Your verification code is 1 2 3 4 5 6")]


@pytest.mark.parametrize(
    ("markup", "spoken"),
    [
        ('<say-as interpret-as="characters">AB12</say-as>', "A B 1 2"),
        ('<say-as interpret-as="telephone">+1 (555) 123-4567</say-as>', "plus, 1, 5 5 5, 1 2 3, 4 5 6 7"),
        ('<say-as interpret-as="cardinal">1234</say-as>', "1234"),
        ('<say-as interpret-as="date">2024-01-15</say-as>', "January 15, 2024"),
        ('<say-as interpret-as="date" format="dmy">15/01/2024</say-as>', "January 15, 2024"),
        ('<say-as interpret-as="time">14:30</say-as>', "14 30"),
        ('<sub alias="World Wide Web">WWW</sub>', "World Wide Web"),
        ("<emphasis>now</emphasis>", "now"),
    ],
)
def test_ssml_elements_become_the_words_spoken(markup: str, spoken: str) -> None:
    assert parse_ssml(f"<speak>{markup}</speak>").segments == [SpeechSegment(spoken)]


def test_breaks_prosody_sentences_and_paragraphs() -> None:
    parsed = parse_ssml(
        '<speak><p><s>One.</s><s>Two</s></p><break time="750ms"/>'
        '<prosody rate="slow" pitch="+2st" volume="-6dB">three</prosody><break strength="weak"/>four</speak>'
    )
    assert parsed.segments == [
        SpeechSegment("One."),
        BreakSegment(0.3, implicit=True),
        SpeechSegment("Two"),
        BreakSegment(0.75),
        SpeechSegment("three", Prosody(rate=0.75, pitch_st=2.0, volume_db=-6.0)),
        BreakSegment(0.25),
        SpeechSegment("four"),
    ]
    assert parsed.warnings == []


def test_unknown_elements_are_passed_over_with_a_warning() -> None:
    parsed = parse_ssml("<speak>Hello <audio src='x.wav'>ding</audio> there</speak>")
    assert parsed.segments == [SpeechSegment("Hello ding there")]
    assert parsed.warnings == ["unsupported SSML element <audio> passed over; its text is spoken"]


@pytest.mark.parametrize(
    ("ssml", "line", "column", "fragment"),
    [
        ("<speak>Hi <break time='fast'/></speak>", 1, 24, 'time="fast"'),
        ("<speak>\n  Hi\n  <prosody rate='zoom'>x</prosody></speak>", 3, 18, 'rate="zoom"'),
        ("<speak>Hi <s>open</speak>", 1, 20, "mismatched tag"),
        ("Code <say-as interpret-as='digits'>12</say-as", 1, 46, "not well-formed"),
        ("<speak><break time='30s'/></speak>", 1, 21, "longer than 10 s"),
    ],
)
def test_invalid_ssml_names_line_and_column(ssml: str, line: int, column: int, fragment: str) -> None:
    with pytest.raises(SsmlError) as caught:
        parse_ssml(ssml)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert fragment in str(caught.value)


def test_plain_text_with_a_less_than_sign_is_not_ssml() -> None:
    assert not looks_like_ssml("Press 1 if your balance is < 100 dollars")
    assert looks_like_ssml("Press <break/> now")


# -- rendering with espeak-ng -----------------------------------------------------------------------------


def test_speech_has_energy_and_a_plausible_length(synthesizer: SpeechSynthesizer) -> None:
    prompt = synthesizer.synthesize(TtsRequest("Hello! This is a call from Canary. Press 1 to confirm."))
    assert prompt.rate_hz == 8000
    assert 2.0 < prompt.duration_s < 6.0
    assert -35.0 < signal_level_dbm0(prompt.samples) < 0.0
    assert prompt.voice.id == DEFAULT_VOICE_ID


@pytest.mark.parametrize("rate_hz", [8000, 16000, 22050, 48000])
def test_break_is_exact_to_the_sample(synthesizer: SpeechSynthesizer, rate_hz: int) -> None:
    prompt = synthesizer.synthesize(TtsRequest("Hello <break time='750ms'/> world", rate_hz=rate_hz))
    nonzero = np.flatnonzero(prompt.samples)
    longest_silence = int(np.diff(nonzero).max()) - 1
    assert longest_silence == round(0.75 * rate_hz)


def syllables(samples: np.ndarray, rate_hz: int) -> int:
    """Bursts of speech separated by at least 60 ms below -40 dBFS: one per spoken digit."""
    frame = int(0.01 * rate_hz)
    energy = np.array([np.mean(samples[i : i + frame] ** 2) for i in range(0, len(samples) - frame, frame)])
    loud = energy > 1e-4
    bursts, quiet = 0, 99
    for is_loud in loud:
        if is_loud and quiet >= 6:
            bursts += 1
        quiet = 0 if is_loud else quiet + 1
    return bursts


def test_say_as_digits_speaks_each_digit(synthesizer: SpeechSynthesizer) -> None:
    as_digits = synthesizer.synthesize(TtsRequest("<say-as interpret-as='digits'>123456</say-as>")).samples
    one_by_one = synthesizer.synthesize(TtsRequest("1, 2, 3, 4, 5, 6")).samples
    as_number = synthesizer.synthesize(TtsRequest("123456")).samples
    assert abs(len(as_digits) - synthesizer.synthesize(TtsRequest("1 2 3 4 5 6", speed=1.0001)).samples.size) < 0.01 * len(as_digits)
    assert syllables(one_by_one, 8000) == 6
    assert len(as_number) > 1.2 * len(as_digits)  # "one hundred and twenty-three thousand ..." is longer


def test_voices_in_different_languages_sound_different(synthesizer: SpeechSynthesizer) -> None:
    text = "Bonjour Madrid Berlin"
    renders = {v: synthesizer.synthesize(TtsRequest(text, voice=v)).samples for v in ("en-US-Neural2-F", "fr-FR-Neural2-A", "de-DE-Standard-A")}
    lengths = {v: len(s) for v, s in renders.items()}
    assert len(set(lengths.values())) == 3
    spectra = {v: np.abs(np.fft.rfft(s, 16384)) for v, s in renders.items()}
    for a in renders:
        for b in renders:
            if a < b:
                correlation = np.corrcoef(spectra[a], spectra[b])[0, 1]
                assert correlation < 0.95, (a, b)


def test_female_voice_is_higher_than_male(synthesizer: SpeechSynthesizer) -> None:
    text = "Thank you for calling, please hold the line"
    female = synthesizer.synthesize(TtsRequest(text, voice="en-US-Neural2-F", rate_hz=16000)).samples
    male = synthesizer.synthesize(TtsRequest(text, voice="en-US-Neural2-D", rate_hz=16000)).samples
    assert fundamental_hz(female, 16000) > 1.3 * fundamental_hz(male, 16000)


def test_speed_and_pitch_change_the_audio_as_documented(synthesizer: SpeechSynthesizer) -> None:
    text = "Your call is important to us, please stay on the line"
    normal = synthesizer.synthesize(TtsRequest(text, rate_hz=16000))
    fast = synthesizer.synthesize(TtsRequest(text, speed=2.0, rate_hz=16000))
    high = synthesizer.synthesize(TtsRequest(text, pitch=12.0, rate_hz=16000))
    assert 0.4 < fast.duration_s / normal.duration_s < 0.65
    assert fundamental_hz(high.samples, 16000) > 1.2 * fundamental_hz(normal.samples, 16000)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"speed": 0.0}, "speed"),
        ({"speed": 5.0}, "speed"),
        ({"speed": float("nan")}, "speed"),
        ({"pitch": 25.0}, "pitch"),
        ({"text": "   "}, "text"),
        ({"text": "a" * 20_001}, "text"),
        ({"rate_hz": 4000}, "rate_hz"),
    ],
)
def test_bad_settings_name_the_field(synthesizer: SpeechSynthesizer, change: dict, field: str) -> None:
    request = TtsRequest(**{"text": "hello", **change})
    with pytest.raises(TtsSettingError) as caught:
        synthesizer.synthesize(request)
    assert caught.value.field == field


def test_every_catalog_voice_renders(synthesizer: SpeechSynthesizer) -> None:
    silent = []
    for voice in synthesizer.catalog:
        samples = synthesizer.synthesize(TtsRequest("Alpha 1 2 3", voice=voice.id)).samples
        if len(samples) < 0.3 * 8000 or signal_level_dbm0(samples) < -40:
            silent.append(voice.id)
    assert silent == []


# -- cache and threads ------------------------------------------------------------------------------------


def test_prompt_cache_renders_once_and_survives_a_restart(tmp_path: Path) -> None:
    first = SpeechSynthesizer(cache=PromptCache(tmp_path))
    try:
        request = TtsRequest("Please enter your PIN", voice="en-GB-Neural2-A")
        cold = first.synthesize(request)
        warm = first.synthesize(request)
        assert (cold.cache_hit, warm.cache_hit) == (False, True)
        assert np.array_equal(cold.samples, warm.samples)
        assert (tmp_path / f"{cold.cache_key}.wav").is_file()
    finally:
        first.close()
    second = SpeechSynthesizer(cache=PromptCache(tmp_path))
    try:
        again = second.synthesize(request)
        assert again.cache_hit and np.array_equal(again.samples, cold.samples)
        keys = {second.synthesize(TtsRequest("Please enter your PIN", **change)).cache_key for change in
                ({"voice": "en-US-Neural2-F"}, {"speed": 1.1}, {"pitch": 1.0}, {"rate_hz": 16000})}
        assert len(keys | {cold.cache_key}) == 5
    finally:
        second.close()


def test_espeak_copies_only_the_text_and_its_nul(synthesizer: SpeechSynthesizer, monkeypatch: pytest.MonkeyPatch) -> None:
    # pyttsx3's Synth tells espeak_Synth the text is ten times its length; espeak-ng copies that many
    # bytes, reading past the end of the text (a segfault now and then). The size must be the text's + 1.
    from pyttsx3.drivers import _espeak

    sizes = []
    real = _espeak.cSynth

    def recording(text, size, *rest):  # type: ignore[no-untyped-def]
        sizes.append((len(text), size))
        return real(text, size, *rest)

    monkeypatch.setattr(_espeak, "cSynth", recording)
    text = "Zwölf Äpfel für die Größe des Puffers."
    synthesizer.synthesize(TtsRequest(text, voice="en-GB-Neural2-A"))
    encoded = len(text.encode("utf-8"))
    assert sizes == [(encoded, encoded + 1)]


def test_renders_from_many_threads_are_serialised_and_correct(synthesizer: SpeechSynthesizer) -> None:
    # Texts of clearly different lengths, so that a render handed to the wrong caller would show.
    texts = [", ".join(["press one"] * n) for n in range(1, 9)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda t: synthesizer.synthesize(TtsRequest(t, voice="es-ES-Neural2-A")).samples, texts))
    fresh = SpeechSynthesizer()
    try:
        for text, samples in zip(texts, parallel):
            alone = fresh.synthesize(TtsRequest(text, voice="es-ES-Neural2-A")).samples
            # espeak-ng carries a little state between utterances (pitch flutter, breath noise at the
            # trimmed ends): the same text comes out within a few percent of the same length.
            assert abs(len(samples) - len(alone)) <= 0.05 * len(alone)
            assert signal_level_dbm0(samples) == pytest.approx(signal_level_dbm0(alone), abs=0.5)
    finally:
        fresh.close()


def test_async_render_keeps_the_event_loop_responsive(synthesizer: SpeechSynthesizer) -> None:
    long_text = " ".join(["This sentence is spoken to keep the text to speech engine busy for a while."] * 30)

    async def scenario() -> tuple[float, int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        prompt = await synthesizer.synthesize_async(TtsRequest(long_text, speed=1.01))
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        assert prompt.duration_s > 30
        return elapsed, ticks

    elapsed, ticks = asyncio.run(scenario())
    assert ticks >= 0.3 * elapsed / 0.001  # the loop ticked throughout the render


# -- bounds: prompt length, cache bytes, own threads ------------------------------------------------------


def test_hours_of_breaks_are_refused_before_rendering() -> None:
    from ivrsim.speech.tts import MAX_PROMPT_S, PromptTooLongError, check_prompt_length

    too_long = 'a <break time="10s"/> ' * 61  # 610 s of silence in 1.3 KB
    with pytest.raises(PromptTooLongError, match=rf"610 s of breaks.*the limit is {MAX_PROMPT_S:g} s"):
        check_prompt_length(too_long)
    assert check_prompt_length('a <break time="10s"/> ' * 50).segments  # 500 s: fine
    with pytest.raises(PromptTooLongError):  # slow speech counts too
        check_prompt_length(" ".join(["word"] * 1000), speed=0.25)


def test_a_prompt_over_the_limit_is_refused_while_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    from ivrsim.speech import tts

    # Two long words are estimated at under a second but take a few seconds to speak: the render decides.
    monkeypatch.setattr(tts, "MAX_PROMPT_S", 1.5)
    synth = SpeechSynthesizer()
    try:
        with pytest.raises(tts.PromptTooLongError, match="renders to at least"):
            synth.synthesize(TtsRequest("supercalifragilisticexpialidocious antidisestablishmentarianism, pneumonoultramicroscopic"))
    finally:
        synth.close()


def test_prompt_cache_is_bounded_in_bytes_in_memory_and_on_disk(tmp_path: Path) -> None:
    second = np.full(8000, 0.25, dtype=np.float32)  # 1 s at 8 kHz: 32,000 bytes in memory, 16,044 on disk
    cache = PromptCache(tmp_path, memory_max_bytes=2 * second.nbytes, disk_max_bytes=3 * 16_044)
    for key in ("a", "b", "c", "d"):
        cache.put(key, second, 8000)
        assert cache.memory_bytes <= 2 * second.nbytes and cache.disk_bytes <= 3 * 16_044
    assert sum(p.stat().st_size for p in tmp_path.glob("*.wav")) <= 3 * 16_044
    assert not (tmp_path / "a.wav").exists() and (tmp_path / "d.wav").exists()
    assert cache.get("b") is not None  # from disk; now the most recently used
    cache.put("e", second, 8000)
    assert (tmp_path / "b.wav").exists() and not (tmp_path / "c.wav").exists()
    smaller = PromptCache(tmp_path, disk_max_bytes=16_044)  # a restart with a lower bound trims the folder
    assert [p.stem for p in tmp_path.glob("*.wav")] == ["e"] and smaller.get("e") is not None


def test_async_synthesis_does_not_need_asyncios_default_pool(synthesizer: SpeechSynthesizer) -> None:
    import threading

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        release = threading.Event()
        blocked = loop.run_in_executor(None, release.wait)  # the default pool is full until released
        try:
            prompt = await asyncio.wait_for(synthesizer.synthesize_async(TtsRequest("Press one for sales", speed=1.02)), timeout=60)
            return prompt.duration_s
        finally:
            release.set()
            await blocked

    assert asyncio.run(scenario()) > 0.5

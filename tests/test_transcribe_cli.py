"""`ivrsim transcribe`: files through the real engines, per channel, with the same one-line errors and
exit codes as `dtmf decode`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from ivrsim.cli import main
from ivrsim.speech.tts import SpeechSynthesizer, TtsRequest


@pytest.fixture(scope="module")
def stereo_call(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Left: "billing"; right, a second later: "sales"; at 8 kHz, as a dual recording holds a call."""
    synthesizer = SpeechSynthesizer()
    left = synthesizer.synthesize(TtsRequest("billing", voice="en-US-Neural2-D", rate_hz=8000)).samples
    right = synthesizer.synthesize(TtsRequest("sales", voice="en-US-Neural2-F", rate_hz=8000)).samples
    audio = np.zeros((8000 * 4, 2), dtype=np.float32)
    audio[4000 : 4000 + len(left), 0] = left
    audio[12000 : 12000 + len(right), 1] = right
    path = tmp_path_factory.mktemp("transcribe") / "call.wav"
    soundfile.write(path, audio, 8000, subtype="PCM_16")
    return path


def test_a_stereo_file_is_transcribed_per_channel_with_words_in_json(stereo_call: Path) -> None:
    runner = CliRunner()
    plain = runner.invoke(main, ["transcribe", "--hints", "billing,sales,technical support", str(stereo_call)])
    as_json = runner.invoke(main, ["transcribe", "--json", "--hints", "billing,sales,technical support", str(stereo_call)])
    assert plain.exit_code == 0, plain.output
    assert plain.output.splitlines() == [f"{stereo_call}:ch1\tbilling", f"{stereo_call}:ch2\tsales"]
    left, right = (json.loads(line) for line in as_json.output.splitlines())
    assert (left["channel"], right["channel"], left["engine"], left["language"]) == (1, 2, "pocketsphinx", "en-US")
    [word] = left["words"]
    assert word["text"] == "billing" and 0.4 <= word["start_s"] < word["end_s"] <= 1.6 and 0 < word["confidence"] <= 1
    assert right["words"][0]["start_s"] >= 1.4  # the right channel speaks a second later
    assert left["rate_hz"] == 8000 and left["duration_s"] == 4.0


def test_korean_goes_to_vosk_and_the_result_names_it(tmp_path: Path) -> None:
    audio = SpeechSynthesizer().synthesize(TtsRequest("넷", voice="ko-KR-Standard-A", rate_hz=8000)).samples
    path = tmp_path / "ko.wav"
    soundfile.write(path, np.concatenate([np.zeros(4000, np.float32), audio, np.zeros(8000, np.float32)]), 8000, subtype="PCM_16")
    result = CliRunner().invoke(main, ["transcribe", "--json", "--language", "ko", "--hints", "하나,넷,여덟", str(path)])
    assert result.exit_code == 0, result.output
    transcript = json.loads(result.output)
    assert transcript["engine"] == "vosk" and transcript["language"] == "ko" and transcript["text"] == "넷"


def test_bad_files_and_missing_models_are_one_line_errors(stereo_call: Path, tmp_path: Path) -> None:
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are not samples")
    runner = CliRunner()
    mixed = runner.invoke(main, ["transcribe", "--hints", "billing,sales", str(not_audio), str(stereo_call)])
    spanish = runner.invoke(main, ["transcribe", "--language", "es", str(stereo_call)])
    no_folder = runner.invoke(main, ["transcribe", "--model", str(tmp_path / "nowhere"), str(stereo_call)])
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(8000 * 2, dtype=np.float32), 8000, subtype="PCM_16")
    quiet = runner.invoke(main, ["transcribe", str(silent)])
    bad_engine = runner.invoke(main, ["transcribe", "--engine", "whisper", str(stereo_call)])
    empty_hints = runner.invoke(main, ["transcribe", "--hints", " , ", str(stereo_call)])
    not_a_language = runner.invoke(main, ["transcribe", "--language", "klingon!", str(stereo_call)])
    assert mixed.exit_code == 1 and f"{stereo_call}:ch1\tbilling" in mixed.output  # the good file is still transcribed
    assert f"ivrsim: error: {not_audio}" in mixed.output and "these are not samples" not in mixed.output
    assert spanish.exit_code == 1 and "ivrsim models pull vosk-model-small-es" in spanish.output
    assert no_folder.exit_code == 1 and "nowhere" in no_folder.output
    assert quiet.exit_code == 1 and f"{silent}: no speech recognised" in quiet.output
    assert bad_engine.exit_code == 2 and "whisper" in bad_engine.output
    assert empty_hints.exit_code == 2 and "--hints" in empty_hints.output
    assert not_a_language.exit_code == 2 and "language tag" in not_a_language.output

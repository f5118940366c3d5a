"""The telephone line model and the streaming dual-channel recorder, measured on real signals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivrsim.audio import g711
from ivrsim.audio.dtmf_generator import DtmfToneSpec, generate_dtmf
from ivrsim.audio.dtmf_receiver import detect_dtmf
from ivrsim.audio.levels import signal_level_dbm0
from ivrsim.audio.line import LineModel, LineSettings
from ivrsim.engine.recorder import CallRecorder

from conftest import tones


def through(line: LineModel, signal: np.ndarray, frame: int = 160) -> np.ndarray:
    return np.concatenate([line.process(signal[i : i + frame]) for i in range(0, len(signal), frame)])


def gain_db(settings: LineSettings, frequency_hz: float) -> float:
    rate = settings.rate_hz
    x = tones((frequency_hz,), -10.0, 1.0, rate)
    y = LineModel(LineSettings(wideband=settings.wideband, law=None)).process(x)
    return signal_level_dbm0(y[rate // 2 :]) - signal_level_dbm0(x[rate // 2 :])


@pytest.mark.parametrize(("frequency_hz", "low_db", "high_db"), [(100, -99, -20), (1000, -0.5, 0.5), (3000, -1.0, 0.5), (3900, -99, -10)])
def test_narrowband_passes_300_to_3400_hz(frequency_hz: float, low_db: float, high_db: float) -> None:
    assert low_db <= gain_db(LineSettings(), frequency_hz) <= high_db


@pytest.mark.parametrize(("frequency_hz", "low_db", "high_db"), [(20, -99, -10), (5000, -1.0, 0.5), (7600, -99, -6)])
def test_wideband_passes_50_to_7000_hz(frequency_hz: float, low_db: float, high_db: float) -> None:
    settings = LineSettings(wideband=True)
    assert settings.rate_hz == 16000 and settings.companding is None
    assert low_db <= gain_db(settings, frequency_hz) <= high_db


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_narrowband_output_is_g711_values(law: str) -> None:
    out = LineModel(LineSettings(law=law)).process(tones((1000.0,), -10.0, 0.2, 8000))  # type: ignore[arg-type]
    table = g711.decode(np.arange(256, dtype=np.uint8), law)  # type: ignore[arg-type]
    assert np.isin(out, table).all()


def test_noise_at_the_configured_snr() -> None:
    line = LineModel(LineSettings(law=None, snr_db=20.0))
    noise = line.process(np.zeros(80000, dtype=np.float32))
    # 20 dB below the -20 dBm0 reference, as the far end measures it
    assert signal_level_dbm0(noise) == pytest.approx(-40.0, abs=0.2)


def test_gain_is_applied() -> None:
    x = tones((1000.0,), -10.0, 1.0, 8000)
    y = LineModel(LineSettings(law=None, gain_db=-6.0)).process(x)
    assert signal_level_dbm0(y[4000:]) == pytest.approx(-16.0, abs=0.2)


def test_frames_give_the_same_samples_as_the_whole_and_seeds_decide_the_noise() -> None:
    x = generate_dtmf("159#", 8000)
    whole = LineModel(LineSettings(snr_db=15.0, seed=3)).process(x)
    framed = through(LineModel(LineSettings(snr_db=15.0, seed=3)), x)
    other_seed = LineModel(LineSettings(snr_db=15.0, seed=4)).process(x)
    assert np.array_equal(whole, framed)
    assert not np.array_equal(whole, other_seed)


def test_dtmf_survives_the_line() -> None:
    x = generate_dtmf("0123456789*#ABCD", 8000, DtmfToneSpec(level_dbm0=-20.0, twist_db=4.0))
    y = through(LineModel(LineSettings(snr_db=10.0, gain_db=-3.0, law="alaw")), x)
    assert "".join(d.key for d in detect_dtmf(y, 8000)) == "0123456789*#ABCD"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="law"):
        LineSettings(law="pcm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gain_db"):
        LineSettings(gain_db=100.0)


def test_dual_channel_recording_is_aligned_to_the_sample(tmp_path: Path) -> None:
    rate = 8000
    platform = np.zeros(rate * 2, dtype=np.float32)
    platform[4000] = 0.5  # a click at exactly 0.5 s
    callee = np.zeros(rate * 2, dtype=np.float32)
    keys = generate_dtmf("42", rate, DtmfToneSpec(on_ms=100, off_ms=100))
    callee[8000 : 8000 + len(keys)] = keys  # the caller presses 4 at exactly 1.0 s
    path = tmp_path / "call.wav"
    with CallRecorder(path, rate, "dual") as recorder:
        for i in range(0, len(platform), 160):
            recorder.write(platform[i : i + 160], callee[i : i + 160])
            if i == 160 * 40:  # 0.8 s in: streamed in half-second blocks, the file grows during the call
                assert path.stat().st_size >= 44 + 4 * 4000
    info = soundfile.info(path)
    assert (info.channels, info.samplerate, info.subtype, info.frames) == (2, rate, "PCM_16", len(platform))
    audio, _ = soundfile.read(path, dtype="float32")
    assert int(np.argmax(np.abs(audio[:, 0]))) == 4000
    digits = detect_dtmf(audio[:, 1], rate)
    assert [d.key for d in digits] == ["4", "2"]
    assert digits[0].start_s == pytest.approx(1.0, abs=0.002)


def test_mono_recording_mixes_both_sides(tmp_path: Path) -> None:
    a = tones((500.0,), -10.0, 0.5, 8000)
    b = tones((1500.0,), -10.0, 0.5, 8000)
    with CallRecorder(tmp_path / "m.wav", 8000, "mono") as recorder:
        recorder.write(a, b)
        recorder.write(a[:100], b[:50])  # unequal frames: the shorter is padded
    audio, _ = soundfile.read(tmp_path / "m.wav", dtype="float32")
    assert audio.ndim == 1 and len(audio) == 4100
    spectrum = np.abs(np.fft.rfft(audio[:4000]))
    assert spectrum[250] > 100 and spectrum[750] > 100  # 500 Hz and 1500 Hz at 2 Hz per bin


def test_recorder_close_twice_is_safe_and_channels_are_checked(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "x.wav", 8000)
    recorder.close()
    recorder.close()
    with pytest.raises(ValueError, match="dual' or 'mono"):
        CallRecorder(tmp_path / "y.wav", 8000, "stereo")  # type: ignore[arg-type]

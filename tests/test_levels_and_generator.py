"""dBm0 levels and the DTMF generator, measured on the signals they produce."""

from __future__ import annotations

import numpy as np
import pytest

from ivrsim.audio.dtmf_generator import WAIT_CHARACTER_S, DtmfToneSpec, generate_dtmf, validate_digits
from ivrsim.audio.dtmf_keys import KEYPAD, DtmfKey, key_tones_hz
from ivrsim.audio.levels import dbm0_to_amplitude, power_to_dbm0, signal_level_dbm0


def test_zero_dbm0_is_a_sine_3_14_db_below_full_scale() -> None:
    assert 20 * np.log10(dbm0_to_amplitude(0.0)) == pytest.approx(-3.14)
    t = np.arange(8000) / 8000
    assert signal_level_dbm0(np.sin(2 * np.pi * 1000 * t)) == pytest.approx(3.14, abs=0.01)
    assert power_to_dbm0(0.0) == float("-inf")


def test_keypad_has_sixteen_keys_with_q23_frequencies() -> None:
    assert [str(k) for k in DtmfKey] == list("".join(KEYPAD))
    assert key_tones_hz("5") == (770.0, 1336.0)
    assert key_tones_hz("d") == (941.0, 1633.0)
    with pytest.raises(ValueError, match="not a DTMF key"):
        key_tones_hz("E")


def spectrum_peaks(signal: np.ndarray, rate_hz: int) -> list[float]:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal)), 8 * len(signal)))
    frequency = np.fft.rfftfreq(8 * len(signal), 1 / rate_hz)
    low = frequency < 1070
    return [float(frequency[low][np.argmax(spectrum[low])]), float(frequency[~low][np.argmax(spectrum[~low])])]


@pytest.mark.parametrize("rate_hz", [8000, 16000, 44100, 48000])
def test_generated_key_has_its_tones_levels_and_times(rate_hz: int) -> None:
    spec = DtmfToneSpec(on_ms=100, off_ms=50, level_dbm0=-7.0, twist_db=2.0, row_offset_pct=1.0, col_offset_pct=-1.0)
    signal = generate_dtmf("8", rate_hz, spec)
    assert len(signal) == int(round(0.1 * rate_hz)) + int(round(0.05 * rate_hz))
    tone = signal[: int(0.1 * rate_hz)]
    low_hz, high_hz = spectrum_peaks(tone, rate_hz)
    assert low_hz == pytest.approx(852 * 1.01, rel=0.002)
    assert high_hz == pytest.approx(1336 * 0.99, rel=0.002)
    # two tones at -7 and -9 dBm0 add in power
    expected = 10 * np.log10(10 ** (-0.7) + 10 ** (-0.9))
    assert signal_level_dbm0(tone) == pytest.approx(expected, abs=0.05)
    assert not np.any(signal[int(0.1 * rate_hz) :])


def test_w_is_half_a_second_of_silence() -> None:
    plain = generate_dtmf("12", 8000)
    paused = generate_dtmf("1w2", 8000)
    assert len(paused) - len(plain) == int(WAIT_CHARACTER_S * 8000)


def test_bad_digit_is_named_with_its_position() -> None:
    with pytest.raises(ValueError, match=r"character 3 of '12x' is 'x'"):
        validate_digits("12x")
    assert validate_digits("1aW#") == "1Aw#"


def test_bad_times_are_refused() -> None:
    with pytest.raises(ValueError, match="on_ms"):
        generate_dtmf("1", 8000, DtmfToneSpec(on_ms=0))

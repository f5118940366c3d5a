"""G.711 mu-law and A-law against points of the ITU-T G.711 tables and their defining properties."""

from __future__ import annotations

import numpy as np
import pytest

from ivrsim.audio import g711
from ivrsim.audio.levels import dbm0_to_amplitude


def pcm(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64) / 32768.0


@pytest.mark.parametrize(
    ("sample", "code"),
    [(0, 0xFF), (-1, 0x7F), (32767, 0x80), (-32768, 0x00), (8159 * 4, 0x80), (132, 0xEF), (-132, 0x6F)],
)
def test_mulaw_encodes_to_the_g711_codes(sample: int, code: int) -> None:
    assert int(g711.encode(pcm([sample]), "ulaw")[0]) == code


@pytest.mark.parametrize(("sample", "code"), [(0, 0xD5), (-1, 0x55), (32767, 0xAA), (-32768, 0x2A), (256, 0xC5)])
def test_alaw_encodes_to_the_g711_codes(sample: int, code: int) -> None:
    assert int(g711.encode(pcm([sample]), "alaw")[0]) == code


@pytest.mark.parametrize(("law", "code", "value"), [("ulaw", 0x80, 32124), ("ulaw", 0x00, -32124), ("ulaw", 0xFF, 0), ("alaw", 0xD5, 8), ("alaw", 0x55, -8), ("alaw", 0xAA, 32256)])
def test_decoding_gives_the_table_values(law: str, code: int, value: int) -> None:
    assert round(float(g711.decode(np.array([code], dtype=np.uint8), law)[0]) * 32768) == value  # type: ignore[arg-type]


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_decoded_values_encode_back_to_their_code(law: str) -> None:
    codes = np.arange(256, dtype=np.uint8)
    back = g711.encode(g711.decode(codes, law), law)  # type: ignore[arg-type]
    # mu-law has two codes for zero (0x7F and 0xFF); every other code is its own fixed point.
    expected = codes.copy()
    if law == "ulaw":
        expected[0x7F] = 0xFF
    assert np.array_equal(back, expected)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_encoding_is_monotonic_in_the_sample_value(law: str) -> None:
    ramp = np.arange(-32768, 32768, 7) / 32768.0
    decoded = g711.decode(g711.encode(ramp, law), law)  # type: ignore[arg-type]
    assert np.all(np.diff(decoded) >= 0)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
@pytest.mark.parametrize("level_dbm0", [0.0, -10.0, -30.0])
def test_signal_to_quantisation_noise_meets_g712_for_a_sine(law: str, level_dbm0: float) -> None:
    """ITU-T G.712 asks for at least 35 dB down to -30 dBm0 (about 33 dB there); a 1020 Hz sine."""
    t = np.arange(8000) / 8000
    x = dbm0_to_amplitude(level_dbm0) * np.sin(2 * np.pi * 1020 * t)
    noise = g711.round_trip(x, law) - x  # type: ignore[arg-type]
    snr_db = 10 * np.log10(np.mean(x**2) / np.mean(noise.astype(np.float64) ** 2))
    assert snr_db >= (35.0 if level_dbm0 > -30 else 33.0)


def test_unknown_law_is_refused() -> None:
    with pytest.raises(ValueError, match="ulaw"):
        g711.encode(np.zeros(4), "pcm")  # type: ignore[arg-type]

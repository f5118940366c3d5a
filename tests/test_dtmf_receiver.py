"""The DTMF receiver against ITU-T Q.24 (AT&T column) and the Mitel/Bellcore test practice.

Tests are named after the sections of the Mitel CM7291 test tape that they reproduce (calibration, twist,
dynamic range, guard time, signal to noise, talk-off); each requirement is checked on both sides of its
limit, at every supported sample rate.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivrsim.audio import g711
from ivrsim.audio.dtmf_generator import DtmfToneSpec, generate_dtmf
from ivrsim.audio.dtmf_keys import key_tones_hz
from ivrsim.audio.dtmf_receiver import DtmfReceiver, DtmfThresholds, detect_dtmf, rfft_rows

from conftest import ALL_KEYS, RATES_HZ, add_white_noise, cadence, music, speech_at, tones


def decode(signal: np.ndarray, rate_hz: int) -> str:
    return "".join(d.key for d in detect_dtmf(signal, rate_hz))


def keys(rate_hz: int, digits: str = ALL_KEYS, lead_ms: float = 30.0, **spec: float) -> np.ndarray:
    """Digits after a short silence, so that no tone starts on the first sample."""
    lead = np.zeros(int(lead_ms / 1000 * rate_hz), dtype=np.float32)
    return np.concatenate([lead, generate_dtmf(digits, rate_hz, DtmfToneSpec(**spec))])


# -- calibration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate_hz", RATES_HZ)
def test_calibration_every_key_with_its_times_levels_and_frequencies(rate_hz: int) -> None:
    spec = DtmfToneSpec(on_ms=60, off_ms=60, level_dbm0=-12.0, twist_db=3.0)
    digits = detect_dtmf(generate_dtmf(ALL_KEYS, rate_hz, spec), rate_hz)
    assert "".join(d.key for d in digits) == ALL_KEYS
    for i, digit in enumerate(digits):
        low_hz, high_hz = key_tones_hz(ALL_KEYS[i])
        assert digit.start_s == pytest.approx(i * 0.120, abs=0.0015)
        assert digit.end_s == pytest.approx(i * 0.120 + 0.060, abs=0.0015)
        assert digit.row_hz == pytest.approx(low_hz, rel=0.001)
        assert digit.col_hz == pytest.approx(high_hz, rel=0.001)
        assert digit.row_level_dbm0 == pytest.approx(-12.0, abs=0.3)
        assert digit.col_level_dbm0 == pytest.approx(-15.0, abs=0.3)
        assert digit.twist_db == pytest.approx(3.0, abs=0.3)


def test_unsupported_rate_is_refused_with_the_range() -> None:
    with pytest.raises(ValueError, match="8000 and 96000"):
        DtmfReceiver(4000)


def test_silence_and_empty_input_give_no_digits() -> None:
    assert detect_dtmf(np.zeros(8000, dtype=np.float32), 8000) == []
    assert detect_dtmf(np.zeros(0, dtype=np.float32), 8000) == []


# -- frequency tolerance ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rate_hz", RATES_HZ)
@pytest.mark.parametrize("group", ["row", "col"])
@pytest.mark.parametrize("offset_pct", [-1.5, 1.5])
def test_frequency_deviation_of_1_5_percent_is_accepted(rate_hz: int, group: str, offset_pct: float) -> None:
    assert decode(keys(rate_hz, **{f"{group}_offset_pct": offset_pct}), rate_hz) == ALL_KEYS


@pytest.mark.parametrize("rate_hz", RATES_HZ)
@pytest.mark.parametrize("group", ["row", "col"])
@pytest.mark.parametrize("offset_pct", [-5.0, -3.5, 3.5, 5.0])
def test_frequency_deviation_of_3_5_percent_is_rejected(rate_hz: int, group: str, offset_pct: float) -> None:
    assert decode(keys(rate_hz, **{f"{group}_offset_pct": offset_pct}), rate_hz) == ""


@pytest.mark.parametrize("offsets", [(1.5, 1.5), (-1.5, -1.5), (1.5, -1.5), (-1.5, 1.5)])
def test_both_tones_off_by_1_5_percent_are_accepted(offsets: tuple[float, float]) -> None:
    row, col = offsets
    assert decode(keys(8000, row_offset_pct=row, col_offset_pct=col), 8000) == ALL_KEYS


# -- dynamic range ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate_hz", RATES_HZ)
@pytest.mark.parametrize("level_dbm0", [0.0, -10.0, -25.0, -35.0])
def test_dynamic_range_accepts_0_to_minus_35_dbm0(rate_hz: int, level_dbm0: float) -> None:
    digits = detect_dtmf(keys(rate_hz, level_dbm0=level_dbm0), rate_hz)
    assert "".join(d.key for d in digits) == ALL_KEYS
    assert all(abs(d.row_level_dbm0 - level_dbm0) < 0.5 for d in digits)


@pytest.mark.parametrize("rate_hz", RATES_HZ)
@pytest.mark.parametrize("level_dbm0", [-55.0, -70.0])
def test_levels_of_minus_55_dbm0_and_below_are_rejected(rate_hz: int, level_dbm0: float) -> None:
    assert decode(keys(rate_hz, level_dbm0=level_dbm0), rate_hz) == ""


# -- twist ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate_hz", RATES_HZ)
@pytest.mark.parametrize(("twist_db", "level_dbm0"), [(8.0, 0.0), (8.0, -17.0), (-4.0, -4.0), (-4.0, -25.0)])
def test_twist_of_8_db_normal_and_4_db_reverse_is_accepted(rate_hz: int, twist_db: float, level_dbm0: float) -> None:
    digits = detect_dtmf(keys(rate_hz, twist_db=twist_db, level_dbm0=level_dbm0), rate_hz)
    assert "".join(d.key for d in digits) == ALL_KEYS
    assert all(abs(d.twist_db - twist_db) < 0.3 for d in digits)


@pytest.mark.parametrize("rate_hz", RATES_HZ)
@pytest.mark.parametrize("twist_db", [9.5, 12.0, -5.5, -8.0])
def test_twist_beyond_the_limits_is_rejected(rate_hz: int, twist_db: float) -> None:
    assert decode(keys(rate_hz, twist_db=twist_db), rate_hz) == ""


@pytest.mark.parametrize("lead_ms", [0.0, 3.0, 7.0, 11.0])
def test_twist_of_8_db_at_every_block_alignment(lead_ms: float) -> None:
    for rate_hz in RATES_HZ:
        signal = keys(rate_hz, lead_ms=lead_ms, twist_db=8.0, on_ms=45, off_ms=48)
        assert decode(signal, rate_hz) == ALL_KEYS


# -- guard time -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate_hz", RATES_HZ)
def test_guard_time_tones_of_40_ms_are_accepted(rate_hz: int) -> None:
    assert decode(keys(rate_hz, on_ms=40, off_ms=53), rate_hz) == ALL_KEYS


@pytest.mark.parametrize("rate_hz", RATES_HZ)
@pytest.mark.parametrize("on_ms", [23.0, 20.0, 10.0])
def test_guard_time_tones_of_23_ms_and_shorter_are_rejected(rate_hz: int, on_ms: float) -> None:
    assert decode(keys(rate_hz, on_ms=on_ms, off_ms=80), rate_hz) == ""


@settings(max_examples=40, deadline=None)
@given(
    on_ms=st.floats(min_value=40.0, max_value=300.0),
    lead_ms=st.floats(min_value=0.0, max_value=20.0),
    key=st.sampled_from(ALL_KEYS),
    rate_hz=st.sampled_from(RATES_HZ),
)
def test_guard_time_any_tone_of_40_ms_or_more_is_one_digit(on_ms: float, lead_ms: float, key: str, rate_hz: int) -> None:
    digits = detect_dtmf(keys(rate_hz, key, lead_ms=lead_ms, on_ms=on_ms, off_ms=60), rate_hz)
    assert [d.key for d in digits] == [key]
    assert digits[0].duration_s * 1000 == pytest.approx(on_ms, abs=2.5)


@settings(max_examples=40, deadline=None)
@given(
    on_ms=st.floats(min_value=1.0, max_value=23.0),
    lead_ms=st.floats(min_value=0.0, max_value=20.0),
    key=st.sampled_from(ALL_KEYS),
    rate_hz=st.sampled_from(RATES_HZ),
)
def test_guard_time_any_tone_of_23_ms_or_less_is_rejected(on_ms: float, lead_ms: float, key: str, rate_hz: int) -> None:
    assert decode(keys(rate_hz, key, lead_ms=lead_ms, on_ms=on_ms, off_ms=60), rate_hz) == ""


# -- interdigit timing ------------------------------------------------------------------------------------


# The debounce rule as a truth table: (tone on, gap inside the tone, tone after the gap) -> digits reported.
DEBOUNCE_TABLE = [
    # on_ms, gap_ms, after_ms -> count
    (100.0, 0.0, 0.0, 1),  # one clean tone
    (50.0, 5.0, 50.0, 1),  # a 5 ms dropout is bridged
    (50.0, 10.0, 50.0, 1),  # a 10 ms dropout is bridged (the limit)
    (50.0, 40.0, 50.0, 2),  # a 40 ms pause splits two equal digits
    (50.0, 60.0, 50.0, 2),  # so does anything longer
    (20.0, 5.0, 20.0, 1),  # two 20 ms bursts bridged into one 45 ms tone count once
    (40.0, 40.0, 15.0, 1),  # a short burst after a real pause is not a digit
]


@pytest.mark.parametrize("rate_hz", RATES_HZ)
@pytest.mark.parametrize(("on_ms", "gap_ms", "after_ms", "count"), DEBOUNCE_TABLE)
def test_debounce_truth_table(rate_hz: int, on_ms: float, gap_ms: float, after_ms: float, count: int) -> None:
    low_hz, high_hz = key_tones_hz("5")
    parts = [np.zeros(int(0.03 * rate_hz), dtype=np.float32), tones((low_hz, high_hz), -10.0, on_ms / 1000, rate_hz)]
    if after_ms:
        parts += [np.zeros(int(gap_ms / 1000 * rate_hz), dtype=np.float32), tones((low_hz, high_hz), -10.0, after_ms / 1000, rate_hz)]
    parts.append(np.zeros(int(0.1 * rate_hz), dtype=np.float32))
    assert decode(np.concatenate(parts), rate_hz) == "5" * count


@pytest.mark.parametrize("rate_hz", RATES_HZ)
@pytest.mark.parametrize(("on_ms", "off_ms"), [(53.0, 40.0), (40.0, 53.0), (50.0, 43.0)])
def test_keeps_up_with_93_ms_per_digit(rate_hz: int, on_ms: float, off_ms: float) -> None:
    digits = "112233445566778899**00##AABBCCDD"
    assert decode(keys(rate_hz, digits, on_ms=on_ms, off_ms=off_ms), rate_hz) == digits


# -- signal to noise --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate_hz", RATES_HZ)
@pytest.mark.parametrize("snr_db", [15.0, 8.0])
def test_signal_to_noise_no_errors_at_15_and_8_db(rate_hz: int, snr_db: float) -> None:
    digits = ALL_KEYS * 6
    signal = keys(rate_hz, digits, level_dbm0=-20.0, on_ms=50, off_ms=50)
    noisy = add_white_noise(signal, -20.0, snr_db, seed=rate_hz + int(snr_db))
    assert decode(noisy, rate_hz) == digits


def test_signal_to_noise_worst_corner_still_decodes() -> None:
    """Low level, full normal twist, frequency off by 1.5 %, shortest tone, 15 dB SNR at once."""
    digits = ALL_KEYS * 3
    signal = keys(8000, digits, level_dbm0=-17.0, twist_db=8.0, row_offset_pct=1.5, col_offset_pct=-1.5, on_ms=40, off_ms=53)
    assert decode(add_white_noise(signal, -25.0, 15.0, seed=3), 8000) == digits


# -- G.711 and dial tone ----------------------------------------------------------------------------------


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
@pytest.mark.parametrize("level_dbm0", [0.0, -10.0, -25.0])
def test_digits_survive_a_g711_round_trip(law: str, level_dbm0: float) -> None:
    signal = keys(8000, level_dbm0=level_dbm0)
    assert decode(g711.round_trip(signal, law), 8000) == ALL_KEYS  # type: ignore[arg-type]


@pytest.mark.parametrize("rate_hz", RATES_HZ)
def test_dial_tone_tolerance_digits_under_dial_tone_at_the_same_level(rate_hz: int) -> None:
    signal = keys(rate_hz, level_dbm0=-15.0)
    dial = tones((350.0, 440.0), -15.0, len(signal) / rate_hz, rate_hz)[: len(signal)]
    assert decode(signal + dial, rate_hz) == ALL_KEYS


# -- talk-off ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate_hz", [8000, 16000, 48000])
def test_talk_off_espeak_speech_gives_no_digits(speech_corpus, rate_hz: int) -> None:
    false_digits = []
    for voice, samples in speech_at(speech_corpus, rate_hz):
        for gain_db in (-10.0, 0.0, 6.0):
            signal = samples * np.float32(10 ** (gain_db / 20))
            if rate_hz == 8000:
                signal = g711.round_trip(signal)
            false_digits += [(voice, gain_db, d.key, round(d.start_s, 2)) for d in detect_dtmf(signal, rate_hz)]
    assert false_digits == []


def test_digits_over_background_speech_are_found_and_nothing_else(speech_corpus) -> None:
    """A caller keying in a PIN while someone talks 20 dB below the tones."""
    from ivrsim.audio.levels import signal_level_dbm0

    _, samples = speech_at(speech_corpus, 8000)[0]
    background = samples * np.float32(10 ** ((-30.0 - signal_level_dbm0(samples)) / 20))
    pin = keys(8000, "2580", lead_ms=0, level_dbm0=-10.0, on_ms=70, off_ms=250)
    start = int(2.0 * 8000)
    background[start : start + len(pin)] += pin
    assert decode(g711.round_trip(background), 8000) == "2580"


@pytest.mark.parametrize("rate_hz", [8000, 48000])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_talk_off_music_gives_no_digits(rate_hz: int, seed: int) -> None:
    assert decode(music(rate_hz, 30.0, seed), rate_hz) == ""


CALL_PROGRESS_TONES = {
    "US dial": ((350.0, 440.0), (10.0,)),
    "US ringback": ((440.0, 480.0), (2.0, 4.0)),
    "US busy": ((480.0, 620.0), (0.5, 0.5)),
    "US reorder": ((480.0, 620.0), (0.25, 0.25)),
    "UK dial": ((350.0, 450.0), (10.0,)),
    "UK ringback": ((400.0, 450.0), (0.4, 0.2, 0.4, 2.0)),
    "EU dial": ((425.0,), (10.0,)),
    "EU busy": ((425.0,), (0.5, 0.5)),
    "SIT 913.8": ((913.8,), (0.274, 0.1)),
    "SIT 1370.6": ((1370.6,), (0.274, 0.1)),
}


@pytest.mark.parametrize("rate_hz", [8000, 44100])
@pytest.mark.parametrize("name", sorted(CALL_PROGRESS_TONES))
def test_talk_off_call_progress_tones_give_no_digits(rate_hz: int, name: str) -> None:
    frequencies, on_off = CALL_PROGRESS_TONES[name]
    signal = cadence(frequencies, on_off, 12.0, rate_hz, level_dbm0=-10.0)
    assert decode(signal, rate_hz) == ""


# -- streaming --------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    frame_samples=st.lists(st.integers(min_value=1, max_value=2000), min_size=1, max_size=8),
    rate_hz=st.sampled_from(RATES_HZ),
    chunk_ms=st.sampled_from([0.0, 20.0, 40.0, 100.0]),
)
def test_streaming_in_any_frames_matches_batch(frame_samples: list[int], rate_hz: int, chunk_ms: float) -> None:
    signal = add_white_noise(keys(rate_hz, "159#D0", on_ms=45, off_ms=45, twist_db=4.0), -10.0, 20.0, seed=5)
    expected = detect_dtmf(signal, rate_hz)
    receiver = DtmfReceiver(rate_hz, chunk_ms=chunk_ms)
    got = []
    position, i = 0, 0
    while position < len(signal):
        size = frame_samples[i % len(frame_samples)]
        got += receiver.feed(signal[position : position + size])
        position += size
        i += 1
    got += receiver.flush()
    assert [d.key for d in got] == [d.key for d in expected]
    for a, b in zip(got, expected):
        assert a.start_s == pytest.approx(b.start_s, abs=1e-6)
        assert a.end_s == pytest.approx(b.end_s, abs=1e-6)
        assert a.row_level_dbm0 == pytest.approx(b.row_level_dbm0, abs=1e-3)


@pytest.mark.parametrize("rate_hz", [8000, 44100])
def test_streaming_matches_batch_across_long_silence_music_and_a_held_key(rate_hz: int) -> None:
    """The receiver forgets what no tone needs (silence, music, a decided key); the digits do not change."""
    quiet = np.zeros(int(2.5 * rate_hz), dtype=np.float32)
    signal = add_white_noise(
        np.concatenate([
            keys(rate_hz, "12", on_ms=50, off_ms=50), quiet, music(rate_hz, 2.0, seed=3).astype(np.float32) * 0.05,
            keys(rate_hz, "0", on_ms=2500, off_ms=100), quiet, keys(rate_hz, "#D", on_ms=45, off_ms=45),
        ]),
        -10.0, 25.0, seed=9,
    )
    expected = detect_dtmf(signal, rate_hz)
    assert "".join(d.key for d in expected) == "120#D"
    receiver = DtmfReceiver(rate_hz, chunk_ms=40.0)
    frame = rate_hz // 50
    got = []
    for offset in range(0, len(signal), frame):
        got += receiver.feed(signal[offset : offset + frame])
    got += receiver.flush()
    assert [d.key for d in got] == [d.key for d in expected]
    for a, b in zip(got, expected):  # to the sample; levels to float32 rounding (batched FFTs)
        assert (a.start_s, a.end_s) == pytest.approx((b.start_s, b.end_s), abs=1e-6)
        assert (a.row_level_dbm0, a.col_level_dbm0) == pytest.approx((b.row_level_dbm0, b.col_level_dbm0), abs=1e-3)


def test_streaming_memory_does_not_grow_with_the_stream() -> None:
    """Ten times the audio (noise, then a held key and more noise) peaks at about the same traced memory:
    the receiver keeps a tone in progress, never the stream (a live call may last hours)."""

    def peak_bytes(seconds: float) -> int:
        rate_hz = 8000
        frame = rate_hz // 50
        receiver = DtmfReceiver(rate_hz)
        noise = add_white_noise(np.zeros(rate_hz, dtype=np.float32), -10.0, 0.0, seed=1) * 0.1
        held = keys(rate_hz, "5", on_ms=1500, off_ms=100)
        tracemalloc.start()
        try:
            for second in range(int(seconds)):
                if second == int(seconds) // 2:
                    for offset in range(0, len(held), frame):
                        receiver.feed(held[offset : offset + frame])
                for offset in range(0, len(noise), frame):
                    receiver.feed(noise[offset : offset + frame])
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    short, long = peak_bytes(10), peak_bytes(100)
    assert long <= 1.5 * short + 64_000, (short, long)


def test_streaming_reports_a_digit_soon_after_the_key_is_released() -> None:
    rate_hz = 8000
    receiver = DtmfReceiver(rate_hz, chunk_ms=20.0)
    signal = keys(rate_hz, "7", lead_ms=100, on_ms=80, off_ms=500)
    frame = rate_hz // 50
    for offset in range(0, len(signal), frame):
        digits = receiver.feed(signal[offset : offset + frame])
        if digits:
            reported_s = (offset + frame) / rate_hz
            assert digits[0].key == "7"
            assert 0.0 < reported_s - digits[0].end_s <= 0.1
            return
    pytest.fail("the digit was never reported before the end of the stream")


def test_flush_reports_a_tone_cut_by_the_end_and_resets() -> None:
    receiver = DtmfReceiver(8000)
    signal = keys(8000, "9", on_ms=200, off_ms=0)
    assert receiver.feed(signal) == []
    assert [d.key for d in receiver.flush()] == ["9"]
    assert [d.key for d in receiver.feed(keys(8000, "3")) + receiver.flush()] == ["3"]


def test_long_held_key_is_one_digit_with_its_full_duration() -> None:
    digits = detect_dtmf(keys(8000, "0", on_ms=3000, off_ms=100), 8000)
    assert [d.key for d in digits] == ["0"]
    assert digits[0].duration_s == pytest.approx(3.0, abs=0.002)


def test_thresholds_can_be_tightened() -> None:
    """Thresholds are data: a stricter frequency tolerance rejects what the default accepts."""
    signal = keys(8000, "5", row_offset_pct=1.5)
    assert decode(signal, 8000) == "5"
    strict = DtmfThresholds(max_frequency_deviation_pct=1.0)
    assert detect_dtmf(signal, 8000, strict) == []


def test_int16_pcm_is_scaled_to_full_scale() -> None:
    signal = keys(8000, "147", level_dbm0=-6.0)
    pcm = np.round(signal * 32767).astype(np.int16)
    digits = detect_dtmf(pcm, 8000)
    assert "".join(d.key for d in digits) == "147"
    assert digits[0].row_level_dbm0 == pytest.approx(-6.0, abs=0.2)


@pytest.mark.parametrize("seed", range(6))
def test_every_impairment_at_once_within_the_limits(seed: int) -> None:
    """Random keys, each with its own level (0 to -25 dBm0), twist (-4 to 8 dB), frequency offsets
    (+-1.5 % per tone), tone (40-150 ms) and pause (40-200 ms), at a random rate, in white noise 8 dB
    below a -25 dBm0 tone, every other time through G.711: every key comes back."""
    from ivrsim.audio.dtmf_generator import dual_tone
    from ivrsim.audio.levels import dbm0_to_power

    rng = np.random.default_rng(seed)
    for _ in range(5):
        rate_hz = int(rng.choice(RATES_HZ))
        parts = [np.zeros(int(rng.uniform(0, 0.05) * rate_hz), dtype=np.float32)]
        sent = "".join(rng.choice(list(ALL_KEYS), size=16))
        for key in sent:
            low_hz, high_hz = key_tones_hz(key)
            level, twist = rng.uniform(-25, 0), rng.uniform(-4, 8)
            low_hz *= 1 + rng.uniform(-1.5, 1.5) / 100
            high_hz *= 1 + rng.uniform(-1.5, 1.5) / 100
            parts.append(dual_tone(low_hz, high_hz, rng.uniform(0.040, 0.150), rate_hz, level, level - twist))
            parts.append(np.zeros(int(rng.uniform(0.040, 0.200) * rate_hz), dtype=np.float32))
        signal = np.concatenate(parts)
        signal += rng.normal(0, np.sqrt(dbm0_to_power(-25) / 10**0.8), len(signal)).astype(np.float32)
        if rate_hz == 8000 and rng.random() < 0.5:
            signal = g711.round_trip(signal)
        assert decode(signal, rate_hz) == sent


def test_talk_off_a_note_and_its_octave_inside_the_frequency_tolerance() -> None:
    """A slightly sharp G#5 (832 Hz) with falling harmonics: the note and its octave (1664 Hz) sit 2.3 % and
    1.9 % from key C's 852 and 1633 Hz, in the band Q.24 leaves to the receiver, and pass level, twist and
    purity. Three checks refuse it on their own: the 1.7 % frequency limit, the 2:1 ratio, and the
    note's 3rd harmonic (the comb); with all three off it is taken for key C."""
    import ivrsim.audio.dtmf_receiver as receiver

    t = np.arange(int(0.3 * 8000)) / 8000
    note = sum(0.3 / 2 ** (h - 1) * np.sin(2 * np.pi * 832.0 * h * t) for h in (1, 2, 3, 4)).astype(np.float32)
    signal = np.concatenate([np.zeros(800, np.float32), note, np.zeros(800, np.float32)])
    wide = {"max_frequency_deviation_pct": 2.5}
    no_comb = {"max_harmonic_comb": np.inf, "max_standing_comb": np.inf}

    def keys_with(**changes: float) -> str:
        return "".join(d.key for d in detect_dtmf(signal, 8000, DtmfThresholds(**changes)))

    assert decode(signal, 8000) == ""
    assert keys_with(**no_comb) == ""
    assert keys_with(**wide) == ""
    saved = receiver.HARMONIC_RATIOS
    try:
        receiver.HARMONIC_RATIOS = ()
        assert keys_with(**wide) == ""  # the comb alone
        assert keys_with(**no_comb) == ""  # the frequency limit alone
        assert keys_with(**wide, **no_comb) == "C"
    finally:
        receiver.HARMONIC_RATIOS = saved


def test_no_key_within_the_frequency_limits_is_in_a_harmonic_ratio() -> None:
    from ivrsim.audio.dtmf_keys import COL_FREQUENCIES_HZ, ROW_FREQUENCIES_HZ
    from ivrsim.audio.dtmf_receiver import harmonic_pair

    offsets = np.linspace(-1.5, 1.5, 13) / 100
    pairs = np.array([(row * (1 + a), col * (1 + b)) for row in ROW_FREQUENCIES_HZ for col in COL_FREQUENCIES_HZ for a in offsets for b in offsets])
    assert not harmonic_pair(pairs).any()
    assert harmonic_pair(np.array([[830.61, 1661.22], [700.0, 1050.0]])).all()  # an octave, a fifth


@pytest.mark.parametrize("rate_hz", RATES_HZ)
@pytest.mark.parametrize(("piece_ms", "gap_ms"), [(30.0, 10.0), (25.0, 10.0), (40.0, 10.0), (30.0, 5.0)])
def test_dropouts_of_10_ms_are_bridged_even_between_short_pieces(rate_hz: int, piece_ms: float, gap_ms: float) -> None:
    low_hz, high_hz = key_tones_hz("9")
    tone = tones((low_hz, high_hz), -12.0, (2 * piece_ms + gap_ms) / 1000, rate_hz)
    start = int(piece_ms / 1000 * rate_hz)
    tone[start : start + int(gap_ms / 1000 * rate_hz)] = 0.0
    silence = np.zeros(int(0.05 * rate_hz), dtype=np.float32)
    assert decode(np.concatenate([silence, tone, silence]), rate_hz) == "9"


# -- what a key has and speech or music lacks (issues 15 and 18) -----------------------------------------


@pytest.mark.parametrize("rate_hz", RATES_HZ)
def test_keys_at_minus_41_dbm0_per_tone_are_accepted_through_g711(rate_hz: int) -> None:
    signal = keys(rate_hz, level_dbm0=-41.0, on_ms=40, off_ms=60, row_offset_pct=1.5, col_offset_pct=-1.5)
    if rate_hz == 8000:
        signal = g711.round_trip(signal)
    assert decode(signal, rate_hz) == ALL_KEYS


def _pair(low_hz: np.ndarray, high_hz: np.ndarray, amplitude: np.ndarray, rate_hz: int = 8000) -> np.ndarray:
    """Two tones whose frequencies (per sample, Hz) and common amplitude may move, between silences."""
    tone = amplitude * (np.sin(2 * np.pi * np.cumsum(low_hz) / rate_hz) + np.sin(2 * np.pi * np.cumsum(high_hz) / rate_hz))
    silence = np.zeros(rate_hz // 10, dtype=np.float32)
    return np.concatenate([silence, tone.astype(np.float32), silence])


@pytest.mark.parametrize(("glide_hz", "heard"), [(0.0, "5"), (3.0, "5"), (16.0, "")])
def test_a_pair_whose_frequencies_glide_like_a_voice_is_not_a_key(glide_hz: float, heard: str) -> None:
    """Key 5's tones gliding together by ``glide_hz`` over 80 ms, as a voice's partials follow its pitch
    (within 1 % of nominal throughout): a key's tones stay put (they drift under 2.5 Hz measured)."""
    n = int(0.08 * 8000)
    glide = np.linspace(-glide_hz / 2, glide_hz / 2, n)
    low_hz, high_hz = key_tones_hz("5")
    amplitude = np.full(n, 0.1)
    assert decode(_pair(low_hz + glide, high_hz + glide * high_hz / low_hz, amplitude), 8000) == heard


@pytest.mark.parametrize(("depth", "heard"), [(0.0, "5"), (0.05, "5"), (0.5, "")])
def test_a_pair_that_swells_and_fades_like_formants_is_not_a_key(depth: float, heard: str) -> None:
    """Key 5's exact tones, their level swinging by ``depth`` at 25 Hz over 80 ms (a voice's partials rise
    and fall with its formants; a key holds its level)."""
    n = int(0.08 * 8000)
    low_hz, high_hz = key_tones_hz("5")
    amplitude = 0.1 * (1 + depth * np.sin(2 * np.pi * 25 * np.arange(n) / 8000))
    assert decode(_pair(np.full(n, low_hz), np.full(n, high_hz), amplitude), 8000) == heard


@pytest.mark.parametrize("size", [96, 768, 1024, 1536])
def test_the_purity_fft_is_scipys_rfft_over_each_row(size: int) -> None:
    """``rfft_rows`` (scipy's pocketfft called past ``scipy.fft``'s dispatch) gives what ``scipy.fft.rfft``
    gives, bit for bit, on rows of zero-padded windowed audio, into a new array or into scratch rows."""
    import scipy.fft

    rows = np.zeros((5, size), dtype=np.float32)
    rows[:, : size // 2] = np.random.default_rng(size).standard_normal((5, size // 2)).astype(np.float32)
    direct = rfft_rows()(rows)
    assert direct.dtype == np.complex64
    np.testing.assert_array_equal(direct, scipy.fft.rfft(rows, axis=1))
    scratch = np.full((8, size // 2 + 1), np.nan, dtype=np.complex64)
    np.testing.assert_array_equal(rfft_rows()(rows, scratch[:5]), direct)


def test_a_decoded_digit_is_a_plain_frozen_dtmf_digit() -> None:
    """The kernel builds digits by writing their slots straight: each must be what ``DtmfDigit(...)`` makes
    (equal, same hash, pickles, frozen), and is left out of the garbage collector's lists (it holds a
    string and floats only)."""
    import dataclasses
    import gc
    import pickle

    from ivrsim.audio.dtmf_receiver import DtmfDigit

    digits = detect_dtmf(keys(8000, "5#"), 8000)
    assert [d.key for d in digits] == ["5", "#"]
    for digit in digits:
        built = DtmfDigit(**{field.name: getattr(digit, field.name) for field in dataclasses.fields(DtmfDigit)})
        assert type(digit) is DtmfDigit and digit == built and hash(digit) == hash(built)
        assert pickle.loads(pickle.dumps(digit)) == digit
        assert digit.as_dict() == built.as_dict()
        with pytest.raises(dataclasses.FrozenInstanceError):
            digit.start_s = 0.0  # type: ignore[misc]
        assert not gc.is_tracked(digit)

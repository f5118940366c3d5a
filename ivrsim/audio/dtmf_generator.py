"""DTMF generator: key sequences as audio, with the impairments the receiver is tested against.

Digits follow ITU-T Q.23 frequencies. Each tone's level, frequency offset and the on/off times are
chosen per call; ``w`` in a sequence is a 0.5 s pause, as in Twilio's ``sendDigits``. Tones start at
zero phase and are cut hard at the sample (no ramps): that is the harder case for a receiver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ivrsim.audio.dtmf_keys import key_tones_hz
from ivrsim.audio.levels import dbm0_to_amplitude

#: Pause inserted for each ``w`` in a digit sequence, in seconds (Twilio's convention).
WAIT_CHARACTER_S = 0.5
#: Default tone-on time, in ms.
DEFAULT_ON_MS = 80.0
#: Default silence after each tone, in ms.
DEFAULT_OFF_MS = 80.0
#: Default level of each tone, in dBm0.
DEFAULT_LEVEL_DBM0 = -10.0


@dataclass(frozen=True)
class DtmfToneSpec:
    """How to sound each key: times in ms, levels in dBm0, offsets in percent of the nominal frequency.

    The low (row) tone is at ``level_dbm0``; the high (column) tone at ``level_dbm0 - twist_db``, so a
    positive ``twist_db`` is normal twist (low louder) and a negative one reverse twist.
    """

    on_ms: float = DEFAULT_ON_MS
    off_ms: float = DEFAULT_OFF_MS
    level_dbm0: float = DEFAULT_LEVEL_DBM0
    twist_db: float = 0.0
    row_offset_pct: float = 0.0
    col_offset_pct: float = 0.0


def validate_digits(digits: str) -> str:
    """``digits`` as the generator will play it; raises ValueError naming the first bad character."""
    for position, char in enumerate(digits):
        if char in "wW":
            continue
        try:
            key_tones_hz(char)
        except ValueError:
            raise ValueError(
                f"character {position + 1} of {digits!r} is {char!r}: use 0-9, *, #, A-D, or w for a 0.5 s pause"
            ) from None
    return digits.upper().replace("W", "w")


def dual_tone(
    low_hz: float,
    high_hz: float,
    duration_s: float,
    rate_hz: int,
    low_level_dbm0: float,
    high_level_dbm0: float,
) -> np.ndarray:
    """A two-tone burst of ``duration_s`` seconds (float32); a building block for tests too."""
    n = np.arange(int(round(duration_s * rate_hz)), dtype=np.float64) / rate_hz
    signal = dbm0_to_amplitude(low_level_dbm0) * np.sin(2.0 * np.pi * low_hz * n)
    signal += dbm0_to_amplitude(high_level_dbm0) * np.sin(2.0 * np.pi * high_hz * n)
    return signal.astype(np.float32)


def generate_dtmf(digits: str, rate_hz: int = 8000, spec: DtmfToneSpec | None = None) -> np.ndarray:
    """Audio (float32, mono, at ``rate_hz``) for a sequence of keys and ``w`` pauses."""
    spec = spec or DtmfToneSpec()
    if rate_hz <= 0:
        raise ValueError(f"rate_hz must be positive, got {rate_hz}")
    if spec.on_ms <= 0 or spec.off_ms < 0:
        raise ValueError("on_ms must be positive and off_ms not negative")
    digits = validate_digits(digits)
    off = np.zeros(int(round(spec.off_ms / 1000.0 * rate_hz)), dtype=np.float32)
    wait = np.zeros(int(round(WAIT_CHARACTER_S * rate_hz)), dtype=np.float32)
    parts: list[np.ndarray] = []
    for char in digits:
        if char == "w":
            parts.append(wait)
            continue
        low_hz, high_hz = key_tones_hz(char)
        parts.append(
            dual_tone(
                low_hz * (1.0 + spec.row_offset_pct / 100.0),
                high_hz * (1.0 + spec.col_offset_pct / 100.0),
                spec.on_ms / 1000.0,
                rate_hz,
                spec.level_dbm0,
                spec.level_dbm0 - spec.twist_db,
            )
        )
        parts.append(off)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

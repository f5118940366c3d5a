"""Signal levels: dBm0, decibels and power, as telephony measures them.

0 dBm0 is the level of a sine wave 3.14 dB below digital full scale (the A-law digital milliwatt of
ITU-T G.711; mu-law's is 3.17 dB, the difference is immaterial here). Inside ivrsim audio is float32 in
[-1, 1], so a sine of amplitude ``dbm0_to_amplitude(0.0)`` = 0.6966 is a 0 dBm0 tone.

"Power" below is the mean square of a float signal: a sine of amplitude A has power A**2 / 2.
"""

from __future__ import annotations

import numpy as np

#: How far a 0 dBm0 sine sits below a full-scale sine, in dB (ITU-T G.711, A-law).
DBM0_BELOW_FULL_SCALE_DB = 3.14

#: Amplitude of a 0 dBm0 sine in float full-scale units.
ZERO_DBM0_AMPLITUDE = 10.0 ** (-DBM0_BELOW_FULL_SCALE_DB / 20.0)

#: Mean-square power of a 0 dBm0 sine.
ZERO_DBM0_POWER = ZERO_DBM0_AMPLITUDE**2 / 2.0


def db_to_power_ratio(db: float) -> float:
    """A level difference in dB as a power ratio (10 dB -> 10.0)."""
    return float(10.0 ** (db / 10.0))


def power_ratio_to_db(ratio: float) -> float:
    """A power ratio in dB; zero or less gives -inf."""
    return float(10.0 * np.log10(ratio)) if ratio > 0.0 else float("-inf")


def dbm0_to_amplitude(level_dbm0: float) -> float:
    """Peak amplitude (float full-scale units) of a sine at ``level_dbm0``."""
    return float(ZERO_DBM0_AMPLITUDE * 10.0 ** (level_dbm0 / 20.0))


def dbm0_to_power(level_dbm0: float) -> float:
    """Mean-square power of a sine at ``level_dbm0``."""
    return float(ZERO_DBM0_POWER * 10.0 ** (level_dbm0 / 10.0))


def power_to_dbm0(power: float) -> float:
    """Level in dBm0 of a signal with mean-square ``power``; silence gives -inf."""
    return power_ratio_to_db(power / ZERO_DBM0_POWER)


def signal_level_dbm0(samples: np.ndarray) -> float:
    """Level in dBm0 of a whole signal (its mean-square power)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return float("-inf")
    return power_to_dbm0(float(np.mean(x * x)))

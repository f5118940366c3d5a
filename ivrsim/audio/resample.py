"""Sample-rate conversion with scipy's polyphase filter (the house convention, see DESIGN.md)."""

from __future__ import annotations

from math import gcd

import numpy as np


def resample(samples: np.ndarray, from_rate_hz: int, to_rate_hz: int) -> np.ndarray:
    """``samples`` (float, along axis 0) converted from ``from_rate_hz`` to ``to_rate_hz``, as float32.

    The anti-aliasing filter is scipy's default Kaiser-windowed FIR for the reduced up/down ratio.
    """
    if from_rate_hz <= 0 or to_rate_hz <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate_hz} and {to_rate_hz}")
    x = np.asarray(samples, dtype=np.float32)
    if from_rate_hz == to_rate_hz or len(x) == 0:
        return x
    from scipy.signal import resample_poly  # here: scipy.signal takes about a second to import

    common = gcd(int(from_rate_hz), int(to_rate_hz))
    return resample_poly(x, int(to_rate_hz) // common, int(from_rate_hz) // common, axis=0).astype(np.float32)

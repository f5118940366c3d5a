"""Call-progress tones (ITU-T E.180 and its North American supplement): what a phone sounds while it rings.

The desktop phone rings on the speakers with the North American ring cadence: 2 s of 440 + 480 Hz, 4 s of
silence (the same pair as ringback, E.180 supplement 2). Pure DSP: arrays in, arrays out.
"""

from __future__ import annotations

import numpy as np

from ivrsim.audio.levels import dbm0_to_amplitude

#: The ring cadence: tone on, then off, in seconds.
RING_ON_S = 2.0
RING_OFF_S = 4.0
#: The ring tone's pair of frequencies, in Hz.
RING_FREQUENCIES_HZ = (440.0, 480.0)
#: Each frequency's level, in dBm0 (loud enough to hear across a room, 4 dB under the DTMF default).
RING_LEVEL_DBM0 = -14.0


def ring_cycle(rate_hz: int, level_dbm0: float = RING_LEVEL_DBM0) -> np.ndarray:
    """One ring cycle (``RING_ON_S`` of tone, then ``RING_OFF_S`` of silence) as float32 at ``rate_hz``;
    played in a loop, it is the phone ringing. The tone starts and ends with 10 ms ramps (no clicks)."""
    on = int(round(RING_ON_S * rate_hz))
    t = np.arange(on) / rate_hz
    amplitude = dbm0_to_amplitude(level_dbm0)
    tone = sum(amplitude * np.sin(2 * np.pi * f * t) for f in RING_FREQUENCIES_HZ)
    ramp = min(int(0.01 * rate_hz), on // 2)
    if ramp:
        envelope = np.ones(on)
        envelope[:ramp] = np.linspace(0.0, 1.0, ramp)
        envelope[-ramp:] = np.linspace(1.0, 0.0, ramp)
        tone = tone * envelope
    return np.concatenate([tone, np.zeros(int(round(RING_OFF_S * rate_hz)))]).astype(np.float32)

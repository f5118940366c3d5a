"""The telephone line: gain, the telephone band, white noise and G.711 companding, frame by frame.

Narrowband (the default) is the PSTN: 8 kHz, 300-3400 Hz (ITU-T G.712's passband), G.711 mu-law or
A-law. Wideband is HD voice: 16 kHz, 50-7000 Hz (ITU-T G.722's band), carried as linear PCM.

Order: gain, band filter, noise, companding. The noise is added after the filter, so the SNR configured
is the SNR the far end measures (white noise over the whole 0-4 kHz or 0-8 kHz band).

Frames pass through in order and the filter keeps its state between frames, so a call processed in
20 ms frames gives the same samples as one processed whole; noise comes from a seeded generator, so the
same call gives the same line every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ivrsim.audio import g711
from ivrsim.audio.levels import dbm0_to_power

#: Narrowband telephone passband, in Hz (ITU-T G.712).
NARROWBAND_HZ = (300.0, 3400.0)
#: Wideband passband, in Hz (ITU-T G.722).
WIDEBAND_HZ = (50.0, 7000.0)
#: Level the SNR is measured against, in dBm0: a typical active speech level (ITU-T P.56 practice).
REFERENCE_LEVEL_DBM0 = -20.0
#: Order of the Butterworth band-pass prototype (the band-pass filter has twice this order).
FILTER_ORDER = 4


@dataclass(frozen=True)
class LineSettings:
    """How a line treats audio.

    Args:
        wideband: 16 kHz linear PCM in 50-7000 Hz instead of 8 kHz G.711 in 300-3400 Hz.
        law: G.711 law on a narrowband line ("ulaw" or "alaw"); None for linear PCM.
        snr_db: white noise this many dB below ``reference_level_dbm0``; None for no noise.
        reference_level_dbm0: the level the SNR is measured against, in dBm0.
        gain_db: gain applied before everything else, in dB (negative for loss).
        seed: seed of the noise generator.
    """

    wideband: bool = False
    law: g711.Law | None = "ulaw"
    snr_db: float | None = None
    reference_level_dbm0: float = REFERENCE_LEVEL_DBM0
    gain_db: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.law not in (None, "ulaw", "alaw"):
            raise ValueError(f"law must be 'ulaw', 'alaw' or None, got {self.law!r}")
        if self.snr_db is not None and not math.isfinite(self.snr_db):
            raise ValueError(f"snr_db must be a finite number of dB, got {self.snr_db}")
        if not math.isfinite(self.gain_db) or abs(self.gain_db) > 60:
            raise ValueError(f"gain_db must be within +-60 dB, got {self.gain_db}")

    @property
    def rate_hz(self) -> int:
        return 16000 if self.wideband else 8000

    @property
    def band_hz(self) -> tuple[float, float]:
        return WIDEBAND_HZ if self.wideband else NARROWBAND_HZ

    @property
    def companding(self) -> g711.Law | None:
        return None if self.wideband else self.law


class LineModel:
    """One direction of a line, processing float32 frames at ``settings.rate_hz``."""

    def __init__(self, settings: LineSettings | None = None) -> None:
        self.settings = settings or LineSettings()
        s = self.settings
        # scipy.signal takes about a second to import: only a process that models a line pays for it.
        from scipy.signal import butter, sosfilt

        try:  # the compiled core of scipy.signal.sosfilt (see process)
            from scipy.signal._sosfilt import _sosfilt as sosfilt_inplace
        except ImportError:  # pragma: no cover - a scipy that moved it: use the public function
            sosfilt_inplace = None
        self._sosfilt, self._sosfilt_inplace = sosfilt, sosfilt_inplace
        self._sos = butter(FILTER_ORDER, s.band_hz, btype="bandpass", fs=s.rate_hz, output="sos")
        self._gain = np.float32(10.0 ** (s.gain_db / 20.0))
        self._noise_sigma = (
            math.sqrt(dbm0_to_power(s.reference_level_dbm0) / 10.0 ** (s.snr_db / 10.0)) if s.snr_db is not None else 0.0
        )
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((1, self._sos.shape[0], 2))
        self._rng = np.random.default_rng(self.settings.seed)

    def process(self, frame: np.ndarray) -> np.ndarray:
        """The frame as the far end receives it.

        scipy.signal.sosfilt checks and reshapes its arguments for about 20 us a call, more than the
        filtering of a 20 ms frame; the line calls the same compiled routine directly (same result to
        the bit), and falls back to sosfilt if scipy ever moves it.
        """
        x = np.asarray(frame, dtype=np.float64) * float(self._gain)
        if self._sosfilt_inplace is not None:
            signal = x.reshape(1, -1).copy()
            self._sosfilt_inplace(self._sos, signal, self._state)
            y = signal[0].astype(np.float32)
        else:  # pragma: no cover
            filtered, state = self._sosfilt(self._sos, x, zi=self._state[0])
            self._state = state[None]
            y = filtered.astype(np.float32)
        if self._noise_sigma:
            y += self._rng.normal(0.0, self._noise_sigma, len(y)).astype(np.float32)
        law = self.settings.companding
        if law is not None:
            return g711.round_trip(y, law)
        return np.clip(y, -1.0, 32767 / 32768).astype(np.float32)

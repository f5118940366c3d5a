"""A Goertzel filter bank: the DFT at a few chosen frequencies, block by block.

The Goertzel recurrence computes one term of the DFT, ``X(f) = sum_n x[n] * exp(-2j*pi*f*n/rate)``, over a
block of samples. Run over every block of a long signal, that is one matrix product of the signal (as rows
of ``block_samples``) with a fixed basis of cosines and sines; BLAS computes it for all blocks and all
frequencies at once, about 100,000 times faster than real time at 8 kHz on one core, with the same result as
the recurrence (up to rounding).

Each block's phase is referred to its own first sample. A steady tone at ``f`` seen in two blocks
``hop`` samples apart differs in phase by ``2*pi*f*hop/rate``: multiplying the later block by
``hop_rotation(hop)`` removes that, so that adjacent blocks add up coherently to the spectrum of the
longer block they form, and what phase turn remains between them is the tone's offset from ``f`` (the DTMF
receiver measures frequency from it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class GoertzelBank:
    """Complex DFT terms at ``frequencies_hz`` for blocks of ``block_samples`` samples.

    Args:
        frequencies_hz: the frequencies to evaluate, in Hz.
        rate_hz: sample rate of the signal, in Hz.
        block_samples: block length, in samples.
        window: optional weights (length ``block_samples``) applied to each block, e.g. a Hann window.
    """

    def __init__(
        self,
        frequencies_hz: Sequence[float],
        rate_hz: float,
        block_samples: int,
        window: np.ndarray | None = None,
    ) -> None:
        if block_samples < 2:
            raise ValueError(f"block_samples must be at least 2, got {block_samples}")
        self.frequencies_hz = np.asarray(frequencies_hz, dtype=np.float64)
        self.rate_hz = float(rate_hz)
        self.block_samples = int(block_samples)
        weights = np.ones(self.block_samples) if window is None else np.asarray(window, dtype=np.float64)
        if weights.shape != (self.block_samples,):
            raise ValueError("window must have block_samples weights")
        #: Sum of the window weights: a tone of amplitude A at exactly f gives |X| = A * gain / 2.
        self.gain = float(weights.sum())
        n = np.arange(self.block_samples, dtype=np.float64)
        phase = np.outer(n, 2.0 * np.pi * self.frequencies_hz / self.rate_hz)
        # Columns interleaved as (cos f0, -sin f0, cos f1, -sin f1, ...): the float32 product of a block
        # with this basis, viewed as complex64, is the DFT term of each frequency.
        basis = np.empty((self.block_samples, 2 * len(self.frequencies_hz)), dtype=np.float64)
        basis[:, 0::2] = weights[:, None] * np.cos(phase)
        basis[:, 1::2] = -weights[:, None] * np.sin(phase)
        self._basis = basis.astype(np.float32)

    @property
    def basis(self) -> np.ndarray:
        """The float32 basis (block_samples, 2 * freqs): cos and -sin of each frequency, interleaved."""
        return self._basis

    def spectra(self, blocks: np.ndarray) -> np.ndarray:
        """DFT terms of each row of ``blocks`` (float32, (count, block_samples)): complex64 (count, freqs)."""
        return np.ascontiguousarray(blocks @ self._basis).view(np.complex64)

    def hop_rotation(self, hop_samples: int) -> np.ndarray:
        """``exp(-2j*pi*f*hop/rate)`` per frequency: brings a block ``hop_samples`` later to the phase
        reference of the earlier one."""
        return np.exp(-2j * np.pi * self.frequencies_hz * hop_samples / self.rate_hz).astype(np.complex64)


def hann_window(length: int) -> np.ndarray:
    """A periodic Hann window of ``length`` samples: sidelobes 31 dB down, falling 18 dB per octave."""
    n = np.arange(length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)


def window_response(window: np.ndarray, offsets_hz: np.ndarray, rate_hz: float) -> np.ndarray:
    """Gain of a windowed DFT term for tones ``offsets_hz`` away from its frequency (1.0 at zero offset)."""
    n = np.arange(len(window), dtype=np.float64)
    offsets = np.atleast_1d(np.asarray(offsets_hz, dtype=np.float64))
    response = np.abs(np.exp(2j * np.pi * np.outer(offsets, n) / rate_hz) @ window)
    return response / np.sum(window)

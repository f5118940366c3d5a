"""A Goertzel filter bank: the DFT at a few chosen frequencies, block by block.

The Goertzel recurrence computes one term of the DFT, ``X(f) = sum_n x[n] * exp(-2j*pi*f*n/rate)``, over a
block of samples. Run over every block of a long signal, that is one matrix product of the signal (as rows
of ``block_samples``) with a fixed basis of cosines and sines; BLAS computes it for all blocks and all
frequencies at once, about 100,000 times faster than real time at 8 kHz on one core, with the same result as
the recurrence (up to rounding).

Phases are referred to absolute sample time: block ``j`` of a signal is rotated by
``exp(-2j*pi*f*j*block_samples/rate)``. With that, the spectra of adjacent blocks add up coherently to the
spectrum of the longer block that they form, and the phase of a steady tone only turns with its offset
from ``f``: the DTMF receiver measures frequency from that turn.
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
        n = np.arange(self.block_samples, dtype=np.float64)
        omega = 2.0 * np.pi * self.frequencies_hz / self.rate_hz
        weights = np.ones(self.block_samples) if window is None else np.asarray(window, dtype=np.float64)
        if weights.shape != (self.block_samples,):
            raise ValueError("window must have block_samples weights")
        #: Sum of the window weights: a tone of amplitude A at exactly f gives |X| = A * gain / 2.
        self.gain = float(weights.sum())
        phase = np.outer(n, omega)
        # Real basis: columns [cos..., sin...]; X = x@cos - 1j * x@sin.
        self._basis = np.concatenate(
            [weights[:, None] * np.cos(phase), weights[:, None] * np.sin(phase)], axis=1
        ).astype(np.float32)
        self._count = len(self.frequencies_hz)
        self._cycles_per_sample = self.frequencies_hz / self.rate_hz

    def spectra(self, blocks: np.ndarray, start_samples: np.ndarray) -> np.ndarray:
        """DFT terms of each row of ``blocks``, phase-referred to absolute time.

        Args:
            blocks: float32 array (count, block_samples).
            start_samples: absolute sample index at which each row starts (count,).

        Returns:
            complex64 array (count, len(frequencies_hz)).
        """
        products = blocks @ self._basis
        local = products[:, : self._count] - 1j * products[:, self._count :]
        starts = np.asarray(start_samples, dtype=np.float64)
        cycles = np.mod(np.outer(starts, self._cycles_per_sample), 1.0)
        return (local * np.exp(-2j * np.pi * cycles)).astype(np.complex64)


def hann_window(length: int) -> np.ndarray:
    """A periodic Hann window of ``length`` samples: sidelobes 31 dB down, falling 18 dB per octave."""
    n = np.arange(length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)


def window_response(window: np.ndarray, offset_hz: float, rate_hz: float) -> float:
    """Gain of a windowed DFT term for a tone ``offset_hz`` away from its frequency (1.0 at zero offset)."""
    n = np.arange(len(window), dtype=np.float64)
    response = np.abs(np.sum(window * np.exp(2j * np.pi * offset_hz * n / rate_hz)))
    return float(response / np.sum(window))

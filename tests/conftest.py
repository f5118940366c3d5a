"""Shared signals for the tests: every one is generated here, from a seed, with real DSP."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ivrsim.audio.levels import dbm0_to_amplitude, dbm0_to_power
from ivrsim.blas import one_blas_thread
from ivrsim.audio.resample import resample
from ivrsim.media.files import read_audio_file
from ivrsim.testing.pulse import PulseAudioServer, available

# As in ivrsim's own processes (ivrsim/blas.py): the servers the tests start in this process run calls here.
one_blas_thread()

#: The sample rates the receiver must work at, in Hz.
RATES_HZ = (8000, 16000, 44100, 48000)
ALL_KEYS = "123A456B789C*0#D"

#: espeak-ng voices for the talk-off corpus: languages with different vowel systems and voice pitches.
SPEECH_VOICES = ("en-us", "en-gb-x-rp", "fr", "es", "de", "it", "pt", "ru", "ko", "ja", "hi", "ar", "fi", "pl")
SPEECH_TEXT = (
    "Thank you for calling. Your account number is 4 5 7 1 2 9 8 0. Press one for billing, two for sales, "
    "or stay on the line. The quick brown fox jumps over the lazy dog. Eight hundred sixty seven, five three "
    "oh nine. Hmmmmm. Aaaaaaah. Eeeeee. Ooooooo."
)


def add_white_noise(signal: np.ndarray, tone_level_dbm0: float, snr_db: float, seed: int) -> np.ndarray:
    """``signal`` plus white noise whose total power is ``snr_db`` below one tone at ``tone_level_dbm0``."""
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(dbm0_to_power(tone_level_dbm0) / 10.0 ** (snr_db / 10.0))
    return (signal + rng.normal(0.0, sigma, len(signal))).astype(np.float32)


def tones(frequencies_hz: tuple[float, ...], level_dbm0: float, duration_s: float, rate_hz: int) -> np.ndarray:
    """A sum of sines, each at ``level_dbm0``."""
    t = np.arange(int(round(duration_s * rate_hz))) / rate_hz
    signal = sum(dbm0_to_amplitude(level_dbm0) * np.sin(2 * np.pi * f * t) for f in frequencies_hz)
    return np.asarray(signal, dtype=np.float32)


def cadence(frequencies_hz: tuple[float, ...], on_off_s: tuple[float, ...], total_s: float, rate_hz: int, level_dbm0: float = -13.0) -> np.ndarray:
    """A call-progress tone switched on and off in the given cadence, repeated for ``total_s``."""
    parts = []
    length = 0.0
    while length < total_s:
        for i, seconds in enumerate(on_off_s):
            part = tones(frequencies_hz, level_dbm0, seconds, rate_hz)
            parts.append(part if i % 2 == 0 else np.zeros_like(part))
            length += seconds
    return np.concatenate(parts)


@pytest.fixture(scope="session")
def speech_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, np.ndarray, int]]:
    """(voice, samples, rate) of espeak-ng speech in many languages, as rendered (22,050 Hz)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is not installed: run ./setup.sh (it installs the Debian package espeak-ng)")
    folder: Path = tmp_path_factory.mktemp("speech")
    corpus = []
    for i, voice in enumerate(SPEECH_VOICES):
        path = folder / f"{voice}.wav"
        variant = voice if i % 2 == 0 else f"{voice}+f3"
        subprocess.run(
            [espeak, "-v", variant, "-s", str(150 + 10 * (i % 5)), "-p", str(30 + 7 * (i % 7)), "-w", str(path), SPEECH_TEXT],
            check=True,
            capture_output=True,
        )
        clip = read_audio_file(path)
        corpus.append((voice, clip.samples[:, 0], clip.rate_hz))
    return corpus


def speech_at(corpus: list[tuple[str, np.ndarray, int]], rate_hz: int) -> list[tuple[str, np.ndarray]]:
    return [(voice, resample(samples, rate, rate_hz)) for voice, samples, rate in corpus]


def music(rate_hz: int, duration_s: float, seed: int) -> np.ndarray:
    """Synthetic music: melodies and chords of equal-tempered notes with harmonics, vibrato and envelopes."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(duration_s * rate_hz), dtype=np.float64)
    position = 0
    while position < len(out):
        note_s = float(rng.choice([0.1, 0.15, 0.2, 0.3, 0.4, 0.6]))
        n = min(int(note_s * rate_hz), len(out) - position)
        t = np.arange(n) / rate_hz
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-t * rng.uniform(1.0, 6.0))
        for _ in range(int(rng.integers(1, 4))):  # one to three voices
            midi = int(rng.integers(55, 97))
            f0 = 440.0 * 2.0 ** ((midi - 69) / 12.0)
            vibrato = 1.0 + 0.004 * np.sin(2 * np.pi * 5.5 * t)
            phase = 2 * np.pi * f0 * np.cumsum(vibrato) / rate_hz
            harmonics = int(rng.integers(2, 7))
            for h in range(1, harmonics + 1):
                if h * f0 < rate_hz / 2:
                    out[position : position + n] += envelope * np.sin(h * phase) / h * 0.15
        position += n
    return out.astype(np.float32)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print pytest-randomly's seed even under ``-q`` (its header line is hidden there), so a failure that
    depends on the order can be replayed."""
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int):
        terminalreporter.write_line(f"test order: pytest-randomly seed {seed} (replay with -p randomly --randomly-seed={seed})")


def require_pulseaudio() -> None:
    """Skip where PulseAudio, its ALSA plugin or PortAudio is missing (a developer's machine), with the
    reason; fail in CI (``CI`` set), where setup.sh installs them and the sound-card tests must run."""
    reason = available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the sound-card tests must run in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def pulse() -> Iterator[PulseAudioServer]:
    """A PulseAudio daemon with null sinks ``speaker`` and ``micfeed`` for the module: the sound card."""
    require_pulseaudio()
    with PulseAudioServer() as server:
        yield server

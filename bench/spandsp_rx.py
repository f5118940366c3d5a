"""Debian's spandsp DTMF receiver through ctypes: an independent anchor for the accuracy benches.

Needs the Debian package ``libspandsp2`` (``libspandsp2t64`` on newer releases; both ship
``libspandsp.so.2``): ``apt-get install libspandsp2``. spandsp reads 16-bit samples at 8 kHz only, with
full scale 32767 (the same scale ivrsim's float samples use, so levels in dBm0 agree).

Usage as a script: .venv/bin/python bench/spandsp_rx.py FILE...   (prints the digits of each file)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

RATE_HZ = 8000
#: Sonames tried in order (Debian's libspandsp2 / libspandsp2t64 both ship the first).
SONAMES = ("libspandsp.so.2", "libspandsp.so.3", "libspandsp.so")
#: spandsp keeps at most 128 digits in its buffer; polling after every chunk keeps it from overflowing.
MAX_DIGITS = 128
#: Samples fed per call: the time resolution of ``decode_timed`` (50 ms).
CHUNK_SAMPLES = 400


class SpandspUnavailable(RuntimeError):
    """libspandsp is not installed (apt-get install libspandsp2)."""


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    names = list(SONAMES)
    found = ctypes.util.find_library("spandsp")
    if found:
        names.append(found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.dtmf_rx_init.restype = ctypes.c_void_p
        lib.dtmf_rx_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.dtmf_rx.restype = ctypes.c_int
        lib.dtmf_rx.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16), ctypes.c_int]
        lib.dtmf_rx_get.restype = ctypes.c_size_t
        lib.dtmf_rx_get.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.dtmf_rx_free.restype = ctypes.c_int
        lib.dtmf_rx_free.argtypes = [ctypes.c_void_p]
        return lib
    raise SpandspUnavailable(f"libspandsp not found (tried {', '.join(names)}): apt-get install libspandsp2")


def available() -> bool:
    """Whether libspandsp can be loaded here."""
    try:
        _library()
    except SpandspUnavailable:
        return False
    return True


@contextmanager
def _receiver() -> Iterator[tuple[ctypes.CDLL, int]]:
    lib = _library()
    state = lib.dtmf_rx_init(None, None, None)
    if not state:
        raise RuntimeError("dtmf_rx_init returned NULL")
    try:
        yield lib, state
    finally:
        lib.dtmf_rx_free(state)


def _to_int16(samples_8k: np.ndarray) -> np.ndarray:
    x = np.asarray(samples_8k)
    if x.dtype.kind == "f":
        x = np.clip(np.round(x.astype(np.float64) * 32767.0), -32768, 32767)
    return np.ascontiguousarray(x.reshape(-1), dtype=np.int16)


@dataclass(frozen=True)
class SpandspDigit:
    """A digit spandsp reported, with the end of the chunk in which it was first reported."""

    key: str
    reported_s: float


def decode_timed(samples_8k: np.ndarray, chunk_samples: int = CHUNK_SAMPLES) -> list[SpandspDigit]:
    """Digits in a mono 8 kHz signal (float in [-1, 1] or int16), each with the time it was reported
    (to ``chunk_samples`` resolution; spandsp reports a digit about 2 blocks of 102 samples after its start)."""
    pcm = _to_int16(samples_8k)
    found: list[SpandspDigit] = []
    buffer = ctypes.create_string_buffer(MAX_DIGITS + 1)
    with _receiver() as (lib, state):
        for begin in range(0, len(pcm), chunk_samples):
            chunk = pcm[begin : begin + chunk_samples]
            lib.dtmf_rx(state, chunk.ctypes.data_as(ctypes.POINTER(ctypes.c_int16)), len(chunk))
            count = lib.dtmf_rx_get(state, buffer, MAX_DIGITS)
            if count:
                end_s = (begin + len(chunk)) / RATE_HZ
                found.extend(SpandspDigit(chr(c), end_s) for c in buffer.raw[:count])
        # A few blocks of silence so that a digit cut by the end of the signal is still reported.
        tail = np.zeros(chunk_samples, dtype=np.int16)
        lib.dtmf_rx(state, tail.ctypes.data_as(ctypes.POINTER(ctypes.c_int16)), len(tail))
        count = lib.dtmf_rx_get(state, buffer, MAX_DIGITS)
        found.extend(SpandspDigit(chr(c), len(pcm) / RATE_HZ) for c in buffer.raw[:count])
    return found


def decode(samples_8k: np.ndarray) -> str:
    """The digits spandsp finds in a mono 8 kHz signal (float in [-1, 1] or int16)."""
    return "".join(d.key for d in decode_timed(samples_8k))


def self_check() -> None:
    """Raise unless spandsp decodes a generated "123A#" exactly (the harness is wired right)."""
    from ivrsim.audio.dtmf_generator import generate_dtmf

    got = decode(generate_dtmf("123A#", RATE_HZ))
    if got != "123A#":
        raise RuntimeError(f"spandsp harness decoded {got!r} from generate_dtmf('123A#')")


def main(argv: list[str]) -> int:
    from ivrsim.audio.resample import resample
    from ivrsim.media.files import read_audio_file

    self_check()
    for name in argv:
        clip = read_audio_file(name)
        mono = clip.samples.mean(axis=1)
        print(f"{name}: {decode(resample(mono, clip.rate_hz, RATE_HZ))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""G.711 companding: mu-law and A-law, encoded and decoded to the ITU-T G.711 tables.

The encoders follow the reference algorithm of ITU-T G.711 (as in the ITU's G.191 software tools and Sun's
``g711.c``): mu-law on a 14-bit magnitude with a bias of 33 (132 on the 16-bit scale), A-law on a 13-bit
magnitude, both with even-bit inversion as on the wire. Both directions are tables indexed by code (256
entries) or by int16 sample (65,536 entries), built once from the reference algorithm.

Float audio is scaled by 32768 to int16 (clipping) at the edge; decoded codes come back as float32.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np

Law = Literal["ulaw", "alaw"]

_MULAW_BIAS = 0x84
_MULAW_CLIP = 32635
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _mulaw_encode_reference(pcm: np.ndarray) -> np.ndarray:
    pcm = pcm.astype(np.int64)
    sign = np.where(pcm < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(pcm), _MULAW_CLIP) + _MULAW_BIAS
    exponent = np.clip(np.floor(np.log2(np.maximum(magnitude >> 7, 1))).astype(np.int64), 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


def _mulaw_decode_reference(code: np.ndarray) -> np.ndarray:
    u = (~code.astype(np.int64)) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_encode_reference(pcm: np.ndarray) -> np.ndarray:
    value = pcm.astype(np.int64) >> 3
    mask = np.where(value >= 0, 0xD5, 0x55)
    value = np.where(value >= 0, value, -value - 1)
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, value, side="left")
    shift = np.where(segment < 2, 1, segment)
    code = (np.minimum(segment, 7) << 4) | ((value >> shift) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _alaw_decode_reference(code: np.ndarray) -> np.ndarray:
    a = code.astype(np.int64) ^ 0x55
    t = (a & 0x0F) << 4
    segment = (a & 0x70) >> 4
    t = np.where(segment == 0, t + 8, t + 0x108)
    t = np.where(segment > 1, t << np.maximum(segment - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


@lru_cache(maxsize=2)
def _tables(law: Law) -> tuple[np.ndarray, np.ndarray]:
    """(encode table indexed by int16 + 32768, decode table indexed by code)."""
    pcm = np.arange(-32768, 32768, dtype=np.int64)
    codes = np.arange(256, dtype=np.int64)
    if law == "ulaw":
        return _mulaw_encode_reference(pcm), _mulaw_decode_reference(codes)
    if law == "alaw":
        return _alaw_encode_reference(pcm), _alaw_decode_reference(codes)
    raise ValueError(f"law must be 'ulaw' or 'alaw', got {law!r}")


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] to int16 (rounded to nearest), clipping what lies outside."""
    scaled = np.asarray(samples, dtype=np.float32) * np.float32(32768.0)
    return np.rint(np.clip(scaled, -32768.0, 32767.0, out=scaled), out=scaled).astype(np.int16)


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    """int16 audio to float32 in [-1, 1)."""
    return (np.asarray(samples, dtype=np.int16).astype(np.float32)) / np.float32(32768.0)


def encode(samples: np.ndarray, law: Law = "ulaw") -> np.ndarray:
    """Float audio to G.711 codes (uint8), as sent on the wire."""
    encode_table, _ = _tables(law)
    return encode_table[float_to_int16(samples).astype(np.int32) + 32768]


def decode(codes: np.ndarray, law: Law = "ulaw") -> np.ndarray:
    """G.711 codes (uint8) to float32 audio."""
    _, decode_table = _tables(law)
    return int16_to_float(decode_table[np.asarray(codes, dtype=np.uint8)])


def round_trip(samples: np.ndarray, law: Law = "ulaw") -> np.ndarray:
    """What a G.711 channel delivers for ``samples``: encode, then decode."""
    return decode(encode(samples, law), law)

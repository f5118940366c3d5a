"""The DTMF keypad: keys and their tone pairs (ITU-T Q.23).

Each key is one tone from the low ("row") group and one from the high ("column") group:

              1209 Hz  1336 Hz  1477 Hz  1633 Hz
    697 Hz       1        2        3        A
    770 Hz       4        5        6        B
    852 Hz       7        8        9        C
    941 Hz       *        0        #        D
"""

from __future__ import annotations

from enum import StrEnum


class DtmfKey(StrEnum):
    """A key of the 16-key DTMF keypad."""

    ONE = "1"
    TWO = "2"
    THREE = "3"
    A = "A"
    FOUR = "4"
    FIVE = "5"
    SIX = "6"
    B = "B"
    SEVEN = "7"
    EIGHT = "8"
    NINE = "9"
    C = "C"
    STAR = "*"
    ZERO = "0"
    POUND = "#"
    D = "D"


#: Low-group (row) frequencies in Hz, ITU-T Q.23.
ROW_FREQUENCIES_HZ: tuple[float, ...] = (697.0, 770.0, 852.0, 941.0)
#: High-group (column) frequencies in Hz, ITU-T Q.23.
COL_FREQUENCIES_HZ: tuple[float, ...] = (1209.0, 1336.0, 1477.0, 1633.0)
#: All eight DTMF frequencies, rows first; the order the filter bank uses.
DTMF_FREQUENCIES_HZ: tuple[float, ...] = ROW_FREQUENCIES_HZ + COL_FREQUENCIES_HZ

#: The keypad, row by row: ``KEYPAD[row][col]``.
KEYPAD: tuple[str, ...] = ("123A", "456B", "789C", "*0#D")

#: Key for each (row, col) index pair, flattened as ``row * 4 + col``.
KEYS_BY_INDEX: tuple[DtmfKey, ...] = tuple(DtmfKey(k) for row in KEYPAD for k in row)


def key_tones_hz(key: str) -> tuple[float, float]:
    """The (low, high) tone frequencies of ``key``; case-insensitive for A-D.

    Raises ValueError naming the key when it is not a DTMF key.
    """
    k = key.upper()
    for row_index, row in enumerate(KEYPAD):
        col_index = row.find(k)
        if col_index >= 0 and len(k) == 1:
            return ROW_FREQUENCIES_HZ[row_index], COL_FREQUENCIES_HZ[col_index]
    raise ValueError(f"{key!r} is not a DTMF key: use 0-9, *, #, or A-D")

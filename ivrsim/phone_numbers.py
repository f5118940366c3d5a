"""The one E.164 rule, used by the API's schemas, the CLI and the settings (so a number one accepts,
the others accept too)."""

from __future__ import annotations

import re

#: E.164: a plus, a country code that does not start with 0, 8 to 15 digits in all (ITU-T E.164).
E164_PATTERN = r"^\+[1-9][0-9]{7,14}$"
E164 = re.compile(E164_PATTERN)
#: A number to show in messages (the ``from`` of the Canary docs' examples).
E164_EXAMPLE = "+15559876543"


def is_e164(value: object) -> bool:
    """Whether ``value`` is an E.164 number, matched in full ("$" alone would let a trailing newline through)."""
    return isinstance(value, str) and E164.fullmatch(value) is not None


def check_e164(value: str) -> str:
    """``value`` when it is an E.164 number; else ValueError saying what one looks like."""
    if not is_e164(value):
        raise ValueError(f"{value!r} is not an E.164 number: write a plus, the country code and the number, "
                         f"8 to 15 digits in all, nothing else (e.g. {E164_EXAMPLE})")
    return value

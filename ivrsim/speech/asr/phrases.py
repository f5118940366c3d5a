"""Hints (a speech gather's phrases) normalised into what a grammar accepts: lower case, no punctuation,
digits as English words ("1" -> "one", "42" -> "forty two", "123" -> "one two three")."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_PUNCTUATION = re.compile(r"[^\w\s']+")


def number_words(digits: str) -> list[str]:
    """English words for a digit string: 0..99 as a number, longer strings digit by digit."""
    if len(digits) <= 2 and not (len(digits) == 2 and digits[0] == "0"):
        value = int(digits)
        if value < 20:
            return [_ONES[value]]
        tens, ones = divmod(value, 10)
        return [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    return [_ONES[int(d)] for d in digits]


def normalise_phrase(phrase: str, english_digits: bool = True) -> list[str]:
    """The words of one hint: lower case, punctuation dropped (apostrophes inside words kept)."""
    words: list[str] = []
    for token in _PUNCTUATION.sub(" ", phrase.lower()).split():
        token = token.strip("'_")
        if not token:
            continue
        if english_digits and token.isdigit() and token.isascii():
            words.extend(number_words(token))
        else:
            # "24h" style tokens: split digits from letters so the digits become words.
            parts = re.findall(r"\d+|\D+", token) if english_digits else [token]
            for part in parts:
                if english_digits and part.isdigit() and part.isascii():
                    words.extend(number_words(part))
                elif part:
                    words.append(part)
    return words


def unique_phrases(hints: Iterable[str] | None, english_digits: bool = True) -> list[list[str]]:
    """Normalised, de-duplicated, non-empty phrases, in the order given."""
    seen: set[tuple[str, ...]] = set()
    phrases: list[list[str]] = []
    for hint in hints or ():
        words = normalise_phrase(str(hint), english_digits)
        if words and tuple(words) not in seen:
            seen.add(tuple(words))
            phrases.append(words)
    return phrases


def split_known(phrases: Sequence[Sequence[str]], known) -> tuple[list[list[str]], list[str]]:  # type: ignore[no-untyped-def]
    """Keep the words ``known(word)`` accepts; returns the phrases left and the words dropped."""
    kept: list[list[str]] = []
    dropped: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for phrase in phrases:
        words = [w for w in phrase if known(w)]
        dropped.extend(w for w in phrase if w not in words)
        if words and tuple(words) not in seen:
            seen.add(tuple(words))
            kept.append(words)
    return kept, sorted(set(dropped))

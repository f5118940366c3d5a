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


#: Common words of phone menus: the competitors a listening caller's phrase is heard among. A grammar with
#: only the phrase hears it in any speech (pocketsphinx maps every utterance to some hint); with these
#: beside it, speech without the phrase decodes as other words.
IVR_VOCABULARY = tuple(
    "zero one two three four five six seven eight nine star pound hash press say for to and or the a an your "
    "you please thank calling call sales billing support technical customer service account number menu main "
    "repeat hold agent representative operator yes no this while we connect is are our options listen "
    "carefully have changed hello goodbye welcome enter pin code followed by key".split()
)


def listening_hints(phrase: str, english: bool = True) -> list[str] | None:
    """Hints to listen for ``phrase`` in free speech: in English, the phrase among ``IVR_VOCABULARY`` as
    single words, so that a grammar decoder finds the phrase only where it was said; in other languages,
    None (free transcription: there is no vocabulary of competitors to give)."""
    return [phrase, *IVR_VOCABULARY] if english else None


def vocabulary_of(texts: Iterable[str], english_digits: bool = True) -> list[str]:
    """The distinct words of ``texts`` (normalised as hints are), in order of first use: a call's own
    vocabulary (its prompt's words, its gathers' hints)."""
    seen: dict[str, None] = {}
    for text in texts:
        for word in normalise_phrase(text, english_digits):
            seen.setdefault(word, None)
    return list(seen)

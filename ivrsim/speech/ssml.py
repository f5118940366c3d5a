"""SSML to segments: text with its prosody, or silence of an exact length.

Supported (W3C SSML 1.1, as Google's and Amazon's TTS take it): ``<speak>``, ``<p>``, ``<s>``,
``<break time strength>``, ``<say-as interpret-as="digits|characters|spell-out|telephone|cardinal|
number|ordinal|date|time">``, ``<prosody rate pitch volume>``, ``<sub alias>``, ``<emphasis>`` (spoken
plainly: espeak-ng has no emphasis). Any other element is passed over with a warning and its text is
spoken. Text with inline tags but no ``<speak>`` root (as in the Canary docs' example) is wrapped in one.

Breaks become silence of exactly ``round(seconds * rate)`` samples when rendered, so a
``<break time="750ms"/>`` is 750 ms to the sample.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field, replace

from ivrsim.exceptions import SsmlError

#: Longest break accepted, in seconds (Google and Amazon cap breaks at 10 s).
MAX_BREAK_S = 10.0
#: Silence for each ``<break strength>``, in seconds.
BREAK_STRENGTH_S = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.4, "strong": 0.7, "x-strong": 1.0}
#: Silence after each ``<s>`` and ``<p>``, in seconds.
SENTENCE_BREAK_S = 0.3
PARAGRAPH_BREAK_S = 0.6
#: ``<prosody rate>`` keywords as multiples of the speaking rate.
RATE_KEYWORDS = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 1.5}
#: ``<prosody pitch>`` keywords in semitones.
PITCH_KEYWORDS_ST = {"x-low": -8.0, "low": -4.0, "medium": 0.0, "default": 0.0, "high": 4.0, "x-high": 8.0}
#: ``<prosody volume>`` keywords in dB.
VOLUME_KEYWORDS_DB = {"silent": -math.inf, "x-soft": -12.0, "soft": -6.0, "medium": 0.0, "default": 0.0, "loud": 6.0, "x-loud": 12.0}

_KNOWN_TAGS = ("speak", "p", "s", "break", "say-as", "prosody", "sub", "emphasis")
_TAG_PATTERN = re.compile(r"<\s*/?\s*(speak|p|s|break|say-as|prosody|sub|emphasis|voice|audio|mark|phoneme|lang|w)\b", re.I)
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")


class _AttributeProblem(Exception):
    """An attribute value that parses as XML but not as SSML; ``snippet`` is searched for in the source."""

    def __init__(self, message: str, snippet: str) -> None:
        super().__init__(message)
        self.message = message
        self.snippet = snippet


def _position(source: str, snippet: str) -> tuple[int, int]:
    """1-based (line, column) of the first occurrence of ``snippet`` in ``source``, or (1, 1)."""
    index = source.find(snippet)
    if index < 0:
        return 1, 1
    line = source.count("\n", 0, index) + 1
    return line, index - (source.rfind("\n", 0, index) + 1) + 1


@dataclass(frozen=True)
class Prosody:
    """Relative settings of a stretch of speech: rate as a multiple, pitch in semitones, volume in dB."""

    rate: float = 1.0
    pitch_st: float = 0.0
    volume_db: float = 0.0


@dataclass(frozen=True)
class SpeechSegment:
    text: str
    prosody: Prosody = Prosody()


@dataclass(frozen=True)
class BreakSegment:
    """Silence, in seconds. ``implicit`` marks the pause after ``<s>`` or ``<p>``: next to an explicit
    break it counts only when longer (explicit breaks add up)."""

    duration_s: float
    implicit: bool = False


Segment = SpeechSegment | BreakSegment


@dataclass
class ParsedSsml:
    """Segments in order, and warnings for what was passed over (they go into the call's events)."""

    segments: list[Segment] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def looks_like_ssml(text: str) -> bool:
    """True when ``text`` holds SSML markup (a known tag), not just a stray '<'."""
    return bool(_TAG_PATTERN.search(text))


def parse_ssml(text: str) -> ParsedSsml:
    """Parse SSML (with or without a ``<speak>`` root) into segments; SsmlError names line and column."""
    stripped = text.strip()
    wrapped = not re.match(r"<\s*speak\b", stripped)
    document = f"<speak>{text}</speak>" if wrapped else text
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError as error:
        line, column = error.position
        if wrapped and line == 1:
            column = max(column - len("<speak>"), 0)
        message = str(error).split(":")[0]
        raise SsmlError(message, line, column + 1) from error
    if root.tag != "speak":
        raise SsmlError(f"the root element must be <speak>, not <{root.tag}>", 1, 1)
    parsed = ParsedSsml()
    try:
        _walk(root, Prosody(), parsed)
    except _AttributeProblem as problem:
        raise SsmlError(problem.message, *_position(text, problem.snippet)) from None
    parsed.segments = _merge(parsed.segments)
    return parsed


def _walk(element: ElementTree.Element, prosody: Prosody, out: ParsedSsml) -> None:
    tag = element.tag
    inner = prosody
    after_s = 0.0
    if tag == "break":
        out.segments.append(BreakSegment(_break_seconds(element)))
        _text(element.tail, prosody, out)
        return
    if tag == "say-as":
        _text(_say_as(element, out), prosody, out)
        _text(element.tail, prosody, out)
        return
    if tag == "sub":
        alias = element.get("alias")
        if alias is None:
            out.warnings.append("<sub> without alias: its text is spoken")
            _text("".join(element.itertext()), prosody, out)
        else:
            _text(alias, prosody, out)
        _text(element.tail, prosody, out)
        return
    if tag == "prosody":
        inner = _prosody(element, prosody)
    elif tag == "s":
        after_s = SENTENCE_BREAK_S
    elif tag == "p":
        after_s = PARAGRAPH_BREAK_S
    elif tag not in _KNOWN_TAGS:
        out.warnings.append(f"unsupported SSML element <{tag}> passed over; its text is spoken")
    _text(element.text, inner, out)
    for child in element:
        _walk(child, inner, out)
    if after_s:
        out.segments.append(BreakSegment(after_s, implicit=True))
    if tag != "speak":
        _text(element.tail, prosody, out)


def _text(text: str | None, prosody: Prosody, out: ParsedSsml) -> None:
    if text and text.strip():
        out.segments.append(SpeechSegment(" ".join(text.split()), prosody))


def _merge(segments: list[Segment]) -> list[Segment]:
    """Join neighbouring speech of the same prosody, and neighbouring breaks."""
    merged: list[Segment] = []
    for segment in segments:
        last = merged[-1] if merged else None
        if isinstance(segment, SpeechSegment) and isinstance(last, SpeechSegment) and last.prosody == segment.prosody:
            joiner = "" if segment.text[0] in ".,;:!?" else " "
            merged[-1] = replace(last, text=f"{last.text}{joiner}{segment.text}")
        elif isinstance(segment, BreakSegment) and isinstance(last, BreakSegment):
            if last.implicit or segment.implicit:
                seconds = max(last.duration_s, segment.duration_s)
            else:
                seconds = min(last.duration_s + segment.duration_s, MAX_BREAK_S)
            merged[-1] = BreakSegment(seconds, implicit=last.implicit and segment.implicit)
        elif not (isinstance(segment, BreakSegment) and segment.duration_s == 0.0):
            merged.append(segment)
    return merged


def _break_seconds(element: ElementTree.Element) -> float:
    time_attr = element.get("time")
    if time_attr is not None:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*", time_attr)
        if not match:
            raise _AttributeProblem(f'<break time="{time_attr}">: write the time as e.g. "750ms" or "1.5s"', time_attr)
        value = float(match.group(1)) / (1000.0 if match.group(2) == "ms" else 1.0)
        if value > MAX_BREAK_S:
            raise _AttributeProblem(f'<break time="{time_attr}"> is longer than {MAX_BREAK_S:g} s', time_attr)
        return value
    strength = element.get("strength", "medium")
    if strength not in BREAK_STRENGTH_S:
        raise _AttributeProblem(f'<break strength="{strength}">: use one of {", ".join(BREAK_STRENGTH_S)}', strength)
    return BREAK_STRENGTH_S[strength]


def _prosody(element: ElementTree.Element, outer: Prosody) -> Prosody:
    rate, pitch, volume = outer.rate, outer.pitch_st, outer.volume_db
    if (value := element.get("rate")) is not None:
        rate = outer.rate * _rate(value)
    if (value := element.get("pitch")) is not None:
        pitch = outer.pitch_st + _pitch_st(value)
    if (value := element.get("volume")) is not None:
        volume = outer.volume_db + _volume_db(value)
    return Prosody(rate=rate, pitch_st=pitch, volume_db=volume)


def _rate(value: str) -> float:
    if value in RATE_KEYWORDS:
        return RATE_KEYWORDS[value]
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%?)\s*", value)
    if not match:
        raise _AttributeProblem(f'<prosody rate="{value}">: use x-slow..x-fast, a percentage like "80%", or a multiple', value)
    number = float(match.group(1))
    return number / 100.0 if match.group(2) else number


def _pitch_st(value: str) -> float:
    if value in PITCH_KEYWORDS_ST:
        return PITCH_KEYWORDS_ST[value]
    match = re.fullmatch(r"\s*([+-]?\d+(?:\.\d+)?)\s*(st|%|Hz)\s*", value)
    if not match:
        raise _AttributeProblem(f'<prosody pitch="{value}">: use x-low..x-high, "+2st", "-10%" or "+20Hz"', value)
    number, unit = float(match.group(1)), match.group(2)
    if unit == "st":
        return number
    if unit == "%":
        return 12.0 * math.log2(max(1.0 + number / 100.0, 0.01))
    return 12.0 * math.log2(max(1.0 + number / 120.0, 0.01))  # relative to a 120 Hz voice


def _volume_db(value: str) -> float:
    if value in VOLUME_KEYWORDS_DB:
        return VOLUME_KEYWORDS_DB[value]
    match = re.fullmatch(r"\s*([+-]?\d+(?:\.\d+)?)\s*dB\s*", value)
    if not match:
        raise _AttributeProblem(f'<prosody volume="{value}">: use silent, x-soft..x-loud, or "+6dB"', value)
    return float(match.group(1))


def _say_as(element: ElementTree.Element, out: ParsedSsml) -> str:
    kind = (element.get("interpret-as") or "").lower()
    text = "".join(element.itertext()).strip()
    if kind == "digits":
        return " ".join(ch for ch in text if ch.isdigit())
    if kind in ("characters", "spell-out", "verbatim"):
        return " ".join(ch for ch in text if not ch.isspace())
    if kind == "telephone":
        groups = re.findall(r"\+|\d+", text)
        return ", ".join("plus" if g == "+" else " ".join(g) for g in groups)
    if kind in ("cardinal", "number", "ordinal", "unit", "currency"):
        return text
    if kind == "date":
        return _date(text, element.get("format", "ymd"))
    if kind == "time":
        return re.sub(r"[:.]", " ", text)
    out.warnings.append(f'<say-as interpret-as="{kind}"> is not supported: the text is spoken as written')
    return text


def _date(text: str, date_format: str) -> str:
    """"2024-01-15" (or 01/15/2024 with format mdy, 15.01.2024 with dmy) as "January 15, 2024"."""
    parts = re.findall(r"\d+", text)
    if len(parts) != 3:
        return text
    if re.fullmatch(r"\d{4}\D\d{1,2}\D\d{1,2}", text.strip()):
        order = "ymd"
    else:
        order = date_format if date_format in ("mdy", "dmy", "ymd") else "mdy"
    values = dict(zip(order, (int(p) for p in parts)))
    if not 1 <= values["m"] <= 12:
        return text
    return f"{_MONTHS[values['m'] - 1]} {values['d']}, {values['y']}"

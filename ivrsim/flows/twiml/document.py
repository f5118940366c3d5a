"""TwiML documents parsed into verbs, each with the line it is on, so a failing call names the line.

The XML comes from the user's app over the network, so it is parsed defensively with expat: a document
type declaration (and with it every entity and external reference) is refused, the size is bounded, and
errors give the line and column only, never the content. Attribute values are checked as Twilio checks
them (``numDigits`` a positive integer, ``method`` GET or POST, ...), and every one that scales the work or
memory of a call (a Pause's length, a loop, a Record's length, a timeout) within a bound; an error names
the element, the attribute, the line and what is accepted, never the value the app sent. An unknown
attribute is ignored, as Twilio ignores it; a verb ivrsim cannot run (``<Connect>``, ``<Enqueue>``, ...) is
an error naming it (an element's name only when it is a plain word). A URL (``<Play>``, ``<Redirect>``, an
``action``) must be http(s) or a path relative to the document: ``file:`` and other schemes are refused
before any verb runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import NoReturn
from urllib.parse import urlsplit
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

from ivrsim.engine.dialogue import DialogueError
from ivrsim.webhooks.app_client import shown_url

#: Largest TwiML document accepted, in bytes (Twilio's limit is 64 kB).
MAX_DOCUMENT_BYTES = 64 * 1024
#: Deepest element nesting accepted (a TwiML document is three levels deep; SSML in a Say a few more).
MAX_DEPTH = 32
#: What ``loop="0"`` means: "until the call ends", bounded as Twilio bounds it; also the largest ``loop``.
MAX_LOOP = 1000
#: Longest ``<Pause length>``, in seconds.
MAX_PAUSE_S = 600
#: Most prompts one ``<Gather>`` plays, loops counted (each is made ready before the Gather starts).
MAX_GATHER_PROMPTS = 10 * MAX_LOOP
#: Longest ``<Gather timeout>`` and ``speechTimeout``, in seconds.
MAX_GATHER_TIMEOUT_S = 600
#: Largest ``<Gather numDigits>``.
MAX_NUM_DIGITS = 128
#: Most characters of ``<Play digits>`` (each ``w`` is half a second of tones made before it plays).
MAX_PLAY_DIGITS = 128
#: Longest ``<Record maxLength>`` and ``timeout``, and ``<Dial timeLimit>``, in seconds (Twilio's longest call, 4 h).
MAX_CALL_S = 14400
#: Longest ``<Dial timeout>``, in seconds (Twilio's).
MAX_DIAL_TIMEOUT_S = 600

SUPPORTED_VERBS = ("Say", "Play", "Pause", "Gather", "Record", "Redirect", "Hangup", "Reject", "Dial")
#: Twilio verbs and nouns ivrsim does not simulate: named in the error, so the user knows it is ivrsim's limit.
UNSUPPORTED_VERBS = ("Connect", "Enqueue", "Leave", "Queue", "Refer", "Sms", "Message", "Stream", "Start", "Stop", "Siprec",
                     "Pay", "Prompt", "Conference", "Client", "Sip", "Echo", "Autopilot", "VirtualAgent", "Transcription",
                     "Application")
GATHER_INPUTS = ("dtmf", "speech", "dtmf speech")
KEYS = "0123456789*#"
_PLAY_DIGITS = re.compile(r"^[0-9*#wW]+$")
#: An element name an error may repeat: a plain word (anything else is the app's text, not a verb's name).
_SHOWN_NAME = re.compile(r"^[A-Za-z]{1,32}$")


def shown_element(name: str) -> str:
    """``<name>`` for an error when ``name`` is a plain word, else "an unknown element"."""
    return f"<{name}>" if _SHOWN_NAME.match(name) else "an unknown element"


class TwimlError(DialogueError):
    """A TwiML document ivrsim cannot run: the message names the URL, the line and the fix."""

    code = "twiml_invalid"


@dataclass(frozen=True)
class Say:
    line: int
    text: str
    voice: str | None = None
    language: str | None = None
    loop: int = 1


@dataclass(frozen=True)
class Play:
    line: int
    url: str = ""
    loop: int = 1
    digits: str | None = None


@dataclass(frozen=True)
class Pause:
    line: int
    length_s: float = 1.0


Prompt = Say | Play | Pause


@dataclass(frozen=True)
class Gather:
    line: int
    input: str = "dtmf"
    num_digits: int | None = None
    timeout_s: float = 5.0
    finish_on_key: str = "#"
    action: str | None = None
    method: str = "POST"
    #: None: "auto" (the recognizer's own end of speech); else seconds of silence that end speech.
    speech_timeout_s: float | None = None
    hints: tuple[str, ...] = ()
    language: str | None = None
    action_on_empty_result: bool = False
    barge_in: bool = True
    prompts: tuple[Prompt, ...] = ()


@dataclass(frozen=True)
class Record:
    line: int
    action: str | None = None
    method: str = "POST"
    max_length_s: float = 3600.0
    finish_on_key: str = "1234567890*#"
    play_beep: bool = True
    timeout_s: float = 5.0


@dataclass(frozen=True)
class Redirect:
    line: int
    url: str = ""
    method: str = "POST"


@dataclass(frozen=True)
class Hangup:
    line: int


@dataclass(frozen=True)
class Reject:
    line: int
    reason: str = "rejected"


@dataclass(frozen=True)
class Dial:
    line: int
    numbers: tuple[str, ...] = ()
    action: str | None = None
    method: str = "POST"
    timeout_s: float = 30.0
    time_limit_s: float = 14400.0
    caller_id: str | None = None


Verb = Say | Play | Pause | Gather | Record | Redirect | Hangup | Reject | Dial


@dataclass(frozen=True)
class TwimlDocument:
    """A parsed ``<Response>``: its verbs in order, and the URL it came from (relative URLs resolve against it)."""

    url: str
    verbs: tuple[Verb, ...]


@dataclass
class _Element:
    name: str
    attrs: dict[str, str]
    line: int
    column: int
    children: list[_Element] = field(default_factory=list)
    #: Character data and child elements in document order (a Say's SSML is rebuilt from them).
    content: list[str | _Element] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The element's own character data, stripped."""
        return "".join(part for part in self.content if isinstance(part, str)).strip()

    def markup(self) -> str:
        """The content as markup (text escaped), for SSML in a Say."""
        out = []
        for part in self.content:
            if isinstance(part, str):
                out.append(escape(part))
            else:
                attrs = "".join(f" {name}={quoteattr(value)}" for name, value in part.attrs.items())
                inner = part.markup()
                out.append(f"<{part.name}{attrs}>{inner}</{part.name}>" if inner else f"<{part.name}{attrs}/>")
        return "".join(out)


class _Refused(Exception):
    """Raised from an expat handler: the document declares a DTD or entities."""


def _tree(text: str, where: str) -> _Element:
    """The element tree of ``text`` via expat, with DTDs and entities refused (no expansion can happen)."""
    if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise TwimlError(f"{where}: the document is over {MAX_DOCUMENT_BYTES:,} bytes (Twilio's limit); answer with a smaller one")
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_Element] = []
    roots: list[_Element] = []

    def refuse(*_: object) -> NoReturn:
        raise _Refused

    def start(name: str, attrs: dict[str, str]) -> None:
        element = _Element(name, dict(attrs), parser.CurrentLineNumber, parser.CurrentColumnNumber + 1)
        if len(stack) >= MAX_DEPTH:
            raise TwimlError(f"{where}: line {element.line}: elements nested over {MAX_DEPTH} deep")
        if stack:
            stack[-1].children.append(element)
            stack[-1].content.append(element)
        else:
            roots.append(element)
        stack.append(element)

    def end(_name: str) -> None:
        stack.pop()

    def characters(data: str) -> None:
        if stack:
            stack[-1].content.append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    try:
        parser.Parse(text, True)
    except _Refused:
        line, column = parser.CurrentLineNumber, parser.CurrentColumnNumber + 1
        raise TwimlError(f"{where}: line {line}, column {column}: a document type declaration (DTD) or entity is not accepted in TwiML; "
                         "remove it") from None
    except expat.ExpatError as error:
        message = expat.ErrorString(error.code)
        raise TwimlError(f"{where}: not well-formed XML at line {error.lineno}, column {error.offset + 1}: {message}") from None
    if not roots:  # expat reports an empty document itself; kept for safety
        raise TwimlError(f"{where}: the document is empty; answer with <Response>...</Response>")
    return roots[0]


def parse_twiml(text: str, url: str = "") -> TwimlDocument:
    """The verbs of a TwiML document; TwimlError names ``url`` (without its query), the line and the fix."""
    where = f"TwiML from {shown_url(url)}" if url else "TwiML"
    if not text.strip():
        raise TwimlError(f"{where}: the answer is empty; answer with <Response>...</Response>")
    root = _tree(text, where)
    if root.name != "Response":
        raise TwimlError(f"{where}: line {root.line}: the root element is {shown_element(root.name)}; a TwiML document's root must be <Response>")
    return TwimlDocument(url, tuple(_Verbs(where).verb(child) for child in root.children))


class _Verbs:
    """Element to verb, attribute by attribute, each error naming the line and the attribute."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, element: _Element, message: str) -> TwimlError:
        return TwimlError(f"{self.where}: line {element.line}: <{element.name}> {message}")

    def verb(self, element: _Element, inside: str | None = None) -> Verb:
        name = element.name
        if name in UNSUPPORTED_VERBS or name not in SUPPORTED_VERBS:
            known = "is not supported by ivrsim" if name in UNSUPPORTED_VERBS else "is not a TwiML verb"
            allowed = "Say, Play and Pause" if inside == "Gather" else ", ".join(SUPPORTED_VERBS)
            where = f" in <{inside}>" if inside else ""
            raise TwimlError(f"{self.where}: line {element.line}: {shown_element(name)}{where} {known}; use {allowed}")
        return getattr(self, f"_{name.lower()}")(element)

    # -- attribute values ----------------------------------------------------------------------------------

    def _int(self, element: _Element, name: str, default: int, minimum: int, maximum: int, unit: str = "", note: str = "") -> int:
        """The whole number ``name`` within ``minimum``..``maximum``; the error says the range, not the value."""
        raw = element.attrs.get(name)
        if raw is None:
            return default
        value = int(raw.strip()) if re.fullmatch(r"[+-]?[0-9]{1,12}", raw.strip()) else None
        if value is None or not minimum <= value <= maximum:
            raise self.fail(element, f"{name} must be a whole number{unit} from {minimum} to {maximum:,}{note}")
        return value

    def _seconds(self, element: _Element, name: str, default: float, minimum: float, maximum: float) -> float:
        raw = element.attrs.get(name)
        if raw is None:
            return default
        try:
            value = float(raw.strip())
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not minimum <= value <= maximum:
            raise self.fail(element, f"{name} must be a number of seconds from {minimum:g} to {maximum:,g}")
        return value

    def _method(self, element: _Element) -> str:
        raw = element.attrs.get("method", "POST").strip().upper()
        if raw not in ("GET", "POST"):
            raise self.fail(element, "method must be GET or POST")
        return raw

    def _bool(self, element: _Element, name: str, default: bool) -> bool:
        raw = element.attrs.get(name)
        if raw is None:
            return default
        if raw.strip().lower() not in ("true", "false"):
            raise self.fail(element, f"{name} must be true or false")
        return raw.strip().lower() == "true"

    def _loop(self, element: _Element) -> int:
        loop = self._int(element, "loop", 1, 0, MAX_LOOP, note=" (0: as many times as the call lasts)")
        return MAX_LOOP if loop == 0 else loop

    def _keys(self, element: _Element, name: str, default: str, single: bool) -> str:
        raw = element.attrs.get(name)
        if raw is None:
            return default
        value = raw.strip()
        if any(key not in KEYS for key in value) or (single and len(value) > 1):
            what = "one key of 0-9, * and #, or empty" if single else "keys of 0-9, * and #, or empty"
            raise self.fail(element, f"{name} must be {what}")
        return value

    def _url(self, element: _Element, value: str, attribute: str) -> str:
        """``value`` when it is an http(s) URL or a relative one (resolved against the document's when run)."""
        try:
            scheme = urlsplit(value).scheme.lower()
        except ValueError:
            scheme = "invalid"
        if scheme not in ("", "http", "https"):
            raise self.fail(element, f"{attribute} must be an http(s) URL or a path relative to the document's")
        return value

    def _action(self, element: _Element) -> str | None:
        action = element.attrs.get("action", "").strip() or None
        return None if action is None else self._url(element, action, "action")

    def _no_children(self, element: _Element) -> None:
        if element.children:
            child = element.children[0]
            raise TwimlError(f"{self.where}: line {child.line}: {shown_element(child.name)} cannot be nested in <{element.name}>")

    # -- verbs ---------------------------------------------------------------------------------------------

    def _say(self, element: _Element) -> Say:
        text = element.markup().strip() if element.children else element.text
        if not text:
            raise self.fail(element, "has no text; put what to say between <Say> and </Say>")
        voice = element.attrs.get("voice", "").strip() or None
        language = element.attrs.get("language", "").strip() or None
        return Say(element.line, text, voice, language, self._loop(element))

    def _play(self, element: _Element) -> Play:
        self._no_children(element)
        digits = element.attrs.get("digits")
        if digits is not None:
            digits = digits.strip()
            if not _PLAY_DIGITS.match(digits) or len(digits) > MAX_PLAY_DIGITS:
                raise self.fail(element, f"digits must be 1 to {MAX_PLAY_DIGITS} keys of 0-9, * and #, and w for half a second's wait")
            return Play(element.line, "", self._loop(element), digits)
        url = element.text
        if not url:
            raise self.fail(element, "has neither a URL nor digits; put the audio's URL between <Play> and </Play>")
        return Play(element.line, self._url(element, url, "the URL"), self._loop(element))

    def _pause(self, element: _Element) -> Pause:
        self._no_children(element)
        return Pause(element.line, float(self._int(element, "length", 1, 0, MAX_PAUSE_S, unit=" of seconds")))

    def _gather(self, element: _Element) -> Gather:
        raw_input = " ".join(element.attrs.get("input", "dtmf").split()).lower()
        if raw_input == "speech dtmf":
            raw_input = "dtmf speech"
        if raw_input not in GATHER_INPUTS:
            raise self.fail(element, 'input must be dtmf, speech or "dtmf speech"')
        num_digits = self._int(element, "numDigits", 0, 1, MAX_NUM_DIGITS) if "numDigits" in element.attrs else None
        speech_timeout_s: float | None
        raw_speech = element.attrs.get("speechTimeout")
        timeout_s = float(self._int(element, "timeout", 5, 1, MAX_GATHER_TIMEOUT_S, unit=" of seconds"))
        if raw_speech is None:
            speech_timeout_s = timeout_s  # Twilio: speechTimeout defaults to timeout's value
        elif raw_speech.strip().lower() == "auto":
            speech_timeout_s = None
        else:
            speech_timeout_s = self._seconds(element, "speechTimeout", timeout_s, 0.0, MAX_GATHER_TIMEOUT_S)
        hints = tuple(hint.strip() for hint in element.attrs.get("hints", "").split(",") if hint.strip())
        prompts = []
        for child in element.children:
            verb = self.verb(child, inside="Gather") if child.name in ("Say", "Play", "Pause") else self._not_in_gather(child)
            prompts.append(verb)
        plays = sum(getattr(prompt, "loop", 1) for prompt in prompts)
        if plays > MAX_GATHER_PROMPTS:
            raise self.fail(element, f"plays more than {MAX_GATHER_PROMPTS:,} prompts, loops counted; use fewer or smaller loops")
        return Gather(
            element.line, raw_input, num_digits, timeout_s, self._keys(element, "finishOnKey", "#", single=True),
            self._action(element), self._method(element), speech_timeout_s, hints,
            element.attrs.get("language", "").strip() or None, self._bool(element, "actionOnEmptyResult", False),
            self._bool(element, "bargeIn", True), tuple(prompts),  # type: ignore[arg-type]
        )

    def _not_in_gather(self, child: _Element) -> Verb:
        if child.name in SUPPORTED_VERBS:
            raise TwimlError(f"{self.where}: line {child.line}: <{child.name}> cannot be nested in <Gather>; use Say, Play and Pause")
        return self.verb(child, inside="Gather")

    def _record(self, element: _Element) -> Record:
        self._no_children(element)
        return Record(
            element.line, self._action(element), self._method(element),
            float(self._int(element, "maxLength", 3600, 1, MAX_CALL_S, unit=" of seconds")),
            self._keys(element, "finishOnKey", "1234567890*#", single=False), self._bool(element, "playBeep", True),
            float(self._int(element, "timeout", 5, 0, MAX_CALL_S, unit=" of seconds", note=" (0: no end on silence)")),
        )

    def _redirect(self, element: _Element) -> Redirect:
        self._no_children(element)
        if not element.text:
            raise self.fail(element, "has no URL; put the URL of the next TwiML between <Redirect> and </Redirect>")
        return Redirect(element.line, self._url(element, element.text, "the URL"), self._method(element))

    def _hangup(self, element: _Element) -> Hangup:
        self._no_children(element)
        return Hangup(element.line)

    def _reject(self, element: _Element) -> Reject:
        self._no_children(element)
        reason = element.attrs.get("reason", "rejected").strip()
        if reason not in ("rejected", "busy"):
            raise self.fail(element, "reason must be rejected or busy")
        return Reject(element.line, reason)

    def _dial(self, element: _Element) -> Dial:
        numbers: list[str] = []
        for child in element.children:
            if child.name != "Number":
                known = "is not supported by ivrsim" if child.name in UNSUPPORTED_VERBS else "is not a noun of <Dial>"
                raise TwimlError(f"{self.where}: line {child.line}: {shown_element(child.name)} in <Dial> {known}; dial a <Number> or a number as text")
            if not child.text:
                raise TwimlError(f"{self.where}: line {child.line}: <Number> has no number; put it between <Number> and </Number>")
            numbers.append(child.text)
        if not numbers and element.text:
            numbers.append(element.text)
        if not numbers:
            raise self.fail(element, "has no number; put one between <Dial> and </Dial>, or in a <Number>")
        return Dial(
            element.line, tuple(numbers), self._action(element), self._method(element),
            float(self._int(element, "timeout", 30, 1, MAX_DIAL_TIMEOUT_S, unit=" of seconds")),
            float(self._int(element, "timeLimit", MAX_CALL_S, 1, MAX_CALL_S, unit=" of seconds")),
            element.attrs.get("callerId", "").strip() or None,
        )

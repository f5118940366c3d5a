"""Request and response shapes of the Canary Voice API, exactly as ``seeds/canary-voice-api.txt`` has them.

Request shapes (``CallCreate``) validate every field and forbid unknown ones, so a typo is a 422 that
names the field instead of a silently ignored option. Public shapes (``CallPublic``, ``RecordingPublic``)
are the documented responses; what we add is additive (extra fields), never a rename.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ivrsim.engine.engine import CallRequest, GatherSpec, TtsSpec
from ivrsim.phone_numbers import E164_PATTERN, is_e164
from ivrsim.speech.asr.engines import LANGUAGE_PATTERN
from ivrsim.speech.tts import PITCH_RANGE_ST, SPEED_RANGE

DTMF_KEYS = set("0123456789*#ABCD")
#: ``finish_on_key``: one DTMF key, either case, or '' for none.
FINISH_KEY_PATTERN = r"^[0-9*#A-Da-d]?$"
#: Something to say: at least one character that is not white space.
NOT_BLANK_PATTERN = r"\S"
#: The longest ``webhook_url`` accepted, in characters (browsers and proxies commonly stop near here).
MAX_URL_CHARS = 2048

# A webhook URL: http(s), a host name (labels without '--', so no IDNA decoding can fail), an IPv4 address or
# a bracketed IPv6 one, an optional port, then printable ASCII. The server checks exactly this pattern, so
# the OpenAPI document and the server agree on every string; httpx then parses it as the webhook client will.
_H16 = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join([
    f"(?:{_H16}:){{7}}{_H16}", f"(?:{_H16}:){{1,7}}:", f"(?:{_H16}:){{1,6}}:{_H16}",
    *[f"(?:{_H16}:){{1,{5 - i}}}(?::{_H16}){{1,{i + 2}}}" for i in range(4)],
    f"{_H16}:(?::{_H16}){{1,6}}", f":(?:(?::{_H16}){{1,7}}|:)",
])
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"


def _label(first: str) -> str:
    """A DNS label of 1 to 63 characters starting with ``first``: letters, digits and inner hyphens, never
    '--' at the third and fourth characters (IDNA reads those as punycode and refuses most)."""
    a, ah = "[A-Za-z0-9]", "[A-Za-z0-9-]"
    return f"(?:{first}{ah}(?:{a}{ah}|-{a}){ah}{{0,58}}{a}|{first}{ah}(?:{a}|-){a}|{first}(?:(?:{a}|-)?{a})?)"


_LABEL = _label("[A-Za-z0-9]")
_TOP_LABEL = _label("[A-Za-z]")  # not all digits: "1.2.3" would read as a bad IPv4 address
_HOST = f"(?:{_LABEL}\\.)*{_TOP_LABEL}|{_OCTET}(?:\\.{_OCTET}){{3}}|\\[(?:{_IPV6})\\]"
_PORT = "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
HTTP_URL_PATTERN = f"^https?://(?:{_HOST})(?::{_PORT})?(?:[/?#][!-~]*)?$"

#: Most phrases a speech gather's ``hints`` may hold, and the longest one, in characters.
MAX_HINTS = 500
MAX_HINT_CHARS = 100

#: Statuses a call can have, in the order a call goes through them.
CALL_STATUSES = ("queued", "ringing", "in-progress", "completed", "busy", "no-answer", "failed")

#: Request bodies: no coercion ("30" is not 30, "yes" is not true), no NaN or Infinity, no unknown fields.
STRICT_BODY = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _whole_number(value: object) -> object:
    """30.0 is the integer 30 in JSON (and in JSON Schema); 30.5, "30" and true stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _seconds_or_auto(value: object) -> object:
    """A number of seconds or the word 'auto': one message for any other type (not pydantic's per-branch pair)."""
    if value == "auto" or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise ValueError("must be a number of seconds (0.1 to 10) or 'auto'")


def _whole_seconds(value: object) -> object:
    """As ``_whole_number``, but 30.5 is refused in the field's own unit."""
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be a whole number of seconds (e.g. 30), not a fraction")
    return _whole_number(value)


#: A duration in whole seconds: strict (no strings, no booleans), taking 30.0 for 30 as JSON Schema does.
JsonSeconds = Annotated[int, BeforeValidator(_whole_seconds)]


def _e164(value: str) -> str:
    if not is_e164(value):
        raise ValueError("must be an E.164 phone number: a plus and 8 to 15 digits, e.g. +15551234567")
    return value


class TtsIn(BaseModel):
    """The ``tts`` object."""

    model_config = STRICT_BODY

    text: str = Field(
        min_length=1, max_length=20_000, json_schema_extra={"pattern": NOT_BLANK_PATTERN}, description="What to say: plain text or SSML."
    )
    voice: str | None = Field(default=None, description="A voice id from GET /v1/voice/voices; default en-US-Neural2-F.")
    speed: float = Field(default=1.0, ge=SPEED_RANGE[0], le=SPEED_RANGE[1], description="Multiple of the normal speaking rate.")
    pitch: float = Field(default=0.0, ge=PITCH_RANGE_ST[0], le=PITCH_RANGE_ST[1], description="Semitones from the voice's normal pitch.")

    @field_validator("text", mode="before")
    @classmethod
    def _not_blank(cls, value: object) -> object:
        if isinstance(value, str) and value and not re.search(NOT_BLANK_PATTERN, value):
            raise ValueError("is blank; give the words to speak (plain text or SSML)")
        return value


class GatherIn(BaseModel):
    """The ``gather`` object: keys, speech, or either (``"dtmf speech"``: whichever comes first ends it)."""

    model_config = STRICT_BODY

    type: Literal["dtmf", "speech", "dtmf speech"] = Field(default="dtmf", description="'dtmf', 'speech', or 'dtmf speech' (either ends it).")
    # Field before the validator: the other order puts raw "ge"/"le" into the JSON schema (pydantic 2.14).
    num_digits: Annotated[int, Field(ge=1, le=64), BeforeValidator(_whole_number)] | None = None
    finish_on_key: str = Field(default="#", json_schema_extra={"pattern": FINISH_KEY_PATTERN}, description="Key that ends input ('' for none).")
    timeout: float = Field(default=5.0, gt=0, le=600, description="Seconds to wait for input after the prompt and each key.")
    webhook_url: str | None = Field(
        default=None, max_length=MAX_URL_CHARS, json_schema_extra={"pattern": HTTP_URL_PATTERN},
        description="Where gather.completed goes (default: the call's webhook_url).",
    )
    barge_in: bool = Field(default=True, description="Keys pressed (or speech) during the prompt stop it and count (ivrsim addition).")
    hints: list[Annotated[str, Field(min_length=1, max_length=MAX_HINT_CHARS, json_schema_extra={"pattern": NOT_BLANK_PATTERN})]] | None = Field(
        default=None, min_length=1, max_length=MAX_HINTS,
        description="Speech: the phrases expected (recognised in grammar mode, as Twilio's hints); none: free speech.",
    )
    speech_timeout: Annotated[float | Literal["auto"], BeforeValidator(_seconds_or_auto)] = Field(
        default="auto", description="Speech: seconds of silence that end it (0.1 to 10), or 'auto' (about 1 s).",
        json_schema_extra={"anyOf": [{"type": "number", "minimum": 0.1, "maximum": 10}, {"type": "string", "enum": ["auto"]}]},
    )
    language: str | None = Field(
        default=None, json_schema_extra={"pattern": LANGUAGE_PATTERN},
        description="Speech: the language to recognise, e.g. en-US (default: the call's language).",
    )

    @field_validator("hints")
    @classmethod
    def _hints(cls, value: list[str] | None) -> list[str] | None:
        for hint in value or ():
            if not re.search(NOT_BLANK_PATTERN, hint):
                raise ValueError("holds a blank phrase; every hint is a word or phrase, e.g. 'billing'")
        return value

    @field_validator("speech_timeout")
    @classmethod
    def _speech_timeout(cls, value: float | str) -> float | str:
        if isinstance(value, (int, float)) and not 0.1 <= value <= 10:
            raise ValueError("must be from 0.1 to 10 seconds of silence, or 'auto'")
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        return _language_tag(value)

    @field_validator("finish_on_key", mode="before")
    @classmethod
    def _key(cls, value: object) -> object:
        if isinstance(value, str) and value and (len(value) != 1 or value.upper() not in DTMF_KEYS):
            raise ValueError("must be one DTMF key (0-9, *, #, A-D) or '' for none")
        return value.upper() if isinstance(value, str) else value

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _http_url(value)


def _language_tag(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(LANGUAGE_PATTERN, value):
        raise ValueError("must be a language tag such as en-US, es or ko-KR")
    return value


def _http_url(value: str | None, example: str = "https://example.com/hooks") -> str | None:
    """An absolute http(s) URL the webhook client can parse, or None."""
    if value is None:
        return None
    fix = f"must be an http:// or https:// URL with a host, e.g. {example}"
    if not re.match(r"^https?://", value):
        raise ValueError(fix)
    if re.match(r"^https?://[^/?#]*@", value, re.IGNORECASE):
        raise ValueError(f"must not hold credentials (user:password@ before the host): credentials in URLs are not allowed; "
                         f"give the URL without them, e.g. {example}")
    if not re.fullmatch(HTTP_URL_PATTERN, value):
        raise ValueError(f"{fix}; this one does not parse (check the host, the port and for spaces)")
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError) as error:
        raise ValueError(f"{fix} ({error})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(fix)
    return value


class CallCreate(BaseModel):
    """``POST /v1/voice/calls``. Either ``tts`` or ``audio_url`` is required; with both, the speech
    plays first and the audio after it."""

    model_config = ConfigDict(
        **STRICT_BODY,
        populate_by_name=True,
        # "Either tts or audio_url is required", in the document's own terms; or ours: a flow, a stored
        # flow or a TwiML app to run, one of them at most.
        json_schema_extra={
            "anyOf": [
                {"required": ["tts"], "properties": {"tts": {"type": "object"}}},
                {"required": ["audio_url"], "properties": {"audio_url": {"type": "string"}}},
                {"required": ["flow"], "properties": {"flow": {"type": "object"}}},
                {"required": ["flow_id"], "properties": {"flow_id": {"type": "string"}}},
                {"required": ["url"], "properties": {"url": {"type": "string"}}},
            ],
            "not": {
                "anyOf": [
                    {"required": ["flow", "flow_id"], "properties": {"flow": {"type": "object"}, "flow_id": {"type": "string"}}},
                    {"required": ["flow", "url"], "properties": {"flow": {"type": "object"}, "url": {"type": "string"}}},
                    {"required": ["flow_id", "url"], "properties": {"flow_id": {"type": "string"}, "url": {"type": "string"}}},
                ]
            },
        },
    )

    to: str = Field(json_schema_extra={"pattern": E164_PATTERN}, description="Recipient phone number in E.164 format.")
    from_: str = Field(alias="from", json_schema_extra={"pattern": E164_PATTERN}, description="Caller id: one of the server's verified numbers.")
    tts: TtsIn | None = None
    audio_url: str | None = Field(default=None, max_length=4096, description="URL of an audio file to play (MP3, WAV, FLAC, OGG).")
    record: bool = False
    transcribe: bool = False
    recording_channels: Literal["dual", "mono"] = "dual"
    gather: GatherIn | None = None
    webhook_url: str | None = Field(
        default=None, max_length=MAX_URL_CHARS, json_schema_extra={"pattern": HTTP_URL_PATTERN}, description="URL for call status webhooks."
    )
    timeout: JsonSeconds = Field(default=30, ge=1, le=600, description="Ring timeout in seconds.")
    language: str | None = Field(
        default=None, json_schema_extra={"pattern": LANGUAGE_PATTERN},
        description="Language of the call's transcripts and speech gathers, e.g. en-US (default: the tts voice's; ivrsim addition).",
    )
    machine_detection: bool = Field(default=False, description="Detect an answering machine before the prompt plays (as Twilio's synchronous "
                                    "AMD): the call.answered_by event says human, machine_start, machine_end_beep or unknown (ivrsim addition).")
    machine_detection_timeout: float = Field(default=4.0, ge=1, le=60, description="Seconds of the callee's audio to decide in.")
    machine_detection_wait_for_beep: bool = Field(
        default=False, description="With a machine, wait for its beep (or the end of its greeting) before the prompt: leave a voicemail "
                                   "(Twilio's DetectMessageEnd)."
    )
    max_duration: JsonSeconds = Field(default=14_400, ge=1, le=14_400, description="Longest call in seconds (ivrsim addition).")
    flow: dict[str, Any] | None = Field(
        default=None, description="An IVR flow to run after the prompt and gather (ivrsim addition): the document `ivrsim flow validate` "
                                  "checks, as JSON. With flow, flow_id or url, tts and audio_url are optional."
    )
    flow_id: str | None = Field(default=None, min_length=1, max_length=64, description="A stored flow's id (POST /v1/voice/flows) to run instead "
                                "of an inline flow (ivrsim addition).")
    url: str | None = Field(
        default=None, max_length=MAX_URL_CHARS, json_schema_extra={"pattern": HTTP_URL_PATTERN},
        description="A TwiML app (ivrsim addition): asked for the call's TwiML when it is answered, with Twilio's parameters, as Twilio does.",
    )
    method: Literal["GET", "POST"] = Field(default="POST", description="How url is asked (Twilio's Method).")

    @field_validator("to", "from_")
    @classmethod
    def _numbers(cls, value: str) -> str:
        return _e164(value)

    @field_validator("webhook_url", "url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        return _http_url(value)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        return _language_tag(value)

    @field_validator("audio_url")
    @classmethod
    def _audio_url(cls, value: str | None) -> str | None:
        """An http(s) audio_url must parse now, not fail the call later; paths are checked by the loader."""
        if value is not None and re.match(r"^\s*https?:", value, re.IGNORECASE):
            return _http_url(value, example="https://example.com/prompt.wav")
        return value

    @model_validator(mode="after")
    def _prompt(self) -> CallCreate:
        programs = [name for name in ("flow", "flow_id", "url") if getattr(self, name) is not None]
        if len(programs) > 1:
            raise ValueError(f"give one of flow, flow_id and url, not {' and '.join(programs)}")
        if self.tts is None and self.audio_url is None and not programs:
            raise ValueError("give tts (text to speak) or audio_url (audio to play); either is required (or a flow, flow_id or url to run)")
        return self

    def to_request(self) -> CallRequest:
        tts = TtsSpec(self.tts.text, self.tts.voice, self.tts.speed, self.tts.pitch) if self.tts else None
        gather = None
        if self.gather is not None:
            g = self.gather
            speech_timeout_s = None if g.speech_timeout == "auto" else float(g.speech_timeout)
            gather = GatherSpec(g.type, g.num_digits, g.finish_on_key, g.timeout, g.webhook_url, g.barge_in,
                                tuple(g.hints) if g.hints else None, speech_timeout_s, g.language)
        return CallRequest(
            to=self.to,
            from_=self.from_,
            tts=tts,
            audio_url=self.audio_url,
            record=self.record,
            transcribe=self.transcribe,
            recording_channels=self.recording_channels,
            gather=gather,
            webhook_url=self.webhook_url,
            timeout_s=self.timeout,
            max_duration_s=float(self.max_duration),
            language=self.language,
            machine_detection=self.machine_detection,
            machine_detection_timeout_s=float(self.machine_detection_timeout),
            machine_detection_wait_for_beep=self.machine_detection_wait_for_beep,
            flow=self.flow,
            flow_id=self.flow_id,
            url=self.url,
            method=self.method,
        )


class CallPublic(BaseModel):
    """The documented call response, plus what ivrsim adds after ``created_at``."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    to: str
    from_: str = Field(serialization_alias="from")
    status: str = Field(json_schema_extra={"enum": list(CALL_STATUSES)})
    direction: str = "outbound"
    created_at: str
    updated_at: str | None = None
    answered_at: str | None = None
    ended_at: str | None = None
    duration: float | None = None
    reason: str | None = None


class CallCreated(BaseModel):
    """``POST /v1/voice/calls``'s answer, exactly as documented."""

    id: str
    to: str
    from_: str = Field(serialization_alias="from")
    status: Literal["queued"]
    direction: Literal["outbound"]
    created_at: str


class CallList(BaseModel):
    """``GET /v1/voice/calls``: a page of calls, newest first."""

    data: list[CallPublic]
    has_more: bool
    next_starting_after: str | None = Field(description="Pass as starting_after for the next page; null on the last.")


class TranscriptSegment(BaseModel):
    channel: Literal["platform", "callee", "mixed"]
    start: float = Field(description="Seconds from the start of the recording.")
    end: float
    text: str
    confidence: float


class TranscriptionPublic(BaseModel):
    """The documented ``text`` (the whole call, in time order) and ``confidence`` (mean word confidence),
    null while ``status`` is ``in-progress`` or ``failed``; the rest is ivrsim's."""

    text: str | None
    confidence: float | None
    status: Literal["in-progress", "completed", "failed"]
    segments: list[TranscriptSegment] | None = None
    engine: str | None = None
    model: str | None = None
    language: str | None = None
    reason: str | None = Field(default=None, description="Why it failed.")
    source: Literal["live", "recording"] | None = Field(
        default=None, description="'live': the call's real-time transcript, heard whole; 'recording': the recording decoded after the call."
    )
    job_id: str | None = None


class RecordingPublic(BaseModel):
    """``GET /v1/voice/calls/{id}/recording``, as documented (``duration`` in whole seconds); ``duration_s``
    (to the millisecond) and ``channels`` are additions."""

    id: str
    call_id: str
    duration: int
    url: str
    transcription: TranscriptionPublic | None = None
    duration_s: float
    channels: str

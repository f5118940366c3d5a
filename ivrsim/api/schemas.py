"""Request and response shapes of the Canary Voice API, exactly as ``seeds/canary-voice-api.txt`` has them.

Request shapes (``CallCreate``) validate every field and forbid unknown ones, so a typo is a 422 that
names the field instead of a silently ignored option. Public shapes (``CallPublic``, ``RecordingPublic``)
are the documented responses; what we add is additive (extra fields), never a rename.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ivrsim.engine.engine import CallRequest, GatherSpec, TtsSpec
from ivrsim.speech.tts import PITCH_RANGE_ST, SPEED_RANGE

#: E.164: a plus, a country code that does not start with 0, 8 to 15 digits in all (ITU-T E.164).
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
DTMF_KEYS = set("0123456789*#ABCD")


def _e164(value: str) -> str:
    if not E164.match(value):
        raise ValueError("must be an E.164 phone number: a plus and 8 to 15 digits, e.g. +15551234567")
    return value


class TtsIn(BaseModel):
    """The ``tts`` object."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=20_000, description="What to say: plain text or SSML.")
    voice: str | None = Field(default=None, description="A voice id from GET /v1/voice/voices; default en-US-Neural2-F.")
    speed: float = Field(default=1.0, ge=SPEED_RANGE[0], le=SPEED_RANGE[1], description="Multiple of the normal speaking rate.")
    pitch: float = Field(default=0.0, ge=PITCH_RANGE_ST[0], le=PITCH_RANGE_ST[1], description="Semitones from the voice's normal pitch.")


class GatherIn(BaseModel):
    """The ``gather`` object."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["dtmf", "speech"] = "dtmf"
    num_digits: int | None = Field(default=None, ge=1, le=64)
    finish_on_key: str = Field(default="#", description="Key that ends input ('' for none).")
    timeout: float = Field(default=5.0, gt=0, le=600, description="Seconds to wait for input after the prompt and each key.")
    webhook_url: str | None = Field(default=None, description="Where gather.completed goes (default: the call's webhook_url).")
    barge_in: bool = Field(default=True, description="Keys pressed during the prompt stop it and count (ivrsim addition).")

    @field_validator("finish_on_key")
    @classmethod
    def _key(cls, value: str) -> str:
        if value and (len(value) != 1 or value.upper() not in DTMF_KEYS):
            raise ValueError("must be one DTMF key (0-9, *, #, A-D) or '' for none")
        return value.upper()

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _http_url(value)


def _http_url(value: str | None) -> str | None:
    if value is not None and not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value


class CallCreate(BaseModel):
    """``POST /v1/voice/calls``. Either ``tts`` or ``audio_url`` is required; with both, the speech
    plays first and the audio after it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: str = Field(description="Recipient phone number in E.164 format.")
    from_: str = Field(alias="from", description="Caller id: one of the server's verified numbers.")
    tts: TtsIn | None = None
    audio_url: str | None = Field(default=None, max_length=4096, description="URL of an audio file to play (MP3, WAV, FLAC, OGG).")
    record: bool = False
    transcribe: bool = False
    recording_channels: Literal["dual", "mono"] = "dual"
    gather: GatherIn | None = None
    webhook_url: str | None = None
    timeout: int = Field(default=30, ge=1, le=600, description="Ring timeout in seconds.")
    max_duration: int = Field(default=14_400, ge=1, le=14_400, description="Longest call in seconds (ivrsim addition).")

    @field_validator("to", "from_")
    @classmethod
    def _numbers(cls, value: str) -> str:
        return _e164(value)

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        return _http_url(value)

    @model_validator(mode="after")
    def _prompt(self) -> CallCreate:
        if self.tts is None and self.audio_url is None:
            raise ValueError("give tts (text to speak) or audio_url (audio to play); either is required")
        return self

    def to_request(self) -> CallRequest:
        tts = TtsSpec(self.tts.text, self.tts.voice, self.tts.speed, self.tts.pitch) if self.tts else None
        gather = None
        if self.gather is not None:
            g = self.gather
            gather = GatherSpec(g.type, g.num_digits, g.finish_on_key, g.timeout, g.webhook_url, g.barge_in)
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
        )


class CallPublic(BaseModel):
    """The documented call response, plus what ivrsim adds after ``created_at``."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    to: str
    from_: str = Field(serialization_alias="from")
    status: str
    direction: str = "outbound"
    created_at: str
    updated_at: str | None = None
    answered_at: str | None = None
    ended_at: str | None = None
    duration: float | None = None
    reason: str | None = None


class TranscriptionPublic(BaseModel):
    text: str
    confidence: float


class RecordingPublic(BaseModel):
    """``GET /v1/voice/calls/{id}/recording``, as documented; ``channels`` is an addition."""

    id: str
    call_id: str
    duration: float
    url: str
    transcription: TranscriptionPublic | None = None
    channels: str

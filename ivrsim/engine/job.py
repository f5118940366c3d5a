"""What a call is asked to do, as plain data: the Canary request, the engine's settings, and the job that
hands one call to whatever runs it (this process, or a worker process: ``ivrsim.workers``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivrsim.audio.line import LineSettings

if TYPE_CHECKING:
    from ivrsim.engine.actions import Action

#: Ring timeout when the request gives none, in seconds (Canary: default 30).
DEFAULT_RING_TIMEOUT_S = 30
#: Longest call, in seconds, unless the request says otherwise (Twilio's limit is 4 hours).
DEFAULT_MAX_DURATION_S = 4 * 3600.0


@dataclass(frozen=True)
class TtsSpec:
    """The Canary ``tts`` object: text (plain or SSML), voice id, speed (multiple), pitch (semitones)."""

    text: str
    voice: str | None = None
    speed: float = 1.0
    pitch: float = 0.0


@dataclass(frozen=True)
class GatherSpec:
    """The Canary ``gather`` object. ``timeout_s`` is the documented ``timeout``; ``barge_in`` ours; for
    speech (``type`` "speech" or "dtmf speech"): ``hints`` (grammar phrases), ``speech_timeout_s`` (silence
    that ends speech; None is "auto") and ``language`` (None: the call's)."""

    type: str = "dtmf"
    num_digits: int | None = None
    finish_on_key: str = "#"
    timeout_s: float = 5.0
    webhook_url: str | None = None
    barge_in: bool = True
    hints: tuple[str, ...] | None = None
    speech_timeout_s: float | None = None
    language: str | None = None

    @property
    def wants_speech(self) -> bool:
        return "speech" in self.type.split()

    @property
    def wants_dtmf(self) -> bool:
        return "dtmf" in self.type.split()


@dataclass(frozen=True)
class CallRequest:
    """A call to place, with the Canary request's parameters (``from_`` is ``from``, ``timeout_s`` is
    the ring ``timeout``). When both ``tts`` and ``audio_url`` are given, the speech comes first."""

    to: str
    from_: str
    tts: TtsSpec | None = None
    audio_url: str | None = None
    record: bool = False
    transcribe: bool = False
    recording_channels: str = "dual"
    gather: GatherSpec | None = None
    webhook_url: str | None = None
    timeout_s: float = DEFAULT_RING_TIMEOUT_S
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    #: Transcripts' and speech gathers' language; None: the tts voice's (``language_of``).
    language: str | None = None
    machine_detection: bool = False
    machine_detection_timeout_s: float = 4.0
    machine_detection_wait_for_beep: bool = False
    #: An IVR flow to run after the prompt and gather (``ivrsim.flows``): the validated document, so that
    #: the call carries all it runs (a worker process needs nothing else); ``flow_id`` names a stored one.
    flow: dict[str, Any] | None = None
    flow_id: str | None = None
    #: A TwiML app (``ivrsim.flows.twiml``): the URL asked for the call's TwiML when it is answered, and how.
    url: str | None = None
    method: str = "POST"
    #: The callee registered for ``to`` at run time (``PUT /_sim/phonebook/{number}``), as a phonebook
    #: entry; None: the phonebook's entry for ``to``.
    callee: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["from"] = document.pop("from_")
        return document

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> CallRequest:
        """The request ``as_dict`` gave (a job crossing to a worker process)."""
        fields = dict(document)
        fields["from_"] = fields.pop("from")
        if fields.get("tts") is not None:
            fields["tts"] = TtsSpec(**fields["tts"])
        if fields.get("gather") is not None:
            gather = dict(fields["gather"])
            if gather.get("hints") is not None:
                gather["hints"] = tuple(gather["hints"])
            fields["gather"] = GatherSpec(**gather)
        return cls(**fields)


@dataclass
class EngineSettings:
    """Where and how calls run: data folder, clock ("virtual", "realtime" or "manual"), the line, the id seed."""

    data_dir: Path
    clock: str = "virtual"
    line: LineSettings = field(default_factory=LineSettings)
    seed: int | None = None
    #: The server's base URL as receivers see it (no trailing slash), for recording URLs in events; set by
    #: the server once its socket is bound. None: URLs are relative to the server.
    public_url: str | None = None
    #: Where recordings are written; None: ``data_dir / "recordings"``. A worker process writes into the
    #: folder the API serves recordings from (the same folder, or one shared with it).
    recordings_dir: Path | None = None
    #: Signs the requests to TwiML apps (``X-Twilio-Signature``, ``ivrsim.flows.twiml.params``); None: unsigned.
    #: A secret: left out of reprs.
    twilio_auth_token: str | None = field(default=None, repr=False)

    @property
    def recordings_folder(self) -> Path:
        return self.recordings_dir if self.recordings_dir is not None else self.data_dir / "recordings"


@dataclass(frozen=True)
class CallJob:
    """One placed call, handed to a runner: plain data, so that it can cross a process boundary.

    ``sequence``: events of the call already emitted by the placer (``call.queued``); the runner numbers
    its own from ``sequence + 1``. ``start_frame``: see below. ``then``: actions to run after the request's own, before hanging up (the
    IVR builder's composition). They are live objects with state, in-process only: they neither pickle
    nor run twice, so a job that carries them cannot go to a worker process."""

    call_id: str
    created_at: str
    request: CallRequest
    sequence: int = 1
    then: tuple[Action, ...] = field(default=(), compare=False)
    #: The manual clock's present when the call was placed (None on the other clocks): the call's time
    #: starts there, wherever it runs and however long it waited to start.
    start_frame: int | None = None
    #: Answered by the desktop phone whatever the number (the ``phone`` lane, or ``serve --answer soundcard``).
    soundcard: bool = False

"""What the API and its workers say to each other, as JSON: the job message that goes through the queue,
the configuration a worker gets when its session opens, and the session's message types.

The session is one WebSocket per worker and API (``/_internal/workers``), opened by the worker:

worker -> API: ``claim`` a call it took from the queue; a call's ``event``, ``update``,
``recording_started``, ``recording_completed`` and ``ended``, in the order they happen; ``claim_job`` and
``job_done`` for a background job; ``reply`` to a request.
API -> worker: the ``welcome`` (``WorkerConfig``) first; the answer to a ``claim`` (``claimed``) or a
``claim_job`` (``job_claimed``, with the job's kind and input); requests on a live call
(``press``, ``say``, ``hangup``, ``stop``); ``clock`` (the manual clock's present); ``nudge`` (work was
queued: take it now rather than at the next poll).

A frame holds one message (a JSON object) or, when several wait to be sent, a batch of them (a JSON array,
in order). Heartbeats are the WebSocket's own pings: a worker that stops answering, or whose connection closes, has
its calls ended ``failed`` by the API within seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ivrsim.audio.line import LineSettings
from ivrsim.engine.events import CallEvent
from ivrsim.engine.job import CallJob, CallRequest, EngineSettings
from ivrsim.media.audio_url import MediaSettings

#: The session's path on the API.
SESSION_PATH = "/_internal/workers"
#: A file the API writes into its recordings folder, holding its session token: a worker that reads the
#: same token there writes recordings where the API serves them.
SHARE_MARKER = ".ivrsim-share"
#: Seconds between the session's pings, and how long a pong may take before the peer counts as gone.
PING_INTERVAL_S = 1.0
PING_TIMEOUT_S = 5.0
#: Largest session frame, in bytes (an analysis's result of a long call is the largest message).
MAX_MESSAGE_BYTES = 16 << 20
#: Most messages a worker sends in one frame (a JSON array), when several wait to be sent.
MAX_BATCH = 200


@dataclass(frozen=True)
class WorkerConfig:
    """How the API runs calls, sent in the ``welcome``: a worker runs them the same way, so that the
    events are the same as in the API's own process."""

    clock: str
    line: dict[str, Any]
    seed: int | None
    public_url: str | None
    phonebook: str | None
    media_roots: tuple[str, ...] = ()
    media: dict[str, Any] = field(default_factory=dict)
    #: Signs requests to TwiML apps: a worker signs them as the API's own process would (a secret: not in reprs).
    twilio_auth_token: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, settings: EngineSettings, phonebook: Path | None, media: MediaSettings) -> WorkerConfig:
        limits = {
            "max_bytes": media.max_bytes,
            "connect_timeout_s": media.connect_timeout_s,
            "read_timeout_s": media.read_timeout_s,
            "fetch_deadline_s": media.fetch_deadline_s,
            "max_redirects": media.max_redirects,
            "per_host_workers": media.per_host_workers,
            "max_queue_wait_s": media.max_queue_wait_s,
        }
        return cls(
            clock=settings.clock,
            line=asdict(settings.line),
            seed=settings.seed,
            public_url=settings.public_url,
            phonebook=str(phonebook.resolve()) if phonebook is not None else None,
            media_roots=tuple(str(Path(root).resolve()) for root in media.allowed_roots),
            media=limits,
            twilio_auth_token=settings.twilio_auth_token,
        )

    def engine_settings(self, data_dir: Path, recordings_dir: Path) -> EngineSettings:
        return EngineSettings(
            data_dir, clock=self.clock, line=LineSettings(**self.line), seed=self.seed, public_url=self.public_url,
            recordings_dir=recordings_dir, twilio_auth_token=self.twilio_auth_token,
        )

    def media_settings(self, cache_dir: Path, cache_max_bytes: int) -> MediaSettings:
        return MediaSettings(
            allowed_roots=tuple(Path(root) for root in self.media_roots), cache_dir=cache_dir, cache_max_bytes=cache_max_bytes, **self.media
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> WorkerConfig:
        return cls(**{**document, "media_roots": tuple(document.get("media_roots", ()))})


def call_message(job: CallJob, api_url: str, token: str) -> dict[str, Any]:
    """The queue's message for a placed call: the job, and where (and with which token) to claim it."""
    if job.then:
        raise ValueError("a job with in-process actions (then) cannot go to a worker process")
    return {
        "kind": "call",
        "api_url": api_url,
        "token": token,
        "call_id": job.call_id,
        "created_at": job.created_at,
        "sequence": job.sequence,
        "start_frame": job.start_frame,
        "soundcard": job.soundcard,
        "request": job.request.as_dict(),
    }


def job_message(job_id: str, api_url: str, token: str) -> dict[str, Any]:
    """The queue's message for a background job: its id (the worker gets the input when it claims it)."""
    return {"kind": "job", "api_url": api_url, "token": token, "job_id": job_id}


def job_of(message: dict[str, Any]) -> CallJob:
    return CallJob(message["call_id"], message["created_at"], CallRequest.from_dict(message["request"]), sequence=message["sequence"],
                   start_frame=message.get("start_frame"), soundcard=bool(message.get("soundcard", False)))


def event_message(event: CallEvent) -> dict[str, Any]:
    return {"t": "event", "call_id": event.call_id, "sequence": event.sequence, "type": event.type,
            "call_time_s": event.call_time_s, "timestamp": event.timestamp, "data": event.data}


def event_of(message: dict[str, Any]) -> CallEvent:
    return CallEvent(message["call_id"], message["sequence"], message["type"], message["call_time_s"], message["timestamp"], message["data"])

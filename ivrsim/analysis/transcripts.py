"""Transcripts of recorded calls: a ``transcription`` job per recording of a call placed with
``transcribe: true``, run after the call on a worker (never on the API's event loop), and stored, so that a
restart finishes it (DESIGN.md: nothing acknowledged is lost).

``run_transcription`` is the job (worker side): the recording, per channel, through the speech engine of
the call's language. ``CallTranscripts`` is the API side: it queues the job when such a call ends, and
announces the outcome as the call's ``transcription.completed`` (or ``transcription.failed``, with the
reason) event, which the webhook dispatcher sends to the call's ``webhook_url``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ivrsim.analysis.jobs import JobContext, JobInputError
from ivrsim.engine.job import CallRequest
from ivrsim.engine.listening import VOCABULARY_ENGINES, call_language, call_vocabulary
from ivrsim.exceptions import AudioFileError
from ivrsim.media.files import read_audio_file
from ivrsim.webhooks.dispatcher import FINAL_EVENTS

if TYPE_CHECKING:
    from ivrsim.analysis.service import JobService
    from ivrsim.engine.engine import CallEngine
    from ivrsim.engine.events import CallEvent
    from ivrsim.store.sqlite import JobRecord

logger = logging.getLogger(__name__)

#: The job's kind.
TRANSCRIPTION = "transcription"
#: A recording id as the runner makes them: nothing else may name a file to read.
RECORDING_ID = re.compile(r"rec_[0-9a-f]{20}")
#: Names of a dual recording's channels, in order (left: what the platform sent; right: what it received).
DUAL_CHANNELS = ("platform", "callee")


@dataclass(frozen=True)
class TranscriptionInput:
    """What a transcription needs: which recording (by id, read from the recordings folder), its layout,
    and the language (and, optionally, the engine) to transcribe it with."""

    call_id: str
    recording_id: str
    channels: str = "dual"
    language: str = "en-US"
    engine: str | None = None
    #: The words each side is known to hold (``ivrsim.engine.listening.call_vocabulary``), by channel name.
    vocabulary: dict[str, list[str] | None] | None = None


def run_transcription(job_input: dict[str, Any], context: JobContext) -> dict[str, Any]:
    """The transcript of one call's recording (blocking: decode and ASR; run it off the event loop)."""
    from ivrsim.speech.asr.transcribe import transcribe_signal

    request = TranscriptionInput(**job_input)
    if not RECORDING_ID.fullmatch(request.recording_id):
        raise JobInputError(f"recording_id: {request.recording_id!r} is not a recording id (rec_ and 20 hex digits)")
    if context.recordings_folder is None:
        raise JobInputError("recording: this worker cannot read the API's recordings; start it with --recordings-dir on the "
                            "API's recordings folder (shared with this machine)")
    path = context.recordings_folder / f"{request.recording_id}.wav"
    try:
        clip = read_audio_file(path)
    except AudioFileError as error:
        raise JobInputError(f"recording {request.recording_id}: {error.problem}; was it deleted?") from None
    samples = clip.samples
    engine = context.speech.engine_for(request.language, request.engine)
    names = DUAL_CHANNELS if samples.shape[1] == 2 else ("mixed",) * samples.shape[1]
    channel_hints = None
    vocabulary = request.vocabulary or {}
    if engine.info.engine in VOCABULARY_ENGINES and any(vocabulary.values()):
        both = [*(vocabulary.get("platform") or []), *(vocabulary.get("callee") or [])]
        channel_hints = [vocabulary.get(name) if name in DUAL_CHANNELS else both for name in names]
    transcript = transcribe_signal(np.ascontiguousarray(samples), clip.rate_hz, engine, channel_names=names, channel_hints=channel_hints)
    return {"status": "completed", **transcript.as_dict(), "source": "recording"}


def transcript_from_events(events: list[CallEvent]) -> dict[str, Any] | None:
    """The recording's transcript from the call's live one (its ``transcription.final`` events), when
    the runner says the live transcript covered the whole recording (``recording.completed``'s
    ``transcribed_live``); None otherwise (a call cut short: the recording is decoded again)."""
    completed = next((e for e in events if e.type == "recording.completed"), None)
    started = next((e for e in events if e.type == "recording.started"), None)
    if completed is None or started is None or not completed.data.get("transcribed_live"):
        return None
    origin_s = started.call_time_s
    segments = [
        {"channel": e.data["channel"], "start": round(e.data["start_s"] - origin_s, 3), "end": round(e.data["end_s"] - origin_s, 3),
         "text": e.data["text"], "confidence": e.data["confidence"]}
        for e in events if e.type == "transcription.final"
    ]
    segments.sort(key=lambda s: (s["start"], s["channel"]))
    counts = [len(s["text"].split()) for s in segments]
    confidence = sum(s["confidence"] * n for s, n in zip(segments, counts, strict=True)) / sum(counts) if sum(counts) else 0.0
    return {"status": "completed", "text": " ".join(s["text"] for s in segments), "confidence": round(confidence, 4),
            "segments": segments, **completed.data["transcribed_live"], "source": "live"}


def transcription_document(job: JobRecord | None) -> dict[str, Any]:
    """The recording's ``transcription`` as served: the documented ``text`` and ``confidence`` (the whole
    call in time order, mean word confidence), our ``segments``, ``engine``, ``model``, ``language``; while
    the job runs, or before it exists (the call has just ended), ``{"status": "in-progress"}``; a failure
    says why."""
    if job is None:
        return {"status": "in-progress", "text": None, "confidence": None}
    if job.status in ("queued", "processing"):
        return {"status": "in-progress", "text": None, "confidence": None, "job_id": job.id}
    if job.status == "failed":
        return {"status": "failed", "text": None, "confidence": None, "reason": job.error, "job_id": job.id}
    return {**(job.result or {}), "status": "completed", "job_id": job.id}


class CallTranscripts:
    """Queues the transcript of each recorded call placed with ``transcribe: true`` once it has ended, and
    announces its outcome on the call."""

    def __init__(self, engine: CallEngine, jobs: JobService) -> None:
        self.engine = engine
        self.jobs = jobs
        engine.bus.subscribe(self.on_event)
        jobs.listeners.append(self.on_job)

    def on_event(self, event: CallEvent) -> None:
        """Bus subscriber: a call that ends with a recording to transcribe gets its job (once), after every
        other subscriber has heard of the end (so that the transcript's event never overtakes it)."""
        if event.type not in FINAL_EVENTS:
            return
        try:
            asyncio.get_running_loop().call_soon(self._transcribe, event.call_id)
        except RuntimeError:  # no loop (a synchronous caller): now
            self._transcribe(event.call_id)

    def _transcribe(self, call_id: str) -> None:
        record = self.engine.store.get_call(call_id)
        if record is None or not record.request.get("transcribe"):
            return
        recording = self.engine.store.recording_for_call(call_id)
        if recording is None or recording.completed_at is None:
            return
        if self.engine.store.transcription_job(recording.id) is not None:
            return
        job_input = transcription_input(call_id, recording.id, recording.channels, record.request)
        live = transcript_from_events(self.engine.store.events(call_id))
        if live is not None:  # heard during the call, every frame: no need to decode the recording again
            self.jobs.record_done(TRANSCRIPTION, job_input, live, worker="live")
        else:
            self.jobs.submit(TRANSCRIPTION, job_input)

    def on_job(self, job: JobRecord) -> None:
        """Job listener: a transcription that ended becomes the call's event (and so its webhook)."""
        if job.kind != TRANSCRIPTION:
            return
        call_id = str(job.input.get("call_id"))
        facts: dict[str, Any] = {"recording_id": job.input.get("recording_id")}
        if job.status == "completed" and job.result is not None:
            result = job.result
            facts.update(text=result.get("text"), confidence=result.get("confidence"), segments=result.get("segments"),
                         engine=result.get("engine"), model=result.get("model"), language=result.get("language"), source=result.get("source"))
            self.engine.append_event(call_id, "transcription.completed", facts)
        else:
            facts.update(reason=job.error, language=job.input.get("language"), source="recording")
            self.engine.append_event(call_id, "transcription.failed", facts)

    def recover(self) -> int:
        """Queue the transcripts a crash left unasked (a call that ended, recorded, with no job yet)."""
        missing = self.engine.store.calls_missing_transcripts()
        for call_id in missing:
            self._transcribe(call_id)
        if missing:
            logger.warning("recovery: %d recorded call(s) had no transcript queued; queued now", len(missing))
        return len(missing)


def transcription_input(call_id: str, recording_id: str, channels: str, stored_request: dict[str, Any]) -> dict[str, Any]:
    """The job's input for a call's recording, from the call's stored request."""
    request = CallRequest.from_dict(stored_request)
    platform, callee = call_vocabulary(request)
    return {"call_id": call_id, "recording_id": recording_id, "channels": channels, "language": call_language(request),
            "vocabulary": {"platform": platform, "callee": callee}}

"""Background jobs: what each kind does, as a plain function of its input, run by whoever runs jobs (a
worker process, or the server's own thread pool with ``--workers 0``).

``analysis``: fetch a recording (``location``: an http(s) URL or a path inside the media roots, with the
media loader's limits; or ``upload``: a stored upload, relative to the recordings folder) and measure how
the call went: talk time, turns, latency, interruptions, dead air, SNR, DTMF (``ivrsim.analysis.timing``);
a mono recording is diarized first (``ivrsim.analysis.diarization``); with ``transcribe`` or Retell's
``transcript_object``, what each party said and words per minute (``ivrsim.analysis.conversation``). The
Canonical API puts its requests on this job.

``transcription``: transcribe a call's recording, per channel (``ivrsim.analysis.transcripts``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ivrsim.analysis.conversation import ConversationOptions, analyze_conversation
from ivrsim.exceptions import AudioUrlError, IvrsimError
from ivrsim.media.audio_url import AudioUrlLoader, LoadedAudio, MediaSettings
from ivrsim.speech.asr.engines import SpeechEngines


#: The rate analyses run at: telephone audio.
ANALYSIS_RATE_HZ = 8000
#: How many times a job is started before it fails for good (a worker that dies while running it).
MAX_JOB_ATTEMPTS = 3


class JobInputError(IvrsimError):
    """A job whose input cannot be analysed; the message names the field and the fix."""

    code = "invalid_job"


@dataclass
class JobContext:
    """What a job may use, as its process has it: the media loader, the folder recordings are written to
    (None: this process cannot read them) and the speech engines. A job that recognises speech runs in a
    child process of its own (``ivrsim.analysis.service.run_job_apart``), which makes its own loader and
    engines from this one's settings: it loads its model once per job."""

    loader: AudioUrlLoader
    recordings_folder: Path | None = None
    speech: SpeechEngines = field(default_factory=SpeechEngines.from_environment, repr=False)


@dataclass(frozen=True)
class AnalysisInput(ConversationOptions):
    """What an analysis needs: the recording (``location`` or ``upload``, exactly one) and how to read it
    (``ConversationOptions``: which party is the assistant, the dead-air threshold, the transcript wanted).
    ``call_id`` and ``assistant_id`` pass through to the result's ``call`` block."""

    location: str | None = None
    upload: str | None = None
    call_id: str | None = None
    assistant_id: str | None = None

    @classmethod
    def from_dict(cls, job_input: Mapping[str, Any]) -> AnalysisInput:
        """The input of a stored job; ``JobInputError`` naming what is wrong with it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(job_input) - known)
        if unknown:
            raise JobInputError(f"{unknown[0]}: not an analysis input; the inputs are {', '.join(sorted(known))}")
        request = cls(**job_input)
        if (request.location is None) == (request.upload is None):
            raise JobInputError("location: give exactly one of location (a URL or media path) and upload (a stored upload)")
        return request


def _load_upload(upload: str, context: JobContext) -> LoadedAudio:
    """A stored upload, read from the recordings folder with the loader's limits (and never outside it)."""
    if context.recordings_folder is None:
        raise JobInputError("upload: this worker cannot read the API's uploads; start it with --recordings-dir on the "
                            "API's recordings folder (shared with this machine)")
    loader = AudioUrlLoader(MediaSettings(allowed_roots=(context.recordings_folder,), max_bytes=context.loader.settings.max_bytes))
    try:
        return loader.load(upload, ANALYSIS_RATE_HZ, keep_channels=True)
    except AudioUrlError as error:
        raise JobInputError(str(error).replace("audio_url ", "upload ", 1)) from error
    finally:
        loader.close()


def run_analysis(job_input: dict[str, Any], context: JobContext) -> dict[str, Any]:
    """The analysis of one recording. Blocking (fetch, decode, DSP, ASR): run it off the event loop."""
    request = AnalysisInput.from_dict(job_input)
    if request.upload is not None:
        audio = _load_upload(request.upload, context)
    else:
        try:
            audio = context.loader.load(str(request.location), ANALYSIS_RATE_HZ, keep_channels=True)
        except AudioUrlError as error:  # the loader speaks of an audio_url: here it is the job's location
            raise JobInputError(str(error).replace("audio_url ", "location ", 1)) from error
    channels = audio.samples.shape[1] if audio.samples.ndim == 2 else 1
    try:
        result = analyze_conversation(audio.samples, ANALYSIS_RATE_HZ, request, context.speech)
    except ValueError as error:
        raise JobInputError(str(error).replace("audio: ", "location: " if request.location is not None else "upload: ", 1)) from error
    where = {"location": request.location} if request.location is not None else {"upload": request.upload}
    result["source"] = {**where, "channels": channels, "source_rate_hz": audio.source_rate_hz, "size_bytes": audio.size_bytes}
    result["call"] = {"call_id": request.call_id, "assistant_id": request.assistant_id}
    return result


def _run_transcription(job_input: dict[str, Any], context: JobContext) -> dict[str, Any]:
    from ivrsim.analysis.transcripts import run_transcription  # the ASR engines load only where transcripts run

    return run_transcription(job_input, context)


JobHandler = Callable[[dict[str, Any], JobContext], dict[str, Any]]
#: Every kind of job, by name.
JOB_KINDS: Mapping[str, JobHandler] = MappingProxyType({"analysis": run_analysis, "transcription": _run_transcription})


def run_job(kind: str, job_input: dict[str, Any], context: JobContext) -> dict[str, Any]:
    """Run a job: its result, or an ``IvrsimError`` whose message says what was wrong."""
    handler = JOB_KINDS.get(kind)
    if handler is None:
        raise JobInputError(f"kind: no job kind {kind!r}; kinds are {', '.join(JOB_KINDS)}")
    return handler(job_input, context)

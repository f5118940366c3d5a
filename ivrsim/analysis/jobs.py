"""Background jobs: what each kind does, as a plain function of its input, run by whoever runs jobs (a
worker process, or the server's own thread pool with ``--workers 0``).

``analysis``: fetch a dual-channel recording (``location``: an http(s) URL or a path inside the media roots,
with the media loader's limits) and measure how the call went: talk time, turns, latency, interruptions,
dead air, SNR, DTMF (``ivrsim.analysis.timing``). The Canonical API puts its requests on this job.

``transcription``: transcribe a call's recording, per channel (``ivrsim.analysis.transcripts``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ivrsim.analysis.timing import analyze_channels, assistant_channel_for
from ivrsim.exceptions import AudioUrlError, IvrsimError
from ivrsim.media.audio_url import AudioUrlLoader
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
    (None: this process cannot read them) and the speech engines (the process's own, shared with its
    calls: a model loads on first use, once per process)."""

    loader: AudioUrlLoader
    recordings_folder: Path | None = None
    speech: SpeechEngines = field(default_factory=SpeechEngines.from_environment, repr=False)


@dataclass(frozen=True)
class AnalysisInput:
    """What an analysis needs: the recording, and which channel is the assistant (1-based), or whether
    the assistant speaks first (the channel that speaks first is then the assistant's)."""

    location: str
    speaks_first: bool = True
    assistant_channel: int | None = None
    dead_air_threshold_s: float = 3.0


def run_analysis(job_input: dict[str, Any], context: JobContext) -> dict[str, Any]:
    """The analysis of one recording. Blocking (fetch, decode, DSP): run it off the event loop."""
    request = AnalysisInput(**job_input)
    try:
        audio = context.loader.load(request.location, ANALYSIS_RATE_HZ, keep_channels=True)
    except AudioUrlError as error:  # the loader speaks of an audio_url: here it is the job's location
        raise JobInputError(str(error).replace("audio_url ", "location ", 1)) from error
    channels = audio.samples.shape[1] if audio.samples.ndim == 2 else 1
    if channels != 2:
        raise JobInputError(
            f"location: the recording has {channels} channel(s); analysis needs one party per channel "
            "(a dual-channel recording, as ivrsim records with recording_channels 'dual')"
        )
    assistant = request.assistant_channel - 1 if request.assistant_channel is not None else assistant_channel_for(
        audio.samples, ANALYSIS_RATE_HZ, request.speaks_first
    )
    result = analyze_channels(audio.samples, ANALYSIS_RATE_HZ, assistant, request.dead_air_threshold_s)
    result["source"] = {"location": request.location, "channels": channels, "source_rate_hz": audio.source_rate_hz,
                        "size_bytes": audio.size_bytes}
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

"""Real-time transcription of a live call (the Canary document's "Enable real-time transcription"): both
sides of the line, each through its own recognizer stream, reported as ``transcription.partial`` and
``transcription.final`` events at the call time they were heard.

The platform's channel is what the platform sent (its prompts), the callee's what the platform received
(after the line), as a dual recording holds them. Times in the events are call times: the stream's own
times (from the answer) plus the call time of the answer.

The call's own vocabulary (``call_vocabulary``): pocketsphinx, the engine English has without a download,
transcribes free telephone speech poorly and slowly (DESIGN.md: word error rate about 0.66 on recorded
prompts; on espeak-ng's voices over 1.0, at under 2x real time: ``bench/asr_speed.py``), so with it each
channel is decoded against a closed vocabulary, at about 30x real time: the platform's against its
prompt's words (ivrsim knows what it says), the callee's against its gather's hints (as a speech service's
phrase boosting) and the common words of phone menus (``IVR_VOCABULARY``). Words outside it cannot be
heard in that mode; a Vosk model transcribes freely.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from ivrsim.engine.actions import CallContext
from ivrsim.engine.job import CallRequest
from ivrsim.speech.asr.base import AsrError, EngineInfo, Recognition, RecognizerStream, SpeechEngine
from ivrsim.speech.asr.engines import SpeechEngines, language_of_voice
from ivrsim.speech.asr.phrases import IVR_VOCABULARY, vocabulary_of
from ivrsim.speech.ssml import SpeechSegment, looks_like_ssml, parse_ssml

#: The engines whose free transcription is too weak to stand alone: they decode against the call's vocabulary.
VOCABULARY_ENGINES = ("pocketsphinx",)

logger = logging.getLogger(__name__)

#: Silence that ends an utterance of a live transcript, in seconds (a final result per utterance).
LIVE_END_SILENCE_S = 0.6
#: Silence that ends a speech gather's input when its ``speech_timeout`` is "auto", in seconds.
AUTO_SPEECH_TIMEOUT_S = 1.0


async def open_speech_input(
    speech: SpeechEngines, rate_hz: int, input_type: str, hints: Sequence[str] | None, speech_timeout_s: float | None, language: str
) -> tuple[RecognizerStream | None, str, str | None]:
    """A speech gather's recognizer stream (models load off the event loop): (stream, the input type the
    gather takes, why speech is off). Without a model for ``language`` the stream is None and a "dtmf
    speech" gather takes keys only; the caller decides what a "speech" gather without one does."""
    end_silence_s = speech_timeout_s if speech_timeout_s is not None else AUTO_SPEECH_TIMEOUT_S
    try:
        engine = await asyncio.to_thread(speech.engine_for, language)
        phrases, repeat = (list(hints) if hints else None), False
        if phrases is None and engine.info.engine in VOCABULARY_ENGINES:
            phrases, repeat = list(IVR_VOCABULARY), True  # free speech: pocketsphinx's closed vocabulary (module docstring)
        stream = await asyncio.to_thread(partial(engine.stream, rate_hz, phrases, end_silence_s, repeat=repeat))
    except AsrError as error:
        return None, "dtmf", str(error)
    return stream, input_type, None


def recognition_facts(result: Recognition, offset_s: float) -> dict[str, object]:
    """An ASR result as event facts: text, confidence, when it was spoken (call time), what made it."""
    return {
        "text": result.text,
        "confidence": round(result.confidence, 3),
        "start_s": round(offset_s + result.start_s, 3),
        "end_s": round(offset_s + result.end_s, 3),
        **engine_facts(EngineInfo(result.engine, result.model, result.language)),
    }


def engine_facts(info: EngineInfo) -> dict[str, str]:
    return {"engine": info.engine, "model": info.model, "language": info.language}


@dataclass
class _Channel:
    name: str
    stream: RecognizerStream


class LiveTranscriber:
    """Transcribes both channels of a call as it runs. ``answered_s``: the call time of the answer (the
    streams' time zero)."""

    CHANNELS: Sequence[str] = ("platform", "callee")

    def __init__(self, engine: SpeechEngine, rate_hz: int, answered_s: float, request: CallRequest) -> None:
        self.answered_s = answered_s
        self.info = engine.info
        #: ``finish`` ran: every frame of the call was heard.
        self.finished = False
        #: The engine failed: nothing more is heard (the recording is decoded after the call instead).
        self.failed = False
        hints = call_vocabulary(request) if engine.info.engine in VOCABULARY_ENGINES else (None, None)
        self._channels = [
            _Channel(name, engine.stream(rate_hz, hints=channel_hints, end_silence_s=LIVE_END_SILENCE_S, repeat=True))
            for name, channel_hints in zip(self.CHANNELS, hints, strict=True)
        ]

    def feed(self, call: CallContext, sent: np.ndarray, received: np.ndarray) -> None:
        """One frame of each side; emits what the streams recognised. An engine that fails ends the live
        transcript (``transcription.failed``, with the reason), never the call."""
        if self.failed:
            return
        try:
            for channel, samples in zip(self._channels, (sent, received), strict=True):
                self._report(call, channel, channel.stream.accept(samples))
        except Exception as error:  # noqa: BLE001 - a transcript is an extra: the call goes on
            self._fail(call, error)

    def finish(self, call: CallContext) -> None:
        """The call ended: what each stream was still hearing becomes its last final result."""
        if self.failed:
            return
        try:
            for channel in self._channels:
                self._report(call, channel, channel.stream.finish())
        except Exception as error:  # noqa: BLE001 - as in feed
            self._fail(call, error)
            return
        self.finished = True

    async def end(self, call: CallContext) -> None:
        """The call ended (``ProcessTranscriber``'s interface: there it waits for the child)."""
        self.finish(call)

    def _fail(self, call: CallContext, error: Exception) -> None:
        logger.exception("live transcription of %s failed", getattr(call, "id", "a call"))
        self.failed = True
        call.emit("transcription.failed", source="live", reason=f"the speech engine failed: {type(error).__name__}: {error}",
                  **engine_facts(self.info))

    def _report(self, call: CallContext, channel: _Channel, results: list[Recognition]) -> None:
        for result in results:
            if not result.text:
                continue  # an utterance that held no words (noise, a cough): nothing was said
            kind = "transcription.final" if result.final else "transcription.partial"
            call.emit(kind, channel=channel.name, **recognition_facts(result, self.answered_s))


def spoken_text(text: str) -> str:
    """What a tts text says aloud: SSML's spoken segments, or the plain text."""
    if not looks_like_ssml(text):
        return text
    try:
        parsed = parse_ssml(text)
    except Exception:  # noqa: BLE001 - a prompt that played was valid; be safe anyway
        return ""
    return " ".join(segment.text for segment in parsed.segments if isinstance(segment, SpeechSegment))


def call_language(request: CallRequest) -> str:
    """The language of a call's transcripts and speech: its ``language``, else its tts voice's."""
    return request.language or language_of_voice(request.tts.voice if request.tts is not None else None)


def call_vocabulary(request: CallRequest) -> tuple[list[str], list[str]]:
    """The closed vocabulary of each side of the call (module docstring): the platform's, its prompt's
    words when it only says a tts text (what it says is known), else the common words of phone menus;
    the callee's, its gather's hints with the common words of phone menus (what it says is not known)."""
    platform = vocabulary_of([spoken_text(request.tts.text)]) if request.tts is not None and request.audio_url is None else []
    gather = request.gather
    callee = list(gather.hints) if gather is not None and gather.hints else []
    return platform or list(IVR_VOCABULARY), [*callee, *IVR_VOCABULARY]

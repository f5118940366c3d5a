"""The whole analysis of a call's audio: timing per party (stereo: one party per channel; mono: diarized),
and, when asked, what each party said (ASR, or Retell's ``transcript_object``) and how fast.

Pure computation over numpy arrays plus the ASR engines; the job (``ivrsim.analysis.jobs``) and the CLI
(``ivrsim analyze``) fetch or read the audio and call ``analyze_conversation``.

Definitions added to those of ``ivrsim.analysis.timing``:

- ``words``: the words a party said, by the transcript: the tokens holding a letter or digit (Retell's
  punctuation-only tokens and an engine's filler marks such as ``<sil>`` or ``[noise]`` are not words).
- ``words_per_minute``: ``words`` divided by the party's talk time in minutes, where talk time is the
  VAD's (its turns, pauses under 200 ms inside a turn included), not the transcript's word spans; None
  without a transcript or without talk.
- ``transcript``: every utterance in time order, ``{speaker, text, start_s, end_s, words: [{word,
  start_s, end_s, confidence?}]}``, times in seconds of audio time. ``source`` says where it came from:
  ``"asr"`` (the offline engine for ``language``, run per channel, or on the mono mix with each word
  given to the diarized speaker whose segment holds its middle), ``"retell"`` (``transcript_object``,
  role ``agent`` = assistant, ``user`` = user; other roles are skipped and counted) or None (not asked).
  A transcript that cannot be made (no model for the language, a malformed ``transcript_object``) does
  not fail the analysis: ``reason`` says why and the timing metrics stand.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ivrsim.analysis.diarization import diarize
from ivrsim.analysis.timing import (
    activity_metrics,
    analyze_channels,
    assistant_channel_for,
)
from ivrsim.speech.asr.base import AsrError, Word
from ivrsim.speech.asr.engines import SpeechEngines

logger = logging.getLogger(__name__)

#: Language transcribed when none is given.
DEFAULT_LANGUAGE = "en-US"
#: Retell's transcript roles, as our speakers.
RETELL_ROLES = {"agent": "assistant", "user": "user"}
SPEAKERS = ("assistant", "user")
_WORDLIKE = re.compile(r"\w", re.UNICODE)
_FILLER = re.compile(r"^(<.*>|\[.*\]|\(.*\))$")


@dataclass(frozen=True)
class ConversationOptions:
    """How to read the call: which party is the assistant (``assistant_channel``, 1-based, overrides
    ``speaks_first``; stereo only: a mono call is diarized, ``speaks_first`` names its assistant and the
    channel is ignored, as its ``diarization`` block says), the dead-air threshold, and the transcript."""

    speaks_first: bool = True
    assistant_channel: int | None = None
    dead_air_threshold_s: float = 3.0
    transcribe: bool = False
    language: str | None = None
    transcript_object: list[Any] | None = None


def is_word(token: str) -> bool:
    """Whether a transcript token is a spoken word (module docstring)."""
    return bool(_WORDLIKE.search(token)) and not _FILLER.match(token)


def _s(value: float) -> float:
    return round(float(value), 3)


def _word(word: Word) -> dict[str, Any]:
    return {"word": word.text, "start_s": _s(word.start_s), "end_s": _s(word.end_s), "confidence": round(float(word.confidence), 3)}


def _utterance(speaker: str, words: Sequence[Word], text: str | None = None) -> dict[str, Any]:
    return {
        "speaker": speaker,
        "text": text if text is not None else " ".join(w.text for w in words),
        "start_s": _s(words[0].start_s) if words else None,
        "end_s": _s(words[-1].end_s) if words else None,
        "words": [_word(w) for w in words],
    }


def _speaker_at(time_s: float, segments: list[dict[str, Any]]) -> str:
    """The diarized speaker whose segment holds ``time_s``, else whose segment is nearest."""
    best, best_distance = SPEAKERS[0], float("inf")
    for segment in segments:
        distance = max(segment["start_s"] - time_s, time_s - segment["end_s"], 0.0)
        if distance < best_distance:
            best, best_distance = segment["speaker"], distance
    return best


def asr_utterances(audio: np.ndarray, rate_hz: int, engine: Any, assistant_channel: int | None,
                   segments: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Utterances by ASR: stereo per channel (``assistant_channel`` 0-based), or a mono mix split by the
    diarized ``segments``. Raises ``AsrError`` when the engine cannot transcribe."""
    from ivrsim.speech.asr.transcribe import transcribe_signal

    utterances: list[dict[str, Any]] = []
    if audio.ndim == 2 and audio.shape[1] == 2 and assistant_channel is not None:
        for speaker, channel in (("assistant", assistant_channel), ("user", 1 - assistant_channel)):
            transcript = transcribe_signal(np.ascontiguousarray(audio[:, channel]), rate_hz, engine, channel_names=(speaker,))
            utterances.extend(_utterance(speaker, s.words, s.text) for s in transcript.segments)
    else:
        mono = audio[:, 0] if audio.ndim == 2 else audio
        transcript = transcribe_signal(np.ascontiguousarray(mono), rate_hz, engine, channel_names=("mixed",))
        for segment in transcript.segments:
            run: list[Word] = []
            run_speaker = None
            for word in segment.words:
                speaker = _speaker_at((word.start_s + word.end_s) / 2, segments or [])
                if run and speaker != run_speaker:
                    utterances.append(_utterance(str(run_speaker), run))
                    run = []
                run.append(word)
                run_speaker = speaker
            if run:
                utterances.append(_utterance(str(run_speaker), run))
    utterances.sort(key=lambda u: (u["start_s"] if u["start_s"] is not None else 0.0, u["speaker"]))
    return utterances


class TranscriptObjectError(ValueError):
    """A ``transcript_object`` that is not Retell's shape; the message names the element and the fix."""


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise TranscriptObjectError(f"{where}: must be a number of seconds (0 or more) of audio time")
    return float(value)


def retell_utterances(transcript_object: Any) -> tuple[list[dict[str, Any]], int]:
    """Utterances from Retell's ``transcript_object`` and how many entries were skipped (roles other
    than agent and user). Raises ``TranscriptObjectError`` for anything not in Retell's shape."""
    if not isinstance(transcript_object, list):
        raise TranscriptObjectError("transcript_object: must be a list of {role, content, words} entries, as Retell sends it")
    utterances: list[dict[str, Any]] = []
    skipped = 0
    for i, entry in enumerate(transcript_object):
        where = f"transcript_object[{i}]"
        if not isinstance(entry, dict):
            raise TranscriptObjectError(f"{where}: must be an object with role, content and words")
        role = entry.get("role")
        if role not in RETELL_ROLES:
            skipped += 1
            continue
        content = entry.get("content", "")
        if not isinstance(content, str):
            raise TranscriptObjectError(f"{where}.content: must be a string")
        raw_words = entry.get("words") or []
        if not isinstance(raw_words, list):
            raise TranscriptObjectError(f"{where}.words: must be a list of {{word, start, end}}")
        words: list[Word] = []
        for j, item in enumerate(raw_words):
            if not isinstance(item, dict) or not isinstance(item.get("word"), str):
                raise TranscriptObjectError(f"{where}.words[{j}]: must be an object with a string word, start and end")
            start = _seconds(item.get("start"), f"{where}.words[{j}].start")
            end = _seconds(item.get("end"), f"{where}.words[{j}].end")
            if end < start:
                raise TranscriptObjectError(f"{where}.words[{j}]: end ({end}) is before start ({start})")
            words.append(Word(item["word"], start, end, 1.0))
        utterance = _utterance(RETELL_ROLES[role], words, content)
        for word in utterance["words"]:
            del word["confidence"]  # Retell gives none
        utterances.append(utterance)
    utterances.sort(key=lambda u: u["start_s"] if u["start_s"] is not None else float("inf"))
    return utterances, skipped


def _word_count(utterances: list[dict[str, Any]], speaker: str) -> int:
    count = 0
    for u in utterances:
        if u["speaker"] != speaker:
            continue
        tokens = [w["word"] for w in u["words"]] if u["words"] else u["text"].split()
        count += sum(1 for token in tokens if is_word(token))
    return count


def make_transcript(audio: np.ndarray, rate_hz: int, options: ConversationOptions, speech: SpeechEngines | None,
                    assistant_channel: int | None, segments: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The ``transcript`` block (module docstring); never raises for a transcript that cannot be made."""
    language = options.language or DEFAULT_LANGUAGE
    block: dict[str, Any] = {"source": None, "engine": None, "model": None, "language": language, "utterances": []}
    if options.transcript_object is not None:
        block["source"] = "retell"
        try:
            block["utterances"], block["skipped"] = retell_utterances(options.transcript_object)
        except TranscriptObjectError as error:
            block["reason"] = str(error)
        return block
    if not options.transcribe:
        return block
    block["source"] = "asr"
    try:
        engine = (speech or SpeechEngines.from_environment()).engine_for(language)
        block.update(engine=engine.info.engine, model=engine.info.model, language=engine.info.language)
        block["utterances"] = asr_utterances(audio, rate_hz, engine, assistant_channel, segments)
    except AsrError as error:
        block["reason"] = str(error)
    return block


def analyze_conversation(audio: np.ndarray, rate_hz: int, options: ConversationOptions | None = None,
                         speech: SpeechEngines | None = None) -> dict[str, Any]:
    """The analysis of a call (float samples, (N,) or (N, channels): 2 = one party per channel, 1 = both
    parties mixed, diarized). Raises ValueError naming the field for audio or options it cannot take."""
    options = options or ConversationOptions()
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    channels = x.shape[1] if x.ndim == 2 else 0
    if channels not in (1, 2):
        raise ValueError(f"audio: the recording has {channels} channels; analysis takes one party per channel (2) or both parties in one (1)")
    if channels == 2 and options.assistant_channel not in (None, 1, 2):
        raise ValueError(f"assistant_channel: {options.assistant_channel} is not a channel of this stereo recording; give 1 or 2")
    segments = None
    if channels == 2:
        assistant = options.assistant_channel - 1 if options.assistant_channel is not None else assistant_channel_for(
            x, rate_hz, options.speaks_first)
        result = analyze_channels(x, rate_hz, assistant, options.dead_air_threshold_s)
    else:
        if not np.isfinite(options.dead_air_threshold_s) or options.dead_air_threshold_s <= 0:
            raise ValueError(f"dead_air_threshold_s: must be a positive number of seconds, got {options.dead_air_threshold_s}")
        assistant = None
        found = diarize(x[:, 0], rate_hz, options.speaks_first)
        dtmf = {"assistant": {"digits": "", "times_s": []},
                "user": {"digits": "".join(d["digit"] for d in found.dtmf), "times_s": [d["start_s"] for d in found.dtmf]}}
        result = activity_metrics(found.assistant, found.user, len(x) / rate_hz, dtmf, options.dead_air_threshold_s, (0, 0))
        result["diarized"] = True
        result["diarization"] = found.summary()
        if options.assistant_channel is not None:  # one channel holds both: speaks_first decides
            result["diarization"]["assistant_channel_ignored"] = options.assistant_channel
        segments = found.segments
    transcript = make_transcript(x, rate_hz, options, speech, assistant, segments)
    has_transcript = transcript["source"] is not None and "reason" not in transcript
    for name in SPEAKERS:
        speaker = result["speakers"][name]
        words = _word_count(transcript["utterances"], name) if has_transcript else None
        speaker["words"] = words
        talk_s = speaker["talk_time_s"]
        speaker["words_per_minute"] = round(words / (talk_s / 60.0), 1) if words is not None and talk_s > 0 else None
    result["transcript"] = transcript
    return result

"""The far end of a call: scripted callers, audio fixtures, answering machines, forced outcomes.

A callee decides how the call is answered (after how many rings, or busy / no answer / failed), then
exchanges audio with the platform one 20 ms frame at a time: it hears what the platform sent (after the
line) and returns what it sends back (which crosses the line too). Everything a callee does reaches the
platform only as audio: digits are real DTMF tones, words are TTS, and "the prompt has ended" is measured
as silence on the line, never read from the engine.

Scripted callers are YAML (see ``samples/callers/``)::

    name: press-1
    answer_after_rings: 1          # 0 answers at once
    steps:
      - wait_for_prompt: {silence_ms: 800, timeout_s: 30}
      - wait_for_phrase: {text: "billing", timeout_s: 30, on_timeout: hangup}   # heard by ASR on the caller's side
                                   # of the line; on_timeout: continue (the next step) or hangup (the phrase never came)
      - press: {digits: "1", on_ms: 100, off_ms: 100, level_dbm0: -10, twist_db: 0}
      - say: {text: "yes please", voice: en-US-Neural2-D}
      - play: {file: reply.wav}    # relative to the script's folder
      - pause: {seconds: 2}
      - hangup: {}
      - listen: {seconds: 5}       # without seconds: until the platform hangs up

After the last step the caller stays on the line, silent, until the platform hangs up.
"""

from __future__ import annotations

import asyncio
import math
from functools import partial
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from ivrsim.audio.call_progress import RING_OFF_S, RING_ON_S
from ivrsim.audio.dtmf_generator import DtmfToneSpec, generate_dtmf, validate_digits
from ivrsim.audio.levels import dbm0_to_amplitude, power_to_dbm0
from ivrsim.audio.resample import resample
from ivrsim.engine.clock import FRAME_S, Clock
from ivrsim.exceptions import AudioFileError, IvrsimError
from ivrsim.media.files import read_audio_file
from ivrsim.exceptions import UnknownVoiceError
from ivrsim.speech.asr.base import AsrError, RecognizerStream
from ivrsim.speech.asr.engines import SpeechEngines
from ivrsim.speech.asr.phrases import listening_hints, normalise_phrase
from ivrsim.speech.tts import PITCH_RANGE_ST, SPEED_RANGE, SpeechSynthesizer, TtsRequest
from ivrsim.speech.voices import VoiceCatalog

#: The phonebook that ships with ivrsim (numbers documented in README.md).
DEFAULT_PHONEBOOK = Path(__file__).resolve().parents[2] / "samples" / "phonebook.yaml"
#: One ring cycle, in seconds: 2 s of ring tone and 4 s of silence (North American cadence); a callee
#: answering after N rings answers N - 1 cycles plus one ``RING_ON_S`` after ringing starts.
RING_CYCLE_S = RING_ON_S + RING_OFF_S
#: Below this level a frame the callee hears counts as silence, in dBm0.
SILENCE_THRESHOLD_DBM0 = -45.0


class CalleeBusyError(IvrsimError):
    """The callee cannot take this call now (the desktop phone is on another call): the call ends busy."""

    code = "callee_busy"


class ScriptError(IvrsimError):
    """A caller script or phonebook that does not validate; the message names file, step and field."""

    code = "invalid_script"


@dataclass(frozen=True)
class Answer:
    """How a callee answers: after ``rings`` rings, or never (``outcome`` busy / no-answer / failed)."""

    rings: int = 1
    outcome: str = "answer"
    reason: str | None = None

    @property
    def answer_time_s(self) -> float:
        """Call time after ringing starts at which the callee picks up."""
        return 0.0 if self.rings <= 0 else (self.rings - 1) * RING_CYCLE_S + RING_ON_S


@dataclass(frozen=True)
class Pickup:
    """How ringing ended: ``frames`` of call time after ringing started, and ``outcome`` "answer",
    "no-answer" or "busy" (a person who declined), with the ``rings`` heard and a ``reason``."""

    frames: int
    outcome: str = "answer"
    rings: int = 1
    reason: str | None = None


class PhoneLine(Protocol):
    """One call on the desktop phone (``ivrsim.phone`` implements it over the sound card): it rings, paces
    the call with the device's own clock, and exchanges frames with the person at the computer."""

    clock: Clock
    hung_up: bool

    async def ring(self, timeout_frames: int) -> Pickup: ...

    def exchange(self, heard: np.ndarray) -> np.ndarray: ...

    def report(self) -> list[tuple[str, dict[str, Any]]]:
        """Events the line has to report since the last call (device glitches: ``soundcard.xrun``)."""
        ...

    def close(self) -> None: ...


class DeskPhone(Protocol):
    """The process's desktop phone: it owns the sound card and opens one line per call (blocking I/O: the
    caller runs it in a thread); IvrsimError (busy with another call, no such device) says why not."""

    def open_line(self, call_id: str, rate_hz: int, frame_samples: int) -> PhoneLine: ...


@dataclass
class CalleeContext:
    """What a callee may use to prepare its audio and its ears: the line rate, the TTS engine, speech
    recognition (for ``wait_for_phrase``), the call's language, and the process's desktop phone (only a
    process that owns the sound card has one) with the call's id."""

    rate_hz: int
    synthesizer: SpeechSynthesizer | None = None
    speech: SpeechEngines | None = None
    language: str = "en-US"
    phone: DeskPhone | None = None
    call_id: str = ""


class Callee(ABC):
    """The far end of a call. ``exchange`` is called once per frame while the call is in progress."""

    hung_up: bool = False
    label: str = "callee"
    #: The clock that paces this callee's calls, when it has its own (the sound card's); None: the engine's.
    clock: Clock | None = None

    @abstractmethod
    def answer(self) -> Answer: ...

    async def prepare(self, context: CalleeContext) -> None:
        """Render or load audio before the call is answered (may await TTS or file I/O)."""
        self.rate_hz = context.rate_hz

    async def ring(self, clock: Clock, timeout_frames: int) -> Pickup:
        """Ring until the callee picks up (``answer()``'s rings) or ``timeout_frames`` pass."""
        answer = self.answer()
        frames = int(round(answer.answer_time_s / FRAME_S))
        if answer.outcome == "no-answer" or frames > timeout_frames:
            await clock.advance(timeout_frames)
            return Pickup(timeout_frames, "no-answer", answer.rings)
        await clock.advance(frames)
        return Pickup(frames, "answer", answer.rings)

    @abstractmethod
    def exchange(self, heard: np.ndarray) -> np.ndarray:
        """Hear one frame from the platform; return one frame (same length) to send back."""

    def report(self) -> list[tuple[str, dict[str, Any]]]:
        """Events the callee has to report (its device's glitches); none for simulated callees."""
        return []

    def close(self) -> None:
        """Release what the call held (the sound card); called once the call has ended, however it ended."""


class ForcedOutcome(Callee):
    """Busy, no answer, or a failure to connect: the call never reaches in-progress."""

    def __init__(self, outcome: str, reason: str | None = None) -> None:
        if outcome not in ("busy", "no-answer", "failed"):
            raise ValueError(f"outcome must be busy, no-answer or failed, got {outcome!r}")
        self.outcome = outcome
        self.reason = reason
        self.label = outcome

    def answer(self) -> Answer:
        return Answer(rings=0, outcome=self.outcome, reason=self.reason)

    def exchange(self, heard: np.ndarray) -> np.ndarray:  # pragma: no cover - never answered
        return np.zeros_like(heard)


class SoundCardCallee(Callee):
    """A person at the computer: the platform's audio goes to the speakers, the microphone (plus the keys
    typed on the desktop phone, as real tones) is the callee's side of the line, and the sound card's own
    clock paces the call. Only a process with a desktop phone (``ivrsim phone``, or ``ivrsim serve
    --answer soundcard``) can answer; anywhere else the call fails with a reason that says where to go."""

    label = "soundcard"

    def __init__(self) -> None:
        self.line: PhoneLine | None = None
        self._busy: str | None = None

    async def prepare(self, context: CalleeContext) -> None:
        self.rate_hz = context.rate_hz
        if context.phone is None:
            raise IvrsimError(
                "no desktop phone answers in this process: calls to the sound card ring `ivrsim phone` (run it on the "
                "machine with the sound card, beside the server) or every call with `ivrsim serve --answer soundcard`"
            )
        frame_samples = int(round(context.rate_hz * FRAME_S))
        try:
            self.line = await asyncio.to_thread(context.phone.open_line, context.call_id, context.rate_hz, frame_samples)
        except CalleeBusyError as error:
            self._busy = str(error)
            return
        self.clock = self.line.clock

    def answer(self) -> Answer:
        if self._busy is not None:
            return Answer(rings=0, outcome="busy", reason=self._busy)
        return Answer(rings=1)

    async def ring(self, clock: Clock, timeout_frames: int) -> Pickup:
        assert self.line is not None, "prepare() opens the line"
        return await self.line.ring(timeout_frames)

    def exchange(self, heard: np.ndarray) -> np.ndarray:
        assert self.line is not None, "prepare() opens the line"
        back = self.line.exchange(heard)
        self.hung_up = self.line.hung_up  # the person's hang-up key, as of this frame
        return back

    def report(self) -> list[tuple[str, dict[str, Any]]]:
        return self.line.report() if self.line is not None else []

    def close(self) -> None:
        if self.line is not None:
            self.line.close()


# -- scripted callers -------------------------------------------------------------------------------------


@dataclass
class _Step:
    kind: str
    params: dict[str, Any]
    audio: np.ndarray | None = None
    #: What a wait_for_phrase step listens with, and for (normalised words, space-padded).
    stream: RecognizerStream | None = None
    phrase: str = ""


_STEP_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "wait_for_prompt": {"silence_ms": (int, float), "timeout_s": (int, float), "threshold_dbm0": (int, float)},
    "wait_for_phrase": {"text": str, "timeout_s": (int, float), "language": str, "on_timeout": str},
    "press": {"digits": (str, int), "on_ms": (int, float), "off_ms": (int, float), "level_dbm0": (int, float), "twist_db": (int, float)},
    "say": {"text": str, "voice": str, "speed": (int, float), "pitch": (int, float)},
    "play": {"file": str},
    "pause": {"seconds": (int, float)},
    "hangup": {},
    "listen": {"seconds": (int, float)},
}
_REQUIRED = {"press": ("digits",), "say": ("text",), "play": ("file",), "pause": ("seconds",), "wait_for_phrase": ("text",)}
#: Silence that ends an utterance a caller listens to for its phrase, in seconds.
PHRASE_END_SILENCE_S = 0.4


class ScriptedCaller(Callee):
    """A caller that follows a script of steps (module docstring); deterministic frame by frame."""

    def __init__(self, name: str, answer_after_rings: int, steps: list[_Step], folder: Path | None = None) -> None:
        self.label = name
        self.answer_after_rings = answer_after_rings
        self.steps = steps
        self.folder = folder
        self.hung_up = False
        self._index = 0
        self._position = 0
        self._heard_speech = False
        self._silent_frames = 0
        self._frames_in_step = 0
        #: What the caller did, as (step kind, frame index when it started): for tests and reports.
        self.timeline: list[tuple[str, int]] = []
        self._frame_count = 0

    @classmethod
    def from_file(cls, path: str | Path, catalog: VoiceCatalog | None = None) -> ScriptedCaller:
        path = Path(path)
        return cls.from_dict(read_script(path), source=str(path), folder=path.parent, catalog=catalog)

    @classmethod
    def from_dict(
        cls, document: Any, source: str = "script", folder: Path | None = None, catalog: VoiceCatalog | None = None, decode_audio: bool = True
    ) -> ScriptedCaller:
        """Parse and check a script: every step's settings, ``say`` voices against ``catalog`` (when given)
        and ``play`` files (relative to ``folder``), so a bad script fails when it loads, not in a call.
        ``decode_audio=False`` checks only that play files exist: for a callee made per call on the event
        loop, whose files were decoded when the phonebook loaded and are decoded again, off the loop, by
        ``prepare``."""
        if not isinstance(document, dict):
            raise ScriptError(f"{source}: a caller script is a mapping with name, answer_after_rings and steps")
        unknown = set(document) - {"name", "description", "answer_after_rings", "steps"}
        if unknown:
            raise ScriptError(f"{source}: unknown key(s) {sorted(unknown)}; use name, description, answer_after_rings, steps")
        rings = document.get("answer_after_rings", 1)
        if not isinstance(rings, int) or isinstance(rings, bool) or not 0 <= rings <= 20:
            raise ScriptError(f"{source}: answer_after_rings must be a whole number from 0 to 20, got {rings!r}")
        raw_steps = document.get("steps", [])
        if not isinstance(raw_steps, list):
            raise ScriptError(f"{source}: steps must be a list")
        steps = [_parse_step(raw, f"{source}: step {i + 1}") for i, raw in enumerate(raw_steps)]
        for i, step in enumerate(steps):
            _check_step(step, f"{source}: step {i + 1}", folder, catalog, decode_audio)
        return cls(str(document.get("name", Path(source).stem)), rings, steps, folder)

    def answer(self) -> Answer:
        return Answer(rings=self.answer_after_rings)

    async def prepare(self, context: CalleeContext) -> None:
        self.rate_hz = context.rate_hz
        for step in self.steps:
            if step.kind == "press":
                p = step.params
                spec = DtmfToneSpec(
                    on_ms=float(p.get("on_ms", 100)),
                    off_ms=float(p.get("off_ms", 100)),
                    level_dbm0=float(p.get("level_dbm0", -10.0)),
                    twist_db=float(p.get("twist_db", 0.0)),
                )
                step.audio = generate_dtmf(str(p["digits"]), context.rate_hz, spec)
            elif step.kind == "say":
                if context.synthesizer is None:
                    raise ScriptError(f"{self.label}: a 'say' step needs the TTS engine")
                p = step.params
                request = TtsRequest(
                    text=p["text"], voice=p.get("voice"), speed=float(p.get("speed", 1.0)), pitch=float(p.get("pitch", 0.0)), rate_hz=context.rate_hz
                )
                step.audio = (await context.synthesizer.synthesize_async(request)).samples
            elif step.kind == "wait_for_phrase":
                if context.speech is None:
                    raise ScriptError(f"{self.label}: a 'wait_for_phrase' step needs speech recognition")
                language = step.params.get("language", context.language)
                english = language.lower().startswith("en")
                try:  # a model loads in seconds, a grammar compiles: off the event loop
                    engine = await asyncio.to_thread(context.speech.engine_for, language)
                    hints = listening_hints(step.params["text"], english)
                    step.phrase = f" {' '.join(normalise_phrase(step.params['text'], english))} "
                    step.stream = await asyncio.to_thread(partial(engine.stream, context.rate_hz, hints, PHRASE_END_SILENCE_S, repeat=True))
                except AsrError as error:
                    raise ScriptError(f"{self.label}: wait_for_phrase {step.params['text']!r}: {error}") from error
            elif step.kind == "play":
                file = Path(step.params["file"])
                if not file.is_absolute() and self.folder is not None:
                    file = self.folder / file
                try:  # decoding and resampling take long enough to hold up every call: off the event loop
                    step.audio = await asyncio.to_thread(_mono_at, file, context.rate_hz)
                except AudioFileError as error:
                    raise ScriptError(f"{self.label}: play step: {error}") from error

    def exchange(self, heard: np.ndarray) -> np.ndarray:
        out = np.zeros(len(heard), dtype=np.float32)
        if self._frame_count == 0 and self.steps:
            self.timeline.append((self.steps[0].kind, 0))
        filled = 0
        while filled < len(out) and not self.hung_up:
            if self._index >= len(self.steps):
                break  # stay on the line, silent
            step = self.steps[self._index]
            if step.audio is not None:
                chunk = step.audio[self._position : self._position + len(out) - filled]
                out[filled : filled + len(chunk)] = chunk
                filled += len(chunk)
                self._position += len(chunk)
                if self._position >= len(step.audio):
                    self._next()
                continue
            if step.kind == "hangup":
                self.hung_up = True
                break
            self._timed_step(step, heard)  # waits and pauses last whole frames: the next step starts next frame
            break
        self._frame_count += 1
        return out

    def _timed_step(self, step: _Step, heard: np.ndarray) -> None:
        """Advance a step that lasts whole frames (wait_for_prompt, pause, listen) by one frame."""
        frame_s = len(heard) / self.rate_hz
        self._frames_in_step += 1
        elapsed_s = self._frames_in_step * frame_s
        if step.kind == "wait_for_prompt":
            p = step.params
            level = power_to_dbm0(float(np.mean(heard.astype(np.float64) ** 2))) if len(heard) else -math.inf
            if level > float(p.get("threshold_dbm0", SILENCE_THRESHOLD_DBM0)):
                self._heard_speech = True
                self._silent_frames = 0
            elif self._heard_speech:
                self._silent_frames += 1
            silence_s = self._silent_frames * frame_s
            if (self._heard_speech and silence_s >= float(p.get("silence_ms", 800)) / 1000.0) or elapsed_s >= float(p.get("timeout_s", 30)):
                self._next()
        elif step.kind == "wait_for_phrase":
            assert step.stream is not None, "prepare() makes the stream"
            for result in step.stream.accept(heard):
                if result.final and step.phrase in f" {' '.join(normalise_phrase(result.text))} ":
                    self._next()
                    return
            if elapsed_s >= float(step.params.get("timeout_s", 30)):
                if step.params.get("on_timeout", "continue") == "hangup":
                    self.hung_up = True  # a test call then ends "the callee hung up", its gather with reason hangup
                self._next()
        elif step.kind in ("pause", "listen"):
            seconds = step.params.get("seconds")
            if seconds is not None and elapsed_s >= float(seconds):
                self._next()

    def _next(self) -> None:
        done = self.steps[self._index] if self._index < len(self.steps) else None
        if done is not None and done.stream is not None:
            done.stream.close()  # heard or timed out: its recognizer is not needed any more
        self._index += 1
        self._position = 0
        self._frames_in_step = 0
        self._heard_speech = False
        self._silent_frames = 0
        if self._index < len(self.steps):
            self.timeline.append((self.steps[self._index].kind, self._frame_count))


def read_script(path: Path) -> Any:
    """A caller script's YAML document; ScriptError names the file when it cannot be read or parsed."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScriptError(f"caller script {path}: cannot be read ({error.strerror})") from error
    except yaml.YAMLError as error:
        raise ScriptError(f"caller script {path}: not valid YAML ({error})") from error


def check_voice(catalog: VoiceCatalog, voice: str | None, where: str) -> None:
    """ScriptError naming ``where`` when ``voice`` is not in the catalog (with the closest ids)."""
    try:
        catalog.get(voice)
    except UnknownVoiceError as error:
        raise ScriptError(f"{where}: {error}") from None


def _mono_at(file: Path, rate_hz: int) -> np.ndarray:
    """An audio file decoded, averaged to mono and resampled to ``rate_hz`` (blocking: run it in a thread)."""
    clip = read_audio_file(file)
    return resample(clip.samples.mean(axis=1), clip.rate_hz, rate_hz)


def _check_step(step: _Step, where: str, folder: Path | None, catalog: VoiceCatalog | None, decode_audio: bool = True) -> None:
    """What a step refers to exists: a say step's voice and settings, a play step's file (which decodes,
    unless ``decode_audio`` is False)."""
    p = step.params
    if step.kind == "say":
        if catalog is not None:
            check_voice(catalog, p.get("voice"), f"{where}: say.voice")
        speed, pitch = p.get("speed", 1.0), p.get("pitch", 0.0)
        if not (math.isfinite(speed) and SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]):
            raise ScriptError(f"{where}: say.speed must be from {SPEED_RANGE[0]} to {SPEED_RANGE[1]} (1.0 is normal), got {speed}")
        if not (math.isfinite(pitch) and PITCH_RANGE_ST[0] <= pitch <= PITCH_RANGE_ST[1]):
            raise ScriptError(f"{where}: say.pitch must be from {PITCH_RANGE_ST[0]:g} to {PITCH_RANGE_ST[1]:g} semitones, got {pitch}")
    elif step.kind == "play":
        file = Path(p["file"])
        if not file.is_absolute() and folder is not None:
            file = folder / file
        if not file.is_file():
            raise ScriptError(f"{where}: play.file {p['file']!r}: no such file ({file}); put the audio there or fix the path "
                              "(a relative path starts at the script's folder)")
        if not decode_audio:
            return
        try:
            read_audio_file(file)
        except AudioFileError as error:
            raise ScriptError(f"{where}: play.file: {error}; give a WAV, FLAC, OGG or MP3 file") from None


def _parse_step(raw: Any, where: str) -> _Step:
    if isinstance(raw, str) and raw in ("hangup", "listen"):
        raw = {raw: {}}
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ScriptError(f"{where}: a step is one of {', '.join(_STEP_FIELDS)} with its settings, e.g. press: {{digits: '1'}}")
    kind, params = next(iter(raw.items()))
    if kind not in _STEP_FIELDS:
        raise ScriptError(f"{where}: unknown step {kind!r}; use one of {', '.join(_STEP_FIELDS)}")
    if params is None:
        params = {}
    if kind == "press" and isinstance(params, (str, int)):
        params = {"digits": str(params)}
    if kind == "say" and isinstance(params, str):
        params = {"text": params}
    if not isinstance(params, dict):
        raise ScriptError(f"{where}: {kind} takes a mapping of settings")
    fields = _STEP_FIELDS[kind]
    for name, value in params.items():
        if name not in fields:
            raise ScriptError(f"{where}: {kind} has no setting {name!r}; use {', '.join(fields) or 'none'}")
        if not isinstance(value, fields[name]) or isinstance(value, bool):
            raise ScriptError(f"{where}: {kind}.{name} has the wrong type ({type(value).__name__})")
    for name in _REQUIRED.get(kind, ()):
        if name not in params:
            raise ScriptError(f"{where}: {kind} needs {name!r}")
    if kind == "wait_for_phrase" and params.get("on_timeout", "continue") not in ("continue", "hangup"):
        raise ScriptError(f"{where}: wait_for_phrase.on_timeout must be 'continue' or 'hangup', got {params['on_timeout']!r}")
    if kind == "press":
        try:
            params = {**params, "digits": validate_digits(str(params["digits"]))}
        except ValueError as error:
            raise ScriptError(f"{where}: press.digits: {error}") from None
    for name in ("seconds", "timeout_s", "silence_ms", "on_ms"):
        if name in params and not (math.isfinite(params[name]) and params[name] >= 0):
            raise ScriptError(f"{where}: {kind}.{name} must be a non-negative number")
    return _Step(kind, dict(params))


# -- fixtures and machines --------------------------------------------------------------------------------


class _PlaysAudio(Callee):
    """Plays audio prepared before the answer, from the moment of answer, then silence; hangs up
    ``hangup_after_s`` seconds after the audio ends (never, if None)."""

    def __init__(self, label: str, answer_after_rings: int, hangup_after_s: float | None) -> None:
        self.label = label
        self.answer_after_rings = answer_after_rings
        self.hangup_after_s = hangup_after_s
        self.hung_up = False
        self._audio = np.zeros(0, dtype=np.float32)
        self._position = 0

    def answer(self) -> Answer:
        return Answer(rings=self.answer_after_rings)

    def exchange(self, heard: np.ndarray) -> np.ndarray:
        chunk = self._audio[self._position : self._position + len(heard)]
        self._position += len(heard)
        out = np.zeros(len(heard), dtype=np.float32)
        out[: len(chunk)] = chunk
        if self.hangup_after_s is not None and self._position >= len(self._audio) + self.hangup_after_s * self.rate_hz:
            self.hung_up = True
        return out


class AudioFixture(_PlaysAudio):
    """The callee's side is a recording: played from the moment of answer, then silence (or hang-up)."""

    def __init__(self, file: Path, answer_after_rings: int = 1, hangup_at_end: bool = False) -> None:
        super().__init__(f"fixture:{file.name}", answer_after_rings, 0.0 if hangup_at_end else None)
        self.file = file

    async def prepare(self, context: CalleeContext) -> None:
        self.rate_hz = context.rate_hz
        self._audio = await asyncio.to_thread(_mono_at, self.file, context.rate_hz)  # off the event loop


class AnsweringMachine(_PlaysAudio):
    """Answers, plays a spoken greeting and a 1 kHz beep, then takes a message until the platform hangs up
    (or ``max_message_s`` passes)."""

    BEEP_HZ = 1000.0
    BEEP_S = 0.5

    def __init__(self, greeting: str, answer_after_rings: int = 3, voice: str | None = None, max_message_s: float = 60.0) -> None:
        super().__init__("answering-machine", answer_after_rings, max_message_s)
        self.greeting = greeting
        self.voice = voice

    async def prepare(self, context: CalleeContext) -> None:
        self.rate_hz = context.rate_hz
        if context.synthesizer is None:
            raise ScriptError("an answering machine needs the TTS engine for its greeting")
        greeting = (await context.synthesizer.synthesize_async(TtsRequest(self.greeting, voice=self.voice, rate_hz=context.rate_hz))).samples
        t = np.arange(int(self.BEEP_S * context.rate_hz)) / context.rate_hz
        beep = (dbm0_to_amplitude(-10.0) * np.sin(2 * np.pi * self.BEEP_HZ * t)).astype(np.float32)
        gap = np.zeros(int(0.3 * context.rate_hz), dtype=np.float32)
        self._audio = np.concatenate([greeting, gap, beep])


# -- phonebook --------------------------------------------------------------------------------------------


class EntryError(ScriptError):
    """A run-time phonebook entry is refused; ``param`` names its field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


#: Kinds of callee ``Phonebook.register`` accepts (none of them reads a file), and their fields.
RUNTIME_FIELDS: dict[str, tuple[str, ...]] = {
    "scripted": ("kind", "script"),
    "machine": ("kind", "greeting", "voice", "answer_after_rings", "max_message_s"),
    "busy": ("kind", "reason"),
    "no-answer": ("kind", "reason"),
    "failed": ("kind", "reason"),
}
RUNTIME_KINDS = tuple(RUNTIME_FIELDS)


def _whole_rings(document: dict[str, Any]) -> dict[str, Any]:
    """``answer_after_rings`` 3.0 (JSON's number) as 3."""
    rings = document.get("answer_after_rings")
    if isinstance(rings, float) and rings.is_integer():
        return {**document, "answer_after_rings": int(rings)}
    return document


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line for a YAML error: where (1-based line and column) and what, without PyYAML's quoted excerpt."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or "cannot be parsed"
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML{where}: {' '.join(str(problem).split())}; fix the YAML there"


@dataclass
class Phonebook:
    """Who answers which number. Entries are factories, so every call gets a fresh callee."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    default: dict[str, Any] = field(default_factory=lambda: {"kind": "scripted", "script": {"name": "listener", "answer_after_rings": 1, "steps": []}})
    folder: Path | None = None
    #: Parsed caller scripts by path, with the modification time they were read at: a script edited while
    #: the server runs is read again, an unchanged one is not read for every call.
    _scripts: dict[Path, tuple[float, Any]] = field(default_factory=dict, repr=False)
    #: Voices that scripts and machines may use; checked when the phonebook loads.
    catalog: VoiceCatalog | None = field(default=None, repr=False)
    #: Callers registered at run time (``PUT /_sim/phonebook/{number}``), checked by ``register``; they
    #: answer before ``entries`` and travel with each call (``CallRequest.callee``) to worker processes.
    registered: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def default_book(cls, catalog: VoiceCatalog | None = None) -> Phonebook:
        """The phonebook that ships in ``samples/phonebook.yaml``."""
        return cls.load(DEFAULT_PHONEBOOK, catalog)

    @classmethod
    def load(cls, path: str | Path, catalog: VoiceCatalog | None = None) -> Phonebook:
        """Read and check a phonebook: every entry, its caller script, voices and audio files; ScriptError
        names the file, the number, the step and the fix."""
        path = Path(path)
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as error:
            raise ScriptError(f"phonebook {path}: cannot be read ({error.strerror})") from error
        except yaml.YAMLError as error:
            raise ScriptError(f"phonebook {path}: {_yaml_problem(error)}") from None
        if not isinstance(document, dict) or not isinstance(document.get("numbers", {}), dict):
            raise ScriptError(f"phonebook {path}: expected a mapping with 'numbers' (and optionally 'default')")
        unknown = sorted(str(k) for k in document if k not in ("numbers", "default"))
        if unknown:
            raise ScriptError(f"phonebook {path}: unknown top-level key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                              "a phonebook has 'numbers' (a mapping of E.164 numbers to entries) and optionally 'default'")
        if "numbers" not in document:
            raise ScriptError(f"phonebook {path}: no 'numbers'; add 'numbers:' mapping E.164 numbers to entries (it may be empty: numbers: {{}})")
        book = cls(entries={str(k): v for k, v in (document.get("numbers") or {}).items()}, folder=path.parent,
                   catalog=catalog or VoiceCatalog.load())
        if "default" in document:
            book.default = document["default"]
        for number, entry in [("default", book.default), *book.entries.items()]:
            book.callee_for_entry(entry, where=f"phonebook {path}: {number}")  # validate now, fail at load
        return book

    def callee_for(self, number: str) -> Callee:
        """A fresh callee for ``number``. Runs on the event loop for every call, so audio files are not
        decoded here: ``load`` decoded them, and the callee's ``prepare`` does again, in a thread."""
        entry = self.entries.get(number, self.default)
        return self.callee_for_entry(entry, where=f"phonebook entry {number}", decode_audio=False)

    def kind_of(self, number: str) -> str:
        """The kind of callee that answers ``number`` (``scripted``, ``soundcard``, ...)."""
        entry = self.entries.get(number, self.default)
        return str(entry.get("kind", "")) if isinstance(entry, dict) else ""

    def _script(self, path: Path) -> Any:
        try:
            modified = path.stat().st_mtime
        except OSError as error:
            raise ScriptError(f"caller script {path}: cannot be read ({error.strerror})") from error
        cached = self._scripts.get(path)
        if cached is None or cached[0] != modified:
            cached = self._scripts[path] = (modified, read_script(path))
        return cached[1]

    def describe(self) -> dict[str, Any]:
        return {"default": self.default, "numbers": self.entries, "registered": self.registered}

    def register(self, number: str, entry: Any) -> None:
        """Register a run-time callee for ``number``: only what needs no file (inline scripts without
        ``play`` steps, machines, forced outcomes), so that nothing from the network names a file on this
        machine; ScriptError names the step and field."""
        where = f"phonebook entry {number}"
        if not isinstance(entry, dict) or "kind" not in entry:
            raise ScriptError(f"{where}: an entry needs a kind: scripted, machine, busy, no-answer or failed")
        kind = entry["kind"]
        if kind not in RUNTIME_KINDS:
            raise ScriptError(f"{where}: kind {kind!r} cannot be registered at run time; use {', '.join(RUNTIME_KINDS)} "
                              "(fixtures and sound cards go in the phonebook file)")
        allowed = RUNTIME_FIELDS[kind]
        unknown = sorted(str(k) for k in entry if k not in allowed)
        if unknown:
            raise EntryError(f"{where}: a {kind} entry has no field {unknown[0]!r}; use {', '.join(allowed)}", unknown[0])
        for name, max_chars in (("reason", 500), ("greeting", 2000)):
            if name in entry and not (isinstance(entry[name], str) and len(entry[name]) <= max_chars):
                raise EntryError(f"{where}: {name} must be text of at most {max_chars} characters", name)
        if kind == "machine" and "max_message_s" in entry and not (isinstance(entry["max_message_s"], (int, float))
                                                                    and 0 < entry["max_message_s"] <= 3600):
            raise EntryError(f"{where}: max_message_s must be a number of seconds above 0, at most 3600", "max_message_s")
        entry = _whole_rings(entry)
        rings = entry.get("answer_after_rings", 1)
        if kind == "machine" and not (isinstance(rings, int) and not isinstance(rings, bool) and 0 <= rings <= 20):
            raise EntryError(f"{where}: answer_after_rings must be a whole number from 0 to 20, got {rings!r}", "answer_after_rings")
        if kind == "scripted" and isinstance(entry.get("script"), dict):
            entry = {**entry, "script": _whole_rings(entry["script"])}
        if kind == "scripted":
            script = entry.get("script")
            if not isinstance(script, dict):
                raise ScriptError(f"{where}: script must be an inline caller script (a mapping with steps), not a file path")
            for name in ("name", "description"):
                if name in script and not isinstance(script[name], str):
                    raise EntryError(f"{where}: script.{name} must be text", f"script.{name}")
            steps = script.get("steps", [])
            for index, step in enumerate(steps if isinstance(steps, list) else []):
                if step == "play" or (isinstance(step, dict) and "play" in step):
                    raise ScriptError(f"{where}: step {index + 1}: play.file is refused at run time (it names a file on the server); "
                                      "use say, or put the caller in the phonebook file")
        if kind == "machine":
            for name, types in (("answer_after_rings", int), ("max_message_s", (int, float)), ("greeting", str), ("voice", str)):
                if name in entry and (not isinstance(entry[name], types) or isinstance(entry[name], bool)):
                    raise EntryError(f"{where}: {name} has the wrong type ({type(entry[name]).__name__})", name)
        self.callee_for_entry(entry, where=where, decode_audio=False)
        self.registered[number] = entry

    def unregister(self, number: str) -> bool:
        """Forget the run-time callee of ``number``; False when there was none."""
        return self.registered.pop(number, None) is not None

    def callee_for_entry(self, entry: Any, where: str, decode_audio: bool = True) -> Callee:
        if not isinstance(entry, dict) or "kind" not in entry:
            raise ScriptError(f"{where}: an entry needs a kind: scripted, fixture, machine, busy, no-answer, failed or soundcard")
        kind = entry["kind"]
        if kind == "scripted":
            script = entry.get("script")
            if isinstance(script, str):
                file = Path(script)
                if not file.is_absolute() and self.folder is not None:
                    file = self.folder / file
                try:
                    return ScriptedCaller.from_dict(
                        self._script(file), source=f"caller script {file}", folder=file.parent, catalog=self.catalog, decode_audio=decode_audio
                    )
                except ScriptError as error:
                    raise ScriptError(f"{where}: {error}") from None
            if isinstance(script, dict):
                return ScriptedCaller.from_dict(script, source=where, folder=self.folder, catalog=self.catalog, decode_audio=decode_audio)
            raise ScriptError(f"{where}: a scripted entry needs 'script': a file path or an inline script")
        if kind == "fixture":
            file = Path(str(entry.get("file", "")))
            if not file.is_absolute() and self.folder is not None:
                file = self.folder / file
            if not file.is_file():
                raise ScriptError(f"{where}: fixture file {file} does not exist")
            return AudioFixture(file, int(entry.get("answer_after_rings", 1)), bool(entry.get("hangup_at_end", False)))
        if kind == "machine":
            if self.catalog is not None and entry.get("voice") is not None:
                check_voice(self.catalog, str(entry["voice"]), f"{where}: voice")
            return AnsweringMachine(
                str(entry.get("greeting", "Hello, you have reached the voicemail of a simulated phone. Please leave a message after the tone.")),
                int(entry.get("answer_after_rings", 3)),
                entry.get("voice"),
                float(entry.get("max_message_s", 60.0)),
            )
        if kind in ("busy", "no-answer", "failed"):
            return ForcedOutcome(kind, entry.get("reason"))
        if kind == "soundcard":
            return SoundCardCallee()
        raise ScriptError(f"{where}: unknown kind {kind!r}; use scripted, fixture, machine, busy, no-answer, failed or soundcard")

"""What the platform side of a call does, as small composable actions run frame by frame.

An action produces the platform's audio one frame at a time and hears the digits the DTMF receiver
decodes. A Canary request becomes a short program of them (``program_for``): the prompt (say and/or
play), wrapped in a gather when the request has one, then hang-up. The IVR builder composes the same
actions into branching flows.

Gather follows the Canary document and Twilio's behaviour where the document is silent: digits pressed
during the prompt stop it and count (barge-in) unless ``barge_in`` is off, in which case they are ignored
until the prompt has ended; the timeout starts when the prompt ends and starts again after each digit;
it ends on ``finish_on_key`` (not included in the digits), on ``num_digits``, on the timeout, or when the
callee hangs up, and says which in ``reason``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ivrsim.audio.levels import dbm0_to_amplitude, power_to_dbm0
from ivrsim.engine.recorder import CallRecorder

if TYPE_CHECKING:
    from ivrsim.audio.amd import AnsweringMachineDetector
    from ivrsim.audio.dtmf_receiver import DtmfDigit
    from ivrsim.speech.asr.base import Recognition, RecognizerStream


logger = logging.getLogger(__name__)


class CallContext(Protocol):
    """What an action may do to its call: emit events and know the time."""

    frame_samples: int
    rate_hz: int

    @property
    def call_time_s(self) -> float: ...

    def emit(self, event_type: str, **data: Any) -> None: ...


class Waiting:
    """What ``Action.frame`` returns while the action waits on work done off the call's frames (an app's
    webhook, a prompt's TTS). On the virtual and manual clocks the runner awaits ``Action.ready`` and asks
    again in the same frame: call time stands still, so the events fall at the same call times however slow
    the work was. On the realtime and device clocks the line plays silence meanwhile, as a platform does."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "WAITING"


WAITING = Waiting()


class Action:
    """Base: ``frame`` returns the next platform frame, None when the action is over (the next action
    then starts in the same frame), or ``WAITING``. ``digit`` hears each decoded key."""

    def frame(self, call: CallContext) -> np.ndarray | Waiting | None:
        raise NotImplementedError

    async def ready(self) -> None:
        """Return once a ``frame`` that returned ``WAITING`` may be asked again (bounded by the action)."""

    async def end(self, call: CallContext) -> None:
        """The call is over (either side hung up, or it reached its maximum length): finish what the action
        does, emitting its last events before the call's own."""

    def close(self) -> None:
        """Let go of what the action holds (tasks, files); called once the call has ended, however it ended."""

    def digit(self, call: CallContext, digit: DtmfDigit) -> None:
        """Digits outside a gather are only reported (``dtmf.received``), not acted on."""

    def heard(self, call: CallContext, received: np.ndarray) -> None:
        """One frame of what the callee sent, as the platform received it."""

    def hangup(self, call: CallContext) -> None:
        """The callee hung up while this action ran."""


@dataclass
class PlayAudio(Action):
    """Say (TTS) or play (audio_url) a prompt that was rendered before the call was answered."""

    kind: str
    samples: np.ndarray
    source: str
    warnings: list[str] = field(default_factory=list)
    #: What a "say" prompt says (plain or SSML), reported in ``prompt.started``; None when not known.
    text: str | None = None
    position: int = 0
    started: bool = False
    interrupted: bool = False

    def frame(self, call: CallContext) -> np.ndarray | None:
        if self.interrupted and not self.started:
            return None  # stopped by barge-in before it began: nothing was played
        if not self.started:
            self.started = True
            facts: dict[str, Any] = {"kind": self.kind, "source": self.source, "duration_s": round(len(self.samples) / call.rate_hz, 3)}
            if self.text is not None:
                facts["text"] = self.text
            call.emit("prompt.started", **facts)
            for warning in self.warnings:
                call.emit("prompt.warning", kind=self.kind, warning=warning)
        if self.interrupted or self.position >= len(self.samples):
            call.emit("prompt.completed", kind=self.kind, interrupted=self.interrupted)
            return None
        chunk = self.samples[self.position : self.position + call.frame_samples]
        self.position += len(chunk)
        if len(chunk) < call.frame_samples:
            chunk = np.pad(chunk, (0, call.frame_samples - len(chunk)))
        return chunk

    def stop(self) -> None:
        self.interrupted = True


@dataclass
class Pause(Action):
    seconds: float
    frames_done: int = 0

    def frame(self, call: CallContext) -> np.ndarray | None:
        if self.frames_done * call.frame_samples >= round(self.seconds * call.rate_hz):
            return None
        self.frames_done += 1
        return np.zeros(call.frame_samples, dtype=np.float32)


@dataclass
class AwaitMachineDetection(Action):
    """Silence until answering-machine detection has decided, as Twilio's synchronous AMD: the prompt then
    plays to a person or, with ``wait_for_beep``, after a voicemail's beep rather than over its greeting.
    The detector is fed by the runner; its own timeouts bound the wait."""

    detector: AnsweringMachineDetector

    def frame(self, call: CallContext) -> np.ndarray | None:
        if self.detector.result is not None:
            return None
        return np.zeros(call.frame_samples, dtype=np.float32)


@dataclass
class Hangup(Action):
    """Ends the call from the platform side."""

    reason: str = "the platform hung up"
    done: bool = False

    def frame(self, call: CallContext) -> np.ndarray | None:
        self.done = True
        return None


@dataclass
class Gather(Action):
    """Collect DTMF digits, speech, or either, while and after playing ``prompt`` (module docstring).

    Speech (``speech``: a recognizer stream on what the callee sends, made by the runner with the gather's
    hints and speech timeout): speech heard during the prompt stops it (barge-in) unless ``barge_in`` is
    off; the timeout does not run while the callee speaks; the first utterance with words ends the gather
    (``reason`` "speech"), its text and confidence in ``gather.completed``'s ``speech``."""

    prompt: list[PlayAudio]
    num_digits: int | None = None
    finish_on_key: str = "#"
    timeout_s: float = 5.0
    barge_in: bool = True
    input_type: str = "dtmf"
    speech: RecognizerStream | None = None
    #: Call time at which the speech stream's time starts (set when it hears its first frame).
    speech_offset_s: float | None = None
    digits: str = ""
    finished_on_key: str = ""
    reason: str | None = None
    heard_speech: Recognition | None = None
    #: A key was pressed: a "dtmf speech" gather then takes keys only.
    keyed: bool = False
    #: Why speech input is off (no model for the language, an engine that failed), if it is.
    speech_error: str | None = None
    _started: bool = False
    _prompt_index: int = 0
    _waiting_frames: int = 0
    #: Call time a key's tone was decoded during a speech-only gather (its utterance is not speech).
    _tone_heard_at_s: float | None = None

    @property
    def done(self) -> bool:
        return self.reason is not None

    @property
    def takes_digits(self) -> bool:
        return "dtmf" in self.input_type.split()

    def frame(self, call: CallContext) -> np.ndarray | None:
        if not self._started:
            self._started = True
            facts: dict[str, Any] = {
                "input": self.input_type,
                "num_digits": self.num_digits,
                "finish_on_key": self.finish_on_key,
                "timeout": self.timeout_s,
            }
            if self.speech is not None:
                facts.update(engine=self.speech.info.engine, model=self.speech.info.model, language=self.speech.info.language)
            if self.speech_error is not None:
                facts["speech_error"] = self.speech_error
            call.emit("gather.started", **facts)
        if self.done:
            return None
        while self._prompt_index < len(self.prompt):
            out = self.prompt[self._prompt_index].frame(call)
            if out is not None:
                return out
            self._prompt_index += 1
        # Prompt over: wait for input; the timeout runs from the end of the prompt or the last digit, and
        # not while the callee is speaking.
        if self.speech is not None and self.speech.in_speech and not self.keyed:
            self._waiting_frames = 0
        if self._waiting_frames * call.frame_samples >= round(self.timeout_s * call.rate_hz):
            self._complete(call, "timeout")
            return None
        self._waiting_frames += 1
        return np.zeros(call.frame_samples, dtype=np.float32)

    @property
    def prompting(self) -> bool:
        return self._prompt_index < len(self.prompt)

    def _barge_in(self) -> bool:
        """Input during the prompt: stop it (True), or ignore the input (False) when barge-in is off."""
        if not self.prompting:
            return True
        if not self.barge_in:
            return False
        for prompt in self.prompt[self._prompt_index :]:
            prompt.stop()
        return True

    def digit(self, call: CallContext, digit: DtmfDigit) -> None:
        if self.done or not self._started:
            return
        if not self.takes_digits:
            # A speech-only gather ignores keys (as Twilio's input="speech"), and a tone is not speech: what the
            # recognizer heard up to now holds the tone, so that utterance does not count.
            self._tone_heard_at_s = call.call_time_s
            return
        if not self._barge_in():
            return
        key = str(digit.key)
        self._waiting_frames = 0
        self.keyed = True  # keys first: the rest of the input is keys (a tone is not speech)
        if self.finish_on_key and key == self.finish_on_key:
            self.finished_on_key = key
            self._complete(call, "finish_on_key")
            return
        self.digits += key
        if self.num_digits is not None and len(self.digits) >= self.num_digits:
            self._complete(call, "num_digits")

    def heard(self, call: CallContext, received: np.ndarray) -> None:
        if self.speech is None or self.done or not self._started or self.keyed or self.speech_error is not None:
            return
        if self.prompting and not self.barge_in:
            return  # speech during the prompt is not listened to when barge-in is off
        if self.speech_offset_s is None:
            self.speech_offset_s = call.call_time_s - len(received) / call.rate_hz
        try:
            results = self.speech.accept(received)
        except Exception as error:  # noqa: BLE001 - the engine failed: keys still work, the call goes on
            self._speech_failed(error)
            return
        for result in results:
            self._hear(call, result)
        if self.speech.in_speech and self.prompting:
            self._barge_in()

    def _speech_failed(self, error: Exception) -> None:
        logger.exception("a speech gather's recognizer failed")
        self.speech_error = f"the speech engine failed: {type(error).__name__}: {error}"

    def _hear(self, call: CallContext, result: Recognition) -> None:
        if self.done or not result.final or not result.text:
            return  # partials, and utterances without words (a cough, line noise), do not end a gather
        if self._tone_heard_at_s is not None and (self.speech_offset_s or 0.0) + result.start_s <= self._tone_heard_at_s:
            return  # it began before a key's tone was decoded: the "words" are the tone
        self.heard_speech = result
        self._complete(call, "speech")

    def hangup(self, call: CallContext) -> None:
        if not self.done and self.speech is not None and not self.keyed and self.speech_error is None:
            try:
                results = self.speech.finish()
            except Exception as error:  # noqa: BLE001 - as in heard
                self._speech_failed(error)
                results = []
            for result in results:
                self._hear(call, result)
        if not self.done:
            self._complete(call, "hangup")

    def _complete(self, call: CallContext, reason: str) -> None:
        self.reason = reason
        facts: dict[str, Any] = {"digits": self.digits, "finished_on_key": self.finished_on_key, "reason": reason}
        if self.speech is not None:
            heard = self.heard_speech
            offset_s = self.speech_offset_s or 0.0
            facts["speech"] = {
                "text": heard.text if heard is not None else "",
                "confidence": round(heard.confidence, 3) if heard is not None else 0.0,
                **({"start_s": round(offset_s + heard.start_s, 3), "end_s": round(offset_s + heard.end_s, 3)} if heard is not None else {}),
                "engine": self.speech.info.engine,
                "model": self.speech.info.model,
                "language": self.speech.info.language,
                **({"error": self.speech_error} if self.speech_error is not None else {}),
            }
            self.speech.close()  # its recognizer is not needed for the rest of the call
        call.emit("gather.completed", **facts)


@dataclass
class RecordMessage(Action):
    """Record what the callee says (a voicemail), as Twilio's <Record>: an optional beep, then the callee's
    side into a mono WAV until ``finish_on_key``, ``silence_timeout_s`` of silence after speech (or from
    the start, if nothing is said), ``max_length_s``, or hang-up. Emits ``record.started`` and
    ``record.completed`` with the recording's id, duration in seconds, path and reason."""

    path: Path
    recording_id: str
    max_length_s: float = 60.0
    silence_timeout_s: float = 5.0
    finish_on_key: str = "#"
    beep: bool = True
    silence_threshold_dbm0: float = -45.0
    _recorder: CallRecorder | None = None
    _beep: np.ndarray | None = None
    _beep_position: int = 0
    _silent_frames: int = 0
    _frames: int = 0
    reason: str | None = None
    #: The key that ended the recording ("" when something else did).
    finished_on_key: str = ""

    BEEP_HZ = 1000.0
    BEEP_S = 0.4

    def frame(self, call: CallContext) -> np.ndarray | None:
        if self._beep is None:
            t = np.arange(int(self.BEEP_S * call.rate_hz)) / call.rate_hz
            level = dbm0_to_amplitude(-10.0) if self.beep else 0.0
            self._beep = (level * np.sin(2 * math.pi * self.BEEP_HZ * t)).astype(np.float32) if self.beep else np.zeros(0, np.float32)
            call.emit("record.started", recording_id=self.recording_id)
        if self.reason is not None:
            return None
        if self._beep_position < len(self._beep):
            chunk = self._beep[self._beep_position : self._beep_position + call.frame_samples]
            self._beep_position += len(chunk)
            return np.pad(chunk, (0, call.frame_samples - len(chunk)))
        if self._recorder is None:
            self._recorder = CallRecorder(self.path, call.rate_hz, "mono")
        return np.zeros(call.frame_samples, dtype=np.float32)

    def heard(self, call: CallContext, received: np.ndarray) -> None:
        if self._recorder is None or self.reason is not None:
            return
        self._recorder.write(np.zeros_like(received), received)
        self._frames += 1
        level = power_to_dbm0(float(np.mean(received.astype(np.float64) ** 2)))
        self._silent_frames = 0 if level > self.silence_threshold_dbm0 else self._silent_frames + 1
        frame_s = len(received) / call.rate_hz
        if self._silent_frames * frame_s >= self.silence_timeout_s:
            self._finish(call, "silence")
        elif self._frames * frame_s >= self.max_length_s:
            self._finish(call, "max_length")

    def digit(self, call: CallContext, digit: DtmfDigit) -> None:
        # ``finish_on_key`` may list several keys (TwiML's default is any of "1234567890*#")
        if self.finish_on_key and str(digit.key) in self.finish_on_key and self._recorder is not None and self.reason is None:
            self.finished_on_key = str(digit.key)
            self._finish(call, "finish_on_key")

    def hangup(self, call: CallContext) -> None:
        if self.reason is None:
            self._finish(call, "hangup")

    def close(self) -> None:
        """A call that ended however it did leaves no file open (the WAV's header is written on close)."""
        if self._recorder is not None:
            self._recorder.close()

    @property
    def duration_s(self) -> float:
        """Seconds recorded so far (0 before the beep has ended)."""
        return self._recorder.duration_s if self._recorder is not None else 0.0

    def _finish(self, call: CallContext, reason: str) -> None:
        self.reason = reason
        duration_s = 0.0
        if self._recorder is not None:
            self._recorder.close()
            duration_s = self._recorder.duration_s
        call.emit("record.completed", recording_id=self.recording_id, duration=round(duration_s, 3), path=str(self.path), reason=reason)

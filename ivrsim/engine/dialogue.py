"""Calls whose next step is decided while they run: an IVR flow (``ivrsim.flows``) or a web app's TwiML
(``ivrsim.flows.twiml``), written as a coroutine over a ``Conversation``.

The coroutine awaits what the call does (``say``, ``play``, ``gather``, ``record``, ``pause``) and decides
between them; ``DialogueAction`` runs each action it asks for frame by frame, in the call, as any other
action (barge-in, the receiver's digits, the recorder, the line all work as for a Canary prompt). Between
two actions the coroutine may await work off the frames (an app's webhook, a prompt's TTS): the action's
frame is then ``WAITING`` (``ivrsim.engine.actions``), so call time stands still on the virtual and manual
clocks and the line plays silence on the realtime and device clocks.

When the call ends under it (a hang-up, the maximum length), the action it awaits raises ``CallEnded`` in
the coroutine, which may still emit its last events (``flow.completed``) before the call's own. An error
the coroutine raises on purpose (``DialogueError``: an app that answered badly) ends the call ``failed``
with its reason; the recording so far is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ivrsim.audio.dtmf_generator import DtmfToneSpec, generate_dtmf
from ivrsim.engine.actions import WAITING, Action, CallContext, Gather, Pause, PlayAudio, RecordMessage, Waiting
from ivrsim.engine.recorder import recording_id_for, recording_url
from ivrsim.exceptions import IvrsimError
from ivrsim.speech.tts import TtsRequest

if TYPE_CHECKING:
    from ivrsim.audio.dtmf_receiver import DtmfDigit
    from ivrsim.engine.callees import Phonebook
    from ivrsim.engine.job import CallRequest, EngineSettings
    from ivrsim.engine.output import CallOutput
    from ivrsim.media.audio_url import AudioUrlLoader
    from ivrsim.speech.asr.engines import SpeechEngines
    from ivrsim.speech.tts import SpeechSynthesizer
    from ivrsim.webhooks.app_client import AppClient

logger = logging.getLogger(__name__)

#: Longest the end of a call waits for a dialogue to emit its last events, in seconds.
END_GRACE_S = 5.0


class DialogueError(IvrsimError):
    """The app (a flow, a TwiML document) cannot go on: the call ends ``failed`` with this reason, which
    names the node, verb or line and the fix."""

    code = "dialogue_failed"


class CallEnded(Exception):  # noqa: N818 - a signal, as asyncio.CancelledError
    """Raised in a dialogue when its call ended under it (``reason`` says how); only last events may follow."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class GatherResult:
    """What a gather heard: ``digits`` (without the finishing key), ``speech`` text and its ``confidence``
    (0..1), and ``reason``: num_digits, finish_on_key, timeout, speech or hangup."""

    digits: str
    reason: str
    finished_on_key: str = ""
    speech: str = ""
    confidence: float = 0.0

    @property
    def heard_anything(self) -> bool:
        return bool(self.digits or self.speech)


@dataclass(frozen=True)
class RecordResult:
    """A message recorded by ``Conversation.record``: its id, URL, length and why it ended."""

    recording_id: str
    url: str
    duration_s: float
    reason: str
    digits: str = ""


@dataclass
class DialogueServices:
    """What a dialogue's actions are made with: the call's runner's own parts."""

    settings: EngineSettings
    synthesizer: SpeechSynthesizer
    loader: AudioUrlLoader
    speech: SpeechEngines
    phonebook: Phonebook
    output: CallOutput
    apps: AppClient


Dialogue = Callable[["Conversation"], Awaitable[None]]


@dataclass
class _Running:
    action: Action
    done: asyncio.Future[None]


class Conversation:
    """A dialogue's handle on its call: render and run actions, emit events, ask the app."""

    def __init__(self, host: DialogueAction, call: CallContext, request: CallRequest, services: DialogueServices) -> None:
        self._host = host
        self.call = call
        self.request = request
        self.services = services
        self._records = 0
        #: The last message ``record`` took, also when the call ended during it (TwiML still posts that
        #: one to its action, as Twilio does when the caller hangs up after a voicemail).
        self.last_record: RecordResult | None = None

    @property
    def call_id(self) -> str:
        return str(getattr(self.call, "id", ""))

    @property
    def call_time_s(self) -> float:
        return self.call.call_time_s

    @property
    def rate_hz(self) -> int:
        return self.call.rate_hz

    @property
    def apps(self) -> AppClient:
        """Requests to the user's app (TwiML documents, a flow's webhook): bounded in time and size."""
        return self.services.apps

    def emit(self, event_type: str, **facts: Any) -> None:
        self.call.emit(event_type, **facts)

    # -- rendering, off the frames -------------------------------------------------------------------------

    async def prompt_say(self, text: str, voice: str | None = None, speed: float = 1.0, pitch: float = 0.0) -> PlayAudio:
        """``text`` (plain or SSML) spoken by ``voice``, ready to play. SpeechError for a bad voice or text."""
        prompt = await self.services.synthesizer.synthesize_async(TtsRequest(text, voice=voice, speed=speed, pitch=pitch, rate_hz=self.rate_hz))
        return PlayAudio("say", prompt.samples, prompt.voice.id, list(prompt.warnings), text=text)

    async def prompt_play(self, url: str) -> PlayAudio:
        """The audio at ``url`` (http(s), file or a media root's path), ready to play. AudioUrlError says why not."""
        audio = await self.services.loader.load_async(url, self.rate_hz)
        return PlayAudio("play", audio.samples, url)

    async def prompt_digits(self, digits: str, on_ms: float = 100.0, off_ms: float = 100.0) -> PlayAudio:
        """DTMF tones the platform plays (TwiML's ``<Play digits>``; ``w`` waits 0.5 s)."""
        tones = await asyncio.to_thread(generate_dtmf, digits, self.rate_hz, DtmfToneSpec(on_ms=on_ms, off_ms=off_ms))
        return PlayAudio("digits", tones, digits)

    # -- running, on the frames ----------------------------------------------------------------------------

    async def run(self, action: Action) -> Action:
        """Run ``action`` in the call until it is over; returns it (with its state). CallEnded when the call
        ended first."""
        return await self._host.run(action)

    async def say(self, text: str, voice: str | None = None, speed: float = 1.0, pitch: float = 0.0) -> None:
        await self.run(await self.prompt_say(text, voice, speed, pitch))

    async def play(self, url: str) -> None:
        await self.run(await self.prompt_play(url))

    async def pause(self, seconds: float) -> None:
        await self.run(Pause(seconds))

    async def gather(
        self,
        prompts: list[PlayAudio] | None = None,
        input_type: str = "dtmf",
        num_digits: int | None = None,
        finish_on_key: str = "#",
        timeout_s: float = 5.0,
        barge_in: bool = True,
        hints: list[str] | None = None,
        speech_timeout_s: float | None = None,
        language: str | None = None,
    ) -> GatherResult:
        """Play ``prompts`` and take keys and/or speech (``input_type`` "dtmf", "speech" or "dtmf speech"),
        as the Canary gather. Speech without a model for the language: DialogueError for "speech" alone;
        "dtmf speech" goes on with keys (``gather.started`` says why)."""
        from ivrsim.engine.listening import call_language, open_speech_input

        speech, kind, error = None, input_type, None
        if "speech" in input_type.split():
            speech, kind, error = await open_speech_input(
                self.services.speech, self.rate_hz, input_type, hints, speech_timeout_s, language or call_language(self.request)
            )
            if speech is None and "dtmf" not in input_type.split():
                raise DialogueError(f"a speech gather cannot listen: {error}")
        gather = Gather(prompt=list(prompts or []), num_digits=num_digits, finish_on_key=finish_on_key, timeout_s=timeout_s,
                        barge_in=barge_in, input_type=kind, speech=speech, speech_error=error)
        await self.run(gather)
        heard = gather.heard_speech
        return GatherResult(gather.digits, gather.reason or "hangup", gather.finished_on_key,
                            heard.text if heard is not None else "", round(heard.confidence, 3) if heard is not None else 0.0)

    async def record(self, max_length_s: float = 60.0, silence_timeout_s: float = 5.0, finish_on_key: str = "#", beep: bool = True) -> RecordResult:
        """Record the callee's side into a mono WAV of its own (a voicemail, TwiML's ``<Record>``), served
        by the API as any recording."""
        if self._host.ended:
            raise CallEnded(self._host.ended)  # nothing to record: no recording is registered
        self._records += 1
        settings = self.services.settings
        recording_id = recording_id_for(f"{self.call_id}/record/{self._records}", settings.seed)
        path = settings.recordings_folder / f"{recording_id}.wav"
        self.services.output.recording_started(recording_id, self.call_id, str(path), "mono")
        action = RecordMessage(path=path, recording_id=recording_id, max_length_s=max_length_s, silence_timeout_s=silence_timeout_s,
                               finish_on_key=finish_on_key, beep=beep)
        try:
            await self.run(action)
        finally:
            duration_s = action.duration_s
            self.services.output.recording_completed(recording_id, duration_s)
            self.last_record = result = RecordResult(recording_id, recording_url(settings.public_url, recording_id), round(duration_s, 3),
                                                     action.reason or "hangup", action.finished_on_key)
        return result

    def dial_status(self, number: str) -> str:
        """What dialling ``number`` would give, from the phonebook (TwiML's ``DialCallStatus``): completed,
        busy, no-answer or failed."""
        kind = self.services.phonebook.kind_of(number)
        return {"busy": "busy", "no-answer": "no-answer", "failed": "failed"}.get(kind, "completed")


class DialogueAction(Action):
    """Runs a dialogue coroutine in a call (module docstring)."""

    def __init__(self, dialogue: Dialogue, request: CallRequest, services: DialogueServices, name: str = "dialogue") -> None:
        self.dialogue = dialogue
        self.request = request
        self.services = services
        self.name = name
        self._task: asyncio.Task[None] | None = None
        self._running: _Running | None = None
        self._changed = asyncio.Event()
        self._ended: str | None = None
        self._hung_up = False

    # -- the dialogue's side -------------------------------------------------------------------------------

    async def run(self, action: Action) -> Action:
        if self._ended is not None:
            raise CallEnded(self._ended)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running = _Running(action, done)
        self._changed.set()
        await done
        return action

    async def _main(self, call: CallContext) -> None:
        try:
            await self.dialogue(Conversation(self, call, self.request, self.services))
        except CallEnded:
            pass
        finally:
            self._running = None
            self._changed.set()

    # -- the call's side -----------------------------------------------------------------------------------

    def frame(self, call: CallContext) -> np.ndarray | Waiting | None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._main(call), name=f"{self.name} of {getattr(call, 'id', '')}")
            return WAITING
        running = self._running
        if running is not None:
            out = running.action.frame(call)
            if out is not None:
                return out
            self._running = None
            running.done.set_result(None)
            return WAITING  # the dialogue decides what comes next
        if self._task.done():
            self._task.result()  # a DialogueError ends the call failed, with its reason
            return None
        return WAITING

    async def ready(self) -> None:
        """Wait until the dialogue asks for an action or ends."""
        while self._running is None and self._task is not None and not self._task.done():
            self._changed.clear()
            await self._changed.wait()

    def digit(self, call: CallContext, digit: DtmfDigit) -> None:
        if self._running is not None:
            self._running.action.digit(call, digit)

    def heard(self, call: CallContext, received: np.ndarray) -> None:
        if self._running is not None:
            self._running.action.heard(call, received)

    def hangup(self, call: CallContext) -> None:
        self._hung_up = True
        if self._running is not None:
            self._running.action.hangup(call)

    @property
    def ended(self) -> str | None:
        """How the call ended under the dialogue, once it has."""
        return self._ended

    async def end(self, call: CallContext) -> None:
        """The call ended while the dialogue ran: the action it runs hears the end (a recording closes its
        file, a gather reports), the dialogue's await raises CallEnded, and its last events come before the
        call's. One that does not end within ``END_GRACE_S`` (an app still answering) is cancelled, and its
        last events still come first."""
        if self._task is None or self._task.done():
            return
        self._ended = "the call ended"
        running, self._running = self._running, None
        if running is not None:
            if not self._hung_up:  # the call reached its maximum length: the action was not told
                running.action.hangup(call)
            if not running.done.done():
                running.done.set_exception(CallEnded(self._ended))
        try:
            await asyncio.wait_for(asyncio.shield(self._task), END_GRACE_S)
        except (TimeoutError, asyncio.TimeoutError):
            logger.warning("%s of call %s did not end within %g s of its call; cancelled", self.name, getattr(call, "id", ""), END_GRACE_S)
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=END_GRACE_S)  # its finally blocks emit their events now
        except Exception:  # noqa: BLE001 - the call is over: its dialogue's error changes nothing
            logger.exception("%s of call %s failed as its call ended", self.name, getattr(call, "id", ""))

    def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._running is not None:
            self._running.action.close()
            if not self._running.done.done():
                self._running.done.cancel()

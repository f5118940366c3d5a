"""The call runner: runs one call frame by frame and reports what happens, with no store in reach.

One call, end to end (DESIGN.md): the prompts are rendered (TTS) or fetched (audio_url) while the
phonebook's callee is prepared; the call rings (``ringing``) until the callee answers, is busy, fails, or
the ring timeout passes (``no-answer``); once ``in-progress``, every 20 ms frame the platform's audio
crosses the line model to the callee, the callee's audio crosses back, the streaming DTMF receiver decodes
it, the current action hears the digits, and the recorder writes both sides. The call ends ``completed``
when either side hangs up. A callee with a clock of its own (the desktop phone's sound card) paces the
call from the first ring; a ``DeviceLostError`` from it ends the call ``failed``, its recording kept.

Everything a call reports goes to a ``CallOutput``; the runner holds what a worker process holds (phonebook,
TTS, media loader, line and clock settings, the recordings folder) and nothing of the API's. An
error in one call fails that call (with the reason) and never the others; a call cancelled (shutdown) ends
``completed`` when answered, ``failed`` otherwise, with ``STOPPED_REASON``.

Times: ``answered_at`` / ``ended_at`` are wall time on the realtime and device clocks, and ``created_at`` plus call
time on the virtual and manual clocks, so that they agree with ``duration``.
"""

from __future__ import annotations

import asyncio
import time
import logging
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from ivrsim.audio.dtmf_generator import DtmfToneSpec, generate_dtmf
from ivrsim.audio.dtmf_receiver import DEFAULT_CHUNK_MS, DtmfReceiver
from ivrsim.audio.line import LineModel, LineSettings
from ivrsim.audio.queue import AudioQueue
from ivrsim.audio.amd import AnsweringMachineDetector
from ivrsim.engine.actions import Action, AwaitMachineDetection, Gather, Hangup, PlayAudio, Waiting
from ivrsim.engine.callees import Callee, CalleeContext, DeskPhone, Phonebook, SoundCardCallee
from ivrsim.engine.clock import FRAME_S, Clock, ManualTimeline, make_clock
from ivrsim.engine.dialogue import DialogueAction, DialogueServices
from ivrsim.engine.events import CallEvent, epoch_of, iso_after, utc_now
from ivrsim.engine.job import CallJob, CallRequest, EngineSettings
from ivrsim.engine.listening import LiveTranscriber, call_language, engine_facts, open_speech_input
from ivrsim.engine.listening_process import ProcessTranscriber
from ivrsim.engine.output import CallOutput
from ivrsim.engine.recorder import RECORDINGS_PATH, CallRecorder, recording_id_for, recording_url
from ivrsim.exceptions import InvalidRequestError, IvrsimError
from ivrsim.media.audio_url import AudioUrlLoader
from ivrsim.speech.asr.base import AsrError, SpeechEngine
from ivrsim.speech.asr.engines import SpeechEngines
from ivrsim.speech.tts import SpeechSynthesizer, TtsRequest
from ivrsim.webhooks.app_client import AppClient

logger = logging.getLogger(__name__)

#: Most injected audio (/_sim DTMF and speech) that may wait to be played into one call, in seconds; one
#: request's audio counts against it, so no request may inject more.
MAX_INJECTED_S = 60.0
#: Longest a machine-detection call waits for a voicemail's beep before it plays anyway, in seconds.
BEEP_TIMEOUT_S = 30.0
#: Why a call cut by a shutdown ended; recovery adds when it was ended.
STOPPED_REASON = "ivrsim stopped while the call was live"
#: The clocks on which call time stands still while an action waits (``Waiting``); the others play silence.
SIMULATED_CLOCKS = ("virtual", "manual")


class InjectionLimitError(InvalidRequestError):
    """Injected audio over ``MAX_INJECTED_S`` (this request's plus what still waits in the call)."""

    code = "injection_limit"

    def __init__(self, seconds: float, queued_s: float) -> None:
        waiting = f" and {queued_s:.1f} s already wait to be played" if queued_s else ""
        self.problem = (
            f"is {seconds:.1f} s of audio{waiting}; at most {MAX_INJECTED_S:g} s may wait per call "
            "(MAX_INJECTED_S): send less, or send it once the call has played what it holds"
        )
        super().__init__("audio", self.problem)
        self.seconds = seconds
        self.queued_s = queued_s


class CallNotLiveError(IvrsimError):
    """A request on a live call that ended (or whose worker stopped) before the request reached it."""

    code = "call_not_live"


class WorkerUnavailableError(IvrsimError):
    """A request on a live call whose worker did not answer in time."""

    code = "worker_unavailable"


def recording_completed_facts(recording_id: str, duration_s: float, channels: str, public_url: str | None) -> dict[str, Any]:
    """The ``recording.completed`` facts: the documented integer ``duration`` (seconds) and the precise
    ``duration_s`` beside it, and the recording's URL (never a server file path)."""
    return {
        "recording_id": recording_id,
        "url": recording_url(public_url, recording_id),
        "duration": int(round(duration_s)),
        "duration_s": round(duration_s, 3),
        "channels": channels,
    }


@dataclass(frozen=True)
class Injected:
    """Audio queued into a live call: when it starts (call time) and how long it lasts."""

    call_time_s: float
    duration_s: float


class LiveCallHandle(Protocol):
    """What /_sim needs of a live call. The tones and the speech are made on the call's side (``press``,
    ``say``), so the API only forwards parameters and does no DSP (``ivrsim.workers.hub.RemoteCall`` sends them to the worker running the call)."""

    @property
    def status(self) -> str: ...

    @property
    def rate_hz(self) -> int: ...

    def check_room(self, seconds: float) -> None: ...

    async def hangup(self) -> float: ...

    async def press(self, digits: str, spec: DtmfToneSpec) -> Injected: ...

    async def say(self, text: str, voice: str | None = None) -> Injected: ...


class LiveCall:
    """The state of one running call: the ``CallContext`` its actions see, and its ``LiveCallHandle``."""

    def __init__(self, job: CallJob, settings: EngineSettings, output: CallOutput, synthesizer: SpeechSynthesizer) -> None:
        self.id = job.call_id
        self.created_at = job.created_at
        self.request = job.request
        self.then: list[Action] = list(job.then)
        self.start_frame = job.start_frame
        #: Answered by the desktop phone (the job came on the ``phone`` lane), whatever the number.
        self.soundcard = job.soundcard
        #: The clock pacing the call once it rings: the engine's, or "device" (the sound card's).
        self.clock_name = settings.clock
        self.settings = settings
        self.output = output
        self.synthesizer = synthesizer
        self.rate_hz = settings.line.rate_hz
        self.frame_samples = int(round(self.rate_hz * FRAME_S))
        self.frame_index = 0
        self._sequence = job.sequence
        self.answered_frame: int | None = None
        self.status = "queued"
        self._injected = AudioQueue()
        #: Set by ``hangup`` (/_sim): the callee hangs up at the next frame.
        self.hangup_requested = False
        #: Real-time transcription (``transcribe``): the engine, or why there is none.
        self.listening: SpeechEngine | None = None
        self.listening_error: str | None = None
        #: The live transcript's child process, on a sound card's call (``listening_process``).
        self.listening_process: ProcessTranscriber | None = None
        #: Answering-machine detection (``machine_detection``).
        self.machine_detector: AnsweringMachineDetector | None = None

    def inject(self, samples: np.ndarray) -> float:
        """Mix audio into the callee's side from the next frame on (the /_sim DTMF and speech injection);
        returns the call time at which it starts. Raises InjectionLimitError, and queues nothing, when
        it would make more than ``MAX_INJECTED_S`` wait to be played."""
        audio = np.asarray(samples, dtype=np.float32)
        self.check_room(len(audio) / self.rate_hz)
        self._injected.put(audio)
        return self.call_time_s

    async def press(self, digits: str, spec: DtmfToneSpec) -> Injected:
        """Press ``digits`` on the callee's side as real tones (made off the loop: up to a minute of audio)."""
        self.check_room(len(digits) * (spec.on_ms + spec.off_ms) / 1000.0)  # before any audio is made
        tones = await asyncio.to_thread(generate_dtmf, digits, self.rate_hz, spec)
        return Injected(self.inject(tones), round(len(tones) / self.rate_hz, 3))

    async def say(self, text: str, voice: str | None = None) -> Injected:
        """Speak ``text`` on the callee's side (TTS at the call's rate). Raises SpeechError for a bad voice
        or text, InjectionLimitError when it does not fit."""
        prompt = await self.synthesizer.synthesize_async(TtsRequest(text, voice=voice, rate_hz=self.rate_hz))
        return Injected(self.inject(prompt.samples), round(prompt.duration_s, 3))

    async def hangup(self) -> float:
        """Hang up on the callee's side at the next frame (as a caller putting the phone down); returns the
        call time it happens at."""
        self.hangup_requested = True
        return self.call_time_s

    def check_room(self, seconds: float) -> None:
        """Raise InjectionLimitError when ``seconds`` more of injected audio would not fit the call's queue
        (so a request can be refused before its audio is made)."""
        queued_s = self.injected_queued_s
        if queued_s + seconds > MAX_INJECTED_S:
            raise InjectionLimitError(seconds, queued_s)

    @property
    def injected_queued_s(self) -> float:
        """Seconds of injected audio still waiting to be played."""
        return self._injected.queued_samples / self.rate_hz

    def take_injected(self, count: int) -> np.ndarray | None:
        """The next ``count`` samples of injected audio, or None when there is none."""
        return self._injected.take(count)

    @property
    def call_time_s(self) -> float:
        return round(self.frame_index * FRAME_S, 3)

    def emit(self, event_type: str, **data: Any) -> None:
        self._sequence += 1
        self.output.event(CallEvent(self.id, self._sequence, event_type, self.call_time_s, utc_now(), data))

    def now(self) -> str:
        """Wall time of this moment of the call: real on the realtime clock, created_at + call time otherwise."""
        if self.clock_name in ("realtime", "device"):
            return utc_now()
        return iso_after(self.created_at, self.call_time_s)

    def set_status(self, status: str, **data: Any) -> None:
        self.status = status
        fields: dict[str, Any] = {"status": status}
        if status == "in-progress":
            fields["answered_at"] = self.now()
        if status in ("completed", "busy", "no-answer", "failed"):
            fields["ended_at"] = self.now()
            fields["reason"] = data.get("reason")
            if self.answered_frame is not None:
                fields["duration_s"] = round((self.frame_index - self.answered_frame) * FRAME_S, 3)
        self.output.update_call(self.id, **fields)
        self.emit(f"call.{status}", status=status, **data)


class CallRunner:
    """Runs calls, each reporting to the ``CallOutput`` it is given. ``timeline``: the manual clock's time
    (required when ``settings.clock`` is "manual")."""

    def __init__(
        self,
        settings: EngineSettings,
        phonebook: Phonebook,
        synthesizer: SpeechSynthesizer,
        loader: AudioUrlLoader,
        timeline: ManualTimeline | None = None,
        speech: SpeechEngines | None = None,
        phone: DeskPhone | None = None,
    ) -> None:
        self.settings = settings
        self.phonebook = phonebook
        self.synthesizer = synthesizer
        self.loader = loader
        self.timeline = timeline
        #: Speech recognition (transcripts, speech gathers, callers that listen): models load once per process.
        self.speech = speech or SpeechEngines.from_environment()
        #: The desktop phone, in the one process that owns the sound card (``ivrsim phone``); None elsewhere.
        self.phone = phone
        #: Requests to the users' apps (TwiML documents, flows' webhooks), for every call this runner runs.
        self.apps = AppClient()
        self._live: dict[str, LiveCall] = {}

    async def aclose(self) -> None:
        """Let go of the connections to the users' apps (the calls have ended)."""
        await self.apps.aclose()

    def live_call(self, call_id: str) -> LiveCall | None:
        """The call ``call_id`` while this runner runs it, else None."""
        return self._live.get(call_id)

    @property
    def live_count(self) -> int:
        """Calls this runner runs now."""
        return len(self._live)

    @property
    def timeline_count(self) -> int:
        """Calls this runner runs on the manual timeline (a step waits for these; a sound card's call keeps
        its own time, and calls still being prepared are counted until they know their clock)."""
        return sum(1 for call in self._live.values() if call.clock_name == "manual")

    async def run(self, job: CallJob, output: CallOutput) -> None:
        """Run one call to its end; it never raises (a failure ends the call ``failed``, with the reason)."""
        call = LiveCall(job, self.settings, output, self.synthesizer)
        self._live[call.id] = call
        try:
            await self._call(call)
        except asyncio.CancelledError:  # the engine is closing: an answered call was a call, and it completed
            call.set_status("completed" if call.answered_frame is not None else "failed", reason=STOPPED_REASON)
        except Exception as error:  # one call's bug never stops the engine
            logger.exception("call %s failed", call.id)
            call.set_status("failed", reason=f"internal error: {type(error).__name__}: {error}")
        finally:
            self._live.pop(call.id, None)

    async def refuse(self, job: CallJob, output: CallOutput, reason: str) -> None:
        """End a call before it starts: ``failed``, with ``reason``."""
        LiveCall(job, self.settings, output, self.synthesizer).set_status("failed", reason=reason)

    async def _call(self, call: LiveCall) -> None:
        request = call.request
        callee: Callee | None = None
        try:
            try:
                callee = SoundCardCallee() if call.soundcard else self._callee(request)
                context = CalleeContext(call.rate_hz, self.synthesizer, self.speech, call_language(request), self.phone, call.id)
                await callee.prepare(context)
                program = await self._program(call, device_paced=callee.clock is not None)
            except IvrsimError as error:
                call.set_status("failed", reason=str(error))
                return
            try:
                await self._ring_and_converse(call, callee, program)
            except IvrsimError as error:  # the device went away (DeviceLostError): the call fails, its recording is kept
                call.set_status("failed", reason=str(error))
        finally:  # however the call ended (cancelled too): the sound card and the transcriber's child are released
            if call.listening_process is not None:
                call.listening_process.close()
            if callee is not None:
                # closing a dead device's streams may wait seconds for PortAudio: never on the event loop
                await asyncio.shield(asyncio.to_thread(callee.close))

    def _callee(self, request: CallRequest) -> Callee:
        """Who answers: the callee registered for the number at run time (it came with the call), else the phonebook's."""
        if request.callee is not None:
            return self.phonebook.callee_for_entry(request.callee, where=f"the callee registered for {request.to}", decode_audio=False)
        return self.phonebook.callee_for(request.to)

    async def _ring_and_converse(self, call: LiveCall, callee: Callee, program: list[Action]) -> None:
        request = call.request
        # A sound card paces its own calls; every other callee runs on the engine's clock.
        clock = callee.clock or make_clock(self.settings.clock, self.timeline, call.start_frame)
        call.clock_name = clock.name
        answer = callee.answer()
        if answer.outcome in ("busy", "failed"):
            default = "the callee is busy" if answer.outcome == "busy" else "the call could not be connected"
            call.set_status(answer.outcome, reason=answer.reason or default)
            return
        call.set_status("ringing", callee=callee.label)
        ring_s = request.timeout_s
        if clock.name == "device":  # it may have waited in the queue for the phone: its ring timeout runs from the POST
            ring_s = max(0.0, request.timeout_s - (time.time() - epoch_of(call.created_at)))
        pickup = await callee.ring(clock, int(round(ring_s / FRAME_S)))
        call.frame_index += pickup.frames
        if pickup.outcome != "answer":
            reason = pickup.reason or (f"no answer within {request.timeout_s:g} s" if pickup.outcome == "no-answer" else "the callee is busy")
            call.set_status(pickup.outcome, reason=reason)
            return
        call.answered_frame = call.frame_index
        call.set_status("in-progress", rings=pickup.rings)
        await self._converse(call, callee, program, clock)

    async def _program(self, call: LiveCall, device_paced: bool = False) -> list[Action]:
        """The Canary request as actions: prompt(s), in a gather if asked, then hang-up. ``device_paced``:
        the call runs on a sound card's clock, so its live transcript is decoded in a process of its own."""
        request = call.request
        prompts: list[PlayAudio] = []
        if request.tts is not None:
            tts = request.tts
            prompt = await self.synthesizer.synthesize_async(
                TtsRequest(text=tts.text, voice=tts.voice, speed=tts.speed, pitch=tts.pitch, rate_hz=call.rate_hz)
            )
            prompts.append(PlayAudio("say", prompt.samples, prompt.voice.id, list(prompt.warnings), text=tts.text))
        if request.audio_url is not None:
            audio = await self.loader.load_async(request.audio_url, call.rate_hz)
            prompts.append(PlayAudio("play", audio.samples, request.audio_url))
        program: list[Action] = []
        language = call_language(request)
        if request.transcribe:
            try:  # a model loads in seconds: never on the event loop
                call.listening = await asyncio.to_thread(self.speech.engine_for, language)
            except AsrError as error:  # the call goes on; the transcript's events say why there is none
                call.listening_error = str(error)
            if call.listening is not None and device_paced:  # its decoding would starve the card (listening_process.py)
                transcriber = ProcessTranscriber(call.listening.info, call.id, language, call.rate_hz, request)
                try:
                    call.listening_process = await asyncio.to_thread(transcriber.start)
                except Exception as error:  # no process to decode in: no live transcript (the recording's comes after)
                    logger.exception("the live transcriber of %s could not start", call.id)
                    call.listening, call.listening_error = None, f"the live transcriber could not start: {type(error).__name__}: {error}"
        if request.machine_detection:
            call.machine_detector = AnsweringMachineDetector(
                call.rate_hz, decision_s=request.machine_detection_timeout_s, wait_for_beep=request.machine_detection_wait_for_beep,
                beep_timeout_s=max(BEEP_TIMEOUT_S, request.machine_detection_timeout_s),
            )
            # As Twilio's synchronous AMD: the call's prompt starts once the detector has decided.
            program.append(AwaitMachineDetection(call.machine_detector))
        if request.gather is not None:
            g = request.gather
            speech, input_type, speech_error = None, g.type, None
            if g.wants_speech:
                speech, input_type, speech_error = await open_speech_input(
                    self.speech, call.rate_hz, g.type, g.hints, g.speech_timeout_s, g.language or language
                )
                if speech is None:
                    if not g.wants_dtmf:
                        raise InvalidRequestError("gather.language", str(speech_error))
                    speech_error = f"speech input is off for this gather: {speech_error}"  # keys still work; gather.started says why
            program.append(
                Gather(
                    prompt=prompts,
                    num_digits=g.num_digits,
                    finish_on_key=g.finish_on_key,
                    timeout_s=g.timeout_s,
                    barge_in=g.barge_in,
                    input_type=input_type,
                    speech=speech,
                    speech_error=speech_error,
                )
            )
        else:
            program.extend(prompts)
        program.extend(call.then)
        dialogue = self._dialogue(call)
        if dialogue is not None:
            program.append(dialogue)
        program.append(Hangup())
        return program

    def _dialogue(self, call: LiveCall) -> DialogueAction | None:
        """The call's flow or TwiML app, run after its prompt and gather (``ivrsim.engine.dialogue``)."""
        request = call.request
        if request.flow is None and request.url is None:
            return None
        services = DialogueServices(self.settings, self.synthesizer, self.loader, self.speech, self.phonebook, call.output, self.apps)
        if request.flow is not None:
            from ivrsim.flows.runtime import flow_dialogue

            return DialogueAction(flow_dialogue(request.flow), request, services, name="flow")
        from ivrsim.flows.twiml.runtime import twiml_dialogue

        assert request.url is not None
        return DialogueAction(twiml_dialogue(request.url, request.method), request, services, name="TwiML app")

    async def _converse(self, call: LiveCall, callee: Callee, program: list[Action], clock: Clock) -> None:
        request = call.request
        line = self.settings.line
        to_callee = LineModel(LineSettings(**{**asdict(line), "seed": _seed(call.id, line.seed, 1)}))
        to_platform = LineModel(LineSettings(**{**asdict(line), "seed": _seed(call.id, line.seed, 2)}))
        # Digits and their times do not depend on the receiver's chunk, only how soon they are reported: a
        # person at the sound card gets them a frame sooner (the latency budget), the virtual clock cheaper.
        receiver = DtmfReceiver(call.rate_hz, chunk_ms=FRAME_S * 1000 if clock.name == "device" else DEFAULT_CHUNK_MS)
        recorder = None
        recording_id = None
        if request.record:
            recording_id = recording_id_for(call.id, self.settings.seed)
            path = self.settings.recordings_folder / f"{recording_id}.wav"
            recorder = CallRecorder(path, call.rate_hz, request.recording_channels)  # type: ignore[arg-type]
            call.output.recording_started(recording_id, call.id, str(path), request.recording_channels)
            call.emit("recording.started", recording_id=recording_id, channels=request.recording_channels)
        answered_s = call.call_time_s
        transcriber: LiveTranscriber | ProcessTranscriber | None = None
        if call.listening_process is not None:
            transcriber = call.listening_process.begin(answered_s)
        elif call.listening is not None:
            transcriber = LiveTranscriber(call.listening, call.rate_hz, answered_s, request)
        if request.transcribe and call.listening_error is not None:
            call.emit("transcription.failed", source="live", reason=call.listening_error, language=call_language(request))
        detector = call.machine_detector
        max_frames = int(round(request.max_duration_s / FRAME_S))
        index = 0
        reason = "the platform hung up"
        try:
            while True:
                out = None
                while index < len(program):
                    out = program[index].frame(call)
                    if isinstance(out, Waiting):
                        if clock.name in SIMULATED_CLOCKS:  # call time stands still while the work is done
                            await program[index].ready()
                            continue
                        out = np.zeros(call.frame_samples, dtype=np.float32)  # the line plays silence meanwhile
                    if out is not None:
                        break
                    if isinstance(program[index], Hangup):
                        index = len(program)
                        break
                    index += 1
                if index >= len(program):
                    break
                if call.frame_index - (call.answered_frame or 0) >= max_frames:
                    reason = f"the call reached its maximum length of {request.max_duration_s:g} s"
                    break
                assert out is not None
                heard = to_callee.process(out)
                back = callee.exchange(heard)
                injected = call.take_injected(len(back))
                if injected is not None:
                    back = back + injected
                received = to_platform.process(back)
                for event_type, facts in callee.report():  # the sound card's glitches, as they happen
                    call.emit(event_type, **facts)
                if recorder is not None:
                    recorder.write(out, received)
                call.frame_index += 1
                if detector is not None and detector.result is None:
                    decided = detector.feed(received)
                    if decided is not None:
                        call.emit("call.answered_by", **answered_by_facts(decided))
                if transcriber is not None:
                    transcriber.feed(call, out, received)
                program[index].heard(call, received)
                # A callee that hangs up may still be mid-key: what the receiver holds counts first.
                hung_up = callee.hung_up or call.hangup_requested
                digits = receiver.feed(received) + (receiver.flush() if hung_up else [])
                for digit in digits:
                    call.emit(
                        "dtmf.received",
                        digit=str(digit.key),
                        start_s=round(answered_s + digit.start_s, 4),
                        end_s=round(answered_s + digit.end_s, 4),
                        row_level_dbm0=round(digit.row_level_dbm0, 1),
                        col_level_dbm0=round(digit.col_level_dbm0, 1),
                    )
                    program[index].digit(call, digit)
                if hung_up:
                    program[index].hangup(call)
                    reason = "the callee hung up" if callee.hung_up else "the callee hung up (/_sim hangup)"
                    break
                await clock.advance(1)
            for action in program:  # a dialogue hears that the call is over and says how its app ended
                await action.end(call)
            if transcriber is not None:
                await transcriber.end(call)
            if detector is not None and detector.result is None:
                decided = detector.finish()
                if decided is not None:
                    call.emit("call.answered_by", **answered_by_facts(decided))
        finally:
            for action in program:
                action.close()
            if recorder is not None and recording_id is not None:
                recorder.close()
                call.output.recording_completed(recording_id, recorder.duration_s)
                facts = recording_completed_facts(recording_id, recorder.duration_s, request.recording_channels, self.settings.public_url)
                if transcriber is not None and transcriber.finished and request.recording_channels == "dual":
                    # the live transcript covered the whole recording: it is the recording's transcript
                    facts["transcribed_live"] = engine_facts(transcriber.info)
                call.emit("recording.completed", **facts)
        call.set_status("completed", reason=reason)


def answered_by_facts(result: Any) -> dict[str, Any]:
    """``call.answered_by``'s facts: Twilio's ``AnsweredBy`` value, when it was decided and where the beep
    started (seconds after the answer, as the reason says them), the greeting's speech, and why."""
    return {
        "answered_by": result.answered_by,
        "decided_after_s": round(result.decided_at_s, 3),
        "beep_after_s": round(result.beep_at_s, 3) if result.beep_at_s is not None else None,
        "speech_s": round(result.speech_s, 3),
        "reason": result.reason,
    }


def _seed(call_id: str, base: int, direction: int) -> int:
    """A per-call, per-direction noise seed derived from the call id and the configured seed."""
    return (int.from_bytes(call_id.encode()[-8:].rjust(8, b"\0"), "big") ^ (base * 1_000_003) ^ direction) & 0xFFFFFFFF

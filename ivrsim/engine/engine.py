"""The call engine: places calls, runs each one frame by frame, and reports every state change.

One call, end to end (DESIGN.md): the request is stored as ``queued``; the prompts are rendered (TTS) or
fetched (audio_url) while the phonebook's callee is prepared; the call rings (``ringing``) until the
callee answers, is busy, fails, or the ring timeout passes (``no-answer``); once ``in-progress``, every
20 ms frame the platform's audio crosses the line model to the callee, the callee's audio crosses back,
the streaming DTMF receiver decodes it, the current action hears the digits, and the recorder writes
both sides. The call ends ``completed`` when either side hangs up.

Every call runs in its own asyncio task; an error in one call fails that call (with the reason) and
never the others. Blocking work (TTS, HTTP, file reads) runs on worker threads.

Stopping: a call cut by a shutdown ends ``completed`` (answered) or ``failed`` (not yet answered), with the
reason. After a crash, ``recover()`` (run by ``__aenter__``, or by the app once the webhook dispatcher
listens) does the same for the calls the store still holds as live, finalises their recordings, and
publishes the final events, so webhook receivers hear that those calls ended.

Times: ``answered_at`` / ``ended_at`` are wall time on the realtime clock, and ``created_at`` plus call
time on the virtual and manual clocks, so that they agree with ``duration``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ivrsim.audio.dtmf_receiver import DtmfReceiver
from ivrsim.audio.line import LineModel, LineSettings
from ivrsim.engine.actions import Action, Gather, Hangup, PlayAudio
from ivrsim.engine.callees import Callee, CalleeContext, Phonebook
from ivrsim.engine.clock import FRAME_S, Clock, ManualTimeline, make_clock
from ivrsim.engine.events import CallEvent, EventBus, iso_after, utc_now
from ivrsim.engine.recorder import CallRecorder, repair_wav
from ivrsim.exceptions import InvalidRequestError, IvrsimError
from ivrsim.media.audio_url import AudioUrlLoader
from ivrsim.speech.tts import SpeechSynthesizer, TtsRequest
from ivrsim.store.sqlite import CallRecord, Store

logger = logging.getLogger(__name__)

#: Ring timeout when the request gives none, in seconds (Canary: default 30).
DEFAULT_RING_TIMEOUT_S = 30
#: Longest call, in seconds, unless the request says otherwise (Twilio's limit is 4 hours).
DEFAULT_MAX_DURATION_S = 4 * 3600.0
#: Most injected audio (/_sim DTMF and speech) that may wait to be played into one call, in seconds; one
#: request's audio counts against it, so no request may inject more.
MAX_INJECTED_S = 60.0
#: Why a call cut by a shutdown ended; recovery adds when it was ended.
STOPPED_REASON = "ivrsim stopped while the call was live"
#: Where the API serves a recording (``{public_url}{RECORDINGS_PATH}/{id}.wav``).
RECORDINGS_PATH = "/v1/voice/recordings"


@dataclass(frozen=True)
class TtsSpec:
    """The Canary ``tts`` object: text (plain or SSML), voice id, speed (multiple), pitch (semitones)."""

    text: str
    voice: str | None = None
    speed: float = 1.0
    pitch: float = 0.0


@dataclass(frozen=True)
class GatherSpec:
    """The Canary ``gather`` object. ``timeout_s`` is the documented ``timeout``; ``barge_in`` ours."""

    type: str = "dtmf"
    num_digits: int | None = None
    finish_on_key: str = "#"
    timeout_s: float = 5.0
    webhook_url: str | None = None
    barge_in: bool = True


@dataclass(frozen=True)
class CallRequest:
    """A call to place, with the Canary request's parameters (``from_`` is ``from``, ``timeout_s`` is
    the ring ``timeout``). When both ``tts`` and ``audio_url`` are given, the speech comes first."""

    to: str
    from_: str
    tts: TtsSpec | None = None
    audio_url: str | None = None
    record: bool = False
    transcribe: bool = False
    recording_channels: str = "dual"
    gather: GatherSpec | None = None
    webhook_url: str | None = None
    timeout_s: float = DEFAULT_RING_TIMEOUT_S
    max_duration_s: float = DEFAULT_MAX_DURATION_S

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["from"] = document.pop("from_")
        return document


@dataclass
class EngineSettings:
    """Where and how calls run: data folder, clock ("virtual", "realtime" or "manual"), the line, the id seed."""

    data_dir: Path
    clock: str = "virtual"
    line: LineSettings = field(default_factory=LineSettings)
    seed: int | None = None
    #: The server's base URL as receivers see it (no trailing slash), for recording URLs in events; set by
    #: the server once its socket is bound. None: URLs are relative to the server.
    public_url: str | None = None


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


class _LiveCall:
    """The state of one running call, and the ``CallContext`` its actions see."""

    def __init__(self, engine: CallEngine, record: CallRecord, request: CallRequest) -> None:
        self.engine = engine
        self.id = record.id
        self.created_at = record.created_at
        self.request = request
        self.rate_hz = engine.settings.line.rate_hz
        self.frame_samples = int(round(self.rate_hz * FRAME_S))
        self.frame_index = 0
        self._sequence = 0
        self.answered_frame: int | None = None
        self.then: list[Action] = []
        self.status = "queued"
        self._injected: list[np.ndarray] = []

    def inject(self, samples: np.ndarray) -> float:
        """Mix audio into the callee's side from the next frame on (the /_sim DTMF and speech injection);
        returns the call time at which it starts. Raises InjectionLimitError, and queues nothing, when
        it would make more than ``MAX_INJECTED_S`` wait to be played."""
        audio = np.asarray(samples, dtype=np.float32)
        self.check_room(len(audio) / self.rate_hz)
        self._injected.append(audio)
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
        return sum(len(part) for part in self._injected) / self.rate_hz

    def take_injected(self, count: int) -> np.ndarray | None:
        """The next ``count`` samples of injected audio, or None when there is none."""
        if not self._injected:
            return None
        out = np.zeros(count, dtype=np.float32)
        filled = 0
        while self._injected and filled < count:
            head = self._injected[0]
            take = min(count - filled, len(head))
            out[filled : filled + take] = head[:take]
            filled += take
            if take == len(head):
                self._injected.pop(0)
            else:
                self._injected[0] = head[take:]
        return out

    @property
    def call_time_s(self) -> float:
        return round(self.frame_index * FRAME_S, 3)

    def emit(self, event_type: str, **data: Any) -> None:
        self._sequence += 1
        event = CallEvent(self.id, self._sequence, event_type, self.call_time_s, utc_now(), data)
        self.engine.store.insert_event(event)
        self.engine.bus.publish(event)

    def now(self) -> str:
        """Wall time of this moment of the call: real on the realtime clock, created_at + call time otherwise."""
        if self.engine.settings.clock == "realtime":
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
        self.engine.store.update_call(self.id, **fields)
        self.emit(f"call.{status}", status=status, **data)


class CallEngine:
    """Places and runs calls. Use as ``async with CallEngine(...) as engine``."""

    def __init__(
        self,
        settings: EngineSettings,
        store: Store | None = None,
        phonebook: Phonebook | None = None,
        synthesizer: SpeechSynthesizer | None = None,
        loader: AudioUrlLoader | None = None,
    ) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = store or Store(settings.data_dir / "ivrsim.sqlite3")
        self.phonebook = phonebook or Phonebook.default_book()
        self.synthesizer = synthesizer or SpeechSynthesizer()
        self.loader = loader or AudioUrlLoader()
        self.bus = EventBus()
        self._tasks: dict[str, asyncio.Task[CallRecord]] = {}
        self._live: dict[str, _LiveCall] = {}
        self._ids = random.Random(settings.seed) if settings.seed is not None else None
        #: Simulated time for the manual clock (None on the virtual and realtime clocks).
        self.timeline = ManualTimeline() if settings.clock == "manual" else None
        #: Ids of the calls ``recover()`` ended; None until it has run.
        self.recovered: list[str] | None = None

    async def __aenter__(self) -> CallEngine:
        self.recover()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop running calls (they end ``failed``: the engine stopped) and wait for them."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self.loader.close()

    def recording_url(self, recording_id: str) -> str:
        return f"{self.settings.public_url or ''}{RECORDINGS_PATH}/{recording_id}.wav"

    def recover(self) -> list[str]:
        """End the calls a previous run left live (once; later calls do nothing). Each recording is
        finalised (WAV header from the file size, duration, completed_at) and announced with
        ``recording.completed``; an answered call ends ``completed``, one never answered ``failed``, with
        the reason. The events go through the bus, so subscribers (the webhook dispatcher) deliver them
        as any other. Returns the ids of the calls ended."""
        if self.recovered is not None:
            return self.recovered
        self.recovered = []
        reason = f"{STOPPED_REASON}; it was ended when ivrsim started again"
        for record in self.store.live_calls():
            events = self.store.events(record.id)
            sequence = events[-1].sequence if events else 0
            end_s = events[-1].call_time_s if events else 0.0
            answered = next((e for e in events if e.type == "call.in-progress"), None)
            answered_s = answered.call_time_s if answered is not None else None

            def emit(event_type: str, call_time_s: float, data: dict[str, Any], call_id: str = record.id) -> None:
                nonlocal sequence
                sequence += 1
                event = CallEvent(call_id, sequence, event_type, round(call_time_s, 3), utc_now(), data)
                self.store.insert_event(event)
                self.bus.publish(event)

            recording = self.store.recording_for_call(record.id)
            if recording is not None and recording.completed_at is None:
                try:
                    duration_s = repair_wav(recording.path)
                except (OSError, ValueError) as error:
                    logger.warning("recovery: recording %s of call %s cannot be repaired (%s); its duration is 0", recording.id, record.id, error)
                    duration_s = 0.0
                self.store.complete_recording(recording.id, duration_s)
                end_s = max(end_s, (answered_s if answered_s is not None else end_s) + duration_s)
                emit("recording.completed", end_s, self._recording_completed(recording.id, duration_s, recording.channels))
            fields: dict[str, Any] = {"ended_at": iso_after(record.created_at, end_s), "reason": reason}
            if answered_s is not None or record.status == "in-progress":
                status = "completed"
                start_s = answered_s if answered_s is not None else end_s
                fields["duration_s"] = round(end_s - start_s, 3)
                if record.answered_at is None:
                    fields["answered_at"] = iso_after(record.created_at, start_s)
            else:
                status = "failed"
            self.store.update_call(record.id, status=status, **fields)
            emit(f"call.{status}", end_s, {"status": status, "reason": reason})
            self.recovered.append(record.id)
            logger.warning("recovery: call %s was live when ivrsim stopped; ended %s", record.id, status)
        return self.recovered

    def _recording_completed(self, recording_id: str, duration_s: float, channels: str) -> dict[str, Any]:
        """The ``recording.completed`` facts: the documented integer ``duration`` (seconds) and the
        precise ``duration_s`` beside it, and the recording's URL (never a server file path)."""
        return {
            "recording_id": recording_id,
            "url": self.recording_url(recording_id),
            "duration": int(round(duration_s)),
            "duration_s": round(duration_s, 3),
            "channels": channels,
        }

    def new_id(self, prefix: str) -> str:
        token = f"{self._ids.getrandbits(80):020x}" if self._ids is not None else secrets.token_hex(10)
        return f"{prefix}_{token}"

    async def place(self, request: CallRequest, then: list[Action] | None = None) -> CallRecord:
        """Store the call as ``queued`` and start it; returns at once, before the call is placed.

        ``then``: actions to run after the request's own (prompt and gather), before hanging up; the
        IVR builder composes calls this way.
        """
        record = self.store.insert_call(self.new_id("call"), request.to, request.from_, request.as_dict())
        call = _LiveCall(self, record, request)
        call.then = list(then or [])
        self._live[record.id] = call
        call.emit("call.queued", status="queued", to=request.to, **{"from": request.from_})
        self._tasks[record.id] = asyncio.create_task(self._run(call), name=record.id)
        return record

    def live_call(self, call_id: str) -> _LiveCall | None:
        """The running call ``call_id``, or None when it is not running (ended, or unknown)."""
        return self._live.get(call_id)

    @property
    def live_count(self) -> int:
        return len(self._live)

    async def wait(self, call_id: str) -> CallRecord:
        """Wait for a call to end; returns its final record."""
        task = self._tasks.get(call_id)
        if task is not None:
            await asyncio.shield(task)
        record = self.store.get_call(call_id)
        if record is None:
            raise KeyError(call_id)
        return record

    # -- one call -------------------------------------------------------------------------------------

    async def _run(self, call: _LiveCall) -> CallRecord:
        try:
            await self._call(call)
        except asyncio.CancelledError:  # the engine is closing: an answered call was a call, and it completed
            call.set_status("completed" if call.answered_frame is not None else "failed", reason=STOPPED_REASON)
        except Exception as error:  # one call's bug never stops the engine
            logger.exception("call %s failed", call.id)
            call.set_status("failed", reason=f"internal error: {type(error).__name__}: {error}")
        finally:
            self._tasks.pop(call.id, None)
            self._live.pop(call.id, None)
        record = self.store.get_call(call.id)
        assert record is not None
        return record

    async def _call(self, call: _LiveCall) -> None:
        request = call.request
        clock = make_clock(self.settings.clock, self.timeline)
        try:
            callee = self.phonebook.callee_for(request.to)
            await callee.prepare(CalleeContext(call.rate_hz, self.synthesizer))
            program = await self._program(call)
        except IvrsimError as error:
            call.set_status("failed", reason=str(error))
            return

        answer = callee.answer()
        if answer.outcome in ("busy", "failed"):
            default = "the callee is busy" if answer.outcome == "busy" else "the call could not be connected"
            call.set_status(answer.outcome, reason=answer.reason or default)
            return
        call.set_status("ringing", callee=callee.label)
        ring_timeout_frames = int(round(request.timeout_s / FRAME_S))
        answer_frames = int(round(answer.answer_time_s / FRAME_S))
        if answer.outcome == "no-answer" or answer_frames > ring_timeout_frames:
            await clock.advance(ring_timeout_frames)
            call.frame_index += ring_timeout_frames
            call.set_status("no-answer", reason=f"no answer within {request.timeout_s:g} s")
            return
        await clock.advance(answer_frames)
        call.frame_index += answer_frames
        call.answered_frame = call.frame_index
        call.set_status("in-progress", rings=answer.rings)
        await self._converse(call, callee, program, clock)

    async def _program(self, call: _LiveCall) -> list[Action]:
        """The Canary request as actions: prompt(s), in a gather if asked, then hang-up."""
        request = call.request
        prompts: list[PlayAudio] = []
        if request.tts is not None:
            tts = request.tts
            prompt = await self.synthesizer.synthesize_async(
                TtsRequest(text=tts.text, voice=tts.voice, speed=tts.speed, pitch=tts.pitch, rate_hz=call.rate_hz)
            )
            prompts.append(PlayAudio("say", prompt.samples, prompt.voice.id, list(prompt.warnings)))
        if request.audio_url is not None:
            audio = await self.loader.load_async(request.audio_url, call.rate_hz)
            prompts.append(PlayAudio("play", audio.samples, request.audio_url))
        program: list[Action] = []
        if request.gather is not None:
            g = request.gather
            if g.type != "dtmf":
                raise InvalidRequestError("gather.type", f"{g.type!r} is not supported yet: speech input arrives with the ASR engine; use 'dtmf'")
            program.append(
                Gather(
                    prompt=prompts,
                    num_digits=g.num_digits,
                    finish_on_key=g.finish_on_key,
                    timeout_s=g.timeout_s,
                    barge_in=g.barge_in,
                    input_type=g.type,
                )
            )
        else:
            program.extend(prompts)
        program.extend(call.then)
        program.append(Hangup())
        return program

    async def _converse(self, call: _LiveCall, callee: Callee, program: list[Action], clock: Clock) -> None:
        request = call.request
        line = self.settings.line
        to_callee = LineModel(LineSettings(**{**asdict(line), "seed": _seed(call.id, line.seed, 1)}))
        to_platform = LineModel(LineSettings(**{**asdict(line), "seed": _seed(call.id, line.seed, 2)}))
        receiver = DtmfReceiver(call.rate_hz)
        recorder = None
        recording_id = None
        if request.record:
            recording_id = self.new_id("rec")
            path = self.settings.data_dir / "recordings" / f"{recording_id}.wav"
            recorder = CallRecorder(path, call.rate_hz, request.recording_channels)  # type: ignore[arg-type]
            self.store.insert_recording(recording_id, call.id, str(path), request.recording_channels)
            call.emit("recording.started", recording_id=recording_id, channels=request.recording_channels)
        answered_s = call.call_time_s
        max_frames = int(round(request.max_duration_s / FRAME_S))
        index = 0
        reason = "the platform hung up"
        try:
            while True:
                out = None
                while index < len(program):
                    out = program[index].frame(call)
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
                if recorder is not None:
                    recorder.write(out, received)
                call.frame_index += 1
                program[index].heard(call, received)
                # A callee that hangs up may still be mid-key: what the receiver holds counts first.
                digits = receiver.feed(received) + (receiver.flush() if callee.hung_up else [])
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
                if callee.hung_up:
                    program[index].hangup(call)
                    reason = "the callee hung up"
                    break
                await clock.advance(1)
        finally:
            if recorder is not None and recording_id is not None:
                recorder.close()
                self.store.complete_recording(recording_id, recorder.duration_s)
                call.emit("recording.completed", **self._recording_completed(recording_id, recorder.duration_s, request.recording_channels))
        call.set_status("completed", reason=reason)


def _seed(call_id: str, base: int, direction: int) -> int:
    """A per-call, per-direction noise seed derived from the call id and the configured seed."""
    return (int.from_bytes(call_id.encode()[-8:].rjust(8, b"\0"), "big") ^ (base * 1_000_003) ^ direction) & 0xFFFFFFFF

"""``/_sim``: the simulator's own control surface (LocalStack's ``/_localstack`` idea), never part of the
hosted APIs: health, reset, the phonebook, injecting DTMF or speech into a live call, the event journal."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from ivrsim.api.deps import ApiKeyDep, Services, ServicesDep
from ivrsim.api.errors import (
    BODY_ERRORS,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_413_TOO_LARGE,
    HTTP_422_UNPROCESSABLE,
    HTTP_503_UNAVAILABLE,
    ApiError,
    error_responses,
)
from ivrsim.api.schemas import NOT_BLANK_PATTERN, STRICT_BODY
from ivrsim.audio.dtmf_generator import DtmfToneSpec, validate_digits
from ivrsim.engine.callees import ScriptError
from ivrsim.engine.runner import (
    CallNotLiveError,
    InjectionLimitError,
    LiveCallHandle,
    WorkerUnavailableError,
)
from ivrsim.exceptions import SpeechError
from ivrsim.phone_numbers import E164_PATTERN, is_e164
from ivrsim.speech.tts import check_prompt_length, estimate_prompt_s
from ivrsim.store.maintenance import recording_files, remove_files
from ivrsim.store.sqlite import Store

router = APIRouter(prefix="/_sim", tags=["simulator"])
#: What the injection endpoints answer besides 200: the body's errors, an unknown call, a call not in progress.
INJECTION_ERRORS = error_responses(401, 404, 409, 503, *BODY_ERRORS)
#: Bounds of the callers registered at run time: one entry's JSON, and how many at once.
MAX_RUNTIME_ENTRY_BYTES = 64 * 1024
MAX_RUNTIME_ENTRIES = 1000
#: How often ``until_idle`` looks at the live calls on a clock that runs by itself, in seconds.
IDLE_POLL_S = 0.02
#: Keys ``digits`` takes: DTMF keys in either case, and w for a 0.5 s pause.
DIGITS_PATTERN = r"^[0-9*#A-Da-dwW]+$"


class DtmfInjection(BaseModel):
    model_config = STRICT_BODY

    digits: str = Field(min_length=1, max_length=64, json_schema_extra={"pattern": DIGITS_PATTERN}, description="Keys to press; w pauses 0.5 s.")
    on_ms: float = Field(default=100.0, ge=10, le=5000)
    off_ms: float = Field(default=100.0, ge=0, le=5000)
    level_dbm0: float = Field(default=-10.0, ge=-60, le=3)
    twist_db: float = Field(default=0.0, ge=-20, le=20)

    @field_validator("digits")
    @classmethod
    def _digits(cls, value: str) -> str:
        return validate_digits(value)


class ClockStep(BaseModel):
    """``advance_s``, ``until_idle``, or both (step, then run until idle); neither: the live calls catch up
    with the present (manual clock)."""

    model_config = STRICT_BODY

    advance_s: Annotated[float, Field(gt=0, le=86_400)] | SkipJsonSchema[None] = Field(default=None, description="Seconds of call time to move forward.")
    until_idle: bool = Field(default=False, description="Run until no call is live: step the manual clock (in steps of step_s), "
                             "or on the virtual and realtime clocks wait for the live calls to end.")
    max_s: float = Field(default=600.0, gt=0, le=86_400, description="With until_idle: the most call time to step (manual clock), "
                         "or the longest to wait in wall seconds (other clocks).")
    step_s: float = Field(default=1.0, gt=0, le=3600, description="With until_idle on the manual clock: the size of each step.")

    @field_validator("advance_s", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:  # left out means "do not step"; null is not a number of seconds
            raise ValueError("must be a number of seconds; leave it out to not step")
        return value


class SpeechInjection(BaseModel):
    model_config = STRICT_BODY

    text: str = Field(min_length=1, max_length=2000, json_schema_extra={"pattern": NOT_BLANK_PATTERN}, description="What the callee says.")
    voice: str | None = Field(default=None, description="A voice id from GET /v1/voice/voices.")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not re.search(NOT_BLANK_PATTERN, value):
            raise ValueError("is blank; give the words the callee says")
        return value


@router.get("/health", summary="Liveness and what is running")
async def health(services: ServicesDep) -> dict[str, Any]:
    return {"status": "ok", "clock": services.settings.clock, "live_calls": services.engine.live_count,
            "mode": "in-process" if services.settings.in_process else "workers"}


@router.post("/reset", dependencies=[ApiKeyDep], summary="Forget all ended calls and analyses", responses=error_responses(401, 409, 413, 415))
async def reset(services: ServicesDep) -> dict[str, Any]:
    if services.engine.live_count:
        raise ApiError(HTTP_409_CONFLICT, "calls_live", f"{services.engine.live_count} call(s) are live; reset once they have ended")
    unfinished = len(services.jobs.store.unfinished_jobs())
    if unfinished:
        raise ApiError(HTTP_409_CONFLICT, "jobs_running", f"{unfinished} analysis job(s) have not ended; reset once they have")
    # The delivery workers stop first, so none of them writes an attempt for a row being deleted; then the
    # rows and files go, off the event loop (a large store takes a while).
    await services.dispatcher.cancel()
    services.engine.phonebook.registered.clear()  # run-time callers are part of the state a reset forgets
    removed = await asyncio.to_thread(_forget_everything, services.engine.store, services.settings.data_dir)
    return {"status": "reset", "recordings_removed": removed}


def _forget_everything(store: Store, data_dir: Path) -> int:
    """Delete every row, then the recordings' files (inside ``data_dir/recordings`` only, each WAV with
    its MP3, by prune's rule); returns how many recordings had files."""
    return sum(1 for recording_id, path in store.reset() if remove_files(recording_files(data_dir, recording_id, path))[0])


@router.get("/phonebook", dependencies=[ApiKeyDep], summary="Who answers which number", responses=error_responses(401))
async def phonebook(services: ServicesDep) -> dict[str, Any]:
    return services.engine.phonebook.describe()


#: What a run-time phonebook entry looks like (its script's steps are checked as a caller script's are).
RUNTIME_ENTRY_SCHEMA: dict[str, Any] = {
    "description": "A phonebook entry: an inline caller script, an answering machine, or a forced outcome.",
    "oneOf": [
        {"type": "object", "required": ["kind", "script"], "additionalProperties": False, "properties": {
            "kind": {"const": "scripted"},
            "script": {"type": "object", "additionalProperties": False, "properties": {
                "name": {"type": "string"}, "description": {"type": "string"},
                "answer_after_rings": {"type": "integer", "minimum": 0, "maximum": 20}, "steps": {"type": "array", "items": {"type": "object"}}}}}},
        {"type": "object", "required": ["kind"], "additionalProperties": False, "properties": {
            "kind": {"const": "machine"}, "greeting": {"type": "string", "maxLength": 2000}, "voice": {"type": "string"},
            "answer_after_rings": {"type": "integer", "minimum": 0, "maximum": 20}, "max_message_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600}}},
        {"type": "object", "required": ["kind"], "additionalProperties": False, "properties": {
            "kind": {"enum": ["busy", "no-answer", "failed"]}, "reason": {"type": "string", "maxLength": 500}}},
    ],
}


def _entry_param(message: str) -> str:
    """The field a phonebook entry's error names: ``script.steps[2].press.digits`` from "step 3: press.digits"."""
    step = re.search(r"step (\d+): (?:([a-z_]+)\.([a-z_]+))?", message)
    if step:
        field = f".{step.group(2)}.{step.group(3)}" if step.group(2) else ""
        return f"script.steps[{int(step.group(1)) - 1}]{field}"
    if re.search(r"\bkind\b", message):
        return "kind"
    if "answer_after_rings" in message:
        return "script.answer_after_rings"
    return "voice" if re.search(r"\bvoice\b", message) else "script"


@router.put("/phonebook/{number}", dependencies=[ApiKeyDep], summary="Register a caller for a number at run time",
            responses=error_responses(401, *BODY_ERRORS))
async def register_caller(
    number: Annotated[str, PathParam(json_schema_extra={"pattern": E164_PATTERN}, description="The E.164 number the caller answers.")],
    entry: Annotated[dict[str, Any], Body(json_schema_extra=RUNTIME_ENTRY_SCHEMA)],
    services: ServicesDep,
) -> dict[str, Any]:
    """The entry is checked as the phonebook file's are (422 naming the step and field); it answers
    ``number`` for calls placed from now on, until DELETE or /_sim/reset."""
    if not is_e164(number):
        raise ApiError(HTTP_422_UNPROCESSABLE, "invalid_parameter", f"number must be E.164 (+ and 8 to 15 digits), got {number[:32]!r}", "number")
    size_bytes = len(json.dumps(entry))
    if size_bytes > MAX_RUNTIME_ENTRY_BYTES:
        raise ApiError(HTTP_413_TOO_LARGE, "too_large", f"the entry is {size_bytes} bytes; keep a run-time caller under "
                       f"{MAX_RUNTIME_ENTRY_BYTES} bytes (put long scripts in the phonebook file)", "script")
    book = services.engine.phonebook
    if number not in book.registered and len(book.registered) >= MAX_RUNTIME_ENTRIES:
        raise ApiError(HTTP_409_CONFLICT, "too_many_callers", f"{MAX_RUNTIME_ENTRIES} callers are registered; DELETE some or /_sim/reset", "number")
    try:
        book.register(number, entry)
    except ScriptError as error:
        message = str(error)
        param = getattr(error, "param", None) or _entry_param(message.split(": ", 1)[-1])
        raise ApiError(HTTP_422_UNPROCESSABLE, "invalid_parameter", message, param) from error
    return {"number": number, "registered": entry}


@router.delete("/phonebook/{number}", dependencies=[ApiKeyDep], summary="Forget a caller registered at run time",
               responses=error_responses(401, 404))
async def unregister_caller(
    number: Annotated[str, PathParam(json_schema_extra={"pattern": E164_PATTERN}, description="The E.164 number to forget.")], services: ServicesDep
) -> dict[str, Any]:
    if not services.engine.phonebook.unregister(number):
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no caller is registered at run time for {number[:32]!r}; "
                       "GET /_sim/phonebook lists them", "number")
    return {"number": number, "deleted": True}


@router.get("/events", dependencies=[ApiKeyDep], summary="The newest events of all calls", responses=error_responses(401, 422))
async def journal(
    services: ServicesDep, limit: Annotated[int, Query(ge=1, le=1000, description="How many events, newest last.")] = 100
) -> dict[str, Any]:
    return {"data": [e.payload() for e in services.engine.store.recent_events(limit)]}


def _live(services: Services, call_id: str) -> LiveCallHandle:
    live = services.engine.live_call(call_id)
    if live is None:
        if services.engine.store.get_call(call_id) is None:
            raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no call {call_id!r}", "id")
        raise ApiError(HTTP_409_CONFLICT, "call_not_live", f"call {call_id} is not in progress", "id")
    if live.status != "in-progress":
        raise ApiError(HTTP_409_CONFLICT, "call_not_live", f"call {call_id} is {live.status}; try again once it is in-progress", "id")
    return live


def _check_room(live: LiveCallHandle, seconds: float, param: str, what: str) -> None:
    """422 before any audio is made when ``seconds`` more would not fit the call's injection queue."""
    try:
        live.check_room(seconds)
    except InjectionLimitError as error:
        raise ApiError(HTTP_422_UNPROCESSABLE, error.code, f"{param}: {what} {error.problem}", param) from error


@contextmanager
def _on_the_call(call_id: str) -> Iterator[None]:
    """A live call's request that could not reach it: the call ended meanwhile (409), or its worker did
    not answer in time (503)."""
    try:
        yield
    except CallNotLiveError as error:
        raise ApiError(HTTP_409_CONFLICT, error.code, f"call {call_id} is not in progress any more ({error})", "id") from error
    except WorkerUnavailableError as error:
        raise ApiError(HTTP_503_UNAVAILABLE, error.code, str(error)) from error


def _refused(error: InjectionLimitError, param: str) -> ApiError:
    return ApiError(HTTP_422_UNPROCESSABLE, error.code, f"{param}: {error.problem}", param)


@router.post(
    "/calls/{call_id}/dtmf", dependencies=[ApiKeyDep], summary="Press keys on the callee's side (real tones)", responses=INJECTION_ERRORS
)
async def inject_dtmf(call_id: str, body: DtmfInjection, services: ServicesDep) -> dict[str, Any]:
    live = _live(services, call_id)
    seconds = len(body.digits) * (body.on_ms + body.off_ms) / 1000.0
    _check_room(live, seconds, "digits", f"{len(body.digits)} digits of on_ms {body.on_ms:g} + off_ms {body.off_ms:g}")
    spec = DtmfToneSpec(on_ms=body.on_ms, off_ms=body.off_ms, level_dbm0=body.level_dbm0, twist_db=body.twist_db)
    try:  # the call makes the tones: the API forwards parameters and does no DSP
        with _on_the_call(call_id):
            injected = await live.press(body.digits, spec)
    except InjectionLimitError as error:
        raise _refused(error, "digits") from error
    return {"call_id": call_id, "injected": "dtmf", "digits": body.digits, "call_time_s": injected.call_time_s}


@router.post(
    "/calls/{call_id}/speech", dependencies=[ApiKeyDep], summary="Speak on the callee's side (TTS audio)", responses=INJECTION_ERRORS
)
async def inject_speech(call_id: str, body: SpeechInjection, services: ServicesDep) -> dict[str, Any]:
    live = _live(services, call_id)
    try:
        estimate_s = sum(estimate_prompt_s(check_prompt_length(body.text)))
        _check_room(live, estimate_s, "text", "the text, spoken,")
        with _on_the_call(call_id):
            injected = await live.say(body.text, body.voice)  # spoken on the call's side
    except SpeechError as error:
        raise ApiError(HTTP_422_UNPROCESSABLE, error.code, str(error), "voice" if "voice" in error.code else "text") from error
    except InjectionLimitError as error:
        raise _refused(error, "text") from error
    return {"call_id": call_id, "injected": "speech", "duration_s": injected.duration_s, "call_time_s": injected.call_time_s}


@router.post(
    "/calls/{call_id}/hangup", dependencies=[ApiKeyDep], summary="Hang up on the callee's side", responses=error_responses(401, 404, 409, 503)
)
async def hang_up(call_id: str, services: ServicesDep) -> dict[str, Any]:
    """The callee puts the phone down at the next frame: the call ends ``completed`` with the reason, as
    when a caller script hangs up (events and webhooks follow as usual)."""
    live = _live(services, call_id)
    with _on_the_call(call_id):
        call_time_s = await live.hangup()
    return {"call_id": call_id, "hangup": "callee", "call_time_s": call_time_s}


@router.get("/clock", dependencies=[ApiKeyDep], summary="The clock, and where manual time is", responses=error_responses(401))
async def get_clock(services: ServicesDep) -> dict[str, Any]:
    timeline = services.engine.timeline
    return {"clock": services.settings.clock, "now_s": timeline.now_s if timeline else None}


@router.post("/clock", dependencies=[ApiKeyDep], summary="Step the manual clock, or run until idle", responses=error_responses(401, 409, *BODY_ERRORS))
async def step_clock(body: ClockStep, services: ServicesDep) -> dict[str, Any]:
    """Answers once every live call has reached the new present (its events at that time are stored).
    ``until_idle``: also works on the virtual and realtime clocks, where it waits for the calls to end."""
    timeline = services.engine.timeline
    engine = services.engine
    if timeline is None:
        if not body.until_idle:
            raise ApiError(
                HTTP_409_CONFLICT, "clock_not_manual",
                f"the clock is {services.settings.clock} and runs by itself; start the server with --clock manual to step it",
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + body.max_s
        while engine.live_count and loop.time() < deadline:  # the calls run by themselves: wait for them, bounded
            await asyncio.sleep(IDLE_POLL_S)
        return {"clock": services.settings.clock, "now_s": None, "idle": engine.live_count == 0, "live_calls": engine.live_count}
    now_s = await timeline.advance(body.advance_s) if body.advance_s is not None else timeline.now_s
    with _on_the_call("*"):
        await engine.executor.settle_clock(timeline.now_frames)  # the calls have caught up when this answers
    if not body.until_idle:
        return {"clock": "manual", "now_s": now_s}
    stepped_s = 0.0
    while engine.live_count and stepped_s < body.max_s:
        step_s = min(body.step_s, body.max_s - stepped_s)
        await timeline.advance(step_s)
        stepped_s += step_s
        with _on_the_call("*"):
            await engine.executor.settle_clock(timeline.now_frames)
    return {"clock": "manual", "now_s": timeline.now_s, "idle": engine.live_count == 0, "live_calls": engine.live_count}

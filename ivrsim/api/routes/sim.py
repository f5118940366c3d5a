"""``/_sim``: the simulator's own control surface (LocalStack's ``/_localstack`` idea), never part of the
hosted APIs: health, reset, the phonebook, injecting DTMF or speech into a live call, the event journal."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ivrsim.api.deps import ApiKeyDep, Services, ServicesDep
from ivrsim.api.errors import HTTP_404_NOT_FOUND, HTTP_409_CONFLICT, HTTP_422_UNPROCESSABLE, ApiError
from ivrsim.audio.dtmf_generator import DtmfToneSpec, generate_dtmf, validate_digits
from ivrsim.exceptions import SpeechError
from ivrsim.speech.tts import TtsRequest

router = APIRouter(prefix="/_sim", tags=["simulator"])


class DtmfInjection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    digits: str = Field(min_length=1, max_length=64)
    on_ms: float = Field(default=100.0, ge=10, le=5000)
    off_ms: float = Field(default=100.0, ge=0, le=5000)
    level_dbm0: float = Field(default=-10.0, ge=-60, le=3)
    twist_db: float = Field(default=0.0, ge=-20, le=20)

    @field_validator("digits")
    @classmethod
    def _digits(cls, value: str) -> str:
        return validate_digits(value)


class ClockStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    advance_s: float = Field(gt=0, le=86_400, description="Seconds of call time to move forward.")


class SpeechInjection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=2000)
    voice: str | None = None


@router.get("/health", summary="Liveness and what is running")
async def health(services: ServicesDep) -> dict[str, Any]:
    return {"status": "ok", "clock": services.settings.clock, "live_calls": services.engine.live_count}


@router.post("/reset", dependencies=[ApiKeyDep], summary="Forget all ended calls")
async def reset(services: ServicesDep) -> dict[str, Any]:
    if services.engine.live_count:
        raise ApiError(HTTP_409_CONFLICT, "calls_live", f"{services.engine.live_count} call(s) are live; reset once they have ended")
    services.engine.store.reset()
    return {"status": "reset"}


@router.get("/phonebook", dependencies=[ApiKeyDep], summary="Who answers which number")
async def phonebook(services: ServicesDep) -> dict[str, Any]:
    return services.engine.phonebook.describe()


@router.get("/events", dependencies=[ApiKeyDep], summary="The newest events of all calls")
async def journal(services: ServicesDep, limit: int = 100) -> dict[str, Any]:
    return {"data": [e.payload() for e in services.engine.store.recent_events(max(1, min(limit, 1000)))]}


def _live(services: Services, call_id: str) -> Any:
    live = services.engine.live_call(call_id)
    if live is None:
        if services.engine.store.get_call(call_id) is None:
            raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no call {call_id!r}", "id")
        raise ApiError(HTTP_409_CONFLICT, "call_not_live", f"call {call_id} is not in progress", "id")
    if live.status != "in-progress":
        raise ApiError(HTTP_409_CONFLICT, "call_not_live", f"call {call_id} is {live.status}; inject once it is in-progress", "id")
    return live


@router.post("/calls/{call_id}/dtmf", dependencies=[ApiKeyDep], summary="Press keys on the callee's side (real tones)")
async def inject_dtmf(call_id: str, body: DtmfInjection, services: ServicesDep) -> dict[str, Any]:
    live = _live(services, call_id)
    spec = DtmfToneSpec(on_ms=body.on_ms, off_ms=body.off_ms, level_dbm0=body.level_dbm0, twist_db=body.twist_db)
    at = live.inject(generate_dtmf(body.digits, live.rate_hz, spec))
    return {"call_id": call_id, "injected": "dtmf", "digits": body.digits, "call_time_s": at}


@router.post("/calls/{call_id}/speech", dependencies=[ApiKeyDep], summary="Speak on the callee's side (TTS audio)")
async def inject_speech(call_id: str, body: SpeechInjection, services: ServicesDep) -> dict[str, Any]:
    live = _live(services, call_id)
    try:
        prompt = await services.engine.synthesizer.synthesize_async(TtsRequest(body.text, voice=body.voice, rate_hz=live.rate_hz))
    except SpeechError as error:
        raise ApiError(HTTP_422_UNPROCESSABLE, error.code, str(error), "voice" if "voice" in error.code else "text") from error
    at = live.inject(prompt.samples)
    return {"call_id": call_id, "injected": "speech", "duration_s": round(prompt.duration_s, 3), "call_time_s": at}


@router.get("/clock", dependencies=[ApiKeyDep], summary="The clock, and where manual time is")
async def get_clock(services: ServicesDep) -> dict[str, Any]:
    timeline = services.engine.timeline
    return {"clock": services.settings.clock, "now_s": timeline.now_s if timeline else None}


@router.post("/clock", dependencies=[ApiKeyDep], summary="Step the manual clock")
async def step_clock(body: ClockStep, services: ServicesDep) -> dict[str, Any]:
    timeline = services.engine.timeline
    if timeline is None:
        raise ApiError(
            HTTP_409_CONFLICT, "clock_not_manual",
            f"the clock is {services.settings.clock} and runs by itself; start the server with --clock manual to step it",
        )
    return {"clock": "manual", "now_s": await timeline.advance(body.advance_s)}

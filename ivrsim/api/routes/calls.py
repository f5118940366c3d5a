"""``/v1/voice/calls``: place calls, read them, their events, recordings and webhook deliveries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, StreamingResponse

from ivrsim.api.deps import ApiKeyDep, Services, ServicesDep
from ivrsim.api.errors import HTTP_404_NOT_FOUND, HTTP_422_UNPROCESSABLE, ApiError
from ivrsim.api.schemas import CallCreate, CallPublic, RecordingPublic
from ivrsim.exceptions import SsmlError, UnknownVoiceError
from ivrsim.speech.ssml import looks_like_ssml, parse_ssml
from ivrsim.store.sqlite import CallRecord
from ivrsim.webhooks.dispatcher import FINAL_EVENTS

#: Seconds between keep-alive comments on an idle event stream.
SSE_HEARTBEAT_S = 15.0

router = APIRouter(prefix="/v1/voice", tags=["calls"])
public = APIRouter(prefix="/v1/voice", tags=["recordings"])


def call_public(record: CallRecord) -> dict[str, Any]:
    return CallPublic(
        id=record.id,
        to=record.to,
        from_=record.from_,
        status=record.status,
        direction=record.direction,
        created_at=record.created_at,
        updated_at=record.updated_at,
        answered_at=record.answered_at,
        ended_at=record.ended_at,
        duration=record.duration_s,
        reason=record.reason,
    ).model_dump(by_alias=True)


def _known_call(services: Services, call_id: str) -> CallRecord:
    record = services.engine.store.get_call(call_id)
    if record is None:
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no call {call_id!r}; GET /v1/voice/calls lists the calls", "id")
    return record


@router.post("/calls", dependencies=[ApiKeyDep], summary="Place a call")
async def create_call(body: CallCreate, services: ServicesDep) -> dict[str, Any]:
    """Validates, stores the call as ``queued`` and returns at once; the call is placed asynchronously."""
    verified = services.settings.verified_numbers
    if body.from_ not in verified:
        raise ApiError(
            HTTP_422_UNPROCESSABLE,
            "unverified_number",
            f"from {body.from_} is not a verified number; verified: {', '.join(verified)}. Add one with "
            "`ivrsim serve --verified-number +1555...` or IVRSIM_VERIFIED_NUMBERS",
            "from",
        )
    if body.tts is not None:
        try:
            services.catalog.get(body.tts.voice)
            if looks_like_ssml(body.tts.text):
                parse_ssml(body.tts.text)
        except UnknownVoiceError as error:
            raise ApiError(HTTP_422_UNPROCESSABLE, "unknown_voice", str(error), "tts.voice") from error
        except SsmlError as error:
            raise ApiError(HTTP_422_UNPROCESSABLE, "invalid_ssml", str(error), "tts.text") from error
    if body.gather is not None and body.gather.type == "speech":
        raise ApiError(HTTP_422_UNPROCESSABLE, "unsupported", "gather.type 'speech' arrives with the ASR engine; use 'dtmf'", "gather.type")
    record = await services.engine.place(body.to_request())
    return {
        "id": record.id,
        "to": record.to,
        "from": record.from_,
        "status": "queued",
        "direction": "outbound",
        "created_at": record.created_at,
    }


@router.get("/calls", dependencies=[ApiKeyDep], summary="List calls, newest first")
async def list_calls(
    services: ServicesDep,
    status: Annotated[str | None, Query(pattern="^(queued|ringing|in-progress|completed|busy|no-answer|failed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    starting_after: Annotated[str | None, Query(description="A call id: the page after it.")] = None,
) -> dict[str, Any]:
    if starting_after is not None:
        _known_call(services, starting_after)
    records = services.engine.store.list_calls(status=status, limit=limit + 1, before=starting_after)
    page = records[:limit]
    return {"data": [call_public(r) for r in page], "has_more": len(records) > limit, "next_starting_after": page[-1].id if len(records) > limit else None}


@router.get("/calls/{call_id}", dependencies=[ApiKeyDep], summary="A call's status and timestamps")
async def get_call(call_id: str, services: ServicesDep) -> dict[str, Any]:
    return call_public(_known_call(services, call_id))


@router.get("/calls/{call_id}/events", dependencies=[ApiKeyDep], summary="A call's timeline")
async def get_events(call_id: str, services: ServicesDep, after: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
    _known_call(services, call_id)
    events = [e.payload() for e in services.engine.store.events(call_id) if e.sequence > after]
    return {"data": events}


@router.get("/calls/{call_id}/events/stream", dependencies=[ApiKeyDep], summary="A call's timeline, live (server-sent events)")
async def stream_events(call_id: str, services: ServicesDep, after: Annotated[int, Query(ge=0)] = 0) -> StreamingResponse:
    """Every event after ``after`` as ``text/event-stream``: what is stored first, then each new one as it
    happens, until the call's final status. A comment line every 15 s keeps proxies from closing it."""
    _known_call(services, call_id)
    engine = services.engine
    queue, unsubscribe = engine.bus.queue(call_id)  # subscribe before reading, so nothing falls between

    async def events() -> AsyncIterator[str]:
        try:
            last = after
            backlog = [e for e in engine.store.events(call_id) if e.sequence > last]
            ended = engine.live_call(call_id) is None
            while True:
                for event in backlog:
                    if event.sequence <= last:
                        continue
                    last = event.sequence
                    yield f"id: {event.sequence}\nevent: {event.type}\ndata: {json.dumps(event.payload())}\n\n"
                    if event.type in FINAL_EVENTS:
                        return
                if ended and queue.empty():
                    return
                try:
                    backlog = [await asyncio.wait_for(queue.get(), timeout=SSE_HEARTBEAT_S)]
                except TimeoutError:
                    backlog = []
                    yield ": keep-alive\n\n"
        finally:
            unsubscribe()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/calls/{call_id}/recording", dependencies=[ApiKeyDep], summary="A call's recording")
async def get_recording(call_id: str, request: Request, services: ServicesDep) -> dict[str, Any]:
    record = _known_call(services, call_id)
    if not record.request.get("record"):
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"call {call_id} was placed without record: true, so it has no recording", "id")
    recording = services.engine.store.recording_for_call(call_id)
    if recording is None or recording.completed_at is None:
        why = "the call has not been answered yet" if recording is None else "the call is still in progress"
        if recording is None and record.status in ("completed", "busy", "no-answer", "failed"):
            why = f"the call ended {record.status} before it was answered"
        raise ApiError(HTTP_404_NOT_FOUND, "recording_not_ready", f"no recording yet: {why}", "id")
    url = str(request.url_for("recording_file", recording_id=recording.id))
    return RecordingPublic(
        id=recording.id, call_id=call_id, duration=round(recording.duration_s or 0.0, 3), url=url, transcription=None, channels=recording.channels
    ).model_dump()


@router.get("/calls/{call_id}/webhooks", dependencies=[ApiKeyDep], summary="The call's webhook delivery log")
async def get_webhooks(call_id: str, services: ServicesDep) -> dict[str, Any]:
    _known_call(services, call_id)
    return {"data": services.engine.store.deliveries(call_id=call_id)}


@public.get("/recordings/{recording_id}.wav", name="recording_file", summary="A recording's WAV file")
async def recording_file(recording_id: str, services: ServicesDep) -> FileResponse:
    """Served without a key, like a hosted recording URL; ids are 80-bit random."""
    row = services.engine.store.recording(recording_id)
    if row is None or row.completed_at is None or not Path(row.path).is_file():
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no recording {recording_id!r}", "recording_id")
    return FileResponse(row.path, media_type="audio/wav", filename=f"{recording_id}.wav")

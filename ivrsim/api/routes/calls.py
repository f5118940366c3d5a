"""``/v1/voice/calls``: place calls, read them, their events, recordings and webhook deliveries."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from ivrsim.analysis.transcripts import transcription_document
from ivrsim.api.deps import ApiKeyDep, Services, ServicesDep
from ivrsim.api.errors import BODY_ERRORS, HTTP_404_NOT_FOUND, HTTP_409_CONFLICT, HTTP_422_UNPROCESSABLE, ApiError, error_responses
from ivrsim.api.idempotency import IdempotencyKey, idempotent
from ivrsim.api.routes.flows import checked_document, known_flow
from ivrsim.api.schemas import CallCreate, CallCreated, CallList, CallPublic, RecordingPublic
from ivrsim.exceptions import AudioUrlError, SsmlError, UnknownVoiceError
from ivrsim.speech.asr.engines import language_of_voice
from ivrsim.speech.tts import PromptTooLongError, check_prompt_length
from ivrsim.store.sqlite import CallRecord
from ivrsim.webhooks.dispatcher import FINAL_EVENTS

#: Seconds between keep-alive comments on an idle event stream.
SSE_HEARTBEAT_S = 15.0

#: Statuses a call can have (schemas.CALL_STATUSES), as a type for the ``status`` query parameter.
CallStatus = Literal["queued", "ringing", "in-progress", "completed", "busy", "no-answer", "failed"]

#: One server-sent event as the stream carries it (keep-alive comments carry none).
SSE_EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "The event's sequence number: pass it as ?after= to resume after it."},
        "event": {"type": "string", "description": "The event type, e.g. call.ringing."},
        "data": {"type": "string", "contentMediaType": "application/json", "description": "The event as JSON, as webhooks carry it."},
    },
    "required": ["data"],
}

router = APIRouter(prefix="/v1/voice", tags=["calls"], responses=error_responses(401, 422))
public = APIRouter(prefix="/v1/voice", tags=["recordings"], responses=error_responses(404, 422))


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


def _known_call(services: Services, call_id: str, param: str = "id") -> CallRecord:
    record = services.engine.store.get_call(call_id)
    if record is None:
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no call {call_id!r}; GET /v1/voice/calls lists the calls", param)
    return record


@router.post(
    "/calls",
    dependencies=[ApiKeyDep],
    summary="Place a call",
    response_model=None,
    responses={200: {"model": CallCreated, "description": "The call, queued."}, **error_responses(*BODY_ERRORS, 409)},
)
async def create_call(body: CallCreate, services: ServicesDep, idempotency_key: IdempotencyKey = None) -> dict[str, Any] | JSONResponse:
    """Validates, stores the call as ``queued`` and returns at once; the call is placed asynchronously.
    With ``Idempotency-Key``, a retry returns the first response instead of placing a second call."""
    dump = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return await idempotent(
        services.engine.store, "POST /v1/voice/calls", idempotency_key, dump, services.settings.idempotency_ttl_s, lambda: _place(body, services)
    )


async def _place(body: CallCreate, services: Services) -> dict[str, Any]:
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
            check_prompt_length(body.tts.text, body.tts.speed)  # parses the SSML; refuses hours of <break>s
        except UnknownVoiceError as error:
            raise ApiError(HTTP_422_UNPROCESSABLE, "unknown_voice", str(error), "tts.voice") from error
        except SsmlError as error:
            raise ApiError(HTTP_422_UNPROCESSABLE, "invalid_ssml", str(error), "tts.text") from error
        except PromptTooLongError as error:
            raise ApiError(HTTP_422_UNPROCESSABLE, error.code, f"tts.{error}", "tts.text") from error
    if body.audio_url is not None:
        try:
            services.engine.loader.check(body.audio_url)  # local paths outside the media roots, bad schemes
        except AudioUrlError as error:
            raise ApiError(HTTP_422_UNPROCESSABLE, error.code, str(error), "audio_url") from error
    gather = body.gather
    if gather is not None and gather.type == "speech":  # speech only: without a model the gather cannot work
        language = gather.language or body.language or language_of_voice(body.tts.voice if body.tts is not None else None)
        missing = await asyncio.to_thread(services.speech.missing_model, language)  # lists model folders: off the loop
        if missing is not None:
            where = "gather.language" if gather.language else ("language" if body.language else "the tts voice's language")
            raise ApiError(HTTP_422_UNPROCESSABLE, "no_speech_model", f"gather: speech in {language} ({where}): {missing}; "
                           "or use gather.type 'dtmf speech' to take keys as well", "gather.language")
    request = body.to_request()
    if body.flow is not None:  # validated here, so that a bad flow is a 422 naming its path, not a failed call
        request = dataclasses.replace(request, flow=await asyncio.to_thread(checked_document, body.flow, "flow"))
    elif body.flow_id is not None:
        stored = known_flow(services, body.flow_id, "flow_id", HTTP_422_UNPROCESSABLE)
        request = dataclasses.replace(request, flow=stored.document)  # the call carries the document (a worker needs nothing else)
    record = await services.engine.place(request)
    return {
        "id": record.id,
        "to": record.to,
        "from": record.from_,
        "status": "queued",
        "direction": "outbound",
        "created_at": record.created_at,
    }


@router.get(
    "/calls",
    dependencies=[ApiKeyDep],
    summary="List calls, newest first",
    response_model=None,
    responses={200: {"model": CallList, "description": "A page of calls."}, **error_responses(404)},
)
async def list_calls(
    services: ServicesDep,
    status: Annotated[CallStatus | None, Query(description="Only calls with this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Calls per page.")] = 50,
    starting_after: Annotated[str | None, Query(description="A call id from the previous page: the page after it.")] = None,
) -> dict[str, Any]:
    if starting_after is not None:
        _known_call(services, starting_after, "starting_after")
    records = services.engine.store.list_calls(status=status, limit=limit + 1, before=starting_after)
    page = records[:limit]
    return {"data": [call_public(r) for r in page], "has_more": len(records) > limit, "next_starting_after": page[-1].id if len(records) > limit else None}


@router.get(
    "/calls/{call_id}",
    dependencies=[ApiKeyDep],
    summary="A call's status and timestamps",
    response_model=None,
    responses={200: {"model": CallPublic, "description": "The call."}, **error_responses(404)},
)
async def get_call(call_id: str, services: ServicesDep) -> dict[str, Any]:
    return call_public(_known_call(services, call_id))


@router.get("/calls/{call_id}/events", dependencies=[ApiKeyDep], summary="A call's timeline", responses=error_responses(404))
async def get_events(call_id: str, services: ServicesDep, after: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
    _known_call(services, call_id)
    events = [e.payload() for e in services.engine.store.events(call_id) if e.sequence > after]
    return {"data": events}


@router.get(
    "/calls/{call_id}/events/stream",
    dependencies=[ApiKeyDep],
    summary="A call's timeline, live (server-sent events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events: `id` the sequence, `event` the type, `data` the event as JSON.",
            "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
        },
        **error_responses(404),
    },
)
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


@router.get(
    "/calls/{call_id}/recording",
    dependencies=[ApiKeyDep],
    summary="A call's recording",
    response_model=None,
    responses={200: {"model": RecordingPublic, "description": "The recording."}, **error_responses(404, 409)},
)
async def get_recording(call_id: str, services: ServicesDep) -> dict[str, Any]:
    record = _known_call(services, call_id)
    # The call exists: a recording it lacks is the call's state (409), not an unknown id (404).
    if not record.request.get("record"):
        raise ApiError(HTTP_409_CONFLICT, "not_recorded", f"call {call_id} was placed without record: true, so it has no recording", "id")
    recording = services.engine.store.recording_for_call(call_id)
    if recording is None or recording.completed_at is None:
        why = "the call has not been answered yet" if recording is None else "the call is still in progress"
        if recording is None and record.status in ("completed", "busy", "no-answer", "failed"):
            why = f"the call ended {record.status} before it was answered"
        raise ApiError(HTTP_409_CONFLICT, "recording_not_ready", f"no recording yet: {why}", "id")
    duration_s = recording.duration_s or 0.0
    return RecordingPublic(
        id=recording.id,
        call_id=call_id,
        duration=int(round(duration_s)),
        duration_s=round(duration_s, 3),
        url=services.engine.recording_url(recording.id),  # the same URL recording.completed carried
        transcription=_transcription(services, record, recording.id),
        channels=recording.channels,
    ).model_dump()


def _transcription(services: Services, record: CallRecord, recording_id: str) -> dict[str, Any] | None:
    """The recording's transcript: null without ``transcribe``; in progress until its job has ended."""
    if not record.request.get("transcribe"):
        return None
    return transcription_document(services.engine.store.transcription_job(recording_id))


@router.get("/calls/{call_id}/webhooks", dependencies=[ApiKeyDep], summary="The call's webhook delivery log", responses=error_responses(404))
async def get_webhooks(call_id: str, services: ServicesDep) -> dict[str, Any]:
    _known_call(services, call_id)
    return {"data": services.engine.store.deliveries(call_id=call_id)}


def _recording_path(services: Services, recording_id: str) -> Path:
    row = services.engine.store.recording(recording_id)
    if row is None or row.completed_at is None or not Path(row.path).is_file():
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no recording {recording_id!r}", "recording_id")
    return Path(row.path)


@public.get(
    "/recordings/{recording_id}.wav",
    name="recording_file",
    summary="A recording's WAV file",
    response_class=FileResponse,
    responses={200: {"description": "The recording, 16-bit PCM WAV.", "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def recording_file(recording_id: str, services: ServicesDep) -> FileResponse:
    """Served without a key, like a hosted recording URL; ids are 80-bit random."""
    return FileResponse(_recording_path(services, recording_id), media_type="audio/wav", filename=f"{recording_id}.wav")


@public.get(
    "/recordings/{recording_id}.mp3",
    name="recording_mp3",
    summary="A recording's MP3 file",
    response_class=FileResponse,
    responses={200: {"description": "The recording as MP3, made from the WAV on first request.", "content": {"audio/mpeg": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def recording_mp3(recording_id: str, services: ServicesDep) -> FileResponse:
    """The WAV converted to MP3 on the transcoder's own thread, once however many ask at the same time;
    the MP3 is kept beside the WAV."""
    mp3 = await services.mp3.mp3_beside(_recording_path(services, recording_id))
    return FileResponse(mp3, media_type="audio/mpeg", filename=f"{recording_id}.mp3")

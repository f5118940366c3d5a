"""``GET /ui/api/calls/{id}/envelope.json``: the recording's min/max envelope for the call page's waveform;
``GET /ui/api/analyses/calls/{callId}/envelope.json`` (and ``/recording``): the same for a Canonical call's
recording, which the server finds from what the call was submitted with (ivrsim/ui/analyses.py).

The envelope is computed off the event loop (a 10-minute recording is a 19 MB read) and kept per
(recording file, mtime, columns) on ``app.state.ui_envelopes``; the DSP-free numpy reduction lives in
ivrsim/ui/envelope.py. Session-authenticated like the rest of /ui/api.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import soundfile
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response

from ivrsim.api.deps import Services, ServicesDep
from ivrsim.api.errors import HTTP_404_NOT_FOUND, HTTP_409_CONFLICT, ApiError
from ivrsim.store.sqlite import LIVE_STATUSES
from ivrsim.ui.analyses import canonical_recording
from ivrsim.ui.auth import require_session
from ivrsim.ui.envelope import DEFAULT_COLUMNS, MAX_COLUMNS, MIN_COLUMNS, EnvelopeCache

router = APIRouter(prefix="/ui/api", include_in_schema=False, dependencies=[Depends(require_session)])


def envelope_cache(request: Request) -> EnvelopeCache:
    """The app's envelope cache, made on first use (one per app, not per process; called on the event
    loop's thread, so there is no race to make it)."""
    state = request.app.state
    cache = getattr(state, "ui_envelopes", None)
    if cache is None:
        cache = state.ui_envelopes = EnvelopeCache()
    return cache


def _recording_of(services: Services, call_id: str) -> tuple[Path, float | None]:
    """The call's finished recording file and the call time it starts at (the answer); 404 for an unknown
    call, 409 when it has no recording (yet)."""
    store = services.engine.store
    record = store.get_call(call_id)
    if record is None:
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no call {call_id!r}; the call list at /ui shows the calls", "id")
    if not record.request.get("record"):
        raise ApiError(HTTP_409_CONFLICT, "not_recorded", f"call {call_id} was placed without record: true, so it has no waveform", "id")
    recording = store.recording_for_call(call_id)
    if recording is None and record.status not in LIVE_STATUSES:
        raise ApiError(HTTP_409_CONFLICT, "no_recording", f"call {call_id} ended ({record.status}) without being answered, so it has no recording", "id")
    if recording is None or recording.completed_at is None or not Path(recording.path).is_file():
        raise ApiError(HTTP_409_CONFLICT, "recording_not_ready", f"call {call_id}'s recording is not finished yet; the waveform follows when it is", "id")
    answered = next((e for e in store.events(call_id) if e.type == "call.in-progress"), None)
    return Path(recording.path), None if answered is None else answered.call_time_s


Columns = Annotated[int, Query(ge=MIN_COLUMNS, le=MAX_COLUMNS, description="Columns of the envelope (about the canvas's device pixels).")]


async def envelope_response(request: Request, path: Path, answered_s: float | None, columns: int) -> Response:
    """The envelope document of the recording at ``path``, a file the server resolved itself (from a call
    or an analysis it stores; never a path from the request): computed off the event loop, cached."""
    body = await asyncio.to_thread(envelope_cache(request).document_json, path, columns, answered_s)
    return Response(body, media_type="application/json", headers={"Cache-Control": "private, no-cache"})


@router.get("/calls/{call_id}/envelope.json")
async def envelope_json(call_id: str, request: Request, services: ServicesDep, columns: Columns = DEFAULT_COLUMNS) -> Response:
    """``{rate_hz, duration_s, answered_s, columns, lanes: [{name, min, max}]}``: lane 1 the platform,
    lane 2 the callee (one lane, ``mix``, for a mono recording); ``answered_s`` is the call time the
    recording starts at, so an event at call time t sits at t - answered_s."""
    path, answered_s = await asyncio.to_thread(_recording_of, services, call_id)
    return await envelope_response(request, path, answered_s, columns)


@router.get("/analyses/calls/{call_id:path}/envelope.json")
async def analysis_envelope_json(call_id: str, request: Request, services: ServicesDep, columns: Columns = DEFAULT_COLUMNS) -> Response:
    """A Canonical call's recording as an envelope (``answered_s`` null: the analysis's times are the
    recording's); lanes by channel, as the file has them."""
    path = await asyncio.to_thread(canonical_recording, services, call_id)
    try:
        return await envelope_response(request, path, None, columns)
    except (RuntimeError, soundfile.LibsndfileError) as error:  # a format soundfile cannot read (an MP3 in the media cache)
        raise ApiError(HTTP_409_CONFLICT, "recording_unreadable", f"call {call_id}'s recording is in a format the waveform cannot read "
                       f"({type(error).__name__}); its numbers are on the page", "call_id") from None


@router.get("/analyses/calls/{call_id:path}/recording")
async def analysis_recording(call_id: str, services: ServicesDep) -> FileResponse:
    """The recording a Canonical call was analysed from, for the page's player."""
    path = await asyncio.to_thread(canonical_recording, services, call_id)
    kind = sniff_kind(path)
    return FileResponse(path, media_type=kind, headers={"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"})


def sniff_kind(path: Path) -> str:
    """The audio type by the file's first bytes (a media-cache file has no useful name)."""
    with path.open("rb") as file:
        head = file.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"fLaC":
        return "audio/flac"
    if head[:4] == b"OggS":
        return "audio/ogg"
    if head[:3] == b"ID3" or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    return "application/octet-stream"

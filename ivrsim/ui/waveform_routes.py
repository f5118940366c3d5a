"""``GET /ui/api/calls/{id}/envelope.json``: the recording's min/max envelope for the call page's waveform.

The envelope is computed off the event loop (a 10-minute recording is a 19 MB read) and kept per
(recording file, mtime, columns) on ``app.state.ui_envelopes``; the DSP-free numpy reduction lives in
ivrsim/ui/envelope.py. Session-authenticated like the rest of /ui/api.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ivrsim.api.deps import Services, ServicesDep
from ivrsim.api.errors import HTTP_404_NOT_FOUND, HTTP_409_CONFLICT, ApiError
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
    if recording is None or recording.completed_at is None or not Path(recording.path).is_file():
        raise ApiError(HTTP_409_CONFLICT, "recording_not_ready", f"call {call_id}'s recording is not finished yet; the waveform follows when it is", "id")
    answered = next((e for e in store.events(call_id) if e.type == "call.in-progress"), None)
    return Path(recording.path), None if answered is None else answered.call_time_s


@router.get("/calls/{call_id}/envelope.json")
async def envelope_json(
    call_id: str,
    request: Request,
    services: ServicesDep,
    columns: Annotated[int, Query(ge=MIN_COLUMNS, le=MAX_COLUMNS, description="Columns of the envelope (about the canvas's device pixels).")] = DEFAULT_COLUMNS,
) -> Response:
    """``{rate_hz, duration_s, answered_s, columns, lanes: [{name, min, max}]}``: lane 1 the platform,
    lane 2 the callee (one lane, ``mix``, for a mono recording); ``answered_s`` is the call time the
    recording starts at, so an event at call time t sits at t - answered_s."""
    path, answered_s = await asyncio.to_thread(_recording_of, services, call_id)
    body = await asyncio.to_thread(envelope_cache(request).document_json, path, columns, answered_s)
    return Response(body, media_type="application/json", headers={"Cache-Control": "private, no-cache"})

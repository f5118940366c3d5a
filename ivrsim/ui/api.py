"""``/ui/api``: what the dashboard's pages fetch, behind the session cookie: a call's events (the same
payloads as ``GET /v1/voice/calls/{id}/events``), every call's events live (SSE), table rows, webhook
deliveries, recordings, and the live-control POSTs (keypad, say, hang up), which run the very code of
``/_sim/calls/{id}/...``: the handlers are called, not copied."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from ivrsim.api.deps import ServicesDep
from ivrsim.api.errors import HTTP_404_NOT_FOUND, HTTP_422_UNPROCESSABLE, ApiError
from ivrsim.api.routes import calls as call_routes
from ivrsim.api.routes import sim
from ivrsim.ui.auth import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, CsrfDep, Session, SessionDep, form_fields, ui_auth
from ivrsim.ui.pages import callee_of
from ivrsim.ui.templating import environment

router = APIRouter(prefix="/ui/api", include_in_schema=False)

#: Seconds between keep-alive comments on an idle stream, and how often a stream checks for shutdown.
HEARTBEAT_S = 15.0
SHUTDOWN_POLL_S = 0.5
#: Events one slow browser may fall behind by before its stream tells it to reload instead.
MAX_BACKLOG = 10_000
#: Form fields of the control POSTs that are not the injection's own.
_NOT_BODY = {CSRF_FIELD, "next"}

Model = TypeVar("Model", bound=BaseModel)


def validated(model: type[Model], data: dict[str, Any]) -> Model:
    """``data`` as ``model``, or a 422 naming the first bad field (the API's shape and wording)."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise ApiError(HTTP_422_UNPROCESSABLE, "invalid_parameter", f"{param}: {first['msg']}" if param else first["msg"], param) from None


def wants_json(request: Request) -> bool:
    """A script's request (fetch with the CSRF header, or asking for JSON) gets JSON; a plain form post
    gets a redirect back to the call's page."""
    return CSRF_HEADER.lower() in request.headers or "application/json" in request.headers.get("accept", "")


def _back(call_id: str, session: Session, notice: str) -> RedirectResponse:
    session.notices.append(notice)
    return RedirectResponse(f"/ui/calls/{call_id}#control", status_code=303)


def _fields(raw: dict[str, Any], numbers: tuple[str, ...] = ()) -> dict[str, Any]:
    """The form's fields for an injection body: blanks dropped, ``numbers`` as floats when they parse."""
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _NOT_BODY or value == "" or value is None:
            continue
        if name in numbers and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass  # left as text: validation names the field
        out[name] = value
    return out


async def _control(request: Request, call_id: str, session: Session, run: Any, done: str) -> Response:
    """Run one control action; JSON for scripts, a redirect with a notice for forms (errors too)."""
    try:
        result = await run()
    except ApiError as error:
        if wants_json(request):
            raise
        return _back(call_id, session, f"Not done: {error.message}")
    if wants_json(request):
        return JSONResponse(result)
    return _back(call_id, session, done.format(**result))


@router.post("/calls/{call_id}/dtmf")
async def press_keys(call_id: str, request: Request, services: ServicesDep, session: CsrfDep) -> Response:
    """The keypad: ``digits`` (and the optional tone fields of /_sim), through /_sim's own handler."""
    fields = _fields(await form_fields(request), ("on_ms", "off_ms", "level_dbm0", "twist_db"))

    async def run() -> dict[str, Any]:
        return await sim.inject_dtmf(call_id, validated(sim.DtmfInjection, fields), services)

    return await _control(request, call_id, session, run, "Pressed {digits} at {call_time_s:.2f} s.")


@router.post("/calls/{call_id}/speech")
async def say(call_id: str, request: Request, services: ServicesDep, session: CsrfDep) -> Response:
    """The say box: ``text`` (and ``voice``) spoken on the callee's side, through /_sim's handler."""
    fields = _fields(await form_fields(request))

    async def run() -> dict[str, Any]:
        return await sim.inject_speech(call_id, validated(sim.SpeechInjection, fields), services)

    return await _control(request, call_id, session, run, "Said it ({duration_s:.1f} s of speech) at {call_time_s:.2f} s.")


@router.post("/calls/{call_id}/hangup")
async def hang_up(call_id: str, request: Request, services: ServicesDep, session: CsrfDep) -> Response:
    async def run() -> dict[str, Any]:
        return await sim.hang_up(call_id, services)

    return await _control(request, call_id, session, run, "Hung up at {call_time_s:.2f} s.")


@router.get("")
async def session_check(_: SessionDep) -> dict[str, Any]:
    """A cheap check the pages make when their event stream fails: 200 while the session lasts, 401 once it
    has gone (the server restarted, or the browser logged out), so the page can say so instead of retrying."""
    return {"session": "active"}


@router.get("/calls/{call_id}/facts", response_class=HTMLResponse)
async def call_facts(call_id: str, services: ServicesDep, _: SessionDep) -> HTMLResponse:
    """The call page's facts (status, answered, ended, duration) as rendered on page load; the page swaps
    them in when the call's status changes."""
    record = services.engine.store.get_call(call_id)
    if record is None:
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no call {call_id!r}", "call_id")
    html = environment().get_template("_call_facts.html").render(call=record, flow_id=record.request.get("flow_id"))
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@router.get("/calls/{call_id}/events")
async def call_events(call_id: str, services: ServicesDep, _: SessionDep, after: int = 0) -> dict[str, Any]:
    """The same payloads as ``GET /v1/voice/calls/{id}/events``."""
    return await call_routes.get_events(call_id, services, max(after, 0))


def session_lasts(request: Request) -> bool:
    """Whether the request's session is still open (a stream ends when its browser logs out, so the page
    hears 401 on reconnecting and says the session ended)."""
    return ui_auth(request).session(request.cookies.get(SESSION_COOKIE)) is not None


async def while_session_lasts(request: Request, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """``chunks`` until they end or the session does (checked every SHUTDOWN_POLL_S while they are idle)."""
    iterator = aiter(chunks)
    ended = object()

    async def following() -> Any:
        return await anext(iterator, ended)

    pending: asyncio.Task[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.create_task(following())
            done, _ = await asyncio.wait({pending}, timeout=SHUTDOWN_POLL_S)
            if not done:
                if not session_lasts(request):
                    return
                continue
            chunk = pending.result()
            pending = None
            if chunk is ended:
                return
            yield chunk
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


@router.get("/calls/{call_id}/events/stream")
async def call_event_stream(call_id: str, request: Request, services: ServicesDep, _: SessionDep, after: int = 0) -> StreamingResponse:
    """One call's events live, from ``GET /v1/voice/calls/{id}/events/stream``'s own generator (it ends
    with the call), as unnamed events (the type is in ``data``), so a page's ``onmessage`` gets them all."""
    named = await call_routes.stream_events(call_id, services, max(after, 0))

    async def unnamed() -> AsyncIterator[str]:
        async for chunk in while_session_lasts(request, named.body_iterator):
            text = chunk if isinstance(chunk, str) else bytes(chunk).decode()
            yield "".join(line for line in text.splitlines(keepends=True) if not line.startswith("event: "))

    return StreamingResponse(unnamed(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/calls/{call_id}/webhooks")
async def call_webhooks(call_id: str, services: ServicesDep, _: SessionDep) -> dict[str, Any]:
    """The call's webhook deliveries with every attempt (as ``GET /v1/voice/calls/{id}/webhooks``)."""
    return await call_routes.get_webhooks(call_id, services)


@router.get("/calls/{call_id}/row", response_class=HTMLResponse)
async def call_row(call_id: str, services: ServicesDep, _: SessionDep, status: str = "", number: str = "") -> Response:
    """One row of the calls table (the list page swaps it in live); 204 when the filters leave it out."""
    record = services.engine.store.get_call(call_id)
    if record is None:
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no call {call_id!r}", "call_id")
    if (status and record.status != status) or (number and number not in record.to and number not in record.from_):
        return Response(status_code=204)
    html = environment().get_template("_call_row.html").render(call=record, callee_of=callee_of(services))
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@router.get("/recordings/{recording_id}.wav")
async def recording(recording_id: str, services: ServicesDep, _: SessionDep) -> FileResponse:
    """The recording for the page's audio element (the same file as /v1/voice/recordings/{id}.wav)."""
    return await call_routes.recording_file(recording_id, services)


@router.get("/events/stream")
async def all_events(request: Request, services: ServicesDep, _: SessionDep) -> StreamingResponse:
    """Every call's events as they happen (``text/event-stream``, unnamed events: ``data`` is the event
    as webhooks carry it, ``id`` is ``call_id:sequence``). Nothing is replayed: the page renders what is
    stored and this brings what follows. It ends when the server shuts down (the browser reconnects)."""
    closing: asyncio.Event | None = getattr(request.app.state, "closing", None)
    # Bounded: a browser that stopped reading holds at most MAX_BACKLOG events, however busy the server is.
    queue, unsubscribe = services.engine.bus.queue(None, max_events=MAX_BACKLOG)

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n: connected\n\n"
            idle_s = 0.0
            while (closing is None or not closing.is_set()) and session_lasts(request):
                if queue.overflowed:  # it fell behind and events were dropped: tell it to start over
                    while not queue.empty():
                        queue.get_nowait()
                    queue.overflowed = False
                    yield "event: overflow\ndata: {}\n\n"
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=SHUTDOWN_POLL_S)
                except TimeoutError:
                    idle_s += SHUTDOWN_POLL_S
                    if idle_s >= HEARTBEAT_S:
                        idle_s = 0.0
                        yield ": keep-alive\n\n"
                    continue
                idle_s = 0.0
                yield f"id: {event.call_id}:{event.sequence}\ndata: {json.dumps(event.payload())}\n\n"
        finally:
            unsubscribe()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

"""Worker sessions (``/_internal/workers``, a WebSocket per worker) and what /_sim says of the workers."""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ivrsim.api.deps import ApiKeyDep, ServicesDep
from ivrsim.api.errors import HTTP_503_UNAVAILABLE, ApiError, error_responses
from ivrsim.workers.hub import SessionClosed, WorkerHub
from ivrsim.workers.protocol import SESSION_PATH

router = APIRouter()

#: WebSocket close codes (RFC 6455 section 7.4.1).
POLICY_VIOLATION = 1008


class StarletteSessionSocket:
    """``SessionSocket`` over Starlette's WebSocket: JSON text frames."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def receive(self) -> list[dict[str, Any]]:
        try:
            frame = json.loads(await self.websocket.receive_text())
        except WebSocketDisconnect as gone:
            why = "it stopped answering the session's pings" if gone.code == 1011 else "its connection was lost"
            raise SessionClosed(f"{why}: the process died, froze or lost its network (WebSocket close code {gone.code})") from None
        except (KeyError, RuntimeError):  # a binary frame, or a receive after the close
            raise SessionClosed("it sent something other than JSON text") from None
        messages = frame if isinstance(frame, list) else [frame]
        if not messages or not all(isinstance(message, dict) for message in messages):
            raise ValueError("a session frame is a JSON object, or an array of them")
        return messages

    async def send(self, message: dict[str, Any]) -> None:
        try:
            await self.websocket.send_text(json.dumps(message, separators=(",", ":")))
        except (WebSocketDisconnect, RuntimeError):
            pass  # the reader hears of the close

    async def close(self, code: int, reason: str) -> None:
        try:
            await self.websocket.close(code, reason)
        except RuntimeError:
            pass


@router.websocket(SESSION_PATH)
async def worker_session(websocket: WebSocket) -> None:
    """A worker's session: its token is the one in the jobs this server queued (``Authorization: Bearer``)."""
    services = websocket.app.state.services
    hub = services.engine.executor
    if not isinstance(hub, WorkerHub):
        await websocket.close(POLICY_VIOLATION, "this server runs calls in its own process (--workers 0 without --queue)")
        return
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), hub.token.encode()):
        await websocket.close(POLICY_VIOLATION, "not a token of this server's run; the jobs that carried it were ended")
        return
    await websocket.accept()
    await hub.serve_session(StarletteSessionSocket(websocket))


@router.get("/_sim/workers", dependencies=[ApiKeyDep], summary="Where calls run: the queue and its workers", responses=error_responses(401, 503))
async def list_workers(services: ServicesDep) -> dict[str, Any]:
    """``live_calls``: calls not ended (queued ones too); ``running_calls``: those a worker runs now;
    ``queued`` / ``queued_jobs``: waiting in the queue (``queued_by_lane`` for each lane)."""
    hub = services.engine.executor
    if not isinstance(hub, WorkerHub):
        return {"mode": "in-process", "queue": None, "queued": 0, "queued_jobs": 0, "queued_by_lane": {}, "live_calls": services.engine.live_count,
                "running_calls": services.engine.live_count, "workers": []}
    try:
        pending = await asyncio.to_thread(hub.pending)
    except Exception as error:  # redis, sqlite: whatever the storage raises
        raise ApiError(HTTP_503_UNAVAILABLE, "queue_unreachable", f"the queue {hub.queue.where} cannot be reached ({type(error).__name__}); "
                       "check that it runs") from error
    sessions = hub.sessions()
    return {"mode": "workers", "queue": hub.queue.where, "queued": pending["calls"] + pending["phone"], "queued_jobs": pending["jobs"],
            "queued_by_lane": pending, "live_calls": hub.live_count, "running_calls": sum(s["live_calls"] for s in sessions), "workers": sessions}

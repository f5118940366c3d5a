"""The web dashboard (issue 14): server-rendered pages under ``/ui`` and their cookie-authenticated JSON
and event streams under ``/ui/api``; templates and vendored static files live in this package.

``ui_router`` is included once by ``ivrsim.api.app``; ``/`` redirects to ``/ui``.
"""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from ivrsim.api.errors import HTTP_404_NOT_FOUND, ApiError
from ivrsim.ui import api, auth, pages, waveform_routes
from ivrsim.ui.templating import STATIC

ui_router = APIRouter(include_in_schema=False)
ui_router.include_router(auth.router)
ui_router.include_router(api.router)
ui_router.include_router(pages.router)
ui_router.include_router(waveform_routes.router)  # GET /ui/api/calls/{id}/envelope.json (the waveform's min/max envelope)


@ui_router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


@ui_router.get("/ui/static/{name:path}")
async def static_file(name: str) -> FileResponse:
    """A vendored or own static file; no session needed (the login page uses the CSS)."""
    root = STATIC.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no static file {name!r}", "name")
    kind = "text/javascript" if path.suffix in (".js", ".mjs") else (mimetypes.guess_type(path.name)[0] or "application/octet-stream")
    return FileResponse(path, media_type=kind, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


__all__ = ["ui_router"]

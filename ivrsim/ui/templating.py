"""Jinja2 for the dashboard: templates inside the package, autoescaped, with the helpers pages share."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = int(round(seconds))
    return f"{whole // 60}:{whole % 60:02d}" if whole >= 60 else f"{seconds:.1f} s"


def _when(iso: str | None) -> str:
    """An ISO 8601 UTC time as 'YYYY-MM-DD HH:MM:SS' (the page says it is UTC)."""
    return iso.replace("T", " ")[:19] if iso else "—"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["duration"] = _duration
    env.filters["when"] = _when
    env.filters["segment"] = lambda value: quote(str(value), safe="")  # one URL path segment: "/" and ".." cannot escape it
    env.filters["pretty_json"] = lambda value: json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False)
    return env


#: What the pages may load: only their own scripts, styles, media and streams (no inline script or style: the
#: pages have none; the analysis page's marks are a JSON data block, which is not run), and no framing.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: Headers on every dashboard page.
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                "X-Frame-Options": "DENY", "Content-Security-Policy": CONTENT_SECURITY_POLICY}


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template ``name`` as an HTML response; ``session`` (when logged in) gives the CSRF token."""
    html = environment().get_template(name).render(request=request, path=request.url.path, **context)
    return HTMLResponse(html, status_code=status_code, headers=dict(PAGE_HEADERS))

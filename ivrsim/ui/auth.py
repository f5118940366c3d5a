"""The dashboard's login: a server-side session behind an HTTP-only cookie, CSRF tokens, one-click links.

The dashboard is behind the same API key as the APIs. A browser cannot send ``Authorization: Bearer`` on
page loads, so logging in (the key in a form, or the one-click link ``ivrsim serve`` prints) opens a
session: a random token in the ``ivrsim_session`` cookie (HttpOnly, SameSite=Strict), the session itself
kept in this process (a restart logs everyone out; nothing secret is stored in the browser).

Every state-changing request also carries the session's CSRF token (form field ``csrf_token`` or header
``X-CSRF-Token``); the login form, before any session exists, uses a double-submit cookie.

One-click links carry ``issued.nonce.signature``: an HMAC of the API key, so the CLI can mint one without
reaching into the server; the server accepts each nonce once, within ``ui_login_token_ttl_s``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from ivrsim.api.errors import HTTP_401_UNAUTHORIZED, ApiError
from ivrsim.ui.page_errors import PageRoute

logger = logging.getLogger(__name__)

SESSION_COOKIE = "ivrsim_session"
#: The login form's double-submit cookie (no session exists yet to hold its CSRF token).
LOGIN_CSRF_COOKIE = "ivrsim_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
#: Where a logged-in user lands by default.
HOME = "/ui"
#: Client addresses the login throttle remembers at most (a flood of addresses cannot grow it without bound).
MAX_THROTTLED_ADDRESSES = 10_000
#: The largest form body the dashboard parses, in bytes (the app's body limit applies before this too).
MAX_FORM_BYTES = 64 * 1024


@dataclass
class Session:
    """One logged-in browser: its cookie token, its CSRF token, when it expires (time.time seconds)."""

    token: str
    csrf_token: str
    expires_at_s: float
    #: Messages for the next page this session loads (what a form post did), shown once.
    notices: list[str] = field(default_factory=list)


def _sign(api_key: str, message: str) -> str:
    digest = hmac.new(api_key.encode(), f"ivrsim-ui-login:{message}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def mint_login_token(api_key: str, now_s: float | None = None) -> str:
    """A one-click login token for a server with ``api_key``, issued at ``now_s`` (default: now)."""
    issued_s = int(time.time() if now_s is None else now_s)
    nonce = secrets.token_urlsafe(12)
    message = f"{issued_s}.{nonce}"
    return f"{message}.{_sign(api_key, message)}"


def login_link(base_url: str, api_key: str) -> str:
    """The one-click link ``ivrsim serve`` prints: it opens the dashboard logged in, once."""
    return f"{base_url.rstrip('/')}/ui/login/token?token={quote(mint_login_token(api_key))}"


@dataclass
class UiAuth:
    """The dashboard's sessions and spent one-click tokens, for one app (kept on ``app.state.ui_auth``)."""

    api_key: str
    session_ttl_s: float
    login_token_ttl_s: float
    clock: Callable[[], float] = time.time
    sessions: dict[str, Session] = field(default_factory=dict)
    #: Nonces of one-click tokens already used -> when they would have expired anyway (then forgotten).
    spent: dict[str, float] = field(default_factory=dict)
    #: Wrong keys one client address may send within ``failure_window_s`` before its logins are refused.
    max_failures: int = 10
    failure_window_s: float = 60.0
    #: Client address -> when its recent wrong keys came (oldest first); bounded to MAX_THROTTLED_ADDRESSES.
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def key_ok(self, key: str) -> bool:
        """The server's API key; never true when the server has none (the API is locked then, and so is the page)."""
        return bool(key) and bool(self.api_key) and hmac.compare_digest(key.strip().encode(), self.api_key.encode())

    def open_session(self) -> Session:
        self._forget_expired()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock() + self.session_ttl_s)
        self.sessions[session.token] = session
        return session

    def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self.sessions.get(token)
        if session is None or session.expires_at_s <= self.clock():
            self.sessions.pop(token, None)
            return None
        return session

    def close_session(self, token: str | None) -> None:
        if token:
            self.sessions.pop(token, None)

    def redeem(self, token: str) -> bool:
        """True once for a well-signed token younger than ``login_token_ttl_s``; False when forged,
        malformed, expired or already used."""
        parts = token.split(".")
        if not self.api_key or len(parts) != 3 or not parts[0].isdigit():
            return False  # with no key anyone could sign a token
        issued_s, nonce, signature = int(parts[0]), parts[1], parts[2]
        if not hmac.compare_digest(signature.encode(), _sign(self.api_key, f"{parts[0]}.{nonce}").encode()):
            return False
        now_s = self.clock()
        expires_s = issued_s + self.login_token_ttl_s
        if now_s > expires_s or issued_s > now_s + 60:  # expired, or from a clock far ahead
            return False
        self.spent = {n: at for n, at in self.spent.items() if at > now_s}
        if nonce in self.spent:
            return False
        self.spent[nonce] = expires_s
        return True

    def retry_after_s(self, address: str) -> float | None:
        """Seconds until ``address`` may try a key again (its oldest counted failure leaves the window), or
        None when it may now."""
        now_s = self.clock()
        times = self.failures.get(address)
        if not times:
            return None
        while times and times[0] <= now_s - self.failure_window_s:
            times.popleft()
        if not times:
            del self.failures[address]
            return None
        if len(times) < self.max_failures:
            return None
        return times[0] + self.failure_window_s - now_s

    def note_failure(self, address: str) -> None:
        """Count a wrong key from ``address``. The table stays bounded: past MAX_THROTTLED_ADDRESSES, the
        addresses whose failures are all outside the window go, then the least recent."""
        now_s = self.clock()
        times = self.failures.pop(address, None) or deque(maxlen=self.max_failures)
        times.append(now_s)
        self.failures[address] = times  # re-inserted: the dict is ordered by last failure
        if len(self.failures) > MAX_THROTTLED_ADDRESSES:
            for stale in [a for a, t in self.failures.items() if t[-1] <= now_s - self.failure_window_s]:
                del self.failures[stale]
            while len(self.failures) > MAX_THROTTLED_ADDRESSES:
                del self.failures[next(iter(self.failures))]

    def _forget_expired(self) -> None:
        now_s = self.clock()
        for token in [t for t, s in self.sessions.items() if s.expires_at_s <= now_s]:
            del self.sessions[token]


def ui_auth(request: Request) -> UiAuth:
    """The app's ``UiAuth``, made on first use from the server's settings."""
    state = request.app.state
    auth = getattr(state, "ui_auth", None)
    if auth is None:
        settings = state.services.settings
        auth = UiAuth(settings.api_key or "", settings.ui_session_ttl_s, settings.ui_login_token_ttl_s,
                      max_failures=settings.ui_login_max_failures, failure_window_s=settings.ui_login_failure_window_s)
        state.ui_auth = auth
    return auth


def _is_api(request: Request) -> bool:
    return request.url.path == "/ui/api" or request.url.path.startswith("/ui/api/")


async def require_session(request: Request) -> Session:
    """The request's session; without one, pages redirect to the login form and /ui/api answers 401."""
    session = ui_auth(request).session(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        return session
    if _is_api(request):
        raise ApiError(HTTP_401_UNAUTHORIZED, "unauthorized", "log in at /ui/login first: the dashboard's API needs its session cookie")
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise ApiError(303, "login_required", "log in at /ui/login with the server's API key", headers={"Location": f"/ui/login?next={quote(here)}"})


SessionDep = Annotated[Session, Depends(require_session)]


async def form_fields(request: Request) -> dict[str, str]:
    """The body's fields: a URL-encoded form or a JSON object (values as given), parsed once per request.
    Other content types give no fields."""
    cached = getattr(request.state, "ui_form", None)
    if cached is not None:
        return cached
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields: dict[str, Any] = {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ApiError(413, "body_too_large", f"the form is over {MAX_FORM_BYTES} bytes; send less")
    if kind == "application/x-www-form-urlencoded":
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_form", "the form is not UTF-8 text") from None
    elif kind == "application/json" and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            raise ApiError(400, "invalid_json", "the body is not valid JSON; send a JSON object") from None
        if not isinstance(parsed, dict):
            raise ApiError(400, "invalid_json", "the body must be a JSON object")
        fields = parsed
    request.state.ui_form = fields
    return fields


async def require_csrf(request: Request, session: SessionDep) -> Session:
    """A state-changing dashboard request must carry its session's CSRF token (field or header)."""
    given = request.headers.get(CSRF_HEADER) or str((await form_fields(request)).get(CSRF_FIELD) or "")
    if not given or not hmac.compare_digest(given.encode(), session.csrf_token.encode()):
        raise ApiError(403, "csrf_failed", f"the request lacks this session's CSRF token: send the form's {CSRF_FIELD} field "
                       f"or the {CSRF_HEADER} header (reload the page to get it)", CSRF_FIELD)
    return session


CsrfDep = Annotated[Session, Depends(require_csrf)]


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a dashboard path only (no other host, no scheme)."""
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target and "\n" not in target:
        return target
    return HOME


def set_session_cookie(response: Response, request: Request, session: Session, max_age_s: float) -> None:
    response.set_cookie(SESSION_COOKIE, session.token, max_age=int(max_age_s), path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


router = APIRouter(prefix="/ui", include_in_schema=False, route_class=PageRoute)


def _login_page(request: Request, status_code: int = 200, error: str | None = None, next_url: str = HOME) -> HTMLResponse:
    from ivrsim.ui.templating import render

    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", status_code=status_code, login_csrf=token, error=error, next_url=safe_next(next_url))
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, path="/ui/login", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = HOME) -> Response:  # noqa: A002 - the query parameter's name
    if ui_auth(request).session(request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, next_url=next)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    fields = await form_fields(request)
    next_url = safe_next(str(fields.get("next") or HOME))
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    given = str(fields.get(CSRF_FIELD) or "")
    if not cookie or not hmac.compare_digest(given.encode(), cookie.encode()):
        return _login_page(request, 403, "The form expired or came from another page: try again.", next_url)
    auth = ui_auth(request)
    address = request.client.host if request.client else "unknown"
    wait_s = auth.retry_after_s(address)
    if wait_s is not None:
        seconds = max(1, math.ceil(wait_s))
        at = time.strftime("%H:%M:%S", time.gmtime(time.time() + seconds))
        logger.warning("dashboard login throttled for %s: %d wrong keys within %g s", address, auth.max_failures, auth.failure_window_s)
        response = _login_page(request, 429, f"Too many wrong keys from this address ({auth.max_failures} within {auth.failure_window_s:g} s): "
                               f"try again in {seconds} s (at {at} UTC).", next_url)
        response.headers["Retry-After"] = str(seconds)
        return response
    if not auth.key_ok(str(fields.get("api_key") or "")):
        auth.note_failure(address)
        logger.warning("dashboard login refused: wrong API key from %s", address)
        return _login_page(request, 401, Markup("That is not this server's API key. <code>ivrsim serve</code> prints it at start-up "
                                                "(or IVRSIM_API_KEY sets it)."), next_url)
    session = auth.open_session()
    response = RedirectResponse(next_url, status_code=303)
    set_session_cookie(response, request, session, auth.session_ttl_s)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui/login")
    return response


@router.get("/login/token", response_class=HTMLResponse)
async def login_with_token(request: Request, token: str = "") -> Response:
    """The one-click link. Answers a page that moves on to the dashboard itself (not a redirect): a
    SameSite=Strict cookie set on a navigation that came from another site is only sent once the browser
    navigates again from this origin."""
    from ivrsim.ui.templating import render

    auth = ui_auth(request)
    if not auth.redeem(token):
        return _login_page(request, 401, "That login link has expired or was used already: log in with the API key.")
    session = auth.open_session()
    response = render(request, "logged_in.html", next_url=HOME)
    set_session_cookie(response, request, session, auth.session_ttl_s)
    return response


@router.post("/logout")
async def logout(request: Request, session: CsrfDep) -> Response:
    ui_auth(request).close_session(session.token)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

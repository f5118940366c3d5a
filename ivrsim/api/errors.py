"""The one error shape, and the translation of every failure into it at the HTTP boundary.

``{"error": {"code": "invalid_parameter", "message": "...", "param": "to"}}`` with the right status:
400 malformed, 401 no or bad key, 404 unknown id, 405 wrong method (with ``Allow``), 408 body too slow,
409 wrong state, 413 too large, 415 wrong content type, 422 fails validation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

HTTP_400_BAD_REQUEST = 400
HTTP_401_UNAUTHORIZED = 401
HTTP_404_NOT_FOUND = 404
HTTP_405_METHOD_NOT_ALLOWED = 405
HTTP_408_REQUEST_TIMEOUT = 408
HTTP_409_CONFLICT = 409
HTTP_413_TOO_LARGE = 413
HTTP_415_UNSUPPORTED_MEDIA_TYPE = 415
HTTP_422_UNPROCESSABLE = 422
HTTP_503_UNAVAILABLE = 503


class ApiError(Exception):
    """An error the API answers with: status, a stable code, a message saying what to fix, the field."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers


def error_body(code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "param": param}}


#: Paths answered in the shape of the hosted Canonical service (Fastify's), not ours: ivrsim/api/routes/canonical.py.
FASTIFY_SHAPED_PREFIX = "/api/v1/"
#: Fastify's codes for the errors the middlewares and handlers below give.
_FASTIFY_CODES = {"body_too_large": "FST_ERR_CTP_BODY_TOO_LARGE", "unsupported_media_type": "FST_ERR_CTP_INVALID_MEDIA_TYPE",
                  "invalid_json": "FST_ERR_CTP_INVALID_JSON_BODY", "not_found": "FST_ERR_NOT_FOUND"}


def fastify_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """Fastify's error shape (``statusCode``, ``error``: the status' name, ``message``, ``code`` where there is
    one) plus our ``param``."""
    body: dict[str, Any] = {"statusCode": status, "error": "Payload Too Large" if status == 413 else HTTPStatus(status).phrase, "message": message}
    if code is not None:
        body["code"] = code
    body["param"] = param
    return body


def shaped_error(path: str, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error in the shape ``path`` answers in: ours, or Fastify's under ``FASTIFY_SHAPED_PREFIX``."""
    if path.startswith(FASTIFY_SHAPED_PREFIX):
        return JSONResponse(fastify_body(status, message, None, _FASTIFY_CODES.get(code)), status_code=status, headers=headers)
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_parameter, not_found.")
    message: str = Field(description="What is wrong and how to fix it.")
    param: str | None = Field(description="The field, query parameter or header at fault (dotted for nested fields), or null.")


class ErrorResponse(BaseModel):
    """The one error shape of every endpoint."""

    error: ErrorDetail


_ERROR_WHY = {
    400: "Malformed request: the body is not valid JSON, or a header is unusable.",
    401: "No API key, or a wrong one (send 'Authorization: Bearer <key>').",
    404: "No such resource.",
    408: "The request body did not arrive in time.",
    409: "The resource is in the wrong state for this request.",
    413: "The request body is too large.",
    415: "The body is not JSON.",
    422: "A parameter fails validation; param names it.",
    503: "The worker running the call did not answer in time; try again.",
}
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for ``statuses``, each with the real error shape."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": _ERROR_WHY[status]}
        if status in _ERROR_HEADERS:
            entry["headers"] = _ERROR_HEADERS[status]
        out[status] = entry
    return out


#: Errors of every request that carries a JSON body.
BODY_ERRORS = (400, 408, 413, 415, 422)


def _param(location: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join("from" if p == "from_" else p for p in parts) or None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error_body(error.code, error.message, error.param), status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = list(error.errors())
        first: dict[str, Any] = dict(problems[0]) if problems else {"loc": (), "msg": "invalid request", "type": "value_error"}
        if first.get("type") == "json_invalid":
            detail = first.get("ctx", {}).get("error", "")
            return JSONResponse(
                error_body("invalid_json", f"the body is not valid JSON ({detail}); send a JSON object", None), status_code=HTTP_400_BAD_REQUEST
            )
        code, message, param = _describe(request, first, problems)
        if len(problems) > 1 and code != "missing_parameter":
            message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
        return JSONResponse(error_body(code, message, param), status_code=HTTP_422_UNPROCESSABLE)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        message = str(error.detail)
        headers = error.headers
        if error.status_code == HTTP_400_BAD_REQUEST and isinstance(error.__cause__, Exception):
            # FastAPI's "There was an error parsing the body": say why, never echoing the body.
            code = "invalid_json"
            message = f"the body is not valid JSON ({_unparsable_because(error.__cause__)}); send a JSON object encoded as UTF-8"
        elif error.status_code == HTTP_404_NOT_FOUND:
            message = "no such endpoint; see /docs for the API"
        elif error.status_code == HTTP_405_METHOD_NOT_ALLOWED:
            # Starlette's Allow names the methods of the first route on this path; a path has one route per method.
            allowed = _methods_for(app, request)
            headers = {**(error.headers or {}), "Allow": ", ".join(allowed)}
            message = f"{request.url.path} does not take {request.method}; it takes {', '.join(allowed)}"
        return shaped_error(request.url.path, error.status_code, code, message, headers)


def _unparsable_because(cause: Exception) -> str:
    """Why a body the JSON decoder gave up on is unusable, in words that do not quote the body."""
    if isinstance(cause, RecursionError):
        return "arrays or objects are nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return f"it is not UTF-8 text: the byte at position {cause.start} is not valid UTF-8"
    return f"it cannot be decoded ({type(cause).__name__})"


def _methods_for(app: FastAPI, request: Request) -> list[str]:
    """Every method some route of ``app`` answers on the request's path."""
    found = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in app.router.routes):
            found.append(method)
    return found


#: What a JSON type is called in a message.
_JSON_TYPES = {str: "a string", bool: "true or false", int: "an integer", float: "a number", list: "an array", dict: "an object", type(None): "null"}
#: Pydantic's strict-type errors, reworded: what the field takes.
_TYPE_WANTS = {
    "int_type": "an integer (a JSON number without quotes, e.g. 30)",
    "float_type": "a number (without quotes, e.g. 1.5)",
    "bool_type": "true or false (without quotes)",
    "string_type": "a string",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "dict_type": "an object",
    "list_type": "an array",
    "int_from_float": "a whole number",
}
#: What a pattern-checked parameter takes, in words (a regex is no help to a reader).
_PATTERN_WANTS = {
    "Idempotency-Key": "1 to 255 visible ASCII characters (letters, digits, punctuation; no spaces or accents), e.g. a UUID",
}


def _describe(request: Request, first: dict[str, Any], problems: list[Any]) -> tuple[str, str, str | None]:
    """(code, message, param) for the first validation problem, in words a user reads without the source."""
    location = tuple(first.get("loc", ()))
    param = _param(location)
    kind = str(first.get("type"))
    if kind == "missing":
        if param is None:  # the whole body is absent
            required = _required_body_fields(request)
            wants = f" with {required}" if required else ""
            return "missing_parameter", f"the request body is required: send a JSON object{wants}", None
        parent = location[:-1]
        missing = [_param(tuple(p["loc"])) for p in problems if p.get("type") == "missing" and tuple(p["loc"])[:-1] == parent]
        names = [name for name in missing if name]
        where = {"query": "query parameter", "header": "header", "path": "path parameter"}.get(str(location[0]), "field")
        if len(names) == 1:
            return "missing_parameter", f"{names[0]} is required; it is a {where} of this endpoint (see /docs)", param
        return "missing_parameter", f"{', '.join(names[:-1])} and {names[-1]} are required; they are {where}s of this endpoint (see /docs)", param
    if kind == "extra_forbidden":
        return "invalid_parameter", f"{param} is not a parameter of this endpoint; check the spelling against the API docs", param
    message = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    if kind == "int_type" and isinstance(first.get("input"), float):
        message = "must be a whole number (e.g. 30), not a fraction"
    elif kind == "string_pattern_mismatch" and param in _PATTERN_WANTS:
        empty = first.get("input") == ""
        message = f"{'is empty; send' if empty else 'must be'} {_PATTERN_WANTS[param]}" + (", or leave the header out" if empty else "")
    elif kind in _TYPE_WANTS:
        got = _JSON_TYPES.get(type(first.get("input")), "another type")
        message = f"must be {_TYPE_WANTS[kind]}, not {got}"
    elif kind == "finite_number":
        message = "must be a finite number (NaN and Infinity are not numbers in JSON)"
    elif message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
    elif message.startswith("String should "):
        message = "must " + message.removeprefix("String should ")
    if param:
        message = f"{param}: {message}" if not message.startswith(("must ", "is ")) else f"{param} {message}"
    elif message.startswith("must "):
        message = f"the body {message}"
    return "invalid_parameter", message, param


def _required_body_fields(request: Request) -> str:
    """'to, from and either tts or audio_url' for the route's body model, from the model itself."""
    route = request.scope.get("route")
    field = getattr(route, "body_field", None)
    model = getattr(getattr(field, "field_info", None), "annotation", None)
    fields = getattr(model, "model_fields", None)
    if not fields:
        return ""
    names = [info.alias or name for name, info in fields.items() if info.is_required()]
    either = (getattr(model, "model_config", {}).get("json_schema_extra") or {}).get("anyOf", [])
    alternatives = [alt["required"][0] for alt in either if isinstance(alt, dict) and alt.get("required")]
    if alternatives:
        names.append("either " + " or ".join(alternatives))
    if not names:
        return ""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413, whether or not Content-Length is sent.
    Paths under ``exempt_prefixes`` (raw uploads) stream to disk under their route's own cap; paths under
    one of ``larger`` (prefix, bytes, setting) have a cap of their own (a long call's Retell webhook)."""

    def __init__(self, app: ASGIApp, max_bytes: int, exempt_prefixes: tuple[str, ...] = (),
                 larger: tuple[tuple[str, int, str], ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt_prefixes = exempt_prefixes
        self.larger = larger

    def _limit(self, path: str) -> tuple[int, str]:
        return next(((cap, setting) for prefix, cap, setting in self.larger if path.startswith(prefix)), (self.max_bytes, "IVRSIM_MAX_BODY_BYTES"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        max_bytes, _ = self._limit(scope["path"])
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await self._refuse(scope, send)
            return
        received = 0
        refused = False

        async def limited() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > max_bytes:
                    refused = True  # stop reading here: the app sees an empty end of body
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # once refused, whatever the app answers is replaced by the 413
                await send(message)

        await self.app(scope, limited, guarded_send)
        if refused:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        max_bytes, setting = self._limit(scope["path"])
        response = shaped_error(scope["path"], HTTP_413_TOO_LARGE, "body_too_large",
                                f"the request body is larger than {max_bytes} bytes (the server's {setting})")
        await response({"type": "http"}, _no_receive, send)


class JsonOnlyMiddleware:
    """Answers 415 to a POST, PUT or PATCH whose body is not declared as JSON, before anything parses it.
    Paths under ``exempt_prefixes`` take raw bytes (pre-signed upload parts, any Content-Type, as S3's)."""

    def __init__(self, app: ASGIApp, exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH") and not scope["path"].startswith(self.exempt_prefixes):
            headers = dict(scope.get("headers", []))
            has_body = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
            kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if has_body and kind != b"application/json":
                shown = kind.decode("latin-1") or "none"
                response = shaped_error(scope["path"], HTTP_415_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                                        f"the body must be JSON: send 'Content-Type: application/json' (got {shown})")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyTimeoutMiddleware:
    """Answers 408 when a request body has not fully arrived ``timeout_s`` after the request began, so a
    client that trickles (or stops) cannot hold a connection and a task for ever. Paths under
    ``slow_prefixes`` (large upload parts) get ``slow_timeout_s`` instead."""

    def __init__(self, app: ASGIApp, timeout_s: float, slow_prefixes: tuple[str, ...] = (), slow_timeout_s: float | None = None) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.slow_prefixes = slow_prefixes
        self.slow_timeout_s = slow_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        timeout_s = self.slow_timeout_s if self.slow_timeout_s is not None and scope["path"].startswith(self.slow_prefixes) else self.timeout_s
        deadline = loop.time() + timeout_s
        body_done = False
        timed_out = False
        started = False

        async def bounded() -> Message:
            nonlocal body_done, timed_out
            if body_done or timed_out:  # after the body: a wait for disconnect, not bounded here
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                timed_out = True
                return {"type": "http.disconnect"}  # the app stops reading; its answer is replaced below
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out and not started:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, bounded, guarded_send)
        except Exception:
            if not (timed_out and not started):
                raise
        if timed_out and not started:
            logger.info("request body from %s not complete after %.1f s: answered 408", (scope.get("client") or ("?",))[0], timeout_s)
            response = shaped_error(scope["path"], HTTP_408_REQUEST_TIMEOUT, "request_timeout",
                                    f"the request body did not arrive within {timeout_s:g} s; send the whole body at once (check Content-Length)",
                                    {"Connection": "close"})
            await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - a response never reads
    return {"type": "http.disconnect"}

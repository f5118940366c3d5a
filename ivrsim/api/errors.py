"""The one error shape, and the translation of every failure into it at the HTTP boundary.

``{"error": {"code": "invalid_parameter", "message": "...", "param": "to"}}`` with the right status:
400 malformed, 401 no or bad key, 404 unknown id, 409 wrong state, 413 too large, 415 wrong content type,
422 fails validation.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_400_BAD_REQUEST = 400
HTTP_401_UNAUTHORIZED = 401
HTTP_404_NOT_FOUND = 404
HTTP_409_CONFLICT = 409
HTTP_413_TOO_LARGE = 413
HTTP_415_UNSUPPORTED_MEDIA_TYPE = 415
HTTP_422_UNPROCESSABLE = 422


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


def _param(location: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join("from" if p == "from_" else p for p in parts) or None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error_body(error.code, error.message, error.param), status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = list(error.errors())
        first: dict[str, Any] = dict(problems[0]) if problems else {"loc": (), "msg": "invalid request", "type": "value_error"}
        if first.get("type") == "json_invalid":
            detail = first.get("ctx", {}).get("error", "")
            return JSONResponse(
                error_body("invalid_json", f"the body is not valid JSON ({detail}); send a JSON object", None), status_code=HTTP_400_BAD_REQUEST
            )
        param = _param(tuple(first.get("loc", ())))
        message = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
        kind = first.get("type")
        if kind == "missing":
            message = f"{param} is required"
        elif kind == "extra_forbidden":
            message = f"{param} is not a parameter of this endpoint; check the spelling against the API docs"
        elif param:
            message = f"{param}: {message}"
        if len(problems) > 1:
            message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
        code = "missing_parameter" if kind == "missing" else "invalid_parameter"
        return JSONResponse(error_body(code, message, param), status_code=HTTP_422_UNPROCESSABLE)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        message = str(error.detail) if error.status_code != 404 else "no such endpoint; see /docs for the API"
        return JSONResponse(error_body(code, message), status_code=error.status_code)


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        refused = False

        async def limited() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True  # stop reading here: the app sees an empty end of body
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # once refused, whatever the app answers is replaced by the 413
                await send(message)

        await self.app(scope, limited, guarded_send)
        if refused:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(
            error_body("body_too_large", f"the request body is larger than {self.max_bytes} bytes"), status_code=HTTP_413_TOO_LARGE
        )
        await response({"type": "http"}, _no_receive, send)


class JsonOnlyMiddleware:
    """Answers 415 to a POST, PUT or PATCH whose body is not declared as JSON, before anything parses it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = dict(scope.get("headers", []))
            has_body = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
            kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if has_body and kind != b"application/json":
                shown = kind.decode("latin-1") or "none"
                response = JSONResponse(
                    error_body("unsupported_media_type", f"the body must be JSON: send 'Content-Type: application/json' (got {shown})"),
                    status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _no_receive() -> Message:  # pragma: no cover - a response never reads
    return {"type": "http.disconnect"}

"""``Idempotency-Key`` for POSTs that create something (Stripe's practice): a retry with the same key and the
same body gets the first response, and nothing is done twice; the same key with another body is a 409.

Keys live in SQLite for ``Settings.idempotency_ttl_s`` (24 h), so a restart keeps them. Only a successful
first response is kept: a request refused with an error did nothing, so its key may be used again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse

from ivrsim.api.errors import HTTP_409_CONFLICT, HTTP_422_UNPROCESSABLE, ApiError
from ivrsim.store.sqlite import Store

HEADER = "Idempotency-Key"
#: Visible ASCII without spaces, as Stripe's keys (a UUID fits); at most 255 characters.
KEY_PATTERN = r"^[!-~]{1,255}$"
#: Set on a response that repeats the first one (Stripe's header name).
REPLAYED_HEADER = "Idempotent-Replayed"



def _idempotency_key(
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            pattern=KEY_PATTERN,
            description="A unique key (e.g. a UUID) that makes a retry of this request safe: the same key and body "
            "returns the first response; the same key with another body is a 409. Kept 24 h.",
        ),
    ] = None,
) -> str | None:
    """The header's key; an empty ``Idempotency-Key:`` (which FastAPI reads as absent) is refused, since
    a client that sends the header means a retry to be safe."""
    if key is None and HEADER.lower() in request.headers:
        raise ApiError(
            HTTP_422_UNPROCESSABLE, "invalid_parameter",
            f"{HEADER} is empty; send 1 to 255 visible ASCII characters (e.g. a UUID), or leave the header out", HEADER,
        )
    return key


IdempotencyKey = Annotated[str | None, Depends(_idempotency_key)]


def fingerprint(body: Any) -> str:
    """A digest of a JSON-able request body, independent of key order and white space."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def idempotent(
    store: Store,
    scope: str,
    key: str | None,
    body: Any,
    ttl_s: float,
    produce: Callable[[], Awaitable[dict[str, Any]]],
) -> dict[str, Any] | JSONResponse:
    """``produce()``'s response, once per (scope, key): a replay returns the stored one with
    ``Idempotent-Replayed: true``. ``scope`` is the operation, e.g. "POST /v1/voice/calls"."""
    if key is None:
        return await produce()
    body_fingerprint = fingerprint(body)
    earlier = store.claim_idempotency_key(scope, key, body_fingerprint, time.time(), ttl_s)
    if earlier is not None:
        if earlier.fingerprint != body_fingerprint:
            raise ApiError(
                HTTP_409_CONFLICT,
                "idempotency_key_reused",
                f"this {HEADER} was used with a different request body in the last {ttl_s / 3600:g} h; "
                "send a new key for a new request, or the same body to get the first response again",
                HEADER,
            )
        if earlier.status_code is None or earlier.response is None:
            raise ApiError(
                HTTP_409_CONFLICT,
                "idempotency_key_in_use",
                f"a request with this {HEADER} is still being handled; retry in a moment to get its response",
                HEADER,
            )
        return JSONResponse(earlier.response, status_code=earlier.status_code, headers={REPLAYED_HEADER: "true"})
    try:
        response = await produce()
    except BaseException:
        store.release_idempotency_key(scope, key)
        raise
    store.complete_idempotency_key(scope, key, 200, response)
    return response

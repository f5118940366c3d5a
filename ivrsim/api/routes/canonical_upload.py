"""The Canonical API's multipart upload, as pipecat's ``CanonicalMetricsService`` uses it (real bots send
their recordings this way), so that its code works unchanged with its ``api_url`` pointed at ivrsim:

1. ``POST /api/v1/recording/uploadRequest`` ``{filename, parts, callId, assistant {id, speaksFirst}}``
   (``X-Canonical-Api-Key``) -> ``{"urls": [one pre-signed PUT URL per part], "slug"}``;
2. ``PUT <url>`` with the part's bytes (any Content-Type; the signature in the URL is the key, as S3's)
   -> 200 with ``ETag: "<md5 hex>"``; pipecat reads that header and sends it back verbatim;
3. ``POST /api/v1/recording/uploadComplete`` ``{filename, parts: [{partnum, etag}], slug, callId,
   assistant}`` -> the parts joined, checked, stored as ``<recordings>/uploads/<slug>.<ext>`` and its
   analysis queued (with transcripts) through ``services.canonical``; 200 with ``{"callId", ...}``.
   pipecat reads only whether the answer is 2xx.

Bodies are validated as routes/canonical.py validates /api/v1/call (ajv's messages, "body must have required
property 'callId'", in Fastify's error shape plus ``param``; no type coercion), except that ``partnum`` may
be a string of digits: pipecat sends ``"1"``.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from ivrsim.analysis.uploads import UploadError, UploadLimits, UploadStore
from ivrsim.api.deps import ServicesDep
from ivrsim.api.routes.canonical import (
    CanonicalError,
    CanonicalErrorResponse,
    CanonicalKeyDep,
    canonical_error,
    read_json,
)

logger = logging.getLogger(__name__)

#: Where the pre-signed part URLs live: raw bodies, exempt from the JSON-only and body-size middlewares
#: (each part has its own cap) and with their own body deadline (ivrsim.api.app).
PARTS_PREFIX = "/api/v1/recording/parts/"
#: Longest filename, callId or assistant id accepted, in characters.
MAX_NAME_CHARS = 256
#: Ajv's code for a body that fails the schema.
VALIDATION = "FST_ERR_VALIDATION"

#: A whole number as a URL or header carries it: ASCII digits, short enough for int() (never "²" or 5,000 digits).
DIGITS = re.compile(r"[0-9]{1,15}")

router = APIRouter(prefix="/api/v1/recording", tags=["canonical"])


async def get_uploads(request: Request, services: ServicesDep) -> UploadStore:
    """The server's upload store, made on first use from its settings (its files live in the data folder,
    so sessions and their URLs outlive a restart)."""
    store: UploadStore | None = getattr(request.app.state, "canonical_uploads", None)
    if store is None:
        settings = services.settings
        limits = UploadLimits(url_ttl_s=settings.upload_url_ttl_s, session_ttl_s=settings.upload_session_ttl_s,
                              part_max_bytes=settings.upload_part_max_bytes, max_parts=settings.upload_max_parts,
                              pending_max_bytes=settings.upload_pending_max_bytes)
        store = UploadStore.open(settings.data_dir, services.engine.settings.recordings_folder, limits)
        request.app.state.canonical_uploads = store
    return store


UploadsDep = Annotated[UploadStore, Depends(get_uploads)]


def _error(error: UploadError) -> CanonicalError:
    return canonical_error(error.status, error.message, error.param)


# -- body validation, in ajv's words (as routes/canonical.py: no type coercion, except partnum) ------------

def _where(path: str) -> str:
    return "body" + (f"/{path.replace('.', '/')}" if path else "")


def _invalid(path: str, what: str) -> CanonicalError:
    return canonical_error(400, f"{_where(path)} {what}", path or None, VALIDATION)


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(path, "must be object")
    return value


def _required(body: dict[str, Any], key: str, parent: str) -> Any:
    if key not in body:
        raise canonical_error(400, f"{_where(parent)} must have required property '{key}'", f"{parent}.{key}" if parent else key, VALIDATION)
    return body[key]


def _string(body: dict[str, Any], key: str, parent: str = "") -> str:
    path = f"{parent}.{key}" if parent else key
    value = _required(body, key, parent)
    if not isinstance(value, str):
        raise _invalid(path, "must be string")
    if not value.strip():
        raise _invalid(path, "must NOT be empty or blank")
    if len(value) > MAX_NAME_CHARS:
        raise _invalid(path, f"must NOT have more than {MAX_NAME_CHARS} characters")
    return value


def _integer(body: dict[str, Any], key: str, parent: str = "", high: int | None = None, digits_ok: bool = False) -> int:
    """An integer >= 1 (and <= ``high``); ``digits_ok``: a string of digits too (pipecat sends partnum as "1")."""
    path = f"{parent}.{key}" if parent else key
    value = _required(body, key, parent)
    if type(value) is int:
        number = value
    elif type(value) is float and value.is_integer():
        number = int(value)
    elif digits_ok and isinstance(value, str) and DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise _invalid(path, "must be integer")
    if number < 1:
        raise _invalid(path, "must be >= 1")
    if high is not None and number > high:
        raise _invalid(path, f"must be <= {high}")
    return number


def _assistant(body: dict[str, Any]) -> dict[str, Any]:
    assistant = _object(_required(body, "assistant", ""), "assistant")
    out: dict[str, Any] = {"id": _string(assistant, "id", "assistant")}
    speaks_first = _required(assistant, "speaksFirst", "assistant")
    if type(speaks_first) is not bool:
        raise _invalid("assistant.speaksFirst", "must be boolean (true or false, without quotes)")
    out["speaksFirst"] = speaks_first
    if assistant.get("description") is not None:
        out["description"] = _string(assistant, "description", "assistant")
    return out


class AssistantRef(BaseModel):
    id: str = Field(description="Your id for the AI agent.")
    speaksFirst: bool = Field(description="Whether the agent speaks first in the call.")


class UploadRequestIn(BaseModel):
    """What pipecat's CanonicalMetricsService sends to open an upload."""

    filename: str = Field(description="The recording's file name (kept for the record; the stored name is the slug's).")
    parts: int = Field(ge=1, description="How many parts the recording is split into: one PUT URL each.")
    callId: str = Field(description="Your id for the call.")
    assistant: AssistantRef


class PartIn(BaseModel):
    partnum: int | str = Field(description="The part's number, from 1 (pipecat sends it as a string).")
    etag: str = Field(description="The ETag header the part's PUT answered, quoted or not.")


class UploadCompleteIn(BaseModel):
    """What pipecat sends once every part is stored."""

    filename: str
    parts: list[PartIn] = Field(description="Every part to join, in any order.")
    slug: str = Field(description="The slug uploadRequest answered.")
    callId: str
    assistant: AssistantRef | None = None


class UploadRequestOut(BaseModel):
    urls: list[str] = Field(description="One pre-signed PUT URL per part, in part order; valid for IVRSIM_UPLOAD_URL_TTL_S (1 h).")
    slug: str = Field(description="The upload's name: send it to uploadComplete.")


class UploadCompleteOut(BaseModel):
    callId: str
    alreadyReceived: bool = Field(description="True when this callId was received before: it is not analysed again.")
    status: str = Field(description="The analysis: queued, processing, completed or failed (GET /api/v1/call/{callId}).")
    slug: str
    message: str | None = None


def _doc(model: type[BaseModel], answer: type[BaseModel], *statuses: int) -> dict[str, Any]:
    responses: dict[int | str, dict[str, Any]] = {200: {"model": answer, "description": "Done."}}
    responses.update({status: {"model": CanonicalErrorResponse, "description": _WHY[status]} for status in statuses})
    return {
        "openapi_extra": {"requestBody": {"required": True, "content": {"application/json": {
            "schema": model.model_json_schema(ref_template="#/components/schemas/{model}")}}}},
        "responses": responses,
    }


_WHY = {
    400: "The body is not valid JSON or fails the schema (the message names the field, as Fastify does); or a part is missing or its etag is wrong.",
    401: "No X-Canonical-Api-Key, or a wrong one.",
    404: "No upload with this slug (unknown, or expired and deleted).",
    409: "The callId is not the one the upload was requested for.",
    422: "The joined parts are not audio that decodes.",
}


# -- routes -----------------------------------------------------------------------------------------------

@router.post("/uploadRequest", dependencies=[CanonicalKeyDep], summary="Open a multipart upload: one pre-signed PUT URL per part",
             **_doc(UploadRequestIn, UploadRequestOut, 400, 401))
async def upload_request(request: Request, services: ServicesDep, uploads: UploadsDep) -> Response:
    """Open an upload: one pre-signed PUT URL per part (no API key needed to PUT), and the slug that names it."""
    try:
        body = _object(await read_json(request), "")
        filename = _string(body, "filename")
        parts = _integer(body, "parts", high=uploads.limits.max_parts)
        call_id = _string(body, "callId")
        assistant = _assistant(body)
        await uploads.cleanup_if_due()
        session = uploads.create(call_id, assistant, filename, parts)
    except CanonicalError as error:
        return error
    except UploadError as error:
        return _error(error)
    base_url = services.settings.public_url or str(request.base_url)
    return JSONResponse({"urls": uploads.part_urls(session, base_url), "slug": session.slug})


@router.put("/parts/{slug}/{part}", include_in_schema=False)
async def upload_part(slug: str, part: str, request: Request, uploads: UploadsDep,
                      expires: str | None = None, signature: str | None = None) -> Response:
    """Store one part (the URL's signature is the key); answers its ETag, the quoted MD5 of the bytes."""
    length = request.headers.get("content-length", "")
    try:
        if not DIGITS.fullmatch(part):
            raise UploadError(404, "no such part: parts are numbered from 1, as in the URLs uploadRequest answered", "part")
        etag = await uploads.store_part(slug, int(part), expires, signature, request.stream(), int(length) if DIGITS.fullmatch(length) else None)
    except UploadError as error:
        return _error(error)
    return Response(status_code=200, headers={"ETag": f'"{etag}"'})


@router.post("/uploadComplete", dependencies=[CanonicalKeyDep], summary="Join the parts, store the recording and queue its analysis",
             **_doc(UploadCompleteIn, UploadCompleteOut, 400, 401, 404, 409, 422))
async def upload_complete(request: Request, services: ServicesDep, uploads: UploadsDep) -> Response:
    """Join the parts (ETags checked), check the whole is audio, store it and queue its analysis (once per callId)."""
    try:
        body = _object(await read_json(request), "")
        slug = _string(body, "slug")
        call_id = _string(body, "callId")
        listed = _required(body, "parts", "")
        if not isinstance(listed, list):
            raise _invalid("parts", "must be array")
        if not listed:
            raise _invalid("parts", "must NOT have fewer than 1 items")
        parts = []
        for index, item in enumerate(listed):
            entry = _object(item, f"parts.{index}")
            parts.append((_integer(entry, "partnum", f"parts.{index}", digits_ok=True), _string(entry, "etag", f"parts.{index}")))
        assistant = _assistant(body) if body.get("assistant") is not None else None
        await uploads.cleanup_if_due()
        stored = await uploads.complete(slug, call_id, parts)
    except CanonicalError as error:
        return error
    except UploadError as error:
        return _error(error)
    assistant = assistant or stored.session.assistant
    job_input = {"upload": stored.upload, "speaks_first": assistant["speaksFirst"], "transcribe": True}
    assert services.canonical is not None  # built by the app's lifespan
    record, created = services.canonical.submit(call_id, assistant, job_input, "upload")
    answer: dict[str, Any] = {"callId": record.call_id, "alreadyReceived": not created, "status": record.status, "slug": stored.session.slug}
    if not created:
        answer["message"] = (f"callId {record.call_id!r} was received before ({record.created_at}); it is not analysed again: "
                             "GET /api/v1/call/{callId} reads its analysis")
    return JSONResponse(answer)

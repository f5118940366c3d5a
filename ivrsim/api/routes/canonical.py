"""The Canonical call-analysis API (``/api/v1``; seeds/canonical-call-analysis-api.txt): calls analysed in the
background, Retell's ``call_analyzed`` webhooks, and the reads behind the hosted product's dashboard.

The hosted service is a Fastify app, so /api/v1 answers as Fastify does: errors are
``{"statusCode", "error", "message", "code"?}`` (plus our ``param``, the field at fault), validation
messages are ajv's (``body must have required property 'location'``, ``body/assistant/speaksFirst must be
boolean``), unknown fields are ignored. What we do not copy: ajv's type coercion (a ``"true"`` string is not
a boolean here), and empty ids (a ``callId`` of ``""`` could never be read back).

Bodies are parsed here, from the raw bytes, not by FastAPI: the Retell signature is over the raw body, the
error shape is Fastify's, and a body with ``#`` comments (the seed's own curl example has them) gets a 400
that says where the first comment is.

Auth: ``X-Canonical-Api-Key``, which accepts IVRSIM_CANONICAL_API_KEY when set, else the server's API key
(constant-time compare). The Retell webhook also accepts Retell's own signature instead of the key when a
Retell key is configured (IVRSIM_RETELL_API_KEY), so Retell can post to it directly; with that key set,
every Retell webhook must carry a valid ``x-retell-signature``.

Which channel is Retell's agent: Retell documents ``recording_multi_channel_url`` as the call's recording
with each party on its own channel, but not which channel is whose (we found no statement of it in Retell's
docs), so we do not guess one: ``speaks_first`` comes from who spoke first in ``transcript_object`` (the
earliest word of each role) and the analysis takes the channel that speaks first as that party's.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from ivrsim.analysis.canonical import CanonicalService, assistant_summary, call_payload
from ivrsim.api.deps import Services, ServicesDep
from ivrsim.api.errors import fastify_body
from ivrsim.exceptions import AudioUrlError
from ivrsim.store.sqlite import CanonicalCallRecord

router = APIRouter(prefix="/api/v1", tags=["canonical"])
#: Where Retell posts: its bodies have a cap of their own (IVRSIM_RETELL_MAX_BODY_BYTES).
RETELL_PATH = "/api/v1/webhooks/retell"

KEY_HEADER = "X-Canonical-Api-Key"
RETELL_SIGNATURE_HEADER = "x-retell-signature"
#: How far a Retell signature's time may be from ours, in ms (Retell's SDK allows five minutes).
RETELL_SIGNATURE_WINDOW_MS = 5 * 60 * 1000
#: Longest callId or assistant id, in characters.
MAX_ID_CHARS = 256
#: Longest location, in characters.
MAX_LOCATION_CHARS = 4096
#: Job statuses, as GET /api/v1/calls filters them.
CALL_STATUSES = ("queued", "processing", "completed", "failed")


class CanonicalError(JSONResponse, Exception):
    """An /api/v1 error in Fastify's shape. It is a response (return it) and an exception (raise it: the
    handler ``install_canonical_errors`` adds answers with it)."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        JSONResponse.__init__(self, fastify_body(status, message, param, code), status_code=status, headers=headers)
        Exception.__init__(self, message)


def canonical_error(status: int, message: str, param: str | None = None, code: str | None = None) -> CanonicalError:
    """The /api/v1 error for ``status``: ``raise canonical_error(...)`` or ``return canonical_error(...)``.
    ``message`` names the field and the fix; ``param`` is the field (dotted), or None."""
    return CanonicalError(status, message, param, code)


def install_canonical_errors(app: FastAPI) -> None:
    """Answer a raised ``CanonicalError`` with itself."""

    async def answer(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, CanonicalError)
        return error

    app.add_exception_handler(CanonicalError, answer)


class CanonicalErrorResponse(BaseModel):
    """Fastify's error shape, plus the field at fault."""

    statusCode: int = Field(description="The HTTP status.")
    error: str = Field(description="The status' name, e.g. Bad Request.")
    message: str = Field(description="What is wrong and how to fix it.")
    code: str | None = Field(default=None, description="Fastify's error code where it has one, e.g. FST_ERR_VALIDATION.")
    param: str | None = Field(description="The field, query parameter or header at fault (dotted for nested fields), or null.")


_WHY = {
    400: "The body is not valid JSON, or fails the schema (the message names the field, as Fastify does).",
    401: "No X-Canonical-Api-Key, a wrong one, or a bad Retell signature.",
    404: "No such call (or starting_after names none).",
}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": CanonicalErrorResponse, "description": _WHY[status]} for status in statuses}


# -- auth ---------------------------------------------------------------------------------------------

_key_header = APIKeyHeader(name=KEY_HEADER, auto_error=False,
                           description="The Canonical API key: IVRSIM_CANONICAL_API_KEY, else the server's API key (ivrsim serve prints it).")


def _key_is_valid(services: Any, key: str) -> bool:
    settings = services.settings
    expected = settings.canonical_api_key or settings.api_key or ""
    return bool(expected) and hmac.compare_digest(key.encode(), expected.encode())


async def require_canonical_key(request: Request, services: ServicesDep,
                                _declared: Annotated[str | None, Depends(_key_header)] = None) -> None:
    """``X-Canonical-Api-Key``; missing or wrong: 401 in Fastify's shape."""
    key = request.headers.get(KEY_HEADER)
    if not key:
        raise canonical_error(401, f"send your API key in the {KEY_HEADER} header", KEY_HEADER)
    if not _key_is_valid(services, key):
        raise canonical_error(401, f"the {KEY_HEADER} is not valid; ivrsim serve prints its key at start-up (IVRSIM_CANONICAL_API_KEY sets another)",
                              KEY_HEADER)


CanonicalKeyDep = Depends(require_canonical_key)


def sign_retell(api_key: str, body: bytes, timestamp_ms: int) -> str:
    """The ``x-retell-signature`` Retell sends with ``body`` at ``timestamp_ms``:
    ``v=<ms>,d=<hex HMAC-SHA256 of body + str(ms), keyed with the API key>``."""
    digest = hmac.new(api_key.encode(), body + str(timestamp_ms).encode(), hashlib.sha256).hexdigest()
    return f"v={timestamp_ms},d={digest}"


_RETELL_SIGNATURE = re.compile(r"v=(\d{1,16}),d=([0-9a-fA-F]{1,128})")


def retell_signature_problem(api_key: str, body: bytes, header: str | None, now_ms: int) -> str | None:
    """Why ``header`` does not sign ``body`` (None: it does), in words that quote nothing secret."""
    if not header:
        return f"the {RETELL_SIGNATURE_HEADER} header is missing; Retell signs every webhook with it"
    match = _RETELL_SIGNATURE.fullmatch(header.strip())
    if match is None:
        return f"the {RETELL_SIGNATURE_HEADER} header is not of the form v=<unix ms>,d=<hex digest>"
    timestamp_ms = int(match.group(1))
    if abs(now_ms - timestamp_ms) > RETELL_SIGNATURE_WINDOW_MS:
        if timestamp_ms < 10**11:  # 1973 in ms, but a present-day time in seconds
            return f"the {RETELL_SIGNATURE_HEADER}'s v= is {timestamp_ms}: that is seconds; Retell signs with the time in milliseconds"
        age_s = (now_ms - timestamp_ms) / 1000
        when = f"{age_s:.0f} s ago" if age_s > 0 else f"{-age_s:.0f} s in the future"
        return (f"the {RETELL_SIGNATURE_HEADER} was made {when}; signatures are accepted for {RETELL_SIGNATURE_WINDOW_MS // 60000} "
                "minutes either way (check the clocks, or send the event again)")
    expected = sign_retell(api_key, body, timestamp_ms).partition(",d=")[2]
    if not hmac.compare_digest(match.group(2).lower().encode(), expected.encode()):
        return f"the {RETELL_SIGNATURE_HEADER} does not match the body; check IVRSIM_RETELL_API_KEY (the Retell key with the webhook badge)"
    return None


# -- bodies -------------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number in JSON")


#: Bodies up to this many characters are parsed on the event loop (well under a millisecond); longer ones in a thread.
INLINE_PARSE_CHARS = 256_000


async def read_json(request: Request) -> Any:
    """The request body as JSON, or a Fastify-shaped 400 saying why not (never quoting the body)."""
    raw = await request.body()
    if not raw.strip():
        raise canonical_error(400, "Body cannot be empty when content-type is set to 'application/json'", None, "FST_ERR_CTP_EMPTY_JSON_BODY")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise canonical_error(400, f"the body is not UTF-8 text (the byte at position {error.start} is not valid UTF-8)", None,
                              "FST_ERR_CTP_INVALID_JSON_BODY") from error
    try:
        if len(text) <= INLINE_PARSE_CHARS:
            return json.loads(text, parse_constant=_reject_constant)
        # a long call's Retell body is megabytes: parsed (and, if broken, scanned for comments) off the event loop
        return await asyncio.to_thread(json.loads, text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        head = text[: error.pos + 2]  # a comment that broke it starts at (or, '//' and '/*', one before) the error
        problem = _json_problem(head, error) if len(head) <= INLINE_PARSE_CHARS else await asyncio.to_thread(_json_problem, head, error)
        raise canonical_error(400, problem, None, "FST_ERR_CTP_INVALID_JSON_BODY") from error
    except (ValueError, RecursionError) as error:
        why = "arrays or objects are nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise canonical_error(400, f"the body is not valid JSON: {why}", None, "FST_ERR_CTP_INVALID_JSON_BODY") from error


def _json_problem(text: str, error: json.JSONDecodeError) -> str:
    """What is wrong with ``text``, where; a comment (``#``, ``//``, ``/*``) is named as one."""
    comment = _first_comment(text)
    if comment is not None:
        line, column, marker = comment
        return (f"the body is not valid JSON: JSON has no comments, and line {line}, column {column} starts one ('{marker}'); "
                "remove every comment (the curl example in the Canonical docs carries some) and send plain JSON")
    return f"the body is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"


def _first_comment(text: str) -> tuple[int, int, str] | None:
    """(line, column, marker) of the first ``#``, ``//`` or ``/*`` outside a JSON string, or None."""
    in_string = escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
            continue
        marker = "#" if char == "#" else text[index:index + 2] if text[index:index + 2] in ("//", "/*") else None
        if marker is not None:
            line = text.count("\n", 0, index) + 1
            column = index - (text.rfind("\n", 0, index) + 1) + 1
            return line, column, marker
    return None


def _where(path: str) -> str:
    """ajv's instance path: ``body``, ``body/assistant``."""
    return "body" + ("/" + path.replace(".", "/") if path else "")


def _invalid(path: str, what: str) -> CanonicalError:
    """ajv's message for the value at ``path`` (dotted; "" for the body)."""
    return canonical_error(400, f"{_where(path)} {what}", path or None, "FST_ERR_VALIDATION")


def _required(body: dict[str, Any], path: str, names: tuple[str, ...]) -> None:
    for name in names:
        if name not in body:
            raise canonical_error(400, f"{_where(path)} must have required property '{name}'", f"{path}.{name}" if path else name, "FST_ERR_VALIDATION")


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(path, "must be object")
    return value


def _string(value: Any, path: str, max_chars: int, blank_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise _invalid(path, "must be string")
    if not blank_ok and not value.strip():
        raise _invalid(path, "must NOT be empty or blank")
    if len(value) > max_chars:
        raise _invalid(path, f"must NOT have more than {max_chars} characters")
    return value


def _boolean(value: Any, path: str) -> bool:
    if type(value) is not bool:
        raise _invalid(path, "must be boolean (true or false, without quotes)")
    return value


def _number(value: Any, path: str, low: float, high: float) -> float:
    if type(value) not in (int, float):
        raise _invalid(path, "must be number")
    if not low <= value <= high:
        raise _invalid(path, f"must be >= {low:g} and <= {high:g}")
    return float(value)


def _http_url(value: Any, path: str) -> str:
    url = _string(value, path, MAX_LOCATION_CHARS)
    if re.fullmatch(r"https?://[^\s/?#@]+(?:[/?#]\S*)?", url) is None:
        raise _invalid(path, "must be an http:// or https:// URL with a host (and no credentials)")
    return url


def _check_location(services: Any, location: str, path: str) -> None:
    """Refuse, before anything is stored, what the analysis could never fetch."""
    try:
        services.engine.loader.check(location)
    except AudioUrlError as error:
        raise canonical_error(400, f"{_where(path)}: " + str(error).replace("audio_url ", "", 1), path, "FST_ERR_VALIDATION") from error


def _calls(services: Services) -> CanonicalService:
    assert services.canonical is not None  # built with the app's services
    return services.canonical


def _received(record: CanonicalCallRecord, created: bool) -> dict[str, Any]:
    answer: dict[str, Any] = {"callId": record.call_id, "alreadyReceived": not created, "status": record.status}
    if not created:
        answer["message"] = (f"callId {record.call_id!r} was received before ({record.created_at}); it is not analysed again, whatever this "
                             f"request carried: GET /api/v1/call/{{callId}} reads its analysis")
    return answer


# -- POST /api/v1/call --------------------------------------------------------------------------------


class AssistantIn(BaseModel):
    id: str = Field(description="Your id for the AI agent: the dashboard groups calls by it.")
    speaksFirst: bool = Field(description="Whether the agent speaks first in the call (its channel is then the one that speaks first).")
    description: str | None = Field(default=None, description="A friendly name for the agent.")


class CanonicalCallIn(BaseModel):
    """The documented body; the last four fields are ivrsim's own (additive)."""

    assistant: AssistantIn
    location: str = Field(description="The recording: an http(s) URL, or a path inside the server's media roots. Stereo: one party per channel; mono is diarized.")
    callId: str = Field(description="Your id for the call; the same callId again is not analysed twice.")
    webhook_url: str | None = Field(default=None, description="ivrsim: gets analysis.completed or analysis.failed (signed, retried).")
    transcribe: bool = Field(default=True, description="ivrsim: per-speaker transcripts with word timings (offline ASR).")
    language: str | None = Field(default=None, description="ivrsim: the call's language for ASR (default en-US).")
    dead_air_threshold_s: float = Field(default=3.0, ge=0.5, le=600, description="ivrsim: silences longer than this are dead air, in seconds.")


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of a body parsed by hand: ``model``'s schema, nested models inlined."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"$ref"}:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


@router.post("/call", dependencies=[CanonicalKeyDep], summary="Analyse a call's recording in the background",
             responses=_responses(400, 401), openapi_extra=_body_doc(CanonicalCallIn))
async def post_call(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Stored and queued before the answer (a fast 200 with the callId); analysed by the workers."""
    body = _object(await read_json(request), "")
    _required(body, "", ("assistant", "location", "callId"))
    assistant_in = _object(body["assistant"], "assistant")
    _required(assistant_in, "assistant", ("id", "speaksFirst"))
    assistant: dict[str, Any] = {"id": _string(assistant_in["id"], "assistant.id", MAX_ID_CHARS),
                                 "speaksFirst": _boolean(assistant_in["speaksFirst"], "assistant.speaksFirst")}
    if assistant_in.get("description") is not None:
        assistant["description"] = _string(assistant_in["description"], "assistant.description", 1000, blank_ok=True)
    call_id = _string(body["callId"], "callId", MAX_ID_CHARS)
    location = _string(body["location"], "location", MAX_LOCATION_CHARS)
    webhook_url = _http_url(body["webhook_url"], "webhook_url") if body.get("webhook_url") is not None else None
    transcribe = _boolean(body["transcribe"], "transcribe") if "transcribe" in body else True
    language = _string(body["language"], "language", 35) if body.get("language") is not None else None
    dead_air_s = _number(body["dead_air_threshold_s"], "dead_air_threshold_s", 0.5, 600) if "dead_air_threshold_s" in body else 3.0
    _check_location(services, location, "location")
    job_input = {"location": location, "speaks_first": assistant["speaksFirst"], "transcribe": transcribe, "language": language,
                 "dead_air_threshold_s": dead_air_s}
    record, created = _calls(services).submit(call_id, assistant, job_input, "api", webhook_url)
    return _received(record, created)


# -- POST /api/v1/webhooks/retell ---------------------------------------------------------------------


def retell_speaks_first(call: dict[str, Any]) -> bool:
    """Whether Retell's agent spoke first: the role of the earliest word in ``transcript_object`` (else of
    its first utterance); True without one (Retell agents greet first unless set to wait)."""
    utterances = call.get("transcript_object")
    if not isinstance(utterances, list):
        return True
    first: dict[str, float] = {}
    for utterance in utterances:
        if not isinstance(utterance, dict) or utterance.get("role") not in ("agent", "user"):
            continue
        for word in utterance.get("words") or []:
            start = word.get("start") if isinstance(word, dict) else None
            if isinstance(start, (int, float)) and not isinstance(start, bool):
                role = str(utterance["role"])
                first[role] = min(first.get(role, float(start)), float(start))
    if first:
        return min(first, key=lambda role: first[role]) == "agent"
    roles = [u.get("role") for u in utterances if isinstance(u, dict) and u.get("role") in ("agent", "user")]
    return not roles or roles[0] == "agent"


class RetellWebhookIn(BaseModel):
    """A Retell webhook body (older senders put the call in ``data``)."""

    event: str = Field(description="call_started, call_ended, call_analyzed, ...: only call_analyzed is analysed.")
    call: dict[str, Any] | None = Field(default=None, description="Retell's call object: call_id, agent_id, agent_name, recording_multi_channel_url, recording_url, transcript_object, ...")


def _check_retell_auth(request: Request, services: Any, raw: bytes) -> None:
    """With a Retell key configured: a valid x-retell-signature (the canonical key may be left out, so
    Retell can post here itself). Without one: the canonical key. A wrong canonical key is always a 401."""
    key = request.headers.get(KEY_HEADER)
    if key and not _key_is_valid(services, key):
        raise canonical_error(401, f"the {KEY_HEADER} is not valid; ivrsim serve prints its key at start-up", KEY_HEADER)
    retell_key = services.settings.retell_api_key
    if retell_key:
        problem = retell_signature_problem(retell_key, raw, request.headers.get(RETELL_SIGNATURE_HEADER), int(time.time() * 1000))
        if problem is not None:
            raise canonical_error(401, problem, RETELL_SIGNATURE_HEADER)
    elif not key:
        raise canonical_error(401, f"send your API key in the {KEY_HEADER} header", KEY_HEADER)


@router.post("/webhooks/retell", summary="Analyse a Retell call_analyzed event's recording",
             responses=_responses(400, 401), openapi_extra={**_body_doc(RetellWebhookIn), "security": [{"APIKeyHeader": []}]})
async def retell_webhook(request: Request, services: ServicesDep, _declared: Annotated[str | None, Depends(_key_header)] = None) -> dict[str, Any]:
    """Any event but call_analyzed: 200 with an ``error`` attribute (as documented). call_analyzed: the
    recording (multichannel, else mono) is analysed, Retell's transcript_object standing in for ASR."""
    raw = await request.body()
    _check_retell_auth(request, services, raw)
    body = _object(await read_json(request), "")
    _required(body, "", ("event",))
    event = _string(body["event"], "event", 100)
    if event != "call_analyzed":
        return {"error": f"event {event!r} is not analysed: only call_analyzed events are (it carries the recording and the transcript)",
                "event": event}
    container = "call" if "call" in body else "data"
    if container not in body:
        raise canonical_error(400, "body must have required property 'call'", "call", "FST_ERR_VALIDATION")
    call = _object(body[container], container)
    _required(call, container, ("call_id",))
    call_id = _string(call["call_id"], f"{container}.call_id", MAX_ID_CHARS)
    recording_field = next((name for name in ("recording_multi_channel_url", "recording_url") if call.get(name) is not None), None)
    if recording_field is None:
        raise canonical_error(400, f"{_where(container)} must have required property 'recording_multi_channel_url' or 'recording_url': this call "
                              "has no recording (Retell leaves them out when the agent does not store recordings)",
                              f"{container}.recording_url", "FST_ERR_VALIDATION")
    location = _string(call[recording_field], f"{container}.{recording_field}", MAX_LOCATION_CHARS)
    agent_field = next((name for name in ("agent_id", "agent_name") if call.get(name) is not None), None)
    if agent_field is None:
        raise canonical_error(400, f"{_where(container)} must have required property 'agent_id'", f"{container}.agent_id", "FST_ERR_VALIDATION")
    agent_id = _string(call[agent_field], f"{container}.{agent_field}", MAX_ID_CHARS)
    transcript = call.get("transcript_object")
    if transcript is not None and not isinstance(transcript, list):
        raise _invalid(f"{container}.transcript_object", "must be array")
    _check_location(services, location, f"{container}.{recording_field}")
    speaks_first = retell_speaks_first(call)
    assistant: dict[str, Any] = {"id": agent_id, "speaksFirst": speaks_first}
    if isinstance(call.get("agent_name"), str):
        assistant["description"] = call["agent_name"]
    job_input = {"location": location, "speaks_first": speaks_first, "transcribe": True, "language": None,
                 "transcript_object": transcript or None, "dead_air_threshold_s": 3.0}
    record, created = _calls(services).submit(call_id, assistant, job_input, "retell", None)
    return _received(record, created)


# -- reads --------------------------------------------------------------------------------------------


def _call_or_404(services: Any, call_id: str) -> CanonicalCallRecord:
    record = _calls(services).store.canonical_call(call_id)
    if record is None:
        raise canonical_error(404, f"no call {call_id!r}: callId is the one sent to POST /api/v1/call (or Retell's call_id)", "callId")
    return record


@router.get("/call/{callId:path}", dependencies=[CanonicalKeyDep], summary="A call: its status, and its analysis or why it failed",
            responses=_responses(401, 404))
async def get_call(callId: str, services: ServicesDep) -> dict[str, Any]:
    return call_payload(_call_or_404(services, callId))


def _summary(record: CanonicalCallRecord) -> dict[str, Any]:
    """A call as listed: its payload with the analysis' headline figures instead of the whole analysis."""
    payload = call_payload(record)
    result = payload.pop("analysis") or {}
    latency = result.get("latency_ms") or {}
    interruptions = result.get("interruptions") or {}
    payload["summary"] = {
        "duration_s": result.get("duration_s"),
        "latency_ms": {"p50": latency.get("p50"), "p90": latency.get("p90"), "num": latency.get("num")} if latency else None,
        "num_user_interrupted": interruptions.get("num_user_interrupted"),
        "num_assistant_interrupted": interruptions.get("num_assistant_interrupted"),
        "dead_air_count": (result.get("dead_air") or {}).get("count"),
    } if result else None
    return payload


def _limit(request: Request, default: int, high: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not raw.isdigit():
        raise canonical_error(400, "querystring/limit must be integer", "limit", "FST_ERR_VALIDATION")
    value = int(raw)
    if not 1 <= value <= high:
        raise canonical_error(400, f"querystring/limit must be >= 1 and <= {high}", "limit", "FST_ERR_VALIDATION")
    return value


@router.get("/calls", dependencies=[CanonicalKeyDep], summary="Calls, newest first (headline figures; GET /call/{callId} for the analysis)",
            responses=_responses(400, 401, 404))
async def list_calls(
    request: Request,
    services: ServicesDep,
    assistantId: str | None = None,
    status: str | None = None,
    limit: Annotated[str | None, Query(description="1 to 200 (default 50).")] = None,
    starting_after: str | None = None,
) -> dict[str, Any]:
    if status is not None and status not in CALL_STATUSES:
        raise canonical_error(400, f"querystring/status must be equal to one of the allowed values: {', '.join(CALL_STATUSES)}", "status",
                              "FST_ERR_VALIDATION")
    count = _limit(request, 50, 200)
    store = _calls(services).store
    if starting_after is not None and store.canonical_call(starting_after) is None:
        raise canonical_error(404, f"starting_after: no call {starting_after!r}; pass the last callId of the previous page", "starting_after")
    records = store.list_canonical_calls(assistant_id=assistantId, status=status, limit=count + 1, after=starting_after)
    return {"data": [_summary(record) for record in records[:count]], "has_more": len(records) > count}


@router.get("/assistants", dependencies=[CanonicalKeyDep], summary="Per assistant: calls, latency p50/p90, interruption rate, dead air",
            responses=_responses(400, 401))
async def list_assistants(
    request: Request,
    services: ServicesDep,
    limit: Annotated[str | None, Query(description="1 to 1000 (default 100).")] = None,
    starting_after: str | None = None,
) -> dict[str, Any]:
    count = _limit(request, 100, 1000)
    rows = _calls(services).store.canonical_assistants(limit=count + 1, after=starting_after)
    return {"data": [assistant_summary(row) for row in rows[:count]], "has_more": len(rows) > count}

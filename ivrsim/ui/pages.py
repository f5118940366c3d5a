"""The dashboard's pages: the calls list, one call, placing a call, analyses and flows (server-rendered;
small plain JS modules in ``static/`` keep them live)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from ivrsim.analysis.transcripts import transcription_document
from ivrsim.api.deps import Services, ServicesDep
from ivrsim.api.errors import ApiError
from ivrsim.api.routes import calls as call_routes
from ivrsim.api.schemas import CallCreate
from ivrsim.store.sqlite import LIVE_STATUSES, CallRecord, FlowRecord
from ivrsim.ui.analyses import analysis_marks, canonical_recording
from ivrsim.ui.auth import CsrfDep, Session, SessionDep, form_fields
from ivrsim.ui.charts import bar_chart, histogram_bins
from ivrsim.ui.page_errors import PageRoute
from ivrsim.ui.templating import render

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=PageRoute)

#: Statuses the list filters by (schemas.CALL_STATUSES).
STATUSES = ("queued", "ringing", "in-progress", "completed", "busy", "no-answer", "failed")
PAGE_SIZES = (25, 50, 100, 200)
#: The keypad's keys in a phone's layout, four to a row (A-D: the fourth column).
KEYS = "123A456B789C*0#D"
#: Calls listed per assistant on the analyses page (newest first), each linking to its own page.
RECENT_ANALYSES = 10


def callee_of(services: Services) -> Callable[[CallRecord], str]:
    """Who answers a call, for the table: the label its ``call.ringing`` event carried (kept on the call's
    row when the event is stored: no event reads per row); before it rings, the phonebook's kind for its
    number (or the call's own callee). Then what ran on it (a flow, a TwiML app)."""
    book = services.engine.phonebook

    def label(call: CallRecord) -> str:
        callee = call.request.get("callee")
        if call.callee:
            kind = call.callee
        elif services.engine.soundcard_answers_all:
            kind = "soundcard"
        else:
            kind = str(callee.get("kind", "")) if isinstance(callee, dict) else book.kind_of(call.to)
        if call.request.get("flow") or call.request.get("flow_id"):
            kind += " · flow"
        elif call.request.get("url"):
            kind += " · TwiML app"
        return kind

    return label


def _page(request: Request, session: Session, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render with the session (CSRF token, nav) and its pending notices (shown once)."""
    notices = list(session.notices)
    session.notices.clear()
    notice = context.pop("notice", None) or (" ".join(notices) if notices else None)
    return render(request, name, status_code=status_code, session=session, notice=notice, **context)


def _not_found(request: Request, session: Session, what: str) -> HTMLResponse:
    return _page(request, session, "not_found.html", status_code=404, what=what)


@router.get("", response_class=HTMLResponse)
@router.get("/calls", response_class=HTMLResponse)
async def calls_page(request: Request, services: ServicesDep, session: SessionDep, status: str = "", number: str = "",
                     starting_after: str = "", ending_before: str = "", limit: int = 50) -> HTMLResponse:
    """Newest first, filtered by status and number, paged by keyset: ``starting_after`` (a call id) gives
    the older calls after it, ``ending_before`` the newer ones before it."""
    problem = None
    if status and status not in STATUSES:
        problem = f"There is no status {status[:40]!r} to filter by, so calls of any status are shown: choose one of {', '.join(STATUSES)}."
        status = ""
    number = number.strip()[:32]
    limit = min(max(limit, 1), max(PAGE_SIZES))
    store = services.engine.store
    if starting_after and store.get_call(starting_after) is None:
        starting_after = ""
    if ending_before and store.get_call(ending_before) is None:
        ending_before = ""
    filters = {"status": status or None, "number": number or None}
    newer_before = None
    if ending_before and not starting_after:
        records = store.list_calls(**filters, limit=limit + 1, after=ending_before)
        page = records[-limit:]
        newer_before = page[0].id if len(records) > limit else None
        next_after = page[-1].id if page else None  # the call it paged back from is older still
    else:
        records = store.list_calls(**filters, limit=limit + 1, before=starting_after or None)
        page = records[:limit]
        next_after = page[-1].id if len(records) > limit else None
        newer_before = page[0].id if starting_after and page else None
    first_page = newer_before is None and not starting_after
    return _page(request, session, "calls.html", calls=page, callee_of=callee_of(services), status=status, number=number, limit=limit, statuses=STATUSES,
                 page_sizes=PAGE_SIZES, starting_after=starting_after, next_after=next_after, newer_before=newer_before, first_page=first_page,
                 filter_problem=problem)


def _place_context(services: Services) -> dict[str, Any]:
    book = services.engine.phonebook.describe()
    numbers = []
    for number, entry in book["numbers"].items():
        kind, detail = "?", ""
        if isinstance(entry, dict):
            kind = str(entry.get("kind", "?"))
            detail = entry.get("script") or entry.get("file") or entry.get("reason") or ""
        numbers.append({"number": number, "label": f"{number} — {kind}" + (f" ({detail})" if isinstance(detail, str) and detail else "")})
    voices = sorted(voice.id for voice in services.catalog)
    return {"numbers": numbers, "verified": services.settings.verified_numbers, "voices": voices}


@router.get("/calls/new", response_class=HTMLResponse)
async def place_form(request: Request, services: ServicesDep, session: SessionDep, to: str = "") -> HTMLResponse:
    defaults = {"to": to, "prompt": "tts", "text": "Press 1 for sales, 2 for support, then the pound key.", "voice": "", "audio_url": "",
                "gather": "on", "num_digits": "", "record": "on", "webhook_url": ""}
    return _page(request, session, "place.html", form=defaults, errors=[], field_errors={}, labels=FIELD_LABELS, **_place_context(services))


def call_body(fields: dict[str, Any]) -> dict[str, Any]:
    """The place-call form as a ``POST /v1/voice/calls`` body (validated by CallCreate, as the API does)."""
    to = str(fields.get("to_other") or fields.get("to") or "").strip()
    body: dict[str, Any] = {"to": to, "from": str(fields.get("from") or "").strip()}
    if fields.get("prompt") == "audio_url":
        body["audio_url"] = str(fields.get("audio_url") or "").strip()
    else:
        tts: dict[str, Any] = {"text": str(fields.get("text") or "")}
        if fields.get("voice"):
            tts["voice"] = str(fields["voice"])
        body["tts"] = tts
    if fields.get("gather") in ("on", "true", True):
        gather: dict[str, Any] = {}
        digits = str(fields.get("num_digits") or "").strip()
        if digits:
            gather["num_digits"] = int(digits) if digits.isdigit() else digits
        body["gather"] = gather
    body["record"] = fields.get("record") in ("on", "true", True)
    if fields.get("webhook_url"):
        body["webhook_url"] = str(fields["webhook_url"]).strip()
    return body


#: The place-call form's field for each CallCreate (or API error) location, and its label in messages.
FORM_FIELDS = {"to": "to", "from": "from", "tts.text": "text", "tts.voice": "voice", "tts": "text", "audio_url": "audio_url",
               "gather.num_digits": "num_digits", "gather": "num_digits", "webhook_url": "webhook_url"}
FIELD_LABELS = {"to": "To", "to_other": "Other number", "from": "From", "text": "Text to speak", "voice": "Voice",
                "audio_url": "Audio URL", "num_digits": "Number of digits", "webhook_url": "Webhook URL"}


def _plain(problem: dict[str, Any]) -> str:
    """Pydantic's message in plain words: no "Value error, " prefix, no "Input should be"."""
    kind, message = problem.get("type", ""), str(problem.get("msg", ""))
    if kind == "string_too_short":
        return "This is empty: fill it in."
    if kind in ("int_type", "int_parsing"):
        return "Give a whole number, e.g. 4."
    if kind.startswith(("greater_than", "less_than")):
        return f"Give a number {message.removeprefix('Input should be ')}."
    message = message.removeprefix("Value error, ").removeprefix("Input should be ")
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _form_field(where: str, fields: dict[str, Any]) -> str | None:
    name = FORM_FIELDS.get(where)
    if name == "to" and str(fields.get("to_other") or "").strip():
        return "to_other"  # the number typed in wins over the phonebook's choice (call_body)
    return name


def _problems(error: ValidationError, fields: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Each problem next to its form field (field name -> message); those of no one field, as a list."""
    by_field: dict[str, str] = {}
    general: list[str] = []
    for problem in error.errors():
        name = _form_field(".".join(str(part) for part in problem["loc"]), fields)
        if name is None:
            general.append(_plain(problem))
        else:
            by_field.setdefault(name, _plain(problem))
    return by_field, general


@router.post("/calls/new", response_class=HTMLResponse)
async def place_call(request: Request, services: ServicesDep, session: CsrfDep) -> Response:
    """Places the call through POST /v1/voice/calls's own handler (CallCreate validation, the verified
    caller ids, voices, audio_url rules) and goes to the call's page to watch it."""
    fields = await form_fields(request)
    form = {name: str(value) for name, value in fields.items() if name != "csrf_token"}
    try:
        body = CallCreate.model_validate(call_body(fields))
        created = await call_routes.create_call(body, services, None)
    except ValidationError as error:
        by_field, general = _problems(error, fields)
        return _page(request, session, "place.html", status_code=422, form=form, field_errors=by_field, errors=general, labels=FIELD_LABELS,
                     **_place_context(services))
    except ApiError as error:
        name = _form_field(error.param or "", fields)
        message = error.message[:1].upper() + error.message[1:]
        return _page(request, session, "place.html", status_code=error.status, form=form, field_errors={name: message} if name else {},
                     errors=[] if name else [message], labels=FIELD_LABELS, **_place_context(services))
    call_id = created["id"] if isinstance(created, dict) else json.loads(bytes(created.body))["id"]
    session.notices.append(f"Placed call {call_id} to {body.to}.")
    return RedirectResponse(f"/ui/calls/{call_id}", status_code=303)


def _details(payload: dict[str, Any]) -> str:
    rest = {k: v for k, v in payload.items() if k not in ("call_id", "type", "sequence", "timestamp", "call_time_s")}
    return json.dumps(rest, ensure_ascii=False) if rest else ""


@router.get("/calls/{call_id}", response_class=HTMLResponse)
async def call_page(request: Request, call_id: str, services: ServicesDep, session: SessionDep) -> HTMLResponse:
    store = services.engine.store
    record = store.get_call(call_id)
    if record is None:
        return _not_found(request, session, f"call {call_id}")
    events = [e.payload() for e in store.events(call_id)]
    answered = next((e for e in events if e["type"] == "call.in-progress"), None)
    recording = store.recording_for_call(call_id)
    ready = recording is not None and recording.completed_at is not None
    transcript = None
    if ready and record.request.get("transcribe"):
        transcript = transcription_document(store.transcription_job(recording.id))
    live = services.engine.live_call(call_id)
    flow_id = record.request.get("flow_id")
    return _page(
        request, session, "call.html", call=record, request_json=record.request, events=events, details=_details,
        answered_s=answered["call_time_s"] if answered else None, recording=recording if ready else None,
        recording_pending=recording is not None and not ready, transcript=transcript,
        deliveries=store.deliveries(call_id=call_id), live=live is not None or record.status in LIVE_STATUSES,
        keys=KEYS, last_sequence=events[-1]["sequence"] if events else 0, flow_id=flow_id,
    )


@router.get("/analyses", response_class=HTMLResponse)
async def analyses_page(request: Request, services: ServicesDep, session: SessionDep) -> HTMLResponse:
    """Per assistant (the Canonical API's calls): calls, turn latency, interruptions and dead air."""
    assistants = []
    for item in services.engine.store.canonical_assistants(limit=100):
        bins = histogram_bins(item["latency_histogram"])
        name = item["assistant"].get("name") if isinstance(item["assistant"], dict) else None
        label = name or item["assistant_id"]
        assistants.append({
            **item,
            "label": label,
            "recent": services.engine.store.list_canonical_calls(assistant_id=item["assistant_id"], limit=RECENT_ANALYSES),
            "latency_chart": bar_chart([(b.label, b.count) for b in bins], f"Turn latency of {label}: calls per latency range (ms)",
                                       x_title="turn latency, ms", y_title="turns"),
            "bins": bins,
            "outcome_chart": bar_chart(
                [("completed", item["completed"]), ("failed", item["failed"]), ("user interrupted", item["user_interrupted"]),
                 ("assistant interrupted", item["assistant_interrupted"]), ("dead air", item["dead_air_count"])],
                f"Calls, interruptions and dead air of {label}", y_title="count"),
        })
    return _page(request, session, "analyses.html", assistants=assistants)


@router.get("/analyses/calls/{call_id:path}", response_class=HTMLResponse)
async def analysis_call_page(request: Request, call_id: str, services: ServicesDep, session: SessionDep) -> HTMLResponse:
    """One Canonical call: its analysis's numbers, and its turns, latencies, interruptions and dead air on
    its recording's waveform (the recording found by the server: ivrsim/ui/analyses.py)."""
    record = services.engine.store.canonical_call(call_id)
    if record is None:
        return _not_found(request, session, f"Canonical call {call_id}")
    result = record.result if record.status == "completed" else None
    problem = None
    try:
        canonical_recording(services, call_id)
    except ApiError as error:
        problem = error.message
    label = record.assistant.get("name") or record.assistant.get("description") or record.assistant_id
    return _page(request, session, "analysis_call.html", call=record, result=result, marks=analysis_marks(result), recording_problem=problem,
                 assistant_label=label, url_id=quote(call_id, safe=""))


@router.get("/flows", response_class=HTMLResponse)
async def flows_page(request: Request, services: ServicesDep, session: SessionDep, starting_after: str = "") -> HTMLResponse:
    store = services.engine.store
    flows = store.list_flows(limit=101, before=starting_after or None) if hasattr(store, "list_flows") else []
    return _page(request, session, "flows.html", flows=flows[:100], next_after=flows[99].id if len(flows) > 100 else None)


@router.get("/flows/{flow_id}", response_class=HTMLResponse)
async def flow_page(request: Request, flow_id: str, services: ServicesDep, session: SessionDep, call: str = "") -> HTMLResponse:
    """A stored flow as Mermaid text and an SVG graph; with ``?call=<id>``, that call's path through it."""
    from ivrsim.flows import check_flow
    from ivrsim.flows.graph import graph_data, mermaid
    from ivrsim.ui.charts import flow_svg

    store = services.engine.store
    record = store.flow(flow_id)
    if record is None:
        return _not_found(request, session, f"flow {flow_id}")
    flow = check_flow(record.document, default_name=record.name)
    path: list[str] = []
    call_problem = None
    if call:
        ran = store.get_call(call)
        if ran is None:
            call_problem = "missing"
        elif not (ran.request.get("flow_id") or ran.request.get("flow")):
            call_problem = "no_flow"
        elif not _ran_this_flow(ran, record):
            call_problem = "other_flow"
        else:
            path = [str(e.data.get("node")) for e in store.events(call) if e.type == "flow.node_entered"]
    data = graph_data(flow)
    return _page(request, session, "flow.html", flow=record, mermaid=mermaid(flow), svg=flow_svg(data, path), flow_path=path, call_id=call,
                 call_problem=call_problem)


def _ran_this_flow(call: CallRecord, flow: FlowRecord) -> bool:
    """Whether ``call`` ran this stored flow: by its ``flow_id``, or (a flow sent inline) the same document."""
    if call.request.get("flow_id"):
        return call.request["flow_id"] == flow.id
    inline = call.request.get("flow")
    return isinstance(inline, dict) and inline == flow.document

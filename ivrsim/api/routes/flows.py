"""``/v1/voice/flows``: IVR flows (``ivrsim.flows``) stored for calls to run by ``flow_id``; validated on write."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ivrsim.api.deps import ApiKeyDep, Services, ServicesDep
from ivrsim.api.errors import (
    BODY_ERRORS,
    HTTP_404_NOT_FOUND,
    HTTP_413_TOO_LARGE,
    HTTP_422_UNPROCESSABLE,
    ApiError,
    error_responses,
)
from ivrsim.api.schemas import STRICT_BODY
from ivrsim.flows.document import MAX_FLOW_BYTES, FlowError, FlowIssue
from ivrsim.flows.loader import load_flow_text
from ivrsim.flows.validate import validate_flow
from ivrsim.store.sqlite import FlowRecord

router = APIRouter(prefix="/v1/voice", tags=["flows"], responses=error_responses(401, 422))

#: Most problems one 422 lists in its message (the rest are counted).
MAX_LISTED_PROBLEMS = 20


class FlowWrite(BaseModel):
    """``POST /v1/voice/flows`` and ``PUT /v1/voice/flows/{id}``: a name and the flow, as a JSON object
    (``flow``) or as YAML text (``yaml``), exactly one of them."""

    model_config = ConfigDict(**STRICT_BODY, json_schema_extra={"oneOf": [
        {"required": ["flow"], "properties": {"flow": {"type": "object"}}},
        {"required": ["yaml"], "properties": {"yaml": {"type": "string"}}},
    ]})

    name: str = Field(min_length=1, max_length=200, description="What the flow is called (lists show it).")
    flow: dict[str, Any] | None = Field(default=None, description="The flow document as JSON: nodes, and optionally start, variables.")
    yaml: str | None = Field(default=None, min_length=1, description=f"The flow document as YAML text (up to {MAX_FLOW_BYTES // 1024} kB).")


def _problems(issues: list[FlowIssue]) -> str:
    shown = "; ".join(str(issue) for issue in issues[:MAX_LISTED_PROBLEMS])
    more = f" (and {len(issues) - MAX_LISTED_PROBLEMS} more)" if len(issues) > MAX_LISTED_PROBLEMS else ""
    return f"{len(issues)} problem{'s' if len(issues) != 1 else ''} in the flow: {shown}{more}"


def checked_document(document: Any, param: str) -> dict[str, Any]:
    """``document`` (a flow as JSON data) when it validates; else 413 (too large) or 422 listing every
    problem, ``param`` the first problem's path under ``param`` (``flow.nodes.menu.branches.3``)."""
    size = len(json.dumps(document, separators=(",", ":")).encode())
    if size > MAX_FLOW_BYTES:
        raise ApiError(HTTP_413_TOO_LARGE, "flow_too_large", f"{param} is {size:,} bytes as JSON, over {MAX_FLOW_BYTES:,}; split it into smaller flows", param)
    issues = validate_flow(document)
    if issues:
        issues = [FlowIssue(f"{param}.{i.path}" if i.path else param, i.message) for i in issues]
        raise ApiError(HTTP_422_UNPROCESSABLE, "invalid_flow", _problems(issues), issues[0].path)
    return dict(document)


def _document(body: FlowWrite) -> tuple[dict[str, Any], str | None]:
    """The body's flow, validated, and its YAML text (None for a JSON flow)."""
    if (body.flow is None) == (body.yaml is None):
        raise ApiError(HTTP_422_UNPROCESSABLE, "invalid_parameter", "give the flow as flow (a JSON object) or as yaml (YAML text), exactly one of them",
                       "flow" if body.flow is None else "yaml")
    if body.flow is not None:
        return checked_document(body.flow, "flow"), None
    assert body.yaml is not None
    size = len(body.yaml.encode("utf-8", "surrogatepass"))
    if size > MAX_FLOW_BYTES:
        raise ApiError(HTTP_413_TOO_LARGE, "flow_too_large", f"yaml is {size:,} bytes, over {MAX_FLOW_BYTES:,}; split it into smaller flows", "yaml")
    try:
        document, positions = load_flow_text(body.yaml, "yaml")
    except FlowError as error:
        raise ApiError(HTTP_422_UNPROCESSABLE, "invalid_flow", _problems(error.errors), "yaml") from error
    issues = validate_flow(document, positions)
    if issues:
        raise ApiError(HTTP_422_UNPROCESSABLE, "invalid_flow", _problems(issues), "yaml")
    return document, body.yaml


def flow_public(record: FlowRecord) -> dict[str, Any]:
    return {"id": record.id, "object": "flow", "name": record.name, "flow": record.document, "yaml": record.source,
            "nodes": len(record.document.get("nodes") or {}), "created_at": record.created_at, "updated_at": record.updated_at}


def known_flow(services: Services, flow_id: str, param: str = "id", status: int = HTTP_404_NOT_FOUND) -> FlowRecord:
    record = services.engine.store.flow(flow_id)
    if record is None:
        raise ApiError(status, "not_found" if status == HTTP_404_NOT_FOUND else "unknown_flow",
                       f"no flow {flow_id!r}; GET /v1/voice/flows lists the flows, POST /v1/voice/flows stores one", param)
    return record


@router.post("/flows", dependencies=[ApiKeyDep], summary="Store an IVR flow", responses=error_responses(*BODY_ERRORS))
async def create_flow(body: FlowWrite, services: ServicesDep) -> dict[str, Any]:
    """Validated first: a 422 lists every problem (with line and column for YAML); ``param`` is the first's
    JSON path. Calls run it with ``flow_id``."""
    document, source = await asyncio.to_thread(_document, body)  # parsing and validating 256 kB takes a while: off the loop
    return flow_public(services.engine.store.insert_flow(services.engine.new_id("flow"), body.name, document, source))


@router.get("/flows", dependencies=[ApiKeyDep], summary="List flows, newest first", responses=error_responses(404))
async def list_flows(
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200, description="Flows per page.")] = 50,
    starting_after: Annotated[str | None, Query(max_length=64, description="A flow id from the previous page: the page after it.")] = None,
) -> dict[str, Any]:
    if starting_after is not None:
        known_flow(services, starting_after, "starting_after")
    records = services.engine.store.list_flows(limit=limit + 1, before=starting_after)
    page = records[:limit]
    more = len(records) > limit
    return {"data": [flow_public(r) for r in page], "has_more": more, "next_starting_after": page[-1].id if more else None}


@router.get("/flows/{flow_id}", dependencies=[ApiKeyDep], summary="A flow", responses=error_responses(404))
async def get_flow(flow_id: str, services: ServicesDep) -> dict[str, Any]:
    return flow_public(known_flow(services, flow_id))


@router.put("/flows/{flow_id}", dependencies=[ApiKeyDep], summary="Replace a flow", responses=error_responses(404, *BODY_ERRORS))
async def replace_flow(flow_id: str, body: FlowWrite, services: ServicesDep) -> dict[str, Any]:
    """Calls placed before keep the flow they were placed with (a call carries its document)."""
    known_flow(services, flow_id)
    document, source = await asyncio.to_thread(_document, body)  # parsing and validating 256 kB takes a while: off the loop
    record = services.engine.store.update_flow(flow_id, body.name, document, source)
    if record is None:  # deleted meanwhile
        known_flow(services, flow_id)
    assert record is not None
    return flow_public(record)


@router.delete("/flows/{flow_id}", dependencies=[ApiKeyDep], summary="Delete a flow", responses=error_responses(404))
async def delete_flow(flow_id: str, services: ServicesDep) -> dict[str, Any]:
    if not services.engine.store.delete_flow(flow_id):
        known_flow(services, flow_id)
    return {"id": flow_id, "object": "flow", "deleted": True}

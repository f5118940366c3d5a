"""Background analyses of recordings (``/_sim/analyses``): stored, queued, run by a worker, read back.

The job behind them is the one the Canonical API's endpoints put their requests on; this surface lets a
test suite (or a user) analyse any dual-channel recording, ivrsim's own included.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from ivrsim.api.deps import ApiKeyDep, ServicesDep
from ivrsim.api.errors import BODY_ERRORS, HTTP_404_NOT_FOUND, HTTP_422_UNPROCESSABLE, ApiError, error_responses
from ivrsim.api.schemas import NOT_BLANK_PATTERN, STRICT_BODY
from ivrsim.exceptions import AudioUrlError
from ivrsim.store.sqlite import JobRecord

router = APIRouter(prefix="/_sim/analyses", tags=["_sim"])


class AnalysisCreate(BaseModel):
    """A recording to analyse: one party per channel."""

    model_config = STRICT_BODY

    location: str = Field(min_length=1, max_length=4096, pattern=NOT_BLANK_PATTERN,
                          description="The recording: an http(s) URL, or a path inside the server's media roots.")
    speaks_first: bool = Field(default=True, description="Whether the assistant speaks first (the channel that speaks first is then the assistant's).")
    assistant_channel: Literal[1, 2] | None = Field(default=None, description="The assistant's channel, when known (1 = left); overrides speaks_first.")
    dead_air_threshold_s: float = Field(default=3.0, ge=0.5, le=600, description="Silences longer than this count as dead air, in seconds.")


def _job_or_404(services: Any, job_id: str) -> JobRecord:
    job = services.jobs.store.job(job_id)
    if job is None or job.kind != "analysis":
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no analysis {job_id!r}", "job_id")
    return job


@router.post("", dependencies=[ApiKeyDep], summary="Analyse a recording in the background", responses=error_responses(401, *BODY_ERRORS))
async def create_analysis(body: AnalysisCreate, services: ServicesDep) -> dict[str, Any]:
    try:
        services.engine.loader.check(body.location)  # bad schemes, local paths outside the media roots
    except AudioUrlError as error:
        raise ApiError(HTTP_422_UNPROCESSABLE, error.code, str(error).replace("audio_url", "location", 1), "location") from error
    job = services.jobs.submit("analysis", body.model_dump())
    return job.payload()


@router.get("/{job_id}", dependencies=[ApiKeyDep], summary="An analysis: its status, and its result or failure", responses=error_responses(401, 404))
async def get_analysis(job_id: str, services: ServicesDep) -> dict[str, Any]:
    return _job_or_404(services, job_id).payload()


@router.get("", dependencies=[ApiKeyDep], summary="Analyses, newest first", responses=error_responses(401, 404))
async def list_analyses(
    services: ServicesDep,
    status: Annotated[Literal["queued", "processing", "completed", "failed"] | None, Query(description="Only analyses in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    starting_after: Annotated[str | None, Query(description="The last id of the previous page.")] = None,
) -> dict[str, Any]:
    if starting_after is not None and services.jobs.store.job(starting_after) is None:
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"starting_after: no analysis {starting_after!r}; pass the last id of the previous page",
                       "starting_after")
    jobs = services.jobs.store.list_jobs(kind="analysis", status=status, limit=limit + 1, before=starting_after)
    return {"data": [job.payload() for job in jobs[:limit]], "has_more": len(jobs) > limit}

"""``/v1/voice/webhooks``: the webhook deliveries of every call, to find what did not arrive and send it again.

Stripe and Twilio keep a list of undelivered events and let you resend one; so does ivrsim. A retried
delivery keeps its attempt log, gets a new round of attempts, and still goes in order within its call.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from ivrsim.api.deps import ApiKeyDep, ServicesDep
from ivrsim.api.errors import HTTP_404_NOT_FOUND, HTTP_409_CONFLICT, ApiError, error_responses
from ivrsim.webhooks.dispatcher import DeliveryAlreadyDelivered, DeliveryNotFound, DeliveryStatus

router = APIRouter(prefix="/v1/voice", tags=["webhooks"])
#: The largest id SQLite stores (a larger one is an unknown id, said as a 422 before the database sees it).
MAX_ID = 2**63 - 1


class DeliveryAttempt(BaseModel):
    attempt: int = Field(description="1 for the first attempt, counting every round.")
    at: str = Field(description="When it was made, ISO 8601 UTC.")
    status_code: int | None = Field(description="The receiver's HTTP status; null when no answer came.")
    error: str | None = Field(description="Why no answer came (connection refused, timeout, invalid URL).")
    ms: float = Field(description="How long the attempt took, in milliseconds.")


class Delivery(BaseModel):
    """One event sent (or to be sent) to one URL."""

    id: int
    call_id: str
    sequence: int = Field(description="The event's sequence number within its call.")
    event_type: str
    url: str
    payload: dict[str, Any] = Field(description="The body sent: the event.")
    status: DeliveryStatus
    attempts: list[DeliveryAttempt]
    created_at: str
    finished_at: str | None = Field(description="When it was delivered or given up.")
    next_attempt_at: str | None = Field(description="When a pending delivery is attempted next.")


class DeliveryList(BaseModel):
    data: list[Delivery]
    has_more: bool
    next_starting_after: int | None


def delivery_public(row: dict[str, Any]) -> dict[str, Any]:
    return Delivery.model_validate({k: v for k, v in row.items() if k != "round_start"}).model_dump()


@router.get(
    "/webhooks", dependencies=[ApiKeyDep], response_model=DeliveryList, summary="Webhook deliveries, newest first", responses=error_responses(404)
)
async def list_deliveries(
    services: ServicesDep,
    status: Annotated[DeliveryStatus | None, Query(description="Only deliveries in this status.")] = None,
    call_id: Annotated[str | None, Query(max_length=100, description="Only this call's deliveries.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    starting_after: Annotated[int | None, Query(ge=1, le=MAX_ID, description="A delivery id: the page after it.")] = None,
) -> dict[str, Any]:
    """``status=failed`` lists what was given up, ``status=pending`` what is still being retried."""
    store = services.engine.store
    if starting_after is not None and store.delivery(starting_after) is None:
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no webhook delivery {starting_after}; use an id from a previous page", "starting_after")
    rows = store.list_deliveries(status=status, call_id=call_id, limit=limit + 1, before=starting_after)
    page = rows[:limit]
    more = len(rows) > limit
    return {"data": [delivery_public(r) for r in page], "has_more": more, "next_starting_after": page[-1]["id"] if more else None}


@router.get("/webhooks/{delivery_id}", dependencies=[ApiKeyDep], response_model=Delivery, summary="One webhook delivery")
async def get_delivery(delivery_id: Annotated[int, Path(ge=1, le=MAX_ID)], services: ServicesDep) -> dict[str, Any]:
    row = services.engine.store.delivery(delivery_id)
    if row is None:
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no webhook delivery {delivery_id}; GET /v1/voice/webhooks lists them", "delivery_id")
    return delivery_public(row)


@router.post(
    "/webhooks/{delivery_id}/retry", dependencies=[ApiKeyDep], response_model=Delivery, status_code=202, summary="Send a delivery again",
    responses=error_responses(409),
)
async def retry_delivery(delivery_id: Annotated[int, Path(ge=1, le=MAX_ID)], services: ServicesDep) -> dict[str, Any]:
    """Queues a failed (or still pending) delivery now, keeping its attempt log; it still goes after the
    earlier pending deliveries of its call. 409 when it was delivered."""
    try:
        row = services.dispatcher.retry(delivery_id)
    except DeliveryNotFound:
        raise ApiError(HTTP_404_NOT_FOUND, "not_found", f"no webhook delivery {delivery_id}; GET /v1/voice/webhooks lists them", "delivery_id") from None
    except DeliveryAlreadyDelivered:
        raise ApiError(
            HTTP_409_CONFLICT, "already_delivered", f"webhook delivery {delivery_id} was delivered; only pending or failed ones can be retried", "delivery_id"
        ) from None
    return delivery_public(row)

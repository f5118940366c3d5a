"""``/v1/voice/voices``: the voice catalog."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ivrsim.api.deps import ApiKeyDep, ServicesDep

router = APIRouter(prefix="/v1/voice", tags=["voices"])


@router.get("/voices", dependencies=[ApiKeyDep], summary="Voices tts.voice accepts")
async def list_voices(services: ServicesDep) -> dict[str, Any]:
    return {"data": [v.as_dict() for v in services.catalog]}

"""``/v1/voice/voices``: the voice catalog."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ivrsim.api.deps import ApiKeyDep, ServicesDep
from ivrsim.api.errors import error_responses

router = APIRouter(prefix="/v1/voice", tags=["voices"])


@router.get("/voices", dependencies=[ApiKeyDep], summary="Voices tts.voice accepts", responses=error_responses(401, 422))
async def list_voices(
    services: ServicesDep,
    language: Annotated[
        str | None,
        Query(
            min_length=1, max_length=35, pattern=r"^[A-Za-z0-9-]+$",
            description="Only voices whose language tag starts with this, case-insensitively (en, fr-FR), as `ivrsim voices --language`.",
        ),
    ] = None,
) -> dict[str, Any]:
    chosen = [v for v in services.catalog if language is None or v.language.lower().startswith(language.lower())]
    return {"data": [v.as_dict() for v in chosen]}

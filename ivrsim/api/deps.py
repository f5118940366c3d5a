"""Dependencies of the routes, as ``Annotated`` aliases: the services, and the API key check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ivrsim.analysis.canonical import CanonicalService
from ivrsim.analysis.service import JobService
from ivrsim.api.errors import HTTP_401_UNAUTHORIZED, ApiError
from ivrsim.engine.engine import CallEngine
from ivrsim.media.transcode import Mp3Transcoder
from ivrsim.settings import Settings
from ivrsim.speech.asr.engines import SpeechEngines
from ivrsim.speech.voices import VoiceCatalog
from ivrsim.webhooks.dispatcher import WebhookDispatcher


@dataclass
class Services:
    """What a request may use; built once in the app's lifespan."""

    settings: Settings
    engine: CallEngine
    dispatcher: WebhookDispatcher
    catalog: VoiceCatalog
    #: Background jobs (analyses).
    jobs: JobService
    #: MP3s of recordings, encoded once per recording on their own thread (GET /recordings/{id}.mp3).
    mp3: Mp3Transcoder = field(default_factory=Mp3Transcoder)
    #: Speech engines (which languages have a model: a speech gather's language is checked at POST).
    speech: SpeechEngines = field(default_factory=SpeechEngines.from_environment)
    #: The Canonical API's calls (/api/v1): stored, analysed by ``jobs``, summed per assistant.
    canonical: CanonicalService | None = None


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


#: Declares the scheme in the OpenAPI document (and the docs' Authorize button); the check is ours, below.
_bearer = HTTPBearer(auto_error=False, description="The server's API key: ivrsim serve prints it; IVRSIM_API_KEY sets it.")


async def require_api_key(
    request: Request, services: ServicesDep, _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None
) -> None:
    """``Authorization: Bearer <key>``; a missing or wrong key is a 401 in the shared error shape."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    challenge = {"WWW-Authenticate": "Bearer"}
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(HTTP_401_UNAUTHORIZED, "unauthorized", "send your key as 'Authorization: Bearer <key>'", headers=challenge)
    expected = services.settings.api_key or ""
    if not hmac.compare_digest(key.strip().encode(), expected.encode()):
        raise ApiError(HTTP_401_UNAUTHORIZED, "unauthorized", "the API key is not valid; ivrsim serve prints its key at start-up", headers=challenge)


ApiKeyDep = Depends(require_api_key)

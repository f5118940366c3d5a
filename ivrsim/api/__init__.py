"""The HTTP edge: the Canary Voice API, the /_sim control surface, auth, errors and schemas (FastAPI)."""

from ivrsim.api.app import create_app

__all__ = ["create_app"]

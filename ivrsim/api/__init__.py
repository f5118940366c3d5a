"""The HTTP edge: the Canary Voice API, the /_sim control surface, auth, errors and schemas (FastAPI)."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    """``create_app`` on first use: importing it here eagerly made ``import ivrsim.ui`` (or any module the
    app imports, imported first) a circular import."""
    if name == "create_app":
        from ivrsim.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Server settings: one object, loaded once from the environment (prefix ``IVRSIM_``), cast and validated.

The CLI overrides fields explicitly and never re-reads the environment. A bad value fails at start-up,
naming the variable.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing import Annotated

#: Caller ids verified out of the box: the ``from`` of the Canary docs' examples.
DEFAULT_VERIFIED_NUMBERS = ("+15559876543",)


class Settings(BaseSettings):
    """Everything ``ivrsim serve`` needs. Lists come from comma-separated environment values."""

    model_config = SettingsConfigDict(env_prefix="IVRSIM_", extra="ignore")

    api_key: str | None = Field(default=None, description="The key both APIs accept (IVRSIM_API_KEY); a dev key is made when unset.")
    data_dir: Path = Path(".ivrsim")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    clock: str = "virtual"
    phonebook: Path | None = None
    verified_numbers: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_VERIFIED_NUMBERS))
    media_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    webhook_secret: str | None = None
    webhook_attempts: int = Field(default=5, ge=1, le=20)
    webhook_connect_timeout_s: float = Field(default=5.0, gt=0)
    webhook_timeout_s: float = Field(default=15.0, gt=0)
    webhook_backoff_s: float = Field(default=0.5, gt=0)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)

    @field_validator("verified_numbers", "media_roots", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("clock")
    @classmethod
    def _clock(cls, value: str) -> str:
        if value not in ("virtual", "realtime", "manual"):
            raise ValueError("must be 'virtual', 'realtime' or 'manual'")
        return value

    def ensure_api_key(self) -> tuple[str, bool]:
        """The API key, and whether it was made now (a dev key, to print at start-up)."""
        if self.api_key:
            return self.api_key, False
        self.api_key = "dev_" + secrets.token_urlsafe(18)
        return self.api_key, True

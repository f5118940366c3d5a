"""Server settings: one object, loaded once from the environment (prefix ``IVRSIM_``), cast and validated.

The CLI overrides fields explicitly and never re-reads the environment. A bad value fails at start-up,
naming the variable.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing import Annotated, Literal

from ivrsim.phone_numbers import check_e164

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
    media_deadline_s: float = Field(default=30.0, gt=0, description="Longest one audio_url fetch may take, connect to last byte (IVRSIM_MEDIA_DEADLINE_S).")
    media_workers_per_host: int = Field(default=2, ge=1, description="audio_url fetches of one host:port that may run at once (IVRSIM_MEDIA_WORKERS_PER_HOST), so a slow host cannot take every media worker.")
    media_queue_wait_s: float = Field(default=300.0, gt=0, description="Longest an audio_url fetch may wait for its turn before it starts (IVRSIM_MEDIA_QUEUE_WAIT_S); its deadline starts when it starts.")
    media_cache_max_bytes: int = Field(default=500 * 1024 * 1024, ge=0, description="Bound of the audio_url cache folder, in bytes; least recently used files go first.")
    prompt_cache_max_bytes: int = Field(default=500 * 1024 * 1024, ge=0, description="Bound of the rendered-prompt cache folder, in bytes; least recently used prompts go first.")
    webhook_secret: str | None = None
    twilio_auth_token: str | None = Field(default=None, description="Auth token that signs requests to TwiML apps (IVRSIM_TWILIO_AUTH_TOKEN): when set, each carries X-Twilio-Signature, so an app validates it unchanged.")
    canonical_api_key: str | None = Field(default=None, description="The key /api/v1 (the Canonical API) accepts in X-Canonical-Api-Key (IVRSIM_CANONICAL_API_KEY); default: the server's API key.")
    retell_api_key: str | None = Field(default=None, description="Retell API key (IVRSIM_RETELL_API_KEY): when set, POST /api/v1/webhooks/retell requires a valid x-retell-signature made with it.")
    # Webhook retries (Stripe/Twilio practice): attempt n+1 waits backoff_s * factor**(n-1), capped, with
    # +-jitter; the defaults retry 8 times over about 3 days (10 s, 1 min, 6 min, 36 min, 3.6 h, 22 h, 48 h).
    webhook_attempts: int = Field(default=8, ge=1, le=20)
    webhook_connect_timeout_s: float = Field(default=5.0, gt=0)
    webhook_timeout_s: float = Field(default=15.0, gt=0)
    webhook_backoff_s: float = Field(default=10.0, gt=0)
    webhook_backoff_factor: float = Field(default=6.0, ge=1)
    webhook_backoff_cap_s: float = Field(default=48 * 3600.0, gt=0)
    webhook_jitter: float = Field(default=0.2, ge=0, lt=1, description="Each wait varies by up to this share, up or down.")
    public_url: str | None = Field(default=None, description="The server's address as receivers should see it (IVRSIM_PUBLIC_URL); default: the bound address.")
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    retell_max_body_bytes: int = Field(default=20_000_000, ge=1024, description="Cap of a Retell webhook's body (IVRSIM_RETELL_MAX_BODY_BYTES): an hour's transcript_object with word timings is over a megabyte.")
    body_timeout_s: float = Field(default=10.0, gt=0, description="A request body must arrive whole within this many seconds, else 408.")
    idempotency_ttl_s: float = Field(default=24 * 3600.0, gt=0, description="How long an Idempotency-Key is remembered, in seconds.")
    retain_days: float | None = Field(default=None, gt=0, description="Prune calls ended this many days ago (IVRSIM_RETAIN_DAYS); unset keeps them forever.")
    seed: int | None = Field(default=None, ge=0, description="Seed of call and recording ids (IVRSIM_SEED): the same requests give the same ids and events on every run.")
    workers: int | None = Field(default=None, ge=0, le=256, description="Local worker processes that run calls (IVRSIM_WORKERS); default: one per core. 0 without a queue: calls run in the API's own process.")
    queue: str | None = Field(default=None, description="The job queue (IVRSIM_QUEUE): redis://host:6379/0 to share calls with `ivrsim worker` on other machines; default: an embedded SQLite queue in the data folder.")
    unclaimed_requeue_s: float = Field(default=30.0, gt=0, le=3600, description="Work taken from the queue but not claimed for this long (its worker died in between) is queued again (IVRSIM_UNCLAIMED_REQUEUE_S), in seconds.")
    worker_max_calls: int = Field(default=100, ge=1, le=10_000, description="Calls one local worker runs at once (IVRSIM_WORKER_MAX_CALLS).")
    answer: Literal["phonebook", "soundcard"] = Field(default="phonebook", description="Who answers calls (IVRSIM_ANSWER): the phonebook's callees, or the desktop phone on this machine's sound card for every number.")
    auto_answer_rings: int = Field(default=1, ge=0, le=20, description="With answer soundcard: the desktop phone picks up by itself after this many rings (IVRSIM_AUTO_ANSWER_RINGS; 0 at once).")
    retention_interval_s: float = Field(default=3600.0, gt=0, description="How often retention runs while the server is up, in seconds.")
    ui_session_ttl_s: float = Field(default=12 * 3600.0, gt=0, description="How long a dashboard login lasts, in seconds (IVRSIM_UI_SESSION_TTL_S).")
    ui_login_max_failures: int = Field(default=10, ge=1, description="Wrong API keys one client address may send to the dashboard's login within ui_login_failure_window_s before it is refused with 429 until the oldest leaves the window (IVRSIM_UI_LOGIN_MAX_FAILURES).")
    ui_login_failure_window_s: float = Field(default=60.0, gt=0, le=86_400, description="The window, in seconds, over which the dashboard's login counts a client's wrong keys (IVRSIM_UI_LOGIN_FAILURE_WINDOW_S).")
    ui_login_token_ttl_s: float = Field(default=300.0, gt=0, le=86_400, description="How long the one-click login link `ivrsim serve` prints stays valid, in seconds (IVRSIM_UI_LOGIN_TOKEN_TTL_S); each works once.")
    # Canonical multipart uploads (pipecat's CanonicalMetricsService): pre-signed part URLs, bounded on disk.
    upload_url_ttl_s: float = Field(default=3600.0, gt=0, description="How long a pre-signed upload part URL is valid, in seconds (IVRSIM_UPLOAD_URL_TTL_S).")
    upload_session_ttl_s: float = Field(default=7200.0, gt=0, description="An upload not completed this long after uploadRequest is deleted with its parts, in seconds (IVRSIM_UPLOAD_SESSION_TTL_S).")
    upload_part_max_bytes: int = Field(default=100 * 1024 * 1024, ge=1, description="Largest part one PUT may store, in bytes (IVRSIM_UPLOAD_PART_MAX_BYTES).")
    upload_max_parts: int = Field(default=100, ge=1, le=10_000, description="Most parts one upload may have (IVRSIM_UPLOAD_MAX_PARTS).")
    upload_pending_max_bytes: int = Field(default=2 * 1024**3, ge=1, description="Disk that parts of uploads not yet completed may use in all, in bytes (IVRSIM_UPLOAD_PENDING_MAX_BYTES); a PUT past it is refused with 507.")
    upload_part_timeout_s: float = Field(default=300.0, gt=0, description="A part's PUT body must arrive whole within this many seconds, else 408 (IVRSIM_UPLOAD_PART_TIMEOUT_S).")

    @field_validator("verified_numbers", "media_roots", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("verified_numbers")
    @classmethod
    def _verified(cls, value: list[str]) -> list[str]:
        for number in value:
            check_e164(number)
        return value

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        from ivrsim.workers.queue import check_queue_url

        return check_queue_url(value) if value is not None else None

    @property
    def local_workers(self) -> int:
        """How many local workers to start: ``workers``, or one per core."""
        return self.workers if self.workers is not None else (os.cpu_count() or 1)

    @property
    def in_process(self) -> bool:
        """Calls run in the API's own process (``--workers 0`` and no queue)."""
        return self.local_workers == 0 and self.queue is None

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

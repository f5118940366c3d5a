"""A Python client in the shape of the Canary SDK, for ivrsim (or the hosted API) over HTTP.

    from ivrsim.client import Canary

    canary = Canary("YOUR_API_KEY", base_url="http://127.0.0.1:8080")  # or set IVRSIM_BASE_URL
    call = canary.voice.call(to="+15551234567", from_="+15559876543",
                             tts={"text": "Hello from Canary!", "voice": "en-US-Neural2-F"}, record=True)
    print(call.id, call.status)

Errors come back as ``CanaryError`` with the API's ``status``, ``code``, ``message`` and ``param``.
``verify_signature`` checks the ``X-Ivrsim-Signature`` header of a webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
#: The environment variable naming the server when no ``base_url`` is given.
BASE_URL_ENV = "IVRSIM_BASE_URL"
#: Signatures older than this are refused, in seconds (replay protection).
SIGNATURE_TOLERANCE_S = 300


class CanaryError(Exception):
    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (param: {param})" if param else ""))
        self.status = status
        self.code = code
        self.message = message
        self.param = param


@dataclass
class Call:
    """A call as the API returned it; ``data`` holds every field, including ivrsim's additions."""

    id: str
    status: str
    to: str
    from_: str
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Call:
        return cls(document["id"], document["status"], document["to"], document["from"], document)


class _Voice:
    def __init__(self, client: Canary) -> None:
        self._client = client

    def call(self, to: str, from_: str, **parameters: Any) -> Call:
        """``POST /v1/voice/calls``; ``from_`` is the API's ``from``, other keywords pass through."""
        return Call.from_json(self._client.request("POST", "/v1/voice/calls", json={"to": to, "from": from_, **parameters}))

    def get(self, call_id: str) -> Call:
        return Call.from_json(self._client.request("GET", f"/v1/voice/calls/{call_id}"))

    def events(self, call_id: str, after: int = 0) -> list[dict[str, Any]]:
        return self._client.request("GET", f"/v1/voice/calls/{call_id}/events", params={"after": after})["data"]

    def stream_events(self, call_id: str, after: int = 0) -> Iterator[dict[str, Any]]:
        """The call's events as they happen (server-sent events), ending with its final status."""
        with self._client._http.stream("GET", f"/v1/voice/calls/{call_id}/events/stream", params={"after": after}, timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                self._client.raise_for(response)
            for line in response.iter_lines():
                if line.startswith("data: "):
                    yield json.loads(line[len("data: "):])

    def recording(self, call_id: str) -> dict[str, Any]:
        return self._client.request("GET", f"/v1/voice/calls/{call_id}/recording")

    def wait(self, call_id: str, timeout_s: float = 120.0, poll_s: float = 0.05) -> Call:
        """Poll until the call has ended (completed, busy, no-answer or failed)."""
        deadline = time.monotonic() + timeout_s
        while True:
            call = self.get(call_id)
            if call.status in ("completed", "busy", "no-answer", "failed"):
                return call
            if time.monotonic() > deadline:
                raise TimeoutError(f"call {call_id} still {call.status} after {timeout_s} s")
            time.sleep(poll_s)


class Canary:
    """The client: ``Canary(api_key, base_url=...)``; ``.voice`` has the calls. Without ``base_url`` it
    talks to ``IVRSIM_BASE_URL`` when set (as the ``ivrsim call`` command does), else the local default."""

    def __init__(self, api_key: str, base_url: str | None = None, timeout_s: float = 30.0) -> None:
        base_url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout_s)
        self.voice = _Voice(self)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            self.raise_for(response)
        return response.json()

    @staticmethod
    def raise_for(response: httpx.Response) -> None:
        """Raise the API's error as a CanaryError."""
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            raise CanaryError(response.status_code, "http_error", response.text[:200]) from None
        raise CanaryError(response.status_code, error.get("code", "error"), error.get("message", ""), error.get("param"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Canary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def verify_signature(secret: str, header: str, body: bytes, now: float | None = None, tolerance_s: float = SIGNATURE_TOLERANCE_S) -> bool:
    """True when ``header`` (``t=<unix seconds>,v1=<hex>``) signs ``body`` with ``secret`` and is recent."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        signature = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)

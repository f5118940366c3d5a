"""A Python client in the shape of the Canary SDK, for ivrsim (or the hosted API) over HTTP.

    from ivrsim.client import Canary

    canary = Canary("YOUR_API_KEY", base_url="http://127.0.0.1:8080")  # or set IVRSIM_BASE_URL
    call = canary.voice.call(to="+15551234567", from_="+15559876543",
                             tts={"text": "Hello from Canary!", "voice": "en-US-Neural2-F"}, record=True)
    print(call.id, call.status)

Errors come back as ``CanaryError`` with the API's ``status``, ``code``, ``message`` and ``param``.
Every request has a TOTAL deadline (``timeout_s``, default 30 s, ``IVRSIM_CLIENT_TIMEOUT_S``), however slowly
the server trickles its answer; an event stream gives up after ``stream_silence_s`` without a byte (default
45 s, ``IVRSIM_CLIENT_STREAM_SILENCE_S``; the server sends a keep-alive every 15 s). Both raise
``CanaryTimeoutError`` (a ``CanaryError`` with ``status`` 0 and ``code`` "timeout").
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

from ivrsim.http_deadline import Deadline, DeadlineTransport

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
#: The environment variable naming the server when no ``base_url`` is given.
BASE_URL_ENV = "IVRSIM_BASE_URL"
#: Longest one request may take, connect to last byte, in seconds; and the variable that changes it.
DEFAULT_TIMEOUT_S = 30.0
TIMEOUT_ENV = "IVRSIM_CLIENT_TIMEOUT_S"
#: Longest an event stream may stay silent (not even a keep-alive), in seconds; and its variable.
DEFAULT_STREAM_SILENCE_S = 45.0
STREAM_SILENCE_ENV = "IVRSIM_CLIENT_STREAM_SILENCE_S"
#: Signatures older than this are refused, in seconds (replay protection).
SIGNATURE_TOLERANCE_S = 300


class CanaryError(Exception):
    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (param: {param})" if param else ""))
        self.status = status
        self.code = code
        self.message = message
        self.param = param


class _LocalError(CanaryError):
    """An error the client finds itself, with no HTTP status (``status`` 0): only a code and a message."""

    local_code = "local"

    def __init__(self, message: str) -> None:
        super().__init__(0, self.local_code, message)
        self.args = (message,)

    def __str__(self) -> str:
        return self.message


class CanaryTimeoutError(_LocalError, TimeoutError):
    """The server did not answer in time (no HTTP status: ``status`` is 0, ``code`` "timeout")."""

    local_code = "timeout"


class ClientSettingError(_LocalError, ValueError):
    """A client setting from the environment is unusable (``status`` 0, ``code`` "invalid_setting")."""

    local_code = "invalid_setting"


def _seconds(given: float | None, variable: str, default: float) -> float:
    """``given``, else the environment ``variable``, else ``default``: a positive number of seconds."""
    if given is None:
        raw = os.environ.get(variable)
        if raw is None or not raw.strip():
            return default
        try:
            given = float(raw)
        except ValueError:
            raise ClientSettingError(f"{variable}={raw!r} is not a number: give seconds, e.g. {variable}={default:g}") from None
    if not given > 0 or given == float("inf"):
        raise ClientSettingError(f"{variable}={given!r} must be a positive, finite number of seconds (e.g. {default:g})")
    return float(given)


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
        """The call's events as they happen (server-sent events), ending with its final status. No total
        deadline (a call lasts as long as it lasts), but ``stream_silence_s`` without a byte ends it."""
        client = self._client
        silence_s = client.stream_silence_s
        timeout = httpx.Timeout(client.timeout_s, read=silence_s)
        try:
            with client._http.stream("GET", f"/v1/voice/calls/{call_id}/events/stream", params={"after": after}, timeout=timeout) as response:
                if response.status_code >= 400:
                    with client._deadline.within(client.timeout_s):
                        response.read()
                    client.raise_for(response)
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        yield json.loads(line[len("data: "):])
        except httpx.TimeoutException as error:
            raise CanaryTimeoutError(
                f"the event stream of call {call_id} from {client.base_url} was silent for {silence_s:g} s "
                f"({STREAM_SILENCE_ENV}; the server sends a keep-alive every 15 s): the server is stuck or unreachable"
            ) from error

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
    talks to ``IVRSIM_BASE_URL`` when set (as the ``ivrsim call`` command does), else the local default.

    ``timeout_s`` bounds each request from connect to last byte (a deadline checked by every socket
    operation, so a server trickling one byte at a time cannot stretch it); ``stream_silence_s`` bounds
    the gaps in an event stream. Unset, they come from ``IVRSIM_CLIENT_TIMEOUT_S`` and
    ``IVRSIM_CLIENT_STREAM_SILENCE_S``, else 30 s and 45 s. Proxies from the environment are not used:
    they would route around the deadline."""

    def __init__(self, api_key: str, base_url: str | None = None, timeout_s: float | None = None, stream_silence_s: float | None = None) -> None:
        base_url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        self.base_url = base_url
        self.timeout_s = _seconds(timeout_s, TIMEOUT_ENV, DEFAULT_TIMEOUT_S)
        self.stream_silence_s = _seconds(stream_silence_s, STREAM_SILENCE_ENV, DEFAULT_STREAM_SILENCE_S)
        self._deadline = Deadline()
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=self.timeout_s,
            transport=DeadlineTransport(self._deadline),
            trust_env=False,
        )
        self.voice = _Voice(self)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request, answer read whole within ``timeout_s``; the API's errors raise ``CanaryError``."""
        return self._send(method, path, **kwargs).json()

    def download(self, url: str) -> bytes:
        """The bytes at ``url`` (e.g. a recording document's ``url``: absolute, or a path on the server), fetched
        with the key within ``timeout_s``; the API's errors raise ``CanaryError``."""
        return self._send("GET", url).content

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            with self._deadline.within(self.timeout_s):
                response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as error:
            raise CanaryTimeoutError(
                f"{method} {path}: no complete answer from {self.base_url} within {self.timeout_s:g} s "
                f"(total deadline, {TIMEOUT_ENV}): the server is too slow or stuck"
            ) from error
        if response.status_code >= 400:
            self.raise_for(response)
        return response

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

"""Requests to the user's own app during a call: a TwiML document (``ivrsim.flows.twiml``), a flow's webhook
node (``ivrsim.flows``). The call waits on the answer, so every request is bounded: a whole-request
deadline (connect, send, every byte of the answer), a cap on the answer's size, at most a few redirects.
A failure is an ``AppRequestError`` that names the URL and what went wrong, never the answer's content.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ivrsim.exceptions import IvrsimError
from ivrsim.http_failures import describe_http_failure

logger = logging.getLogger(__name__)

#: How long an app may take to answer, in seconds (Twilio waits 15 s for a TwiML document).
DEFAULT_APP_TIMEOUT_S = 15.0
#: Largest answer read, in bytes (a TwiML document is a few kilobytes; Twilio's limit is 64 kB of TwiML).
DEFAULT_APP_MAX_BYTES = 1_000_000
#: Redirects followed before the request fails.
MAX_REDIRECTS = 5


class AppRequestError(IvrsimError):
    """The app could not be asked, or did not answer in time or within size."""

    code = "app_request_failed"


@dataclass(frozen=True)
class AppResponse:
    """The app's answer: status, content type (without parameters, lower case), text, the URL that
    answered (after redirects) and how long it took."""

    status_code: int
    content_type: str
    text: str
    url: str
    elapsed_s: float


def shown_url(url: str) -> str:
    """``url`` for messages: without its query string and user info (they may hold secrets)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "(an invalid URL)"
    return str(parsed.copy_with(query=None, fragment=None, username=None, password=None))


class AppClient:
    """One connection pool for the app requests of every call a runner runs (made on first use, on the
    running event loop)."""

    def __init__(self, timeout_s: float = DEFAULT_APP_TIMEOUT_S, max_bytes: int = DEFAULT_APP_MAX_BYTES,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport, follow_redirects=True, max_redirects=MAX_REDIRECTS,
                timeout=httpx.Timeout(self.timeout_s), headers={"User-Agent": "ivrsim (app requests)"},
            )
        return self._client

    async def request(
        self, method: str, url: str, *, form: dict[str, str] | None = None, json: Any = None,
        headers: dict[str, str] | None = None, timeout_s: float | None = None,
    ) -> AppResponse:
        """``method`` ``url`` with a form (``application/x-www-form-urlencoded``; as a query string for GET)
        or a JSON body; returns the answer whatever its status. AppRequestError when there is none in
        time, or it is larger than ``max_bytes``."""
        limit_s = timeout_s if timeout_s is not None else self.timeout_s
        method = method.upper()
        started = time.monotonic()
        where = f"{method} {shown_url(url)}"
        try:
            async with asyncio.timeout(limit_s):
                params = form if method == "GET" else None
                data = form if method != "GET" else None
                async with self._http().stream(method, url, params=params, data=data, json=json, headers=headers) as response:
                    declared = response.headers.get("content-length")
                    if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                        raise AppRequestError(f"{where}: the answer is {int(declared):,} bytes, over the {self.max_bytes:,}-byte limit; "
                                              "answer with a smaller document")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > self.max_bytes:
                            raise AppRequestError(f"{where}: the answer is over the {self.max_bytes:,}-byte limit; answer with a smaller document")
                    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                    text = bytes(body).decode(response.encoding or "utf-8", errors="replace")
                    return AppResponse(response.status_code, content_type, text, str(response.url), time.monotonic() - started)
        except TimeoutError:
            raise AppRequestError(f"{where}: no answer within {limit_s:g} s; answer sooner") from None
        except httpx.TooManyRedirects:
            raise AppRequestError(f"{where}: more than {MAX_REDIRECTS} redirects") from None
        except httpx.InvalidURL:  # not an HTTPError: e.g. a URL template rendered into junk
            raise AppRequestError(f"{where}: not a valid URL; give an http(s) URL (check the variables in its template)") from None
        except httpx.HTTPError as error:
            raise AppRequestError(f"{where}: {describe_http_failure(error)}") from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

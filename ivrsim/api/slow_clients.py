"""Bounds on clients that send slowly, below the app: uvicorn closes idle keep-alive connections itself,
but waits for ever for the headers of a request (a connection that sends half a request line and stops
holds its socket and a slot). ``header_deadline_protocol`` gives every request ``timeout_s`` to finish its
headers; the body has its own deadline in ``errors.BodyTimeoutMiddleware`` (a 408)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)


def header_deadline_protocol(timeout_s: float) -> Any:
    """uvicorn's httptools protocol with a deadline on request headers, for ``uvicorn.Config(http=...)``;
    "auto" (no header deadline) when httptools is not installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn[standard] ships httptools
        return "auto"

    class HeaderDeadlineProtocol(HttpToolsProtocol):  # type: ignore[misc]
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()  # the first request's headers

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_timer()  # each later request on a kept-alive connection

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(timeout_s, self._headers_too_slow)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.cycle is None or self.cycle.response_complete:  # no request is being answered
                logger.info("closed a connection from %s: no complete request headers within %.1f s", self.client, timeout_s)
                self.transport.close()

    return HeaderDeadlineProtocol

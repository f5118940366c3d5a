"""HTTP with a TOTAL deadline: httpx's read timeout restarts with every byte, so a server that trickles
one byte at a time can hold a request for ever. ``DeadlineTransport`` bounds every connect, TLS handshake,
socket read and write by what is left of the calling thread's ``Deadline``; with no deadline set, the
client's own timeouts apply unchanged. Used by the ``audio_url`` loader and by the Python client (and CLI).
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx


class Deadline(threading.local):
    """The monotonic time by which the current thread's request must end (None: no deadline running)."""

    at: float | None = None

    @contextlib.contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        """Run the block's requests under a deadline ``seconds`` from now (this thread only)."""
        self.at = time.monotonic() + seconds
        try:
            yield
        finally:
            self.at = None

    def left(self, timeout: float | None) -> float | None:
        """``timeout`` shortened to what is left of the deadline; raises once it has passed."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the deadline has passed")
        return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read, write and TLS handshake waits at most until the deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None) -> httpcore.NetworkStream:
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, self._deadline.left(timeout)), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


#: Socket options as httpcore's backends take them.
_SocketOptions = Iterable[tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]] | None


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sync sockets, with connects and streams bounded by the thread's deadline.

    httpx's read timeout restarts with every chunk that arrives, so it alone cannot bound a fetch; the
    deadline is checked by the sockets themselves, which covers connects, redirects, headers and body."""

    def __init__(self, deadline: Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: _SocketOptions = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, self._deadline.left(timeout), local_address, socket_options)
        return DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: _SocketOptions = None
    ) -> httpcore.NetworkStream:
        return DeadlineStream(self._inner.connect_unix_socket(path, self._deadline.left(timeout), socket_options), self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


#: httpcore's exceptions and the httpx ones the client (and ``describe_http_failure``) expect, most specific first.
_HTTPCORE_TO_HTTPX: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    """Raise httpcore's exceptions as their httpx counterparts (what ``httpx.Client`` users catch)."""
    try:
        yield
    except Exception as error:
        for core, mapped in _HTTPCORE_TO_HTTPX:
            if isinstance(error, core):
                raise mapped(str(error), request=request) from error
        raise


class _BodyStream(httpx.SyncByteStream):
    """A response body from httpcore, with its errors raised as httpx's."""

    def __init__(self, inner: Iterable[bytes], request: httpx.Request) -> None:
        self._inner = inner
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors(self._request):
            yield from self._inner

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class DeadlineTransport(httpx.BaseTransport):
    """An httpx transport over httpcore's public ``ConnectionPool`` with deadline-bounded sockets (public
    APIs only: httpx's own transport takes no network backend)."""

    def __init__(self, deadline: Deadline) -> None:
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(), network_backend=DeadlineBackend(deadline))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,  # the client's timeouts
        )
        with _as_httpx_errors(request):
            response = self._pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)  # the sync pool's body
        return httpx.Response(
            status_code=response.status, headers=response.headers, stream=_BodyStream(response.stream, request), extensions=response.extensions
        )

    def close(self) -> None:
        self._pool.close()

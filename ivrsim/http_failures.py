"""What went wrong with an outgoing HTTP request, in fixed words that never quote the other side.

httpx's protocol errors carry the bytes the server sent (h11: ``illegal status line: bytearray(b'...')``),
and those end up in a call's ``reason``, its events and the webhook delivery log. Only a connect error
keeps its text: it is the operating system's message (refused, unreachable, name not known), which says
what to fix and holds nothing the server sent.
"""

from __future__ import annotations

import httpx

#: Fixed phrases by exception class, most specific first.
_PHRASES: tuple[tuple[type[httpx.HTTPError], str], ...] = (
    (httpx.TooManyRedirects, "too many redirects"),
    (httpx.ConnectTimeout, "timed out while connecting"),
    (httpx.ReadTimeout, "timed out waiting for the reply"),
    (httpx.WriteTimeout, "timed out while sending the request"),
    (httpx.PoolTimeout, "timed out waiting for a free connection"),
    (httpx.TimeoutException, "timed out"),
    (httpx.ReadError, "the connection failed while reading the reply"),
    (httpx.WriteError, "the connection failed while sending the request"),
    (httpx.CloseError, "the connection failed while closing"),
    (httpx.NetworkError, "the connection failed"),
    (httpx.LocalProtocolError, "the request could not be sent as valid HTTP"),
    (httpx.UnsupportedProtocol, "a URL (or a redirect's Location) is not http or https"),
    (httpx.ProxyError, "the proxy refused the request"),
    (httpx.DecodingError, "the reply's content encoding does not decode"),
)

#: h11/httpcore messages that hold no server bytes and tell a closed connection from garbled HTTP.
_CLOSED_EARLY = ("Server disconnected without sending a response", "peer closed connection without sending complete message body")


def describe_http_failure(error: httpx.HTTPError) -> str:
    """A short, fixed description of ``error`` for messages, logs and stored records."""
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect ({error})"  # the OS's words: refused, unreachable, unknown name
    if isinstance(error, httpx.RemoteProtocolError):
        text = str(error)
        if text.startswith(_CLOSED_EARLY[0]):
            return "the connection was closed before a reply arrived"
        if text.startswith(_CLOSED_EARLY[1]):
            return "the connection was closed mid-transfer"
        return "the reply is not valid HTTP"
    for kind, phrase in _PHRASES:
        if isinstance(error, kind):
            return phrase
    return f"the request failed ({type(error).__name__})"

"""Twilio's request parameters and its ``X-Twilio-Signature``, so a TwiML app written for Twilio runs
unchanged against ivrsim (and validates our requests with Twilio's own ``RequestValidator``).

The signature (Twilio's "Webhooks security"): the full URL the app is asked at (with its query string),
then for a POST each form parameter's name and value concatenated, in the names' sorted order; HMAC-SHA1
of that with the account's auth token, base64-encoded. A GET carries its parameters in the URL, which is
then signed as it is sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

import httpx

#: The ``ApiVersion`` Twilio sends.
API_VERSION = "2010-04-01"
SIGNATURE_HEADER = "X-Twilio-Signature"


def account_sid(seed: int | None) -> str:
    """A fixed ``AccountSid`` (AC + 32 hex digits) derived from the id seed: the same on every run and in
    every worker process of one server."""
    digest = hashlib.sha256(f"ivrsim account/{seed if seed is not None else 'default'}".encode()).hexdigest()
    return "AC" + digest[:32]


def sid(prefix: str, name: str) -> str:
    """A Twilio-shaped id (``prefix`` + 32 hex digits) for ``name``: a recording's ``RE...``, a dialled leg's ``CA...``."""
    return prefix + hashlib.sha256(name.encode()).hexdigest()[:32]


def call_parameters(call_id: str, account: str, from_: str, to: str, status: str = "in-progress") -> dict[str, str]:
    """What Twilio posts with every request of an outbound API call that was answered."""
    return {
        "CallSid": call_id,
        "AccountSid": account,
        "From": from_,
        "To": to,
        "Caller": from_,
        "Called": to,
        "CallStatus": status,
        "Direction": "outbound-api",
        "ApiVersion": API_VERSION,
    }


def signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """``X-Twilio-Signature`` for a request to ``url`` (as sent, with its query) with POST ``params``."""
    payload = url + "".join(name + params[name] for name in sorted(params)) if params else url
    mac = hmac.new(auth_token.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def get_url(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` added to its query string: the URL a GET is sent to, and signed as."""
    return str(httpx.URL(url).copy_merge_params(dict(params)))

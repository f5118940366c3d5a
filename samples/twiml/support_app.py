"""The support line of ``samples/flows/support-menu.yaml``, written as a small TwiML app (Starlette), the way
a Twilio user writes one: ivrsim runs it offline exactly as Twilio would, by a call's ``"url"``.

    .venv/bin/python samples/twiml/support_app.py --port 8000          # then place a call with "url": "http://127.0.0.1:8000/voice"

Pages: ``/voice`` the main menu (1 billing, 2 technical support, 3 an order) -> ``/menu``; billing is a
submenu (``/billing``: 1 the last invoice, 9 back); technical support records a message (``/recorded``);
an order number is gathered and answered from the app's own table (``/order``). A wrong key or silence
says sorry and redirects back to the main menu, three times at most; every path ends with ``<Hangup/>``.

When ``TWILIO_AUTH_TOKEN`` is set, every request's ``X-Twilio-Signature`` is checked with the ``twilio``
library's ``RequestValidator`` (a bad one gets 403), so start ``ivrsim serve`` with the same token in
``IVRSIM_TWILIO_AUTH_TOKEN``. Without the ``twilio`` package the app still runs, unchecked, and says so.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape, quoteattr

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

try:  # optional: the sample runs without it, unchecked
    from twilio.request_validator import RequestValidator
except ImportError:  # pragma: no cover - depends on the environment
    RequestValidator = None  # type: ignore[assignment,misc]

logger = logging.getLogger("support_app")

#: How many times the main menu is offered (first time plus retries after a wrong key or silence).
MAX_TRIES = 3
MAIN_MENU = "Thanks for calling support. For billing, press 1. For technical support, press 2. To check an order, press 3."
BILLING_MENU = "Billing. To hear your last invoice, press 1. To go back, press 9."
INVOICE = "Your last invoice was for forty two dollars."
RECORD_PROMPT = "Please describe the problem after the tone. Press pound when you are done."
THANKS = "Thank you. An engineer will call you back."
ORDER_PROMPT = "Please enter your order number, then press pound."
NOT_UNDERSTOOD = "Sorry, I didn't get that."
NOT_HEARD = "Sorry, I didn't hear anything."
GOODBYE = "Goodbye."


@dataclass(frozen=True)
class Order:
    """An order in the app's own table: its status, and when it arrives once shipped."""

    status: str  # "shipped" | "pending"
    eta: str | None = None


#: The app's orders (a real app would ask its database).
DEFAULT_ORDERS: dict[str, Order] = {
    "1001": Order("shipped", "tomorrow"),
    "1002": Order("pending"),
}


@dataclass(frozen=True)
class Seen:
    """One request the app answered: its page, method, parameters (form or query) and whether its
    signature was checked and held (None: not checked)."""

    page: str
    method: str
    params: dict[str, str]
    signature_ok: bool | None


def twiml(*verbs: str) -> Response:
    body = "\n".join(f"  {verb}" for verb in verbs)
    return Response(f'<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n{body}\n</Response>\n', media_type="text/xml")


def say(text: str) -> str:
    return f"<Say>{escape(text)}</Say>"


def spell(digits: str) -> str:
    """``1001`` -> ``1 0 0 1``: said key by key, as the flow's ``| spell`` does."""
    return " ".join(digits)


@dataclass
class SupportApp:
    """The pages (module docstring). ``seen`` lists every request answered, for tests and logs."""

    auth_token: str | None = None
    orders: dict[str, Order] = field(default_factory=lambda: dict(DEFAULT_ORDERS))
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validator: Any = None
        if not self.auth_token:
            logger.info("TWILIO_AUTH_TOKEN is not set: X-Twilio-Signature is not checked")
        elif RequestValidator is None:
            logger.warning("TWILIO_AUTH_TOKEN is set but the twilio package is not installed (pip install twilio): "
                           "X-Twilio-Signature is not checked")
        else:
            self.validator = RequestValidator(self.auth_token)

    async def handle(self, request: Request) -> Response:
        # Twilio posts application/x-www-form-urlencoded; parsed here so the sample needs no python-multipart
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True)) if request.method == "POST" else {}
        params = {**dict(request.query_params), **form}
        page = request.path_params["page"]
        signature_ok: bool | None = None
        if self.validator is not None:
            signature_ok = self.validator.validate(str(request.url), form, request.headers.get("X-Twilio-Signature", ""))
        self.seen.append(Seen(page, request.method, params, signature_ok))
        if signature_ok is False:
            logger.warning("%s /%s: X-Twilio-Signature does not match; refused", request.method, page)
            return PlainTextResponse("X-Twilio-Signature does not match this URL and these parameters", status_code=403)
        handler = getattr(self, f"page_{page}", None)
        if handler is None:
            return PlainTextResponse("no such page", status_code=404)
        return handler(params)

    # -- the pages -----------------------------------------------------------------------------------------

    def page_voice(self, params: dict[str, str]) -> Response:
        """The main menu; silence falls through the Gather to a retry."""
        tries = _tries(params)
        return twiml(f'<Gather numDigits="1" action={quoteattr(f"/menu?tries={tries}")} timeout="5">{say(MAIN_MENU)}</Gather>',
                     *_again(tries, NOT_HEARD))

    def page_menu(self, params: dict[str, str]) -> Response:
        digits = params.get("Digits", "")
        if digits == "1":
            return twiml(f'<Gather numDigits="1" action="/billing" timeout="5">{say(BILLING_MENU)}</Gather>', say(GOODBYE), "<Hangup/>")
        if digits == "2":
            return twiml(say(RECORD_PROMPT), '<Record action="/recorded" maxLength="20" timeout="2" finishOnKey="#"/>')
        if digits == "3":
            return twiml(f'<Gather finishOnKey="#" action="/order" timeout="5">{say(ORDER_PROMPT)}</Gather>', say(GOODBYE), "<Hangup/>")
        return twiml(*_again(_tries(params), NOT_UNDERSTOOD))

    def page_billing(self, params: dict[str, str]) -> Response:
        digits = params.get("Digits", "")
        if digits == "1":
            return twiml(say(INVOICE), say(GOODBYE), "<Hangup/>")
        if digits == "9":
            return twiml("<Redirect>/voice</Redirect>")
        return twiml(*_again(0, NOT_UNDERSTOOD))

    def page_recorded(self, params: dict[str, str]) -> Response:
        logger.info("a message of %s s: %s", params.get("RecordingDuration"), params.get("RecordingUrl"))
        return twiml(say(THANKS), say(GOODBYE), "<Hangup/>")

    def page_order(self, params: dict[str, str]) -> Response:
        number = params.get("Digits", "")
        order = self.orders.get(number)
        if order is None:
            answer = f"Sorry, we cannot find order {spell(number)}."
        elif order.status == "shipped":
            answer = f"Order {spell(number)} has shipped. It arrives {order.eta or 'soon'}."
        else:
            answer = f"Order {spell(number)} is being prepared."
        return twiml(say(answer), say(GOODBYE), "<Hangup/>")


def _tries(params: dict[str, str]) -> int:
    value = params.get("tries", "0")
    return int(value) if value.isdigit() else 0


def _again(tries: int, sorry: str) -> tuple[str, ...]:
    """Sorry, then back to the main menu; after ``MAX_TRIES`` offers, goodbye."""
    if tries + 1 >= MAX_TRIES:
        return say(sorry), say(GOODBYE), "<Hangup/>"
    return say(sorry), f"<Redirect>/voice?tries={tries + 1}</Redirect>"


def create_app(auth_token: str | None = None, orders: dict[str, Order] | None = None) -> Starlette:
    """The app; ``auth_token`` None reads ``TWILIO_AUTH_TOKEN`` (unset or empty: signatures are not checked).
    The ``SupportApp`` behind it is ``app.state.support`` (its ``seen`` requests)."""
    token = auth_token if auth_token is not None else os.environ.get("TWILIO_AUTH_TOKEN") or None
    support = SupportApp(token, dict(orders) if orders is not None else dict(DEFAULT_ORDERS))
    app = Starlette(routes=[Route("/{page}", support.handle, methods=["GET", "POST"])])
    app.state.support = support
    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()

"""Real TwiML apps, offline: a small phone menu written with Starlette, served by uvicorn on loopback, run by
the real engine (TTS, the line, the DTMF receiver, the ASR, SQLite) for scripted callers who press keys and
speak. The app checks every request's ``X-Twilio-Signature`` with the official ``twilio`` library's
``RequestValidator``, and records the parameters it got. The failures an app can cause (no answer, a slow
answer, 500, not XML, malformed XML, an unsupported verb, a Redirect loop) each end the call ``failed``
with a reason that names the URL, status or line, never the content.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import soundfile
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from ivrsim.api.server import BackgroundServer
from ivrsim.engine.callees import Phonebook
from ivrsim.engine.engine import CallEngine, CallRequest, EngineSettings
from ivrsim.engine.events import CallEvent
from ivrsim.flows.twiml.params import account_sid
from ivrsim.flows.twiml.runtime import MAX_DOCUMENTS_PER_CALL
from ivrsim.settings import Settings
from ivrsim.speech.tts import PromptCache, SpeechSynthesizer
from ivrsim.testing.waiting import wait_until

TOKEN = "test-auth-token-12345"
FROM = "+15559876543"
CALLER = "+15557001000"
BUSY = "+15550100486"
SEED = 7
#: Content the app puts in its bad answers: a failing call's reason must never repeat it.
SECRET = "SECRET-CONTENT-42"
WAIT = {"wait_for_prompt": {"silence_ms": 700, "timeout_s": 30}}


def xml(body: str) -> Response:
    return Response(f'<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n{body}\n</Response>\n', media_type="text/xml")


@dataclass
class Seen:
    """One request the app got: page, method, parameters (form or query), and whether its signature held."""

    page: str
    method: str
    params: dict[str, str]
    signed: bool


class AcmeApp:
    """Acme's phone menu, as a Twilio user would write it: main menu -> billing submenu -> a message ->
    back to the main menu; sales is a busy line; 3 asks yes or no by voice. And pages that fail."""

    def __init__(self, auth_token: str | None) -> None:
        self.seen: list[Seen] = []
        self.validator = RequestValidator(auth_token) if auth_token else None
        self.closing = False
        self.app = Starlette(routes=[Route("/{page}", self.page, methods=["GET", "POST"])])

    async def page(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True)) if request.method == "POST" else {}
        params = form if request.method == "POST" else dict(request.query_params)
        signature = request.headers.get("X-Twilio-Signature", "")
        signed = bool(self.validator and signature and self.validator.validate(str(request.url), form, signature))
        page = request.path_params["page"]
        self.seen.append(Seen(page, request.method, params, signed))
        handler = getattr(self, f"page_{page.replace('-', '_')}", None)
        if handler is None:
            return PlainTextResponse("no such page", status_code=404)
        return await handler(params)

    # -- the menu ------------------------------------------------------------------------------------------

    async def page_voice(self, params: dict[str, str]) -> Response:
        return xml('  <Gather numDigits="1" action="/menu" timeout="3">\n'
                   '    <Say voice="Polly.Joanna">Welcome to Acme. Press 1 for billing, 2 for sales, 3 for a callback.</Say>\n'
                   '  </Gather>\n'
                   '  <Say voice="alice">We did not get your choice. Goodbye.</Say>\n'
                   '  <Hangup/>')

    async def page_menu(self, params: dict[str, str]) -> Response:
        digits = params.get("Digits")
        if digits == "1":
            return xml('  <Gather numDigits="1" action="billing" method="POST">\n'
                       '    <Say>Billing. Press 1 to leave a message, 2 to go back.</Say>\n    <Pause length="2"/>\n  </Gather>\n'
                       '  <Redirect>/voice</Redirect>')
        if digits == "2":
            return xml(f'  <Say>Connecting you to sales.</Say>\n  <Dial action="/dialed" timeout="10"><Number>{BUSY}</Number></Dial>')
        if digits == "3":
            return xml('  <Gather input="speech" hints="yes, no" action="/confirm" speechTimeout="auto" language="en-US">\n'
                       '    <Say>Would you like a callback? Say yes or no.</Say>\n  </Gather>\n  <Say>Goodbye.</Say>')
        return xml("  <Say>Goodbye.</Say>\n  <Hangup/>")

    async def page_billing(self, params: dict[str, str]) -> Response:
        if params.get("Digits") == "1":
            return xml('  <Say>Leave a message after the beep.</Say>\n  <Record action="/recorded" maxLength="10" timeout="2" finishOnKey="#"/>')
        return xml("  <Redirect>/voice</Redirect>")

    async def page_recorded(self, params: dict[str, str]) -> Response:
        return xml('  <Say>Thank you.</Say>\n  <Pause length="1"/>\n  <Redirect method="GET">/voice</Redirect>')

    async def page_dialed(self, params: dict[str, str]) -> Response:
        return xml(f"  <Say>Sales is {params.get('DialCallStatus', 'unknown')}. Goodbye.</Say>\n  <Hangup/>")

    async def page_confirm(self, params: dict[str, str]) -> Response:
        return xml(f"  <Say>You said {params.get('SpeechResult', 'nothing')}.</Say>")

    # -- pages that fail -----------------------------------------------------------------------------------

    async def page_error(self, params: dict[str, str]) -> Response:
        return PlainTextResponse(SECRET, status_code=500)

    async def page_slow(self, params: dict[str, str]) -> Response:
        deadline = time.monotonic() + 30
        while not self.closing and time.monotonic() < deadline:  # held until the server closes
            await asyncio.sleep(0.05)
        return xml("<Say>Too late.</Say>")

    async def page_text(self, params: dict[str, str]) -> Response:
        return PlainTextResponse(f"Hello, {SECRET}")

    async def page_malformed(self, params: dict[str, str]) -> Response:
        return Response(f'<?xml version="1.0"?>\n<Response>\n  <Say>{SECRET}</Sya>\n</Response>', media_type="text/xml")

    async def page_connect(self, params: dict[str, str]) -> Response:
        return xml('  <Say>One moment.</Say>\n  <Connect><Stream url="wss://example.com/s"/></Connect>')

    async def page_loop(self, params: dict[str, str]) -> Response:
        return xml("  <Redirect>/loop</Redirect>")

    async def page_bad_attribute(self, params: dict[str, str]) -> Response:
        return xml('  <Gather numDigits="many"><Say>Hi</Say></Gather>')

    async def page_play_file(self, params: dict[str, str]) -> Response:
        return xml(f"  <Say>One moment.</Say>\n  <Play>file:///etc/passwd?{SECRET}</Play>")

    async def page_redirect_file(self, params: dict[str, str]) -> Response:
        return xml(f"  <Say>One moment.</Say>\n  <Redirect>file:///etc/passwd?{SECRET}</Redirect>")

    async def page_gather_file(self, params: dict[str, str]) -> Response:
        return xml(f'  <Say>One moment.</Say>\n  <Gather action="file:///etc/passwd?{SECRET}"><Say>Press a key.</Say></Gather>')

    async def page_pause_long(self, params: dict[str, str]) -> Response:
        return xml('  <Say>One moment.</Say>\n  <Pause length="100000"/>')

    async def page_reject(self, params: dict[str, str]) -> Response:
        return xml('  <Reject reason="busy"/>\n  <Say>Never said.</Say>')

    def by_page(self) -> list[tuple[str, dict[str, str]]]:
        return [(seen.page, seen.params) for seen in self.seen]


@contextmanager
def serve(app: AcmeApp) -> Iterator[str]:
    """``app`` on uvicorn on a free loopback port, for as long as the ``with`` lasts."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="twiml-app", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout_s=20)
        assert server.started, "the TwiML app did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        app.closing = True
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def acme() -> Iterator[tuple[AcmeApp, str]]:
    app = AcmeApp(TOKEN)
    with serve(app) as base_url:
        yield app, base_url


@pytest.fixture(scope="module")
def synthesizer(tmp_path_factory: pytest.TempPathFactory) -> SpeechSynthesizer:
    return SpeechSynthesizer(cache=PromptCache(tmp_path_factory.mktemp("prompts")))


def caller(steps: list[Any]) -> dict[str, Any]:
    return {"kind": "scripted", "script": {"name": "test caller", "answer_after_rings": 0, "steps": steps}}


def run(tmp_path: Path, synthesizer: SpeechSynthesizer, url: str, steps: list[Any], method: str = "POST",
        token: str | None = TOKEN) -> tuple[Any, list[CallEvent]]:
    """One call to CALLER, run by the TwiML app at ``url``, on the virtual clock; its final record and events."""

    async def scenario() -> tuple[Any, list[CallEvent]]:
        settings = EngineSettings(tmp_path / "data", clock="virtual", seed=SEED, twilio_auth_token=token)
        book = Phonebook(entries={CALLER: caller(steps), BUSY: {"kind": "busy"}})
        async with CallEngine(settings, phonebook=book, synthesizer=synthesizer) as engine:
            record = await engine.place(CallRequest(to=CALLER, from_=FROM, url=url, method=method, record=True))
            final = await engine.wait(record.id)
            return final, engine.store.events(record.id)

    return asyncio.run(scenario())


def facts(events: list[CallEvent], event_type: str) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == event_type]


def check_call_parameters(app: AcmeApp, call_id: str) -> None:
    """What Twilio sends with every request, on every request; each signed as the twilio library checks."""
    assert app.seen
    for seen in app.seen:
        assert seen.signed, f"{seen.method} /{seen.page}: X-Twilio-Signature did not validate"
        p = seen.params
        assert (p["CallSid"], p["AccountSid"], p["From"], p["To"]) == (call_id, account_sid(SEED), FROM, CALLER)
        status = "completed" if p.get("Digits") == "hangup" else "in-progress"  # a Record's action after the caller hung up
        assert (p["Caller"], p["Called"], p["CallStatus"], p["Direction"], p["ApiVersion"]) == (FROM, CALLER, status, "outbound-api", "2010-04-01")
    assert account_sid(SEED).startswith("AC") and len(account_sid(SEED)) == 34


def test_billing_then_a_message_then_back_to_the_main_menu(tmp_path: Path, synthesizer: SpeechSynthesizer, acme: tuple[AcmeApp, str]) -> None:
    app, base = acme
    steps = [WAIT, {"press": {"digits": "1"}}, WAIT, {"press": {"digits": "1"}}, WAIT,
             {"say": {"text": "Please call me back about my bill"}}, {"pause": {"seconds": 3}},
             WAIT, {"press": {"digits": "9"}}]
    final, events = run(tmp_path, synthesizer, f"{base}/voice", steps)
    assert final.status == "completed", final.reason
    pages = app.by_page()
    assert [page for page, _ in pages] == ["voice", "menu", "billing", "recorded", "voice", "menu"]
    assert [seen.method for seen in app.seen] == ["POST", "POST", "POST", "POST", "GET", "POST"]
    assert pages[1][1]["Digits"] == "1" and pages[2][1]["Digits"] == "1" and pages[5][1]["Digits"] == "9"
    # a Pause in a Gather plays as a prompt of silence (the caller's key cut it short); a Pause on its own runs in call time
    paused = [f for f in facts(events, "prompt.started") if f["kind"] == "pause"]
    assert [(f["source"], f["duration_s"]) for f in paused] == [("2 s", 2.0)]
    recorded = pages[3][1]
    assert recorded["RecordingUrl"].endswith(f"/v1/voice/recordings/{recorded['RecordingSid']}.wav")
    audio, rate = soundfile.read(tmp_path / "data" / "recordings" / f"{recorded['RecordingSid']}.wav")
    assert int(recorded["RecordingDuration"]) == round(len(audio) / rate) >= 2
    check_call_parameters(app, final.id)
    # the timeline shows each document and each verb with its line
    requested = facts(events, "twiml.requested")
    assert [(r["url"], r["method"], r["status_code"]) for r in requested][:2] == [(f"{base}/voice", "POST", 200), (f"{base}/menu", "POST", 200)]
    assert all(isinstance(r["elapsed_ms"], int | float) for r in requested)
    verbs = [(v["verb"], v["line"]) for v in facts(events, "twiml.verb")]
    assert verbs == [("Gather", 3), ("Gather", 3), ("Say", 3), ("Record", 4), ("Say", 3), ("Pause", 4), ("Redirect", 5),
                     ("Gather", 3), ("Say", 3), ("Hangup", 4)]
    said = [f.get("text") for f in facts(events, "prompt.started") if f["kind"] == "say"]
    assert said[-1] == "Goodbye."


def test_a_caller_who_hangs_up_after_the_message_still_has_it_posted(tmp_path: Path, synthesizer: SpeechSynthesizer, acme: tuple[AcmeApp, str]) -> None:
    app, base = acme
    steps = [WAIT, {"press": {"digits": "1"}}, WAIT, {"press": {"digits": "1"}}, WAIT,
             {"say": {"text": "Please call me back"}}, {"pause": {"seconds": 0.5}}, {"hangup": {}}]
    final, events = run(tmp_path, synthesizer, f"{base}/voice", steps)
    assert final.status == "completed" and final.reason == "the callee hung up", final.reason
    assert [page for page, _ in app.by_page()] == ["voice", "menu", "billing", "recorded"]
    recorded = app.seen[-1].params
    assert (recorded["Digits"], recorded["CallStatus"]) == ("hangup", "completed") and int(recorded["RecordingDuration"]) >= 1
    assert (tmp_path / "data" / "recordings" / f"{recorded['RecordingSid']}.wav").exists()
    types = [e.type for e in events]
    assert types.count("twiml.requested") == 4 and types.index("call.completed") > max(i for i, t in enumerate(types) if t == "twiml.requested")
    assert not [f for f in facts(events, "prompt.started") if f.get("text") == "Thank you."]  # the answer after a hang-up is not run
    check_call_parameters(app, final.id)


def test_a_busy_sales_line_is_posted_to_the_dial_action(tmp_path: Path, synthesizer: SpeechSynthesizer, acme: tuple[AcmeApp, str]) -> None:
    app, base = acme
    final, events = run(tmp_path, synthesizer, f"{base}/voice", [WAIT, {"press": {"digits": "2"}}])
    assert final.status == "completed", final.reason
    assert [page for page, _ in app.by_page()] == ["voice", "menu", "dialed"]
    dialed = app.seen[-1].params
    assert (dialed["DialCallStatus"], dialed["DialCallDuration"]) == ("busy", "0") and dialed["DialCallSid"].startswith("CA")
    assert facts(events, "twiml.dialed") == [{"line": 4, "number": BUSY, "status": "busy"}]
    assert [f.get("text") for f in facts(events, "prompt.started")][-1] == "Sales is busy. Goodbye."
    check_call_parameters(app, final.id)


def test_a_spoken_yes_is_posted_as_the_speech_result(tmp_path: Path, synthesizer: SpeechSynthesizer, acme: tuple[AcmeApp, str]) -> None:
    app, base = acme
    steps = [WAIT, {"press": {"digits": "3"}}, WAIT, {"say": {"text": "yes", "voice": "en-US-Neural2-D"}}]
    final, events = run(tmp_path, synthesizer, f"{base}/voice", steps)
    assert final.status == "completed", final.reason
    assert [page for page, _ in app.by_page()] == ["voice", "menu", "confirm"]
    confirm = app.seen[-1].params
    assert confirm["SpeechResult"] == "yes" and 0.0 < float(confirm["Confidence"]) <= 1.0
    assert "Digits" not in confirm  # a speech-only gather posts no keys
    assert [f.get("text") for f in facts(events, "prompt.started")][-1] == "You said yes."


def test_get_documents_carry_the_parameters_in_a_signed_url_and_silence_falls_through(
        tmp_path: Path, synthesizer: SpeechSynthesizer, acme: tuple[AcmeApp, str]) -> None:
    app, base = acme
    final, events = run(tmp_path, synthesizer, f"{base}/voice", [], method="GET")
    assert final.status == "completed", final.reason
    [seen] = app.seen  # no key: no request to the Gather's action; the next verbs ran
    assert seen.method == "GET" and "Digits" not in seen.params
    check_call_parameters(app, final.id)
    assert [f["reason"] for f in facts(events, "gather.completed")] == ["timeout"]
    assert [v["verb"] for v in facts(events, "twiml.verb")] == ["Gather", "Say", "Hangup"]


def test_without_an_auth_token_requests_are_not_signed(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    app = AcmeApp(TOKEN)
    with serve(app) as base:
        final, _ = run(tmp_path, synthesizer, f"{base}/voice", [], token=None)
    assert final.status == "completed", final.reason
    assert [seen.signed for seen in app.seen] == [False]


def test_reject_ends_an_answered_call_and_says_why_in_an_event(tmp_path: Path, synthesizer: SpeechSynthesizer, acme: tuple[AcmeApp, str]) -> None:
    _, base = acme
    final, events = run(tmp_path, synthesizer, f"{base}/reject", [])
    assert final.status == "completed", final.reason
    [rejected] = facts(events, "twiml.rejected")
    assert rejected["line"] == 3 and rejected["reason"] == "busy" and "cannot be rejected" in rejected["note"]
    assert not [f for f in facts(events, "prompt.started") if f.get("text") == "Never said."]


@pytest.mark.parametrize(("page", "expected"), [
    ("error", ["/error", "HTTP 500"]),
    ("slow#tt=300", ["/slow", "no answer within 0.3 s"]),
    ("text", ["/text", "not well-formed XML at line 1, column 1", "text/plain"]),
    ("malformed", ["/malformed", "line 3, column"]),
    ("connect", ["/connect", "line 4", "<Connect> is not supported"]),
    ("bad-attribute", ["/bad-attribute", "line 3", "numDigits must be a whole number"]),
    ("loop", ["/loop", f"more than {MAX_DOCUMENTS_PER_CALL} documents"]),
    ("play-file", ["/play-file", "line 4: <Play> the URL must be an http(s) URL"]),
    ("redirect-file", ["/redirect-file", "line 4: <Redirect> the URL must be an http(s) URL"]),
    ("gather-file", ["/gather-file", "line 4: <Gather> action must be an http(s) URL"]),
    ("pause-long", ["/pause-long", "line 4: <Pause> length must be a whole number of seconds from 0 to 600"]),
])
def test_an_app_that_answers_badly_fails_the_call_naming_url_status_or_line(
        tmp_path: Path, synthesizer: SpeechSynthesizer, acme: tuple[AcmeApp, str], page: str, expected: list[str]) -> None:
    app, base = acme
    final, events = run(tmp_path, synthesizer, f"{base}/{page}", [])
    assert final.status == "failed"
    for fragment in expected:
        assert fragment in final.reason, final.reason
    assert SECRET not in final.reason and "passwd" not in final.reason
    if page == "loop":
        assert len(app.seen) == MAX_DOCUMENTS_PER_CALL
    if page in ("connect", "play-file", "redirect-file", "gather-file", "pause-long"):
        # the document is checked whole before any of it runs: no file is read, no prompt played, nothing else asked
        assert not facts(events, "twiml.verb") and not facts(events, "prompt.started")
        assert len(app.seen) == 1


def test_an_unreachable_app_fails_the_call_naming_its_url(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again: nothing listens there
    final, events = run(tmp_path, synthesizer, f"http://127.0.0.1:{port}/voice", [])
    assert final.status == "failed"
    assert f"127.0.0.1:{port}/voice" in final.reason
    [requested] = facts(events, "twiml.requested")
    assert requested["status_code"] is None and requested["error"]


def test_a_url_that_is_not_http_fails_the_call(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    final, events = run(tmp_path, synthesizer, "file:///etc/passwd", [])
    assert final.status == "failed" and "url must be an http(s) URL" in final.reason
    assert not facts(events, "twiml.requested")


def test_through_the_api_with_a_worker_process_requests_are_signed(tmp_path: Path, acme: tuple[AcmeApp, str]) -> None:
    """The auth token set on the server reaches the worker process that runs the call."""
    app, base = acme
    phonebook = tmp_path / "phonebook.yaml"
    phonebook.write_text(yaml.safe_dump({"numbers": {CALLER: caller([WAIT, {"press": {"digits": "2"}}]), BUSY: {"kind": "busy"}}}))
    settings = Settings(api_key="k", port=0, data_dir=tmp_path / "server", phonebook=phonebook, workers=1, seed=SEED,
                        twilio_auth_token=TOKEN)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer k"}, timeout=30) as http:
        refused = http.post("/v1/voice/calls", json={"to": CALLER, "from": FROM, "url": "file:///etc/passwd"})
        assert refused.status_code == 422 and refused.json()["error"]["param"] == "url"
        placed = http.post("/v1/voice/calls", json={"to": CALLER, "from": FROM, "url": f"{base}/voice"})
        assert placed.status_code == 200, placed.text
        call_id = placed.json()["id"]

        def ended() -> dict[str, Any] | None:
            call = http.get(f"/v1/voice/calls/{call_id}").json()
            return call if call["status"] in ("completed", "failed") else None

        call = wait_until(ended, timeout_s=60)
        assert call is not None and call["status"] == "completed", call
        events = http.get(f"/v1/voice/calls/{call_id}/events").json()
    assert [page for page, _ in app.by_page()] == ["voice", "menu", "dialed"]
    check_call_parameters(app, call_id)
    types = [e["type"] for e in events["data"]]
    assert "twiml.requested" in types and "twiml.dialed" in types

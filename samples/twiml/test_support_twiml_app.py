"""The support menu as a TwiML app (samples/twiml/support_app.py), run offline by ivrsim through a call's
``url``, exactly as Twilio would run it. ``support_app`` (samples/conftest.py) serves the app on loopback;
the callers are registered inline, as a test of your own app would."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from ivrsim.flows.twiml.params import SIGNATURE_HEADER, signature
from ivrsim.testing.plugin import IvrsimClient
from ivrsim.testing.processes import free_port
from ivrsim.testing.waiting import wait_until

NUMBER = "+15557300004"
WAIT = {"wait_for_prompt": {"silence_ms": 800, "timeout_s": 30}}


def pages(support_app: Any) -> list[str]:
    """The app's pages in the order ivrsim asked for them (``tries`` is the page's retry count)."""
    return [seen.page + (f"?tries={seen.params['tries']}" if "tries" in seen.params else "") for seen in support_app.app.seen]


def test_billing_submenu_reads_the_last_invoice(ivrsim: IvrsimClient, support_app: Any) -> None:
    ivrsim.caller(NUMBER, [WAIT, {"press": {"digits": "1"}}, WAIT, {"press": {"digits": "1"}}])
    call = ivrsim.call(to=NUMBER, url=support_app.voice_url)
    assert call.status == "completed", call.reason
    assert pages(support_app) == ["voice", "menu?tries=0", "billing"]
    assert [g["digits"] for g in call.gathers] == ["1", "1"]
    assert call.prompts[-2:] == ["Your last invoice was for forty two dollars.", "Goodbye."]
    call.heard("your last invoice was for forty two dollars")
    # every request carried Twilio's parameters; the app saw the keys pressed
    assert all(seen.params["CallSid"] == call.id and seen.params["To"] == NUMBER for seen in support_app.app.seen)
    assert support_app.app.seen[-1].params["Digits"] == "1"
    # the call's timeline has each TwiML document asked for; its webhook_url got the call's and gathers' events
    assert [e["status_code"] for e in call.events if e["type"] == "twiml.requested"] == [200, 200, 200]
    assert [hook["digits"] for hook in call.webhooks if hook["type"] == "gather.completed"] == ["1", "1"]


def test_technical_support_records_a_message(ivrsim: IvrsimClient, support_app: Any) -> None:
    ivrsim.caller(NUMBER, [WAIT, {"press": {"digits": "2"}}, WAIT,
                           {"say": {"text": "My internet has been down since this morning"}}, {"press": {"digits": "#"}}])
    call = ivrsim.call(to=NUMBER, url=support_app.voice_url)
    assert call.status == "completed", call.reason
    assert pages(support_app) == ["voice", "menu?tries=0", "recorded"]
    recorded = support_app.app.seen[-1].params
    assert recorded["RecordingUrl"].endswith(f"{recorded['RecordingSid']}.wav") and int(recorded["RecordingDuration"]) >= 1
    assert call.prompts[-2:] == ["Thank you. An engineer will call you back.", "Goodbye."]
    call.heard("an engineer will call you back")


def test_an_order_number_gets_the_apps_own_answer(ivrsim: IvrsimClient, support_app: Any) -> None:
    ivrsim.caller(NUMBER, [WAIT, {"press": {"digits": "3"}}, WAIT, {"press": {"digits": "1002#"}}])
    call = ivrsim.call(to=NUMBER, url=support_app.voice_url)
    assert call.status == "completed", call.reason
    assert pages(support_app) == ["voice", "menu?tries=0", "order"]
    assert [g["digits"] for g in call.gathers] == ["3", "1002"]
    assert support_app.app.seen[-1].params["Digits"] == "1002"
    assert "Order 1 0 0 2 is being prepared." in call.prompts
    call.heard("please enter your order number then press pound")


def test_a_wrong_key_redirects_back_to_the_main_menu(ivrsim: IvrsimClient, support_app: Any) -> None:
    # 7: sorry and <Redirect> to the menu; 1: billing; 9: back to the main menu, where the caller hangs up
    ivrsim.caller(NUMBER, [WAIT, {"press": {"digits": "7"}}, WAIT, {"press": {"digits": "1"}}, WAIT, {"press": {"digits": "9"}},
                           {"wait_for_prompt": {"silence_ms": 300, "timeout_s": 30}}, {"hangup": {}}])
    call = ivrsim.call(to=NUMBER, url=support_app.voice_url)
    assert (call.status, call.reason) == ("completed", "the callee hung up")
    assert pages(support_app) == ["voice", "menu?tries=0", "voice?tries=1", "menu?tries=1", "billing", "voice"]
    assert [g["digits"] for g in call.gathers] == ["7", "1", "9", ""]
    assert "Sorry, I didn't get that." in call.prompts
    call.heard("sorry i didn't get that")


def test_silence_retries_then_hangs_up(ivrsim: IvrsimClient, support_app: Any) -> None:
    ivrsim.caller(NUMBER, [])
    call = ivrsim.call(to=NUMBER, url=support_app.voice_url)
    assert call.status == "completed", call.reason
    # no key: no action request; the verbs after the Gather redirect to the menu again, three offers at most
    assert pages(support_app) == ["voice", "voice?tries=1", "voice?tries=2"]
    assert [(g["digits"], g["reason"]) for g in call.gathers] == [("", "timeout")] * 3
    assert call.prompts.count("Sorry, I didn't hear anything.") == 3 and call.prompts[-1] == "Goodbye."
    verbs = [e["verb"] for e in call.events if e["type"] == "twiml.verb"]
    assert verbs[-3:] == ["Say", "Say", "Hangup"]
    call.heard("sorry i didn't hear anything")


def test_the_app_checks_the_signature_ivrsim_sends(signed_support_app: Any) -> None:
    """With TWILIO_AUTH_TOKEN set the app accepts what ivrsim signs with the same token, and refuses the rest."""
    token = signed_support_app.app.auth_token
    form = {"CallSid": "CA" + "0" * 32, "From": "+15559876543", "To": NUMBER, "CallStatus": "in-progress"}
    url = signed_support_app.voice_url
    with httpx.Client(timeout=10) as http:
        good = http.post(url, data=form, headers={SIGNATURE_HEADER: signature(token, url, form)})
        bad = http.post(url, data=form, headers={SIGNATURE_HEADER: signature("another-token", url, form)})
        unsigned = http.post(url, data=form)
    assert good.status_code == 200 and "<Gather" in good.text
    assert (bad.status_code, unsigned.status_code) == (403, 403)
    assert [seen.signature_ok for seen in signed_support_app.app.seen] == [True, False, False]


def test_without_the_twilio_package_the_app_runs_unchecked_and_says_so(monkeypatch: Any, caplog: Any, loopback: Any) -> None:
    monkeypatch.setitem(sys.modules, "twilio.request_validator", None)  # as if twilio were not installed: ImportError
    spec = importlib.util.spec_from_file_location("support_app_without_twilio", Path(__file__).with_name("support_app.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    with caplog.at_level(logging.INFO, logger="support_app"):
        spec.loader.exec_module(module)
        app = module.create_app(auth_token="a-token")
    assert "twilio package is not installed" in caplog.text
    with loopback(app, "unchecked-support-app") as base_url:
        answer = httpx.post(f"{base_url}/voice", data={"CallSid": "CA" + "0" * 32}, headers={"X-Twilio-Signature": "anything"}, timeout=10)
    assert answer.status_code == 200 and "<Gather" in answer.text
    assert [seen.signature_ok for seen in app.state.support.seen] == [None]


def test_the_app_runs_alone_with_uvicorn() -> None:
    """``python samples/twiml/support_app.py --port N`` serves the app, checking signatures with TWILIO_AUTH_TOKEN."""
    port = free_port()
    env = {**os.environ, "TWILIO_AUTH_TOKEN": "standalone-token"}
    script = Path(__file__).with_name("support_app.py")
    with subprocess.Popen([sys.executable, str(script), "--port", str(port)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as process:
        try:
            url = f"http://127.0.0.1:{port}/voice"
            form = {"CallSid": "CA" + "1" * 32}

            def answered() -> httpx.Response | None:
                assert process.poll() is None, f"the app exited: {process.stderr.read() if process.stderr else ''}"
                try:
                    return httpx.post(url, data=form, headers={SIGNATURE_HEADER: signature("standalone-token", url, form)}, timeout=5)
                except httpx.TransportError:
                    return None

            signed = wait_until(answered, timeout_s=30, interval_s=0.1)
            unsigned = httpx.post(url, data=form, timeout=5)
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert signed.status_code == 200 and "<Gather" in signed.text
    assert unsigned.status_code == 403

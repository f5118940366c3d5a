"""The dashboard over real HTTP on loopback: login (form and one-click link), sessions on every page and
/ui/api route, CSRF, the place-call form, filters and paging, the live event stream, the call page, and
the keypad pressing real tones into a live call on the manual clock. (The real-browser tests are in
tests/test_ui_browser.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ivrsim.api.server import BackgroundServer
from ivrsim.settings import Settings
from ivrsim.testing.waiting import wait_until
from ivrsim.ui.auth import SESSION_COOKIE, mint_login_token

KEY = "ui-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FROM = "+15559876543"
FINAL = ("completed", "busy", "no-answer", "failed")
BUSY = "+15550100486"
LISTENER = "+15550100002"


def settings_for(folder: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"api_key": KEY, "port": 0, "data_dir": folder, "workers": 0, "webhook_attempts": 1}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with BackgroundServer(settings_for(tmp_path_factory.mktemp("ui"))) as running:
        yield running.base_url


@pytest.fixture
def api(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=30) as http:
        yield http


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no csrf_token field on the page"
    return match.group(1)


def log_in(browser: httpx.Client) -> httpx.Client:
    """Log a browser-like client in through the form."""
    form = browser.get("/ui/login")
    response = browser.post("/ui/login", data={"api_key": KEY, "csrf_token": csrf_of(form.text), "next": "/ui/calls"})
    assert response.status_code == 303 and response.headers["location"] == "/ui/calls", response.text
    return browser


@pytest.fixture
def browser(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as client:
        yield log_in(client)


def page_csrf(browser: httpx.Client) -> str:
    return csrf_of(browser.get("/ui/calls/new").text)


def place(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/voice/calls", json={"from": FROM, "tts": {"text": "Hello."}, **body})
    assert response.status_code == 200, response.text
    return response.json()


def final_call(api: httpx.Client, call_id: str) -> dict[str, Any]:
    return wait_until(lambda: (call := api.get(f"/v1/voice/calls/{call_id}").json())["status"] in FINAL and call)


def test_root_redirects_to_the_dashboard_and_static_files_are_served(server: str) -> None:
    with httpx.Client(base_url=server) as anonymous:
        root = anonymous.get("/")
        assert root.status_code == 307 and root.headers["location"] == "/ui"
        css = anonymous.get("/ui/static/ui.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert anonymous.get("/ui/static/calls.js").headers["content-type"].startswith("text/javascript")
        assert anonymous.get("/ui/static/../auth.py").status_code == 404
        assert anonymous.get("/ui/static/%2e%2e/auth.py").status_code == 404


def test_login_with_the_key_and_refused_with_a_wrong_one(server: str) -> None:
    with httpx.Client(base_url=server) as anonymous:
        form = anonymous.get("/ui/login")
        assert form.status_code == 200 and 'name="api_key"' in form.text and 'type="password"' in form.text
        wrong = anonymous.post("/ui/login", data={"api_key": "not-the-key", "csrf_token": csrf_of(form.text)})
        assert wrong.status_code == 401 and "not this server" in wrong.text
        assert SESSION_COOKIE not in anonymous.cookies
        assert anonymous.get("/ui/calls").status_code == 303
        no_csrf = anonymous.post("/ui/login", data={"api_key": KEY})
        assert no_csrf.status_code == 403 and SESSION_COOKIE not in anonymous.cookies
        form = anonymous.get("/ui/login")
        ok = anonymous.post("/ui/login", data={"api_key": KEY, "csrf_token": csrf_of(form.text)})
        assert ok.status_code == 303 and ok.headers["location"] == "/ui"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/" in cookie
        page = anonymous.get("/ui/calls")
        assert page.status_code == 200 and "<h1>Calls</h1>" in page.text
        # An absolute or foreign next is not followed.
        assert anonymous.get("/ui/login", params={"next": "https://evil.example/"}).headers["location"] == "/ui"


def test_one_click_token_logs_in_once_and_expires(server: str) -> None:
    token = mint_login_token(KEY)
    with httpx.Client(base_url=server) as first, httpx.Client(base_url=server) as second, httpx.Client(base_url=server) as third:
        opened = first.get("/ui/login/token", params={"token": token})
        assert opened.status_code == 200 and 'http-equiv="refresh"' in opened.text and SESSION_COOKIE in first.cookies
        assert first.get("/ui/calls").status_code == 200
        again = second.get("/ui/login/token", params={"token": token})
        assert again.status_code == 401 and "expired or was used" in again.text and SESSION_COOKIE not in second.cookies
        stale = mint_login_token(KEY, now_s=time.time() - Settings().ui_login_token_ttl_s - 5)
        assert third.get("/ui/login/token", params={"token": stale}).status_code == 401
        forged = mint_login_token("another-key")
        assert third.get("/ui/login/token", params={"token": forged}).status_code == 401
        assert third.get("/ui/login/token", params={"token": "garbage"}).status_code == 401
        assert SESSION_COOKIE not in third.cookies


def test_pages_and_dashboard_api_need_the_session_and_the_cookie_opens_no_keyed_route(server: str, api: httpx.Client, browser: httpx.Client) -> None:
    call = place(api, to=BUSY)
    final_call(api, call["id"])
    with httpx.Client(base_url=server) as anonymous:
        for path in ("/ui", "/ui/calls", "/ui/calls/new", f"/ui/calls/{call['id']}", "/ui/analyses", "/ui/flows"):
            response = anonymous.get(path)
            assert response.status_code == 303 and response.headers["location"].startswith("/ui/login?next="), path
        for path in (f"/ui/api/calls/{call['id']}/events", f"/ui/api/calls/{call['id']}/webhooks", "/ui/api/events/stream",
                     f"/ui/api/calls/{call['id']}/row"):
            response = anonymous.get(path)
            assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized", path
        anonymous.cookies.set(SESSION_COOKIE, "made-up")
        assert anonymous.get("/ui/calls").status_code == 303
    # The session cookie is not an API key: /v1 and /_sim still want the key.
    assert browser.get("/v1/voice/calls").status_code == 401
    assert browser.get("/_sim/phonebook").status_code == 401
    assert browser.post(f"/_sim/calls/{call['id']}/dtmf", json={"digits": "1"}).status_code == 401
    # Logging out ends the session.
    assert browser.post("/ui/logout", data={"csrf_token": page_csrf(browser)}).status_code == 303
    assert browser.get("/ui/calls").status_code == 303


def test_posts_without_the_csrf_token_are_refused(api: httpx.Client, browser: httpx.Client) -> None:
    before = len(api.get("/v1/voice/calls", params={"limit": 200}).json()["data"])
    form = {"to": LISTENER, "from": FROM, "prompt": "tts", "text": "Hi."}
    for token in (None, "wrong-token"):
        data = dict(form, **({"csrf_token": token} if token else {}))
        refused = browser.post("/ui/calls/new", data=data)
        assert refused.status_code == 403 and "This form expired" in refused.text  # a page, not JSON (the API keeps JSON)
    assert browser.post("/ui/api/calls/call_x/dtmf", data={"digits": "1"}).status_code == 403
    assert browser.post("/ui/api/calls/call_x/hangup", headers={"X-CSRF-Token": "nope"}).status_code == 403
    assert browser.post("/ui/logout").status_code == 403 and browser.get("/ui/calls").status_code == 200
    assert len(api.get("/v1/voice/calls", params={"limit": 200}).json()["data"]) == before
    # With the header, the same request reaches the route (an unknown call: 404).
    reached = browser.post("/ui/api/calls/call_x/dtmf", data={"digits": "1"}, headers={"X-CSRF-Token": page_csrf(browser)})
    assert reached.status_code == 404 and reached.json()["error"]["param"] == "id"


def test_place_call_form_places_through_the_api_and_shows_the_call(api: httpx.Client, browser: httpx.Client) -> None:
    form = browser.get("/ui/calls/new")
    assert form.status_code == 200 and LISTENER in form.text and FROM in form.text
    placed = browser.post("/ui/calls/new", data={
        "csrf_token": csrf_of(form.text), "to": "+15551234567", "from": FROM, "prompt": "tts", "text": "Press one.",
        "gather": "on", "num_digits": "1", "record": "on", "voice": "",
    })
    assert placed.status_code == 303 and placed.headers["location"].startswith("/ui/calls/call_")
    call_id = placed.headers["location"].rsplit("/", 1)[1]
    stored = api.get(f"/v1/voice/calls/{call_id}").json()
    assert stored["to"] == "+15551234567"
    final = final_call(api, call_id)
    assert final["status"] == "completed"
    events = api.get(f"/v1/voice/calls/{call_id}/events").json()["data"]
    gathered = next(e for e in events if e["type"] == "gather.completed")
    assert gathered["digits"] == "1"  # the phonebook's caller pressed 1 into the form's gather
    page = browser.get(placed.headers["location"])
    assert page.status_code == 200 and f"Placed call {call_id}" in page.text and "gather.completed" in page.text
    # The form's mistakes come back on the form, named, and place nothing.
    bad = browser.post("/ui/calls/new", data={"csrf_token": csrf_of(form.text), "to": LISTENER, "from": "+15550000000", "prompt": "tts",
                                              "text": "Hi."})
    assert bad.status_code == 422 and "not a verified number" in bad.text and 'role="alert"' in bad.text
    blank = browser.post("/ui/calls/new", data={"csrf_token": csrf_of(form.text), "to_other": "12345", "from": FROM, "prompt": "tts", "text": ""})
    assert blank.status_code == 422 and 'id="err-to_other"' in blank.text and 'id="err-text"' in blank.text


def test_calls_list_filters_by_status_and_number_and_pages_by_keyset(api: httpx.Client, browser: httpx.Client) -> None:
    busy = [place(api, to=BUSY)["id"] for _ in range(3)]
    failed = place(api, to="+15550100503")["id"]
    for call_id in (*busy, failed):
        final_call(api, call_id)

    def ids(html: str) -> list[str]:
        return re.findall(r'<tr data-call-id="([^"]+)"', html)

    by_status = ids(browser.get("/ui/calls", params={"status": "busy", "limit": 200}).text)
    assert set(busy) <= set(by_status) and failed not in by_status
    by_number = ids(browser.get("/ui/calls", params={"number": "0100503", "limit": 200}).text)
    assert failed in by_number and not set(busy) & set(by_number)
    assert ids(browser.get("/ui/calls", params={"number": "no-such-number"}).text) == []
    # Keyset pages of 2 (busy only, newest first): disjoint, in order, ending.
    seen: list[str] = []
    params: dict[str, Any] = {"status": "busy", "limit": 2}
    for _ in range(50):
        html = browser.get("/ui/calls", params=params).text
        seen += ids(html)
        older = re.search(r'rel="next" href="[^"]*starting_after=([^"&]+)"', html)
        if older is None:
            break
        params["starting_after"] = older.group(1)
    assert len(seen) == len(set(seen)) and set(busy) <= set(seen)
    newest_first = api.get("/v1/voice/calls", params={"status": "busy", "limit": 200}).json()["data"]
    assert seen == [c["id"] for c in newest_first]
    # The row fragment the live list fetches: the row, or 204 when the filters leave the call out.
    assert browser.get(f"/ui/api/calls/{failed}/row").text.strip().startswith(f'<tr data-call-id="{failed}"')
    assert browser.get(f"/ui/api/calls/{failed}/row", params={"status": "busy"}).status_code == 204


def test_the_event_stream_sends_a_new_calls_events(server: str, api: httpx.Client, browser: httpx.Client) -> None:
    received: list[dict[str, Any]] = []
    with browser.stream("GET", "/ui/api/events/stream") as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")  # connected: subscribed before the call is placed
        call = place(api, to=BUSY)
        for line in lines:
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["call_id"] == call["id"]:
                    received.append(event)
                    if event["type"] == "call.busy":
                        break
    types = [e["type"] for e in received]
    assert types[0] == "call.queued" and types[-1] == "call.busy"
    assert [e["sequence"] for e in received] == sorted(e["sequence"] for e in received)


def test_call_page_shows_request_timeline_waveform_audio_webhooks(server: str, api: httpx.Client, browser: httpx.Client) -> None:
    call = place(api, to="+15551234567", record=True, gather={"num_digits": 1}, webhook_url="http://127.0.0.1:9/hook")
    final_call(api, call["id"])
    wait_until(lambda: api.get(f"/v1/voice/calls/{call['id']}/webhooks").json()["data"][-1]["status"] != "pending")
    page = browser.get(f"/ui/calls/{call['id']}")
    assert page.status_code == 200
    html = page.text
    assert f'data-envelope-url="/ui/api/calls/{call["id"]}/envelope.json"' in html
    assert f'data-events-url="/ui/api/calls/{call["id"]}/events"' in html and 'role="img"' in html
    audio = re.search(r'<audio id="recording" controls preload="metadata" src="(/ui/api/recordings/rec_[0-9a-f]+\.wav)">', html)
    assert audio is not None and '<script type="module" src="/ui/static/waveform.js">' in html
    wav = browser.get(audio.group(1))
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    with httpx.Client(base_url=server) as anonymous:
        assert anonymous.get(audio.group(1)).status_code == 401
    for text in ("dtmf.received", "gather.completed", "&#34;digits&#34;: &#34;1&#34;", "http://127.0.0.1:9/hook", "no answer", "Request"):
        assert text in html, text
    events = browser.get(f"/ui/api/calls/{call['id']}/events").json()
    assert events == api.get(f"/v1/voice/calls/{call['id']}/events").json()
    assert browser.get(f"/ui/api/calls/{call['id']}/webhooks").json() == api.get(f"/v1/voice/calls/{call['id']}/webhooks").json()
    assert browser.get("/ui/calls/call_nope").status_code == 404


def test_keypad_presses_real_tones_into_a_live_call_on_the_manual_clock(tmp_path: Path) -> None:
    with BackgroundServer(settings_for(tmp_path, clock="manual")) as running, httpx.Client(base_url=running.base_url, headers=AUTH, timeout=30) as api, \
            httpx.Client(base_url=running.base_url, timeout=30) as browser:
        log_in(browser)
        call = place(api, to=LISTENER, tts={"text": "Enter your code."}, gather={"timeout": 5})
        other = place(api, to=LISTENER, tts={"text": "Say something."}, gather={"timeout": 60})
        for placed in (call, other):
            wait_until(lambda: api.get(f"/v1/voice/calls/{placed['id']}").json()["status"] == "ringing")
        api.post("/_sim/clock", json={"advance_s": 2.0})
        for placed in (call, other):
            wait_until(lambda: api.get(f"/v1/voice/calls/{placed['id']}").json()["status"] == "in-progress")
        page = browser.get(f"/ui/calls/{call['id']}")
        assert 'aria-label="Phone keypad"' in page.text and 'action="/ui/api/calls/' in page.text
        token = csrf_of(page.text)
        # A plain form post (no JS): back to the page, which says what was pressed.
        pressed = browser.post(f"/ui/api/calls/{call['id']}/dtmf", data={"csrf_token": token, "digits": "4"})
        assert pressed.status_code == 303 and pressed.headers["location"] == f"/ui/calls/{call['id']}#control"
        assert "Pressed 4 at" in browser.get(f"/ui/calls/{call['id']}").text
        # The page's script: fetch with the header, JSON back.
        for key in "2#":
            answer = browser.post(f"/ui/api/calls/{call['id']}/dtmf", data={"digits": key}, headers={"X-CSRF-Token": token, "Accept": "application/json"})
            assert answer.status_code == 200 and answer.json()["injected"] == "dtmf" and answer.json()["digits"] == key
        bad = browser.post(f"/ui/api/calls/{call['id']}/dtmf", data={"digits": "x"}, headers={"X-CSRF-Token": token})
        assert bad.status_code == 422 and bad.json()["error"]["param"] == "digits"
        # The say box and the hang-up button, as plain form posts, on the other call.
        said = browser.post(f"/ui/api/calls/{other['id']}/speech", data={"csrf_token": token, "text": "hello there"})
        assert said.status_code == 303 and "Said it" in browser.get(f"/ui/calls/{other['id']}").text
        assert browser.post(f"/ui/api/calls/{other['id']}/hangup", data={"csrf_token": token}).status_code == 303
        api.post("/_sim/clock", json={"advance_s": 5.0})
        final = final_call(api, call["id"])
        hung_up = final_call(api, other["id"])
        assert hung_up["status"] == "completed" and "hung up" in (hung_up["reason"] or ""), hung_up
        events = api.get(f"/v1/voice/calls/{call['id']}/events").json()["data"]
        keys = [e["digit"] for e in events if e["type"] == "dtmf.received"]
        gathered = next(e for e in events if e["type"] == "gather.completed")
        assert final["status"] == "completed" and keys == ["4", "2", "#"]
        assert (gathered["digits"], gathered["finished_on_key"]) == ("42", "#")
        ended = browser.post(f"/ui/api/calls/{call['id']}/hangup", headers={"X-CSRF-Token": token})
        assert ended.status_code == 409 and ended.json()["error"]["code"] == "call_not_live"


def test_analyses_and_flows_pages(server: str, api: httpx.Client, browser: httpx.Client) -> None:
    analyses = browser.get("/ui/analyses")
    assert analyses.status_code == 200 and "<h1>Analyses per assistant</h1>" in analyses.text
    source = (Path(__file__).parent.parent / "samples" / "flows" / "support-menu.yaml").read_text()
    flow = api.post("/v1/voice/flows", json={"name": "support", "yaml": source})
    assert flow.status_code == 200, flow.text
    flow_id = flow.json()["id"]
    listing = browser.get("/ui/flows")
    assert listing.status_code == 200 and f'href="/ui/flows/{flow_id}"' in listing.text
    page = browser.get(f"/ui/flows/{flow_id}")
    assert page.status_code == 200 and "flowchart TD" in page.text and "<svg" in page.text and "main (start)" in page.text
    assert browser.get("/ui/flows/flow_nope").status_code == 404
    # A call that ran the flow: its path drawn on the graph (the caller presses 1: main, then billing).
    call = place(api, to="+15551234567", flow_id=flow_id)
    final_call(api, call["id"])
    walked = browser.get(f"/ui/flows/{flow_id}", params={"call": call["id"]})
    assert walked.status_code == 200 and "main → billing" in walked.text and "step 1" in walked.text
    assert f'href="/ui/flows/{flow_id}?call={call["id"]}"' in browser.get(f"/ui/calls/{call['id']}").text


def test_bar_chart_and_latency_bins_are_plain_svg_with_their_numbers() -> None:
    from ivrsim.ui.charts import bar_chart, histogram_bins

    bins = histogram_bins({120: 2, 260: 1, 499: 4, 7000: 1})
    assert [(b.label, b.count) for b in bins][:3] == [("0–250", 2), ("250–500", 5), ("500–750", 0)] and bins[-1].count == 1
    svg = str(bar_chart([(b.label, b.count) for b in bins], "Turn latency <of> bot"))
    assert svg.startswith("<svg") and 'role="img"' in svg and "<title>Turn latency &lt;of&gt; bot</title>" in svg
    assert ">5</text>" in svg and "<script" not in svg


def test_an_open_event_stream_ends_when_the_server_shuts_down(tmp_path: Path) -> None:
    ended = threading.Event()
    with BackgroundServer(settings_for(tmp_path)) as running:
        browser = httpx.Client(base_url=running.base_url, timeout=60)
        log_in(browser)
        opened = threading.Event()

        def read() -> None:
            with browser.stream("GET", "/ui/api/events/stream") as stream:
                for line in stream.iter_lines():
                    if line.startswith("retry:"):
                        opened.set()
            ended.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert opened.wait(30)
    # Shutdown did not wait for the browser: the stream ended with the server.
    assert ended.wait(30)
    browser.close()


def test_serve_prints_a_one_click_dashboard_link(tmp_path: Path) -> None:
    env = {**os.environ, "IVRSIM_API_KEY": KEY}
    server = subprocess.Popen([sys.executable, "-m", "ivrsim", "serve", "--port", "0", "--workers", "0", "--data-dir", str(tmp_path)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stderr is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        link = ""
        for line in server.stderr:  # bounded: the process prints the link right after the key, or ends
            if line.startswith("dashboard: "):
                link = line.split()[1]
                break
        assert link.startswith(f"{url}/ui/login/token?token="), link
        with httpx.Client(timeout=30) as first, httpx.Client(timeout=30) as second:
            assert first.get(link).status_code == 200 and first.get(f"{url}/ui/calls").status_code == 200
            assert second.get(link).status_code == 401  # once only
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_the_callee_column_shows_who_answered_from_the_ringing_event(api: httpx.Client, browser: httpx.Client) -> None:
    call = place(api, to="+15550100001", gather={"num_digits": 4})
    final_call(api, call["id"])
    ringing = next(e for e in api.get(f"/v1/voice/calls/{call['id']}/events").json()["data"] if e["type"] == "call.ringing")
    assert ringing["callee"] == "pin-1234"
    row = browser.get(f"/ui/api/calls/{call['id']}/row").text
    assert re.search(r'<td class="hide-narrow call-callee" data-label="Callee">pin-1234</td>', row), row
    listing = browser.get("/ui/calls", params={"number": "0100001", "limit": 200}).text
    assert f'data-call-id="{call["id"]}"' in listing and ">pin-1234</td>" in listing


def test_the_callee_is_kept_on_the_call_when_its_ringing_event_is_stored_and_filled_in_for_old_data(tmp_path: Path) -> None:
    import sqlite3

    from ivrsim.engine.events import CallEvent, utc_now
    from ivrsim.store.sqlite import Store

    store = Store(tmp_path / "calls.db")
    store.insert_call("call_a", "+15550100001", FROM, {"to": "+15550100001"})
    store.insert_call("call_b", "+15550100002", FROM, {"to": "+15550100002"})
    assert store.get_call("call_a").callee is None  # not rung yet
    for call_id, label in (("call_a", "pin-1234"), ("call_b", "listener")):
        store.insert_event(CallEvent(call_id, 1, "call.queued", 0.0, utc_now(), {"status": "queued"}))
        store.insert_event(CallEvent(call_id, 2, "call.ringing", 0.0, utc_now(), {"status": "ringing", "callee": label}))
    assert {c.id: c.callee for c in store.list_calls()} == {"call_a": "pin-1234", "call_b": "listener"}
    store.close()
    # A data folder from before the column: opening it adds the column and fills it from the stored events.
    with sqlite3.connect(tmp_path / "calls.db") as db:
        db.execute("ALTER TABLE calls DROP COLUMN callee")
    reopened = Store(tmp_path / "calls.db")
    assert reopened.get_call("call_a").callee == "pin-1234" and reopened.get_call("call_b").callee == "listener"
    reopened.close()


def test_ten_wrong_keys_in_a_minute_from_one_address_get_429_with_retry_after_and_others_still_log_in(server: str) -> None:
    # Two more loopback addresses (Linux routes all of 127/8 to lo): the throttled client and a bystander.
    with httpx.Client(base_url=server, transport=httpx.HTTPTransport(local_address="127.0.0.3"), timeout=30) as guesser, \
            httpx.Client(base_url=server, transport=httpx.HTTPTransport(local_address="127.0.0.4"), timeout=30) as bystander, \
            httpx.Client(base_url=server, timeout=30) as colleague:
        for attempt in range(10):
            wrong = guesser.post("/ui/login", data={"api_key": f"guess-{attempt}", "csrf_token": csrf_of(guesser.get("/ui/login").text)})
            assert wrong.status_code == 401, (attempt, wrong.text)
        throttled = guesser.post("/ui/login", data={"api_key": KEY, "csrf_token": csrf_of(guesser.get("/ui/login").text)})
        assert throttled.status_code == 429 and SESSION_COOKIE not in guesser.cookies  # even the right key, from there
        retry_after_s = int(throttled.headers["retry-after"])
        assert 1 <= retry_after_s <= 60
        message = re.search(r'id="login-error">([^<]+)<', throttled.text).group(1)
        assert f"try again in {retry_after_s} s (at " in message and "UTC" in message, message
        # One wrong key elsewhere is refused as wrong, not throttled; the right key logs in from other addresses.
        other = bystander.post("/ui/login", data={"api_key": "nope", "csrf_token": csrf_of(bystander.get("/ui/login").text)})
        assert other.status_code == 401
        for client in (bystander, colleague):
            ok = client.post("/ui/login", data={"api_key": KEY, "csrf_token": csrf_of(client.get("/ui/login").text)})
            assert ok.status_code == 303 and SESSION_COOKIE in client.cookies


def test_x_forwarded_for_does_not_dodge_the_login_throttle(tmp_path: Path) -> None:
    # From 127.0.0.1, the one address uvicorn trusts forwarding headers from by default, each guess claims to be
    # another client (a server of its own: the throttled address is every other test's too).
    with BackgroundServer(settings_for(tmp_path, host="127.0.0.1")) as running, \
            httpx.Client(base_url=running.base_url, transport=httpx.HTTPTransport(local_address="127.0.0.1"), timeout=30) as guesser:
        statuses = [
            guesser.post("/ui/login", headers={"X-Forwarded-For": f"203.0.113.{attempt}"},
                         data={"api_key": f"guess-{attempt}", "csrf_token": csrf_of(guesser.get("/ui/login").text)}).status_code
            for attempt in range(11)
        ]
    assert statuses == [401] * 10 + [429], statuses


def test_the_login_throttle_forgets_failures_once_they_leave_the_window() -> None:
    from ivrsim.ui.auth import UiAuth

    now_s = [1000.0]
    auth = UiAuth("key", 3600.0, 300.0, clock=lambda: now_s[0], max_failures=3, failure_window_s=60.0)
    for step_s in (0.0, 10.0, 10.0):
        now_s[0] += step_s
        assert auth.retry_after_s("10.0.0.1") is None
        auth.note_failure("10.0.0.1")
    assert auth.retry_after_s("10.0.0.1") == pytest.approx(40.0)  # the first failure, at 1000 s, leaves at 1060 s
    assert auth.retry_after_s("10.0.0.2") is None
    now_s[0] = 1060.0
    assert auth.retry_after_s("10.0.0.1") is None  # two left in the window: one more try
    auth.note_failure("10.0.0.1")
    assert auth.retry_after_s("10.0.0.1") == pytest.approx(10.0)


def test_the_dashboard_package_imports_first_without_a_circular_import() -> None:
    """``import ivrsim.ui`` (or a module of it) before anything else: once a circular import, which a
    try/except ImportError used to hide."""
    code = "import ivrsim.ui.waveform_routes, ivrsim.ui; from ivrsim.ui import ui_router; print(len(ui_router.routes))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and int(done.stdout) > 0, done.stderr


def test_an_analysis_page_finds_its_recording_on_the_server_or_says_why_not(server: str, browser: httpx.Client) -> None:
    from ivrsim.testing.http import serve_bytes

    call_id = f"ui-remote-{time.time_ns()}"
    with serve_bytes(b"RIFF....WAVE", "audio/wav") as url:  # no ETag or Last-Modified: the media cache does not keep it
        body = {"assistant": {"id": "bot-remote", "speaksFirst": True}, "location": f"{url}/call.wav", "callId": call_id, "transcribe": False}
        assert httpx.post(f"{server}/api/v1/call", json=body, headers={"X-Canonical-Api-Key": KEY}).status_code == 200
    page = browser.get(f"/ui/analyses/calls/{call_id}")
    assert page.status_code == 200 and 'id="recording-problem"' in page.text and "is not on this server" in page.text
    assert 'id="waveform"' not in page.text
    envelope = browser.get(f"/ui/api/analyses/calls/{call_id}/envelope.json")
    assert envelope.status_code == 409 and envelope.json()["error"]["code"] == "recording_not_here"
    assert browser.get(f"/ui/api/analyses/calls/{call_id}/recording").status_code == 409
    # Unknown calls are 404s; a path where the id goes names no file (the server resolves recordings itself).
    assert browser.get("/ui/analyses/calls/nope").status_code == 404
    for path in ("/ui/api/analyses/calls/nope/envelope.json", "/ui/api/analyses/calls/..%2F..%2Fetc%2Fpasswd/recording"):
        assert browser.get(path).status_code == 404, path
    with httpx.Client(base_url=server) as anonymous:
        assert anonymous.get(f"/ui/api/analyses/calls/{call_id}/envelope.json").status_code == 401
        assert anonymous.get(f"/ui/analyses/calls/{call_id}").status_code == 303


def test_a_server_without_an_api_key_opens_no_session() -> None:
    from ivrsim.ui.auth import UiAuth, mint_login_token

    auth = UiAuth("", 3600.0, 300.0)
    assert not auth.redeem(mint_login_token(""))  # anyone can sign with an empty key
    assert not auth.key_ok("") and not auth.key_ok("anything")


# -- dashboard trial fixes (issue 14) ------------------------------------------------------------------------


def test_pages_carry_a_content_security_policy_and_no_inline_script(server: str, browser: httpx.Client) -> None:
    with httpx.Client(base_url=server) as anonymous:
        login = anonymous.get("/ui/login")
    for path, response in [("/ui/login", login)] + [(path, browser.get(path)) for path in ("/ui/calls", "/ui/calls/new", "/ui/analyses", "/ui/flows")]:
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "img-src 'self' data:" in policy, path
        assert "'unsafe-inline'" not in policy and response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "same-origin", path
        # Every script is a file of /ui/static (a JSON data block is not run, so the policy allows it).
        for tag in re.findall(r"<script\b[^>]*>", response.text):
            assert 'src="/ui/static/' in tag or 'type="application/json"' in tag, (path, tag)
        assert " style=" not in response.text, path


def test_bad_values_and_expired_forms_get_an_html_page_that_says_what_to_do_and_the_api_keeps_json(api: httpx.Client, browser: httpx.Client) -> None:
    bad = browser.get("/ui/calls", params={"limit": "abc"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
    assert "limit" in bad.text and "<h1>" in bad.text and '"error"' not in bad.text
    stale = browser.post("/ui/calls/new", data={"csrf_token": "stale", "to": LISTENER, "from": FROM, "text": "Hi."})
    assert stale.status_code == 403 and stale.headers["content-type"].startswith("text/html")
    assert "This form expired" in stale.text and "reload the page" in stale.text
    assert browser.post("/ui/calls/new", data={"to": LISTENER}).status_code == 403
    assert browser.post("/ui/logout", data={}).status_code == 403
    assert browser.get("/ui/calls").status_code == 200  # still logged in: the stale logout did nothing
    call = place(api, to=LISTENER)
    as_json = browser.post(f"/ui/api/calls/{call['id']}/hangup", headers={"Accept": "application/json"})
    assert as_json.status_code == 403 and as_json.json()["error"]["code"] == "csrf_failed"
    events = browser.get(f"/ui/api/calls/{call['id']}/events", params={"after": "abc"})
    assert events.status_code == 422 and "error" in events.json()
    unknown = browser.get("/ui/calls", params={"status": "bogus"})
    assert unknown.status_code == 200 and 'id="filter-problem"' in unknown.text and "There is no status &#39;bogus&#39;" in unknown.text
    assert 'id="filter-problem"' not in browser.get("/ui/calls", params={"status": "completed"}).text


def test_the_calls_list_pages_back_to_newer_calls_by_keyset(api: httpx.Client, browser: httpx.Client) -> None:
    number = f"+1555{time.time_ns() % 10_000_000:07d}"
    ids = [place(api, to=number)["id"] for _ in range(5)]  # oldest first
    for call_id in ids:
        final_call(api, call_id)

    def listed(html: str) -> list[str]:
        return re.findall(r'<tr data-call-id="([^"]+)"', html)

    def link(html: str, rel: str) -> str | None:
        match = re.search(rf'<a rel="{rel}" href="([^"]+)"', html)
        return match.group(1).replace("&amp;", "&") if match else None

    first = browser.get("/ui/calls", params={"number": number, "limit": 25}).text
    assert listed(first) == ids[::-1]
    page1 = browser.get(f"/ui/calls?number={number.replace('+', '%2B')}&limit=2").text
    assert listed(page1) == [ids[4], ids[3]] and link(page1, "prev") is None
    page2 = browser.get(link(page1, "next")).text
    assert listed(page2) == [ids[2], ids[1]] and "Newer calls" in page2
    page3 = browser.get(link(page2, "next")).text
    assert listed(page3) == [ids[0]] and link(page3, "next") is None
    back2 = browser.get(link(page3, "prev")).text
    assert listed(back2) == [ids[2], ids[1]]
    back1 = browser.get(link(back2, "prev")).text
    assert listed(back1) == [ids[4], ids[3]] and link(back1, "prev") is None and link(back1, "next")


def test_the_place_call_form_puts_each_error_next_to_its_field_in_plain_words(browser: httpx.Client) -> None:
    token = page_csrf(browser)
    sent = {"csrf_token": token, "to": LISTENER, "to_other": "12ab", "from": FROM, "prompt": "tts", "text": "Keep this text.",
            "gather": "on", "num_digits": "four", "webhook_url": "ftp://example.com/hook"}
    page = browser.post("/ui/calls/new", data=sent)
    assert page.status_code == 422
    html = page.text
    for name in ("to_other", "num_digits", "webhook_url"):
        assert re.search(rf'id="{name}"[^>]*aria-invalid="true" aria-describedby="err-{name}"', html), name
        assert f'<p class="field-error" id="err-{name}">' in html, name
    assert 'id="text"' in html and 'aria-describedby="err-text"' not in html
    assert "Value error" not in html and "Input should be" not in html
    assert "Must be an E.164 phone number" in html and "Give a whole number" in html
    assert "Keep this text.</textarea>" in html and 'value="12ab"' in html and 'value="ftp://example.com/hook"' in html
    # An API refusal (an unknown voice) goes next to its field too.
    voice = browser.post("/ui/calls/new", data={**sent, "to_other": "", "num_digits": "", "webhook_url": "", "voice": "no-such-voice"})
    assert voice.status_code == 422 and re.search(r'id="voice"[^>]*aria-invalid="true" aria-describedby="err-voice"', voice.text)


def test_the_session_check_and_a_calls_facts_fragment(server: str, api: httpx.Client, browser: httpx.Client) -> None:
    assert browser.get("/ui/api").status_code == 200
    call = place(api, to=LISTENER)
    final_call(api, call["id"])
    facts = browser.get(f"/ui/api/calls/{call['id']}/facts")
    assert facts.status_code == 200 and 'id="call-answered"' in facts.text and " UTC</dd>" in facts.text
    assert 'id="call-duration">—' not in facts.text
    with httpx.Client(base_url=server) as anonymous:
        gone = anonymous.get("/ui/api")
        assert gone.status_code == 401 and gone.json()["error"]["code"] == "unauthorized"
    token = csrf_of(browser.get("/ui/calls").text)
    assert browser.post("/ui/logout", data={"csrf_token": token}).status_code == 303
    assert browser.get("/ui/api").status_code == 401


def test_a_flow_page_says_when_the_call_ran_another_flow_or_does_not_exist(api: httpx.Client, browser: httpx.Client) -> None:
    source = (Path(__file__).parent.parent / "samples" / "flows" / "support-menu.yaml").read_text()
    flow_a = api.post("/v1/voice/flows", json={"name": "support-a", "yaml": source}).json()["id"]
    flow_b = api.post("/v1/voice/flows", json={"name": "support-b", "yaml": source}).json()["id"]
    ran_b = place(api, to="+15551234567", flow_id=flow_b)
    final_call(api, ran_b["id"])
    other = browser.get(f"/ui/flows/{flow_a}", params={"call": ran_b["id"]})
    assert other.status_code == 200 and "ran another flow" in other.text and "step 1" not in other.text
    assert "step 1" in browser.get(f"/ui/flows/{flow_b}", params={"call": ran_b["id"]}).text
    missing = browser.get(f"/ui/flows/{flow_a}", params={"call": "call_unknown"})
    assert missing.status_code == 200 and "There is no call call_unknown" in missing.text and 'href="/ui/calls/call_unknown"' not in missing.text
    no_flow = place(api, to=LISTENER)
    assert "ran no flow" in browser.get(f"/ui/flows/{flow_a}", params={"call": no_flow["id"]}).text


def test_analyses_links_keep_a_call_id_with_slashes_and_dots_in_one_path_segment(server: str, browser: httpx.Client) -> None:
    from ivrsim.testing.http import serve_bytes

    call_id = f"ui-{time.time_ns()}/../x"
    with serve_bytes(b"RIFF....WAVE", "audio/wav") as url:
        body = {"assistant": {"id": f"bot-slash-{time.time_ns()}", "speaksFirst": True}, "location": f"{url}/call.wav", "callId": call_id,
                "transcribe": False}
        sent = httpx.post(f"{server}/api/v1/call", json=body, headers={"X-Canonical-Api-Key": KEY})
        assert sent.status_code == 200, sent.text
    listing = browser.get("/ui/analyses").text
    quoted = "/ui/analyses/calls/" + call_id.replace("/", "%2F")
    assert f'href="{quoted}"' in listing
    page = browser.get(quoted)
    assert page.status_code == 200 and f"Analysis of call <span class=\"mono\">{call_id}</span>" in page.text


def test_charts_keep_labels_apart_and_merge_parallel_flow_edges() -> None:
    from ivrsim.ui.charts import LATENCY_EDGES_MS, bar_chart, flow_svg, histogram_bins

    bins = histogram_bins({300: 1}, LATENCY_EDGES_MS)
    svg = str(bar_chart([(b.label, b.count) for b in bins], "latency"))
    label_y = sorted({float(y) for y in re.findall(r'<text x="[^"]+" y="([^"]+)" text-anchor="middle">[0-9≥]', svg) if float(y) > 172})
    assert len(label_y) == 2, label_y  # two rows of bin labels, alternating
    data = {"name": "f", "start": "main", "nodes": [{"name": "main", "type": "menu"}, {"name": "billing", "type": "say"}],
            "edges": [{"from": "main", "to": "billing", "label": "1234"}, {"from": "main", "to": "billing", "label": "any"},
                      {"from": "main", "to": "billing", "label": "yes"}]}
    flow = str(flow_svg(data))
    assert flow.count("<line ") == 1 and ">1234 | any | yes<" in flow

"""The dashboard in a real browser: Debian's headless Chromium driven by selenium (chromium-driver; no
driver download), against a real server on loopback with the manual clock, so a call moves only when the
test steps it (POST /_sim/clock).

Each test logs in itself (cookies cleared first) and waits for the exact condition it asserts. Screenshots
of every page at 1280x800 and 390x844 (a phone, device pixel ratio 3) go to ``$IVRSIM_ARTIFACTS`` or
``.artifacts/ui/`` (git-ignored). Where Chromium, its driver or selenium is missing these tests skip with
the reason on a developer's machine and fail in CI (``CI`` set), as the sound-card tests do."""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from ivrsim.api.server import BackgroundServer
from ivrsim.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
KEY = "sk_test_browser"
FROM = "+15559876543"
WAIT_S = 30.0
ARTIFACTS = Path(os.environ.get("IVRSIM_ARTIFACTS") or Path(__file__).resolve().parent.parent / ".artifacts" / "ui")
#: Viewports the screenshots are taken at: (name, CSS width, CSS height, device pixel ratio, mobile).
VIEWPORTS = (("desktop", 1280, 800, 1, False), ("phone", 390, 844, 3, True))

T = TypeVar("T")


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: run ./setup.sh (it installs the Debian package {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: .venv/bin/python -m pip install -e '.[test]'"
    return None


def require_chromium() -> None:
    """Skip where Chromium is missing (a developer's machine), with the reason; fail in CI (``CI`` set),
    where setup.sh installs it and the browser tests must run."""
    reason = chromium_missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests must run in CI: {reason}")
        pytest.skip(reason)


def wait_for(condition: Callable[[], T], what: str, timeout_s: float = WAIT_S) -> T:
    """Poll ``condition`` until it returns something truthy (bounded); that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - a stale or not-yet-present element: poll again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's media root: recordings the Canonical API analyses by path."""
    return tmp_path_factory.mktemp("ui-media")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, media_root: Path) -> Iterator[str]:
    require_chromium()
    settings = Settings(api_key=KEY, port=0, data_dir=tmp_path_factory.mktemp("ui-browser"), clock="manual", media_roots=[media_root])
    with BackgroundServer(settings) as running:
        yield running.base_url


@pytest.fixture(scope="module")
def api(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,800",
                     "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for console_errors()
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))  # a path: no Selenium Manager
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: Any, server: str) -> Any:
    """The browser logged out, at the desktop viewport, on a blank page."""
    viewport(browser, *VIEWPORTS[0][1:])
    browser.get(f"{server}/ui/login")
    browser.delete_all_cookies()
    return browser


def viewport(driver: Any, width: int, height: int, scale: float, mobile: bool) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile})


def screenshots(driver: Any, name: str, ready: Callable[[], Any] | None = None, reload: bool = True, full_page: bool = False) -> list[Path]:
    """The current page at each viewport, from its top, saved as ``{name}-{viewport}.png`` (and with
    ``full_page`` the whole length as ``{name}-{viewport}-full.png``). ``reload``: load the page again
    there, so it lays out as it would open (not for the answer to a POST); ``ready`` waits for what the
    page draws after loading."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    saved = []
    for label, width, height, scale, mobile in VIEWPORTS:
        viewport(driver, width, height, scale, mobile)
        if reload:
            driver.refresh()
        if ready is not None:
            wait_for(ready, f"{name} to be drawn at {label}")
        driver.execute_script("window.scrollTo(0, 0)")
        path = ARTIFACTS / f"{name}-{label}.png"
        driver.get_screenshot_as_file(str(path))
        saved.append(path)
        if full_page:
            length = driver.execute_script("return document.documentElement.scrollHeight")
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True,
                                                                      "clip": {"x": 0, "y": 0, "width": width, "height": length, "scale": 1}})
            path = ARTIFACTS / f"{name}-{label}-full.png"
            path.write_bytes(base64.b64decode(shot["data"]))
            saved.append(path)
    viewport(driver, *VIEWPORTS[0][1:])
    if reload:
        driver.refresh()
    return saved


def console_errors(driver: Any) -> list[str]:
    """The console's errors since the last call (a script that threw, a module that failed to load)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def log_in(driver: Any, server: str, key: str = KEY) -> None:
    driver.get(f"{server}/ui/login")
    driver.find_element("id", "api_key").send_keys(key)
    driver.find_element("css selector", "form[action='/ui/login'] button[type=submit]").click()


def logged_in(driver: Any, server: str) -> None:
    log_in(driver, server)
    wait_for(lambda: driver.find_elements("id", "calls"), "the call list after logging in")


def step_clock(api: httpx.Client, seconds: float) -> None:
    response = api.post("/_sim/clock", json={"advance_s": seconds})
    assert response.status_code == 200, response.text


def status_of(api: httpx.Client, call_id: str) -> str:
    return api.get(f"/v1/voice/calls/{call_id}").json()["status"]


def run_until(api: httpx.Client, call_id: str, statuses: tuple[str, ...], step_s: float = 1.0, max_steps: int = 120) -> None:
    """Step the manual clock until the call has one of ``statuses``."""
    for _ in range(max_steps):
        if status_of(api, call_id) in statuses:
            return
        step_clock(api, step_s)
    raise AssertionError(f"call {call_id} is {status_of(api, call_id)} after {max_steps * step_s} s of call time, not {statuses}")


def events_of(api: httpx.Client, call_id: str) -> list[dict[str, Any]]:
    return api.get(f"/v1/voice/calls/{call_id}/events").json()["data"]


def place(api: httpx.Client, **body: Any) -> str:
    response = api.post("/v1/voice/calls", json={"from": FROM, **body})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def row_status(driver: Any, call_id: str) -> str | None:
    rows = driver.find_elements("css selector", f"#calls tr[data-call-id='{call_id}']")
    return rows[0].get_attribute("data-status") if rows else None


# -- the tests -------------------------------------------------------------------------------------------------


def test_a_wrong_key_is_refused_and_the_right_one_logs_in(page: Any, server: str) -> None:
    screenshots(page, "login", lambda: page.find_elements("id", "api_key"))
    log_in(page, server, key="sk_wrong")
    error = wait_for(lambda: page.find_element("id", "login-error"), "the login error")
    assert "not this server's API key" in error.text
    screenshots(page, "login-refused", reload=False)
    assert page.current_url.startswith(f"{server}/ui/login") and page.get_cookie("ivrsim_session") is None
    page.get(f"{server}/ui/calls")
    wait_for(lambda: page.find_elements("id", "api_key"), "the redirect to the login form")  # no session: no list
    logged_in(page, server)
    assert page.get_cookie("ivrsim_session")["httpOnly"] is True


def test_a_call_placed_from_the_form_appears_and_ends_live_on_the_list(page: Any, server: str, api: httpx.Client) -> None:
    logged_in(page, server)
    page.execute_script("window.__not_reloaded = true")
    list_tab = page.current_window_handle
    page.switch_to.new_window("tab")
    try:
        page.get(f"{server}/ui/calls/new")
        page.find_element("css selector", "#to option[value='+15550100002']").click()
        text = page.find_element("id", "text")
        text.clear()
        text.send_keys("This call is placed from the browser.")
        page.find_element("css selector", "form[action='/ui/calls/new'] button[type=submit]").click()
        wait_for(lambda: "/ui/calls/call_" in page.current_url, "the new call's page")
        call_id = page.current_url.rstrip("/").rsplit("/", 1)[1]
    finally:
        page.close()
        page.switch_to.window(list_tab)
    wait_for(lambda: row_status(page, call_id), f"{call_id}'s row on the open list")
    # Who answered comes with the call.ringing event, live: the phonebook entry's label.
    wait_for(lambda: page.find_element("css selector", f"#calls tr[data-call-id='{call_id}'] td.call-callee").get_attribute("textContent")
             == "listener", f"{call_id}'s callee on the open list")
    run_until(api, call_id, ("completed", "failed"), step_s=5.0)
    assert status_of(api, call_id) == "completed"
    wait_for(lambda: row_status(page, call_id) == "completed", f"{call_id}'s row to say completed")
    row = page.find_element("css selector", f"#calls tr[data-call-id='{call_id}']")
    assert "completed" in row.text and "+15550100002" in row.text
    assert page.execute_script("return window.__not_reloaded === true")  # live, not a reload
    screenshots(page, "calls", lambda: row_status(page, call_id))
    page.get(f"{server}/ui/calls/new")
    screenshots(page, "place", lambda: page.find_elements("id", "to"))


WAVEFORM_STATE = """
const c = document.getElementById('waveform');
const w = c && c.waveform;
if (!w || c.dataset.state !== 'drawn') return null;
const dpr = window.devicePixelRatio || 1, ctx = c.getContext('2d');
const hex = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
const lanes = w.lanes.map((lane, i) => {
  const colour = hex(w.colours[i]);
  const top = Math.round(lane.top * dpr), height = Math.round(lane.height * dpr), mid = height / 2;
  const data = ctx.getImageData(0, top, c.width, height).data;
  let wave = 0;  // pixels of the lane's colour more than 3 device pixels off its midline: signal, not the baseline
  for (let y = 0; y < height; y++) {
    if (Math.abs(y - mid) <= 3) continue;
    for (let x = 0; x < c.width; x++) {
      const k = (y * c.width + x) * 4;
      if (Math.abs(data[k] - colour[0]) + Math.abs(data[k + 1] - colour[1]) + Math.abs(data[k + 2] - colour[2]) < 40) wave++;
    }
  }
  return {name: lane.name, wave};
});
return {lanes, width: c.clientWidth, pixel_width: c.width, dpr, duration_s: w.duration_s, answered_s: w.answered_s,
        dtmf: w.marks.dtmf.map((m) => ({digit: m.digit, start_s: m.start_s, x: m.x})), attribute: JSON.parse(c.dataset.dtmf || '[]')};
"""


def test_the_call_page_draws_both_lanes_marks_keys_at_their_times_and_plays_the_recording(page: Any, server: str, api: httpx.Client) -> None:
    call_id = place(api, to="+15550100001", tts={"text": "Please enter your four digit PIN."}, record=True, gather={"num_digits": 4, "timeout": 10})
    run_until(api, call_id, ("completed", "failed"), step_s=5.0)
    recording = wait_for(lambda: api.get(f"/v1/voice/calls/{call_id}/recording").json().get("duration_s"), "the recording")
    events = events_of(api, call_id)
    keys = [e for e in events if e["type"] == "dtmf.received"]
    answered_s = next(e["call_time_s"] for e in events if e["type"] == "call.in-progress")
    assert "".join(e["digit"] for e in keys) == "1234"
    logged_in(page, server)
    console_errors(page)
    page.get(f"{server}/ui/calls/{call_id}")
    state = wait_for(lambda: page.execute_script(WAVEFORM_STATE), "the waveform to be drawn")
    platform, callee = state["lanes"]
    assert (platform["name"], callee["name"]) == ("platform", "callee")
    assert platform["wave"] > 200 and callee["wave"] > 50, state["lanes"]  # the prompt above, the keys' tones below
    assert state["pixel_width"] == round(state["width"] * state["dpr"])
    assert state["duration_s"] == pytest.approx(recording, abs=0.01) and state["answered_s"] == pytest.approx(answered_s)
    assert [m["digit"] for m in state["dtmf"]] == ["1", "2", "3", "4"] and state["attribute"] == state["dtmf"]
    for mark, event in zip(state["dtmf"], keys, strict=True):
        expected_x = (event["start_s"] - answered_s) / recording * state["width"]
        assert mark["start_s"] == event["start_s"] and mark["x"] == pytest.approx(expected_x, abs=0.5)
    # The audio element loads the recording; a click on the canvas seeks it; the cursor follows.
    audio = wait_for(lambda: page.execute_script(
        "const a = document.getElementById('recording'); return a.readyState >= 1 ? {ready: a.readyState, duration: a.duration} : null"),
        "the audio element's metadata")
    assert audio["duration"] == pytest.approx(recording, abs=0.05)
    canvas = page.find_element("id", "waveform")
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(page).move_to_element_with_offset(canvas, state["width"] // 4, 0).click().perform()  # offsets from the centre
    seeked = wait_for(lambda: page.execute_script(
        "const a = document.getElementById('recording'); return a.seeking ? null : a.currentTime"), "the seek")
    assert seeked == pytest.approx(0.75 * recording, abs=0.05 * recording)
    wait_for(lambda: abs(float(canvas.get_attribute("data-cursor-s")) - seeked) < 0.05, "the cursor at the seek")
    from selenium.webdriver.common.keys import Keys

    canvas.send_keys(Keys.HOME, Keys.ARROW_RIGHT)  # keyboard seeking: to the start, then a second on
    wait_for(lambda: page.execute_script("const a = document.getElementById('recording'); return !a.seeking && Math.abs(a.currentTime - 1) < 0.01"),
             "the keyboard seek to 1 s")
    screenshots(page, "call-recorded", lambda: page.execute_script("return document.getElementById('waveform').dataset.state === 'drawn'"),
                full_page=True)
    viewport(page, *VIEWPORTS[1][1:])
    page.refresh()
    phone_pixels = wait_for(lambda: page.execute_script(WAVEFORM_STATE), "the waveform at phone width")
    assert phone_pixels["dpr"] == 3 and phone_pixels["pixel_width"] == round(phone_pixels["width"] * 3)  # HiDPI: drawn at device pixels
    assert phone_pixels["lanes"][0]["wave"] > 0 and phone_pixels["lanes"][1]["wave"] > 0
    viewport(page, *VIEWPORTS[0][1:])
    assert console_errors(page) == []


def test_the_keypad_presses_keys_into_a_live_call(page: Any, server: str, api: httpx.Client) -> None:
    call_id = place(api, to="+15550100002", tts={"text": "Enter three digits."}, gather={"num_digits": 3, "timeout": 60})
    run_until(api, call_id, ("in-progress",))
    wait_for(lambda: any(e["type"] == "prompt.completed" for e in events_of(api, call_id)) or step_clock(api, 1.0), "the prompt's end")
    logged_in(page, server)
    page.get(f"{server}/ui/calls/{call_id}")
    wait_for(lambda: page.find_elements("css selector", ".keypad button"), "the keypad")
    screenshots(page, "call-live", lambda: page.find_elements("css selector", ".keypad button"))
    for key in "742":
        page.find_element("css selector", f".keypad button[value='{key}']").click()
        wait_for(lambda key=key: f"Pressed {key} " in page.find_element("id", "control-result").text or None, f"the keypad to confirm {key}")
        page.execute_script("document.getElementById('control-result').textContent = ''")
    step_clock(api, 3.0)
    row = wait_for(lambda: next((r for r in page.find_elements("css selector", "#timeline tbody tr") if "gather.completed" in r.text), None),
                   "gather.completed on the open page's timeline")
    assert "742" in row.text
    gathered = next(e for e in events_of(api, call_id) if e["type"] == "gather.completed")
    assert gathered["digits"] == "742"
    run_until(api, call_id, ("completed",), step_s=5.0)


def test_every_other_page_renders_without_script_errors(page: Any, server: str) -> None:
    logged_in(page, server)
    console_errors(page)
    for name, path in (("analyses", "/ui/analyses"), ("flows", "/ui/flows"), ("calls-empty-filter", "/ui/calls?status=busy&number=%2B1999")):
        page.get(f"{server}{path}")
        assert page.find_element("tag name", "h1").text
        for shot in screenshots(page, name, lambda: page.find_elements("tag name", "h1")):
            assert shot.stat().st_size > 1000
        assert console_errors(page) == [], path


FIT = """
const width = document.documentElement.clientWidth;
const overflowing = [...document.querySelectorAll('main *')].filter((el) => {
  const box = el.getBoundingClientRect();
  return box.width > 0 && box.right > width + 1 && !el.closest('.table-wrap, pre');
}).map((el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + el.className : ''));
return {width, scroll_width: document.documentElement.scrollWidth, overflowing: overflowing.slice(0, 10)};
"""

CARD_CELLS = """
const width = document.documentElement.clientWidth;
return [...document.querySelectorAll('#calls tbody tr')].map((row) => Object.fromEntries(
  ['call-status', 'call-from', 'call-to', 'call-duration', 'call-callee'].map((name) => {
    const cell = row.querySelector('td.' + name), box = cell.getBoundingClientRect();
    return [name, {visible: box.width > 0 && box.height > 0 && box.left >= 0 && box.right <= width + 1, text: cell.innerText}];
  })));
"""


def lines_of(driver: Any, selector: str) -> int:
    """How many lines the text of the element at ``selector`` is laid out on."""
    return driver.execute_script("""
        const el = document.querySelector(arguments[0]); const range = document.createRange(); range.selectNodeContents(el);
        return new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top))).size;""", selector)


def test_every_page_fits_a_phone_and_a_desktop_without_sideways_scrolling(page: Any, server: str, api: httpx.Client) -> None:
    done = place(api, to="+15550100001", tts={"text": "Enter your PIN."}, record=True, gather={"num_digits": 4, "timeout": 10})
    busy = place(api, to="+15550100486", tts={"text": "Hello."})
    run_until(api, done, ("completed", "failed"), step_s=5.0)
    run_until(api, busy, ("busy",), step_s=5.0)
    log_in(page, server, key="sk_wrong")
    error = wait_for(lambda: page.find_element("id", "login-error"), "the login error")
    assert "`" not in error.text and error.find_element("tag name", "code").text == "ivrsim serve"
    logged_in(page, server)
    pages = ("/ui/calls", "/ui/calls/new", f"/ui/calls/{done}", f"/ui/calls/{busy}", "/ui/analyses", "/ui/flows")
    for label, width, height, scale, mobile in VIEWPORTS:
        viewport(page, width, height, scale, mobile)
        for path in pages:
            page.get(f"{server}{path}")
            wait_for(lambda: page.find_elements("tag name", "h1"), f"{path} at {label}")
            fit = page.execute_script(FIT)
            assert fit["scroll_width"] <= fit["width"] and fit["overflowing"] == [], (label, path, fit)
        page.get(f"{server}/ui/calls")
        cards = wait_for(lambda: page.execute_script(CARD_CELLS), f"the call rows at {label}")
        for card in cards:
            for name in ("call-status", "call-from", "call-to", "call-duration"):
                assert card[name]["visible"], (label, name, card)
            if label == "phone":
                assert card["call-callee"]["visible"], card  # as cards, the callee shows too
        page.get(f"{server}/ui/calls/new")
        choices = page.execute_script("return [...document.querySelectorAll('input[name=prompt]')].map((r) => r.closest('label').getBoundingClientRect().top)")
        assert len(choices) == 2 and choices[1] > choices[0] + 10  # stacked, one above the other
        page.get(f"{server}/ui/calls/{done}")
        wait_for(lambda: page.find_elements("css selector", "#timeline th"), "the timeline")
        if label == "desktop":
            assert lines_of(page, "#timeline thead th:nth-child(2)") == 1
    viewport(page, *VIEWPORTS[0][1:])


def test_a_live_recorded_calls_waveform_and_player_fill_in_when_it_ends_without_a_reload(page: Any, server: str, api: httpx.Client) -> None:
    call_id = place(api, to="+15550100002", tts={"text": "This call is recorded while you watch."}, record=True,
                    gather={"num_digits": 1, "timeout": 20})
    run_until(api, call_id, ("in-progress",))
    logged_in(page, server)
    console_errors(page)  # what earlier pages logged
    page.get(f"{server}/ui/calls/{call_id}")
    waiting = lambda: page.execute_script("const c = document.getElementById('waveform'); return c && c.dataset.state === 'waiting'")
    wait_for(waiting, "the waveform waiting for the recording")
    assert page.execute_script("return document.getElementById('recording').getAttribute('src')") is None
    screenshots(page, "call-live-recording", waiting)
    wait_for(waiting, "the waveform waiting after the screenshots")
    page.execute_script("window.__not_reloaded = true")
    run_until(api, call_id, ("completed",), step_s=5.0)
    state = wait_for(lambda: page.execute_script(WAVEFORM_STATE), "the waveform drawn once the call ended")
    assert state["lanes"][0]["wave"] > 200, state["lanes"]  # the prompt, on the platform's lane
    recording = api.get(f"/v1/voice/calls/{call_id}/recording").json()
    assert state["duration_s"] == pytest.approx(recording["duration_s"], abs=0.01)
    audio = wait_for(lambda: page.execute_script(
        "const a = document.getElementById('recording'); return a.readyState >= 1 ? {src: a.getAttribute('src'), duration: a.duration} : null"),
        "the player to load the recording")
    assert audio["src"] == f"/ui/api/recordings/{recording['id']}.wav" and audio["duration"] == pytest.approx(recording["duration_s"], abs=0.05)
    assert "download the WAV" in page.find_element("id", "recording-facts").text
    assert page.execute_script("return window.__not_reloaded === true")  # drawn live, not by a reload
    # The envelope's 409s while the recording was being made are how the page learns to wait: nothing else failed.
    assert [e for e in console_errors(page) if "envelope.json" not in e or "status of 409" not in e] == []


#: A two-party call for the analysis page: (speaker, text, when it starts): a number of seconds, "next" (0.7 s
#: after the other's turn ends: a latency), "cut" (1 s into the other's turn: an interruption) or "late"
#: (4.5 s after everything: dead air).
CONVERSATION = (("assistant", "Hello, thanks for calling. How can I help?", 0.3), ("user", "I would like to check my balance.", "next"),
                ("assistant", "Sure, one moment while I look that up for you today.", "next"), ("user", "Actually, wait a second.", "cut"),
                ("assistant", "Are you still there?", "late"))


def two_party_call(folder: Path, rate_hz: int = 8000) -> tuple[bytes, list[tuple[str, float, float]]]:
    """CONVERSATION spoken by espeak-ng, the assistant on channel 1 and the user on channel 2, as a WAV, and
    where each turn was put (speaker, start_s, end_s)."""
    import numpy as np
    import soundfile

    from ivrsim.audio.resample import resample
    from ivrsim.media.files import read_audio_file

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is not installed: run ./setup.sh (it installs the Debian package espeak-ng)")
    clips, placed = [], []
    for index, (speaker, text, when) in enumerate(CONVERSATION):
        path = folder / f"{index}.wav"
        subprocess.run([espeak, "-v", "en-us" if speaker == "assistant" else "en-us+m3", "-s", "170", "-w", str(path), text], check=True,
                       capture_output=True)
        clip = read_audio_file(path)
        samples = resample(clip.samples[:, 0], clip.rate_hz, rate_hz).astype(np.float32)
        loud = np.nonzero(np.abs(samples) > 0.01)[0]
        samples = samples[loud[0]:loud[-1] + 1]
        start_s = (when if isinstance(when, float) else placed[-1][2] + 0.7 if when == "next" else placed[-1][1] + 1.0 if when == "cut"
                   else max(end for _, _, end in placed) + 4.5)
        clips.append(samples)
        placed.append((speaker, start_s, start_s + len(samples) / rate_hz))
    stereo = np.zeros((int((max(end for _, _, end in placed) + 0.5) * rate_hz), 2), dtype=np.float32)
    for samples, (speaker, start_s, _) in zip(clips, placed, strict=True):
        at = round(start_s * rate_hz)
        stereo[at:at + len(samples), 0 if speaker == "assistant" else 1] += 0.5 * samples
    buffer = io.BytesIO()
    soundfile.write(buffer, stereo, rate_hz, format="WAV", subtype="PCM_16")
    return buffer.getvalue(), placed


ANALYSIS_STATE = """
const c = document.getElementById('waveform');
if (!c || !c.waveform || c.dataset.state !== 'drawn' || !c.dataset.analysis) return null;
return {placed: JSON.parse(c.dataset.analysis), width: c.clientWidth, duration_s: c.waveform.duration_s,
        lanes: c.waveform.lanes.map((l) => l.name), marks: JSON.parse(document.getElementById('analysis-marks').textContent)};
"""


def test_a_canonical_calls_turns_latencies_interruptions_and_dead_air_are_drawn_on_its_recording(page: Any, server: str, tmp_path: Path,
                                                                                              media_root: Path) -> None:
    wav, placed = two_party_call(tmp_path)
    call_id = f"ui-analysis/{time.time_ns()}"  # a slash, as Retell's ids may have
    recording = media_root / f"{call_id.replace('/', '-')}.wav"
    recording.write_bytes(wav)
    with httpx.Client(base_url=server, headers={"X-Canonical-Api-Key": KEY}, timeout=30) as canonical:
        body = {"assistant": {"id": "bot-ui", "speaksFirst": True, "description": "Balance line"}, "location": str(recording),
                "callId": call_id, "transcribe": False}
        assert canonical.post("/api/v1/call", json=body).status_code == 200
        done = wait_for(lambda: (c := canonical.get(f"/api/v1/call/{call_id}").json())["status"] in ("completed", "failed") and c,
                        "the analysis", timeout_s=90)
    assert done["status"] == "completed", done
    logged_in(page, server)
    console_errors(page)
    page.get(f"{server}/ui/analyses")
    page.find_element("css selector", f"a[href*='{call_id.split('/')[1]}']").click()  # the analyses page links the call's own page
    state = wait_for(lambda: page.execute_script(ANALYSIS_STATE), "the analysis drawn on the waveform")
    marks, drawn, width, duration_s = state["marks"], state["placed"], state["width"], state["duration_s"]
    assert state["lanes"] == ["channel 1: assistant", "channel 2: user"]
    assert duration_s == pytest.approx(max(end for _, _, end in placed) + 0.5, abs=0.01)
    # What was built is what the analysis found: one 0.7 s answer, the user cutting in, 4.5 s of dead air.
    user_end, answer_end = placed[1][2], placed[2][2]
    assert [g["ms"] for g in marks["latencies"]] == [pytest.approx(700, abs=40)]
    assert marks["latencies"][0]["start_s"] == pytest.approx(user_end, abs=0.05)
    assert [(i["interrupter"], i["at_s"]) for i in marks["interruptions"]] == [("user", pytest.approx(placed[3][1], abs=0.05))]
    assert [(d["start_s"], d["end_s"]) for d in marks["dead_air"]] == [(pytest.approx(answer_end, abs=0.05), pytest.approx(placed[4][1], abs=0.05))]
    assert {t["speaker"] for t in marks["turns"]} == {"assistant", "user"}
    # ...and each is drawn where its time is on the recording.
    x = lambda t: t / duration_s * width
    assert len(drawn["turns"]) == len(marks["turns"]) and len(drawn["dead_air"]) == 1 and len(drawn["interruptions"]) == 1
    for mark, turn in zip(drawn["turns"], marks["turns"], strict=True):
        assert mark["speaker"] == turn["speaker"] and mark["x0"] == pytest.approx(x(turn["start_s"]), abs=0.5)
    assert drawn["interruptions"][0]["x"] == pytest.approx(x(marks["interruptions"][0]["at_s"]), abs=0.5)
    assert drawn["dead_air"][0]["x1"] == pytest.approx(x(marks["dead_air"][0]["end_s"]), abs=0.5)
    assert drawn["latencies"][0]["x0"] == pytest.approx(x(marks["latencies"][0]["start_s"]), abs=0.5)
    assert "Balance line" in page.find_element("tag name", "main").text and page.find_elements("css selector", "#dead-air tbody tr")
    audio = wait_for(lambda: page.execute_script("const a = document.getElementById('recording'); return a.readyState >= 1 && a.duration"),
                     "the player to load the analysed recording")
    assert audio == pytest.approx(duration_s, abs=0.05)
    ready = lambda: page.execute_script(ANALYSIS_STATE)
    screenshots(page, "analysis-call", ready, full_page=True)
    page.get(f"{server}/ui/analyses")
    screenshots(page, "analyses-with-calls", lambda: page.find_elements("css selector", ".analysis-calls a"), full_page=True)
    assert console_errors(page) == []


# -- dashboard trial fixes (issue 14) ------------------------------------------------------------------------


def csp_violations(driver: Any) -> list[str]:
    """Console entries of the Content-Security-Policy refusing something (a script, a style, an image)."""
    return [entry["message"] for entry in driver.get_log("browser") if "Content Security Policy" in entry["message"]]


def log_out_elsewhere(driver: Any, server: str) -> None:
    """Log the browser's session out from another client (as another tab, or a server restart, ends it)."""
    token = driver.execute_script("return document.querySelector('meta[name=csrf-token]').content")
    cookie = driver.get_cookie("ivrsim_session")["value"]
    with httpx.Client(base_url=server, cookies={"ivrsim_session": cookie}) as other:
        assert other.post("/ui/logout", data={"csrf_token": token}).status_code == 303


def test_open_pages_say_the_session_ended_with_a_login_link_back(page: Any, server: str, api: httpx.Client) -> None:
    call_id = place(api, to="+15550100002", tts={"text": "Stay on the line."}, gather={"num_digits": 1, "timeout": 60})
    logged_in(page, server)
    page.get(f"{server}/ui/calls?limit=25")
    wait_for(lambda: "Live:" in page.find_element("id", "live-state").text, "the list's stream to open")
    list_tab = page.current_window_handle
    page.switch_to.new_window("tab")
    try:
        page.get(f"{server}/ui/calls/{call_id}")
        wait_for(lambda: page.find_elements("id", "timeline-live"), "the live call page")
        log_out_elsewhere(page, server)
        link = wait_for(lambda: page.find_element("id", "log-in-again"), "the call page to say the session ended")
        assert "Your session ended" in page.find_element("id", "timeline-live").text
        assert link.get_attribute("href") == f"{server}/ui/login?next=%2Fui%2Fcalls%2F{call_id}"
    finally:
        page.close()
        page.switch_to.window(list_tab)
    link = wait_for(lambda: page.find_element("id", "log-in-again"), "the calls list to say the session ended")
    state = page.find_element("id", "live-state").text
    assert state.startswith("Your session ended (the server restarted or you logged out)") and "reconnecting" not in state
    screenshots(page, "calls-session-ended", reload=False)
    link.click()
    page.find_element("id", "api_key").send_keys(KEY)
    page.find_element("css selector", "form[action='/ui/login'] button[type=submit]").click()
    wait_for(lambda: page.current_url == f"{server}/ui/calls?limit=25", "the list again after logging in")
    assert csp_violations(page) == []
    run_until(api, call_id, ("completed",), step_s=5.0)


TIMELINE_ROWS = """
return [...document.querySelectorAll('#timeline tbody tr')].map((row) => {
  const details = row.cells[3].getBoundingClientRect();
  return {height: row.getBoundingClientRect().height, details_width: details.width, empty: row.cells[3].textContent === ''};
});
"""


def test_the_call_page_fills_in_answered_ended_and_duration_live_and_its_timeline_reads_at_phone_width(page: Any, server: str,
                                                                                                        api: httpx.Client) -> None:
    call_id = place(api, to="+15550100001", tts={"text": "Please enter your four digit PIN."}, gather={"num_digits": 4, "timeout": 10})
    logged_in(page, server)
    page.get(f"{server}/ui/calls/{call_id}")
    wait_for(lambda: page.find_elements("id", "timeline-live"), "the live call page")
    page.execute_script("window.__not_reloaded = true")
    facts = {name: page.find_element("id", f"call-{name}").text for name in ("ended", "duration")}
    assert facts == {"ended": "—", "duration": "—"}  # (the call may already be answered: the manual clock answers at 0 s)
    run_until(api, call_id, ("in-progress",))
    wait_for(lambda: page.find_element("id", "call-answered").text.endswith("UTC"), "Answered to fill in live")
    run_until(api, call_id, ("completed",), step_s=5.0)
    call = api.get(f"/v1/voice/calls/{call_id}").json()
    wait_for(lambda: page.find_element("id", "call-ended").text == call["ended_at"].replace("T", " ")[:19] + " UTC", "Ended to fill in live")
    wait_for(lambda: page.find_element("id", "call-duration").text not in ("", "—"), "Duration to fill in live")
    assert page.find_element("id", "call-status").text == "completed" and page.execute_script("return window.__not_reloaded === true")
    viewport(page, *VIEWPORTS[1][1:])
    page.refresh()
    rows = wait_for(lambda: page.execute_script(TIMELINE_ROWS), "the timeline at phone width")
    assert len(rows) >= 5
    for row in rows:
        assert row["height"] < 140, rows  # a card of a few lines, not a 260 px column of wrapped JSON
        if not row["empty"]:
            assert row["details_width"] > 300, rows  # the details use the card's width
    page.execute_script("document.getElementById('timeline').scrollIntoView()")
    page.get_screenshot_as_file(str(ARTIFACTS / "call-timeline-phone.png"))
    viewport(page, *VIEWPORTS[0][1:])
    assert csp_violations(page) == []


def test_the_place_form_shows_each_error_under_its_field_and_keeps_the_values(page: Any, server: str) -> None:
    logged_in(page, server)
    page.get(f"{server}/ui/calls/new")
    page.find_element("id", "to_other").send_keys("12ab")
    digits = page.find_element("id", "num_digits")
    digits.clear()
    digits.send_keys("four")
    page.find_element("css selector", "form[action='/ui/calls/new'] button[type=submit]").click()
    problem = wait_for(lambda: page.find_element("id", "err-to_other"), "the error under the number")
    field = page.find_element("id", "to_other")
    assert field.get_attribute("aria-invalid") == "true" and field.get_attribute("aria-describedby") == "err-to_other"
    assert field.get_attribute("value") == "12ab" and page.find_element("id", "num_digits").get_attribute("value") == "four"
    assert problem.text.startswith("Must be an E.164 phone number") and "Value error" not in page.page_source
    gap = page.execute_script("return arguments[1].getBoundingClientRect().top - arguments[0].getBoundingClientRect().bottom", field, problem)
    assert 0 <= gap < 24  # right under its field
    assert page.find_element("id", "err-num_digits").text == "Give a whole number, e.g. 4."
    screenshots(page, "place-errors", reload=False)
    assert csp_violations(page) == []


def test_pages_raise_no_csp_violation_and_errors_are_pages(page: Any, server: str) -> None:
    logged_in(page, server)
    csp_violations(page)
    for name, path in (("error-bad-limit", "/ui/calls?limit=abc"), ("calls-unknown-status", "/ui/calls?status=bogus"),
                       ("analyses", "/ui/analyses"), ("flows", "/ui/flows"), ("place", "/ui/calls/new")):
        page.get(f"{server}{path}")
        wait_for(lambda: page.find_elements("tag name", "h1"), path)
        assert csp_violations(page) == [], path
        if name.startswith("error"):
            assert page.find_element("id", "error-advice").text and "{" not in page.find_element("tag name", "body").text
            screenshots(page, name, reload=False)
    # The policy is enforced: an inline script added to the page is refused, and says so in the console.
    page.execute_script("const s = document.createElement('script'); s.textContent = 'window.__inline = 1'; document.body.append(s)")
    assert page.execute_script("return window.__inline === undefined")
    assert wait_for(lambda: csp_violations(page), "the refusal in the console")

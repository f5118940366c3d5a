"""The pytest plugin (``ivrsim.testing.plugin``) run as its users run it (pytester), run-time callers
(``PUT /_sim/phonebook/{number}``) and the clock that answers once the calls have caught up.

The plugin's sessions run in a process of their own (``runpytest_subprocess``), as a user's suite does: in
this worker's process, espeak-ng would carry over what earlier tests rendered (it renders the same text a
little differently after other texts), and pocketsphinx missed "press 2 for billing" in one such rendering."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# pytester's in-process runs put sys.modules back afterwards, so what an inner session imported first is imported
# anew by a later test: uvicorn's protocol module would then catch other exception classes than the ones the
# httptools C extension raises (an upgrade request crashes the connection). Loaded here, they are in the snapshot.
import uvicorn.protocols.http.httptools_impl  # noqa: F401

from ivrsim.api.server import BackgroundServer
from ivrsim.settings import Settings
from ivrsim.testing.plugin import IvrsimServer
from ivrsim.testing.waiting import wait_until

pytest_plugins = ["pytester"]

KEY = "plugin-test-key"
FROM = "+15559876543"

PIN_TESTS = '''
import pytest

def test_pin(ivrsim):
    ivrsim.caller("+15550001111", [{"wait_for_prompt": {}}, {"press": {"digits": "1234#"}}])
    call = ivrsim.call(to="+15550001111", tts={"text": "Enter your PIN"}, gather={"num_digits": 4})
    assert call.digits == "1234"

def test_wrong_expectation(ivrsim):
    ivrsim.caller("+15550001112", [{"wait_for_prompt": {}}, {"press": {"digits": "1234#"}}])
    call = ivrsim.call(to="+15550001112", tts={"text": "Enter your PIN"}, gather={"num_digits": 4})
    assert call.digits == "9999"

def test_heard(ivrsim):
    ivrsim.caller("+15550001113", [{"wait_for_prompt": {}}, {"press": {"digits": "2"}}])
    call = ivrsim.call(to="+15550001113", tts={"text": "Press 1 for sales, press 2 for billing"}, gather={"num_digits": 1})
    call.heard("press 2 for billing")
    assert call.recording.duration_s > 1 and call.recording.path.is_file()
    assert [w["type"] for w in call.webhooks][-1] == "call.completed"
    with pytest.raises(AssertionError, match="did not say 'please hold for an agent'.*it said: .*billing"):
        call.heard("please hold for an agent")

MENU = {"nodes": {
    "main": {"type": "gather", "prompt": "For billing, press 1. For sales, press 2.", "branches": {"1": "billing", "2": "sales"}},
    "billing": {"type": "say", "text": "Your balance is ten dollars.", "next": "bye"},
    "sales": {"type": "say", "text": "Sales is closed.", "next": "bye"},
    "bye": {"type": "hangup"}}}

def test_flow_path(ivrsim):
    ivrsim.caller("+15550001114", [{"wait_for_prompt": {}}, {"press": {"digits": "1"}}, {"wait_for_prompt": {}}])
    call = ivrsim.call(to="+15550001114", flow=MENU)
    call.assert_path(["main", "billing", "bye"])
    call.heard("your balance is ten dollars")
    with pytest.raises(AssertionError, match="another path"):
        call.assert_path(["main", "sales", "bye"])
'''

GOLDEN_TEST = '''
def test_menu(ivrsim):
    ivrsim.caller("+15550002222", [{"wait_for_prompt": {}}, {"press": {"digits": "2"}}])
    call = ivrsim.call(to="+15550002222", tts={"text": "PROMPT"}, gather={"num_digits": 1})
    ivrsim.assert_golden(call)
'''


def test_pin_in_five_lines_wrong_expectations_heard_and_junit(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_pin=PIN_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--junitxml=report.xml")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_wrong_expectation*", "*assert '1234' == '9999'*"])
    report = (pytester.path / "report.xml").read_text()
    assert 'failures="1"' in report and "assert &apos;1234&apos; == &apos;9999&apos;" in report.replace("'", "&apos;")


def test_golden_records_then_passes_then_fails_with_a_diff_and_wavs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_golden=GOLDEN_TEST.replace("PROMPT", "Press 1 for sales, press 2 for billing"))
    missing = pytester.runpytest_subprocess("-p", "no:randomly")
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(["*no golden fixture at*record it with: pytest --ivrsim-update-golden*"])
    pytester.runpytest_subprocess("-p", "no:randomly", "--ivrsim-update-golden").assert_outcomes(passed=1)
    golden = pytester.path / "golden" / "test_menu"
    assert (golden / "events.json").is_file() and (golden / "call.wav").is_file()
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=1)

    pytester.makepyfile(test_golden=GOLDEN_TEST.replace("PROMPT", "Press 1 for sales, press 3 for billing"))
    changed = pytester.runpytest_subprocess("-p", "no:randomly", "--junitxml=golden.xml")
    changed.assert_outcomes(failed=1)
    out = changed.stdout.str()
    assert "events differ" in out and '-{"call_time_s": 2.0' in out and "press 3 for billing" in out
    kept = [line for line in changed.stdout.lines if line.startswith("WAVs kept for listening:")]
    assert kept, out
    golden_wav, actual_wav = (Path(part.strip(" ;").split(";")[0]) for part in kept[0].split(":", 1)[1].split(" and "))
    assert golden_wav.is_file() and actual_wav.is_file()
    assert "events differ" in (pytester.path / "golden.xml").read_text()


YES_FLOW = """\
nodes:
  ask:
    type: gather
    prompt: "Say yes or no."
    timeout: 5
    speech_timeout: 0.8
    phrases:
      yes: confirmed
      no: cancelled
  confirmed: {type: hangup}
  cancelled: {type: hangup}
"""

BROKEN_FLOW = """\
nodes:
  ask:
    type: gather
    prompt: "Press 1."
    branches:
      "1": nowhere
"""

FLOW_FILE_TESTS = '''
import pytest
from pathlib import Path
from ivrsim.flows import FlowError

def test_yes_is_a_phrase(ivrsim):
    ivrsim.caller_file("+15550007777", Path("yes_caller.yaml"))
    call = ivrsim.call(to="+15550007777", flow_file="yes_flow.yaml")
    assert call.status == "completed", call.reason
    call.assert_path(["ask", "confirmed"])
    assert call.webhook("flow.completed")["path"] == ["ask", "confirmed"]
    with pytest.raises(AssertionError, match="expected one flow.gather_failed webhook, got 0"):
        call.webhook("flow.gather_failed")

def test_a_broken_flow_file_names_its_line_before_any_call(ivrsim):
    before = len(ivrsim.server.receiver.received)
    with pytest.raises(FlowError, match=r"broken_flow.yaml:6:12: branch '1' goes to node 'nowhere'"):
        ivrsim.call(to="+15550007778", flow_file="broken_flow.yaml")
    assert len(ivrsim.server.receiver.received) == before  # no call was placed: no webhook came
'''


def test_flow_files_are_read_as_flows_yes_is_a_word_and_errors_name_the_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", yes_flow=YES_FLOW, broken_flow=BROKEN_FLOW,
                      yes_caller="answer_after_rings: 0\nsteps:\n  - wait_for_prompt: {silence_ms: 800, timeout_s: 30}\n  - say: {text: \"yes\"}\n")
    pytester.makepyfile(test_flow_files=FLOW_FILE_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=2)


# -- run-time callers and the clock, through a real server -------------------------------------------------


@pytest.fixture
def http(ivrsim_server: IvrsimServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ivrsim_server.base_url, headers={"Authorization": f"Bearer {ivrsim_server.api_key}"}, timeout=30) as client:
        yield client


def _script(*steps: Any) -> dict[str, Any]:
    return {"kind": "scripted", "script": {"name": "runtime", "steps": list(steps)}}


@pytest.mark.parametrize(
    ("number", "entry", "status", "param", "words"),
    [
        ("15550003333", _script(), 422, "number", "E.164"),
        ("+15550003333", {"kind": "soundcard"}, 422, "kind", "cannot be registered at run time"),
        ("+15550003333", {"kind": "fixture", "file": "/etc/passwd"}, 422, "kind", "cannot be registered at run time"),
        ("+15550003333", {"kind": "scripted", "script": "/etc/passwd"}, 422, "script", "inline caller script"),
        ("+15550003333", _script({"press": "1"}, {"play": {"file": "/etc/passwd"}}), 422, "script.steps[1].play.file", "play.file is refused"),
        ("+15550003333", _script({"wait_for_prompt": {}}, {"press": {"digits": "1x"}}), 422, "script.steps[1].press.digits", "press.digits"),
        ("+15550003333", _script({"jump": {}}), 422, "script.steps[0]", "unknown step 'jump'"),
        ("+15550003333", _script({"say": {"text": "x" * 70_000}}), 413, "script", "bytes"),
        ("+15550003333", {"kind": "machine", "answer_after_rings": "two"}, 422, "answer_after_rings", "whole number"),
        ("+15550003333", {"kind": "busy", "why": "x"}, 422, "why", "no field"),
        ("+15550003333", {"kind": "scripted", "script": {"answer_after_rings": 99, "steps": []}}, 422, "script.answer_after_rings", "0 to 20"),
    ],
)
def test_runtime_callers_refuse_bad_entries(http: httpx.Client, number: str, entry: dict[str, Any], status: int, param: str, words: str) -> None:
    response = http.put(f"/_sim/phonebook/{number}", json=entry)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"]
    assert "root:" not in error["message"]  # never echoes a file's content
    assert number not in http.get("/_sim/phonebook").json()["registered"]


def test_runtime_callers_register_answer_and_go(http: httpx.Client, ivrsim_server: IvrsimServer) -> None:
    number = "+15550004444"
    entry = _script({"wait_for_prompt": {}}, {"press": {"digits": "42#"}})
    assert http.put(f"/_sim/phonebook/{number}", json=entry).status_code == 200
    assert http.get("/_sim/phonebook").json()["registered"][number] == entry
    call = http.post("/v1/voice/calls", json={"to": number, "from": FROM, "tts": {"text": "Code?"}, "gather": {"timeout": 5}}).json()
    wait_until(lambda: http.get(f"/v1/voice/calls/{call['id']}").json()["status"] == "completed")
    events = http.get(f"/v1/voice/calls/{call['id']}/events").json()["data"]
    assert next(e for e in events if e["type"] == "gather.completed")["digits"] == "42"
    assert next(e for e in events if e["type"] == "call.ringing")["callee"] == "runtime"
    assert http.delete(f"/_sim/phonebook/{number}").status_code == 200
    assert number not in http.get("/_sim/phonebook").json()["registered"]
    gone = http.delete(f"/_sim/phonebook/{number}")
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "number"


def test_reset_forgets_runtime_callers(tmp_path: Path) -> None:
    settings = Settings(api_key=KEY, port=0, data_dir=tmp_path, workers=0)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
        assert http.put("/_sim/phonebook/+15550005555", json={"kind": "busy"}).status_code == 200
        assert http.post("/_sim/reset").status_code == 200
        assert http.get("/_sim/phonebook").json()["registered"] == {}


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker"])
def test_clock_step_answers_once_calls_caught_up_and_runs_until_idle(tmp_path: Path, workers: int) -> None:
    settings = Settings(api_key=KEY, port=0, data_dir=tmp_path, clock="manual", workers=workers)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http:
        assert http.post("/_sim/clock", json={"advance_s": None}).status_code == 422
        assert http.post("/_sim/clock", json={}).json() == {"clock": "manual", "now_s": 0.0}  # settles, steps nothing
        http.put("/_sim/phonebook/+15550006666", json=_script({"wait_for_prompt": {}}, {"press": {"digits": "1234"}})).raise_for_status()
        body = {"to": "+15550006666", "from": FROM, "tts": {"text": "Enter your PIN"}, "gather": {"num_digits": 4, "timeout": 5}}
        call = http.post("/v1/voice/calls", json=body).json()
        # a worker process may take a while to start on a loaded machine: a bound, not a wait
        status = wait_until(lambda: (s := http.get(f"/v1/voice/calls/{call['id']}").json()["status"]) != "queued" and s, timeout_s=120)
        assert status == "ringing"
        assert http.post("/_sim/clock", json={"advance_s": 8.0}).json() == {"clock": "manual", "now_s": 8.0}
        # no polling: the call's events up to the new present are stored when the step answers
        events = http.get(f"/v1/voice/calls/{call['id']}/events").json()["data"]
        assert next(e for e in events if e["type"] == "gather.completed")["digits"] == "1234"

        second = http.post("/v1/voice/calls", json={**body, "gather": {"timeout": 5}}).json()
        wait_until(lambda: http.get(f"/v1/voice/calls/{second['id']}").json()["status"] == "ringing")
        idle = http.post("/_sim/clock", json={"until_idle": True, "max_s": 120}).json()
        assert idle["idle"] is True and idle["live_calls"] == 0 and idle["now_s"] > 8.0
        assert http.get(f"/v1/voice/calls/{second['id']}").json()["status"] == "completed"


def test_until_idle_on_the_virtual_clock_waits_for_calls(http: httpx.Client) -> None:
    call = http.post("/v1/voice/calls", json={"to": "+15550100001", "from": FROM, "tts": {"text": "Hello."}}).json()
    idle = http.post("/_sim/clock", json={"until_idle": True, "max_s": 60}).json()
    assert idle["idle"] is True and idle["live_calls"] == 0
    assert http.get(f"/v1/voice/calls/{call['id']}").json()["status"] in ("completed", "busy", "no-answer", "failed")



HEARD_TRIAL_TESTS = '''
import pytest

FLOW = {"nodes": {
    "hi": {"type": "say", "text": "Welcome to Acme, caller {{ from }}", "next": "balance"},
    "balance": {"type": "say", "text": "Your balance is 42 dollars.", "next": "help"},
    "help": {"type": "say", "text": "Help is on the way.", "next": "menu"},
    "menu": {"type": "say", "text": "For billing, press 1. For sales, press 2.", "next": "bye"},
    "bye": {"type": "say", "text": "Goodbye.", "next": "end"},
    "end": {"type": "hangup"}}}

def test_said_passes_unsaid_fails(ivrsim):
    ivrsim.caller("+15550008888", [{"wait_for_prompt": {}}])
    call = ivrsim.call(to="+15550008888", flow=FLOW)
    for said in ["welcome to acme", "your balance is 42 dollars", "help is on the way", "goodbye"]:
        call.heard(said)
    for not_said in ["please hold for an agent"]:
        with pytest.raises(AssertionError, match="did not say.*it said: .*welcome to acme"):
            call.heard(not_said)
'''


def test_heard_decodes_each_prompt_with_numbers_as_spoken(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_heard_trial=HEARD_TRIAL_TESTS)
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=1)

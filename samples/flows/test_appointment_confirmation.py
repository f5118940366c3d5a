"""The appointment reminder (appointment-confirmation.yaml): the patient answers by voice. Callers: a spoken
"yes", a wrong key then a spoken "no", and silence. Speech is recognised offline (pocketsphinx en-US)."""

from __future__ import annotations

from pathlib import Path

from ivrsim.testing.plugin import IvrsimClient

HERE = Path(__file__).parent
CALLERS = HERE / "callers"
FLOW = HERE / "appointment-confirmation.yaml"
NUMBER = "+15557300002"


def test_a_spoken_yes_confirms(ivrsim: IvrsimClient) -> None:
    ivrsim.caller_file(NUMBER, CALLERS / "appointment-yes.yaml")
    call = ivrsim.call(to=NUMBER, flow_file=FLOW)
    assert call.status == "completed", call.reason
    call.assert_path(["greet", "confirm", "confirmed", "goodbye"])
    [gather] = call.gathers
    # the branch matches words: "yes|yeah|confirm" (the recogniser may hear the caller's "yes" as "yeah")
    assert gather["reason"] == "speech" and gather["speech"]["text"] in ("yes", "yeah", "confirm")
    assert call.digits == ""
    call.heard("your appointment on tuesday at three pm is confirmed")
    assert call.webhook("flow.completed")["variables"]["answer"] == gather["speech"]["text"]


def test_a_wrong_key_is_asked_again_then_a_spoken_no_cancels(ivrsim: IvrsimClient) -> None:
    ivrsim.caller_file(NUMBER, CALLERS / "appointment-wrong-then-no.yaml")
    call = ivrsim.call(to=NUMBER, flow_file=FLOW)
    assert call.status == "completed", call.reason
    call.assert_path(["greet", "confirm", "cancelled", "goodbye"])
    assert [(g["digits"], g["reason"]) for g in call.gathers] == [("7", "num_digits"), ("", "speech")]
    assert call.gathers[1]["speech"]["text"] == "no"
    assert "Sorry, I didn't get that." in call.prompts
    call.heard("your appointment is cancelled")
    assert call.webhook("flow.completed")["variables"]["answer"] == "no"


def test_silence_ends_with_a_promise_to_call_back(ivrsim: IvrsimClient) -> None:
    ivrsim.caller_file(NUMBER, CALLERS / "silent.yaml")
    call = ivrsim.call(to=NUMBER, flow_file=FLOW)
    assert call.status == "completed", call.reason
    call.assert_path(["greet", "confirm", "call_back", "goodbye"])
    assert [g["reason"] for g in call.gathers] == ["timeout"] * 3
    call.heard("we will call you back later")
    hook = call.webhook("flow.completed")
    assert hook["path"] == ["greet", "confirm", "call_back", "goodbye"] and "answer" not in hook["variables"]

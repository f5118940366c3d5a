"""The bank balance line (bank-balance.yaml) with its three scripted callers: the right PIN, three wrong
PINs, and silence. Copy this file to start testing your own flow: ``pytest samples/flows``.

The ``ivrsim`` fixture comes from ivrsim's pytest plugin: a server on the virtual clock (a call's 20 s take
a fraction of a second), callers registered per test, and ``ivrsim.call(...)`` that waits for the call's end.
"""

from __future__ import annotations

from pathlib import Path

from ivrsim.testing.plugin import IvrsimClient

HERE = Path(__file__).parent
CALLERS = HERE / "callers"
FLOW = HERE / "bank-balance.yaml"
NUMBER = "+15557300001"


def test_the_right_pin_hears_the_balance(ivrsim: IvrsimClient) -> None:
    ivrsim.caller_file(NUMBER, CALLERS / "bank-happy.yaml")
    call = ivrsim.call(to=NUMBER, flow_file=FLOW)
    assert call.status == "completed", call.reason
    call.assert_path(["welcome", "pin", "balance", "goodbye"])
    assert call.digits == "1234"
    assert call.prompts[-1] == "Thank you. Your balance is 1,234 dollars and 56 cents."
    call.heard("your balance is")
    hook = call.webhook("flow.completed")
    assert hook["path"] == call.path and hook["variables"]["pin"] == "1234"


def test_three_wrong_pins_lock_the_caller_out(ivrsim: IvrsimClient) -> None:
    ivrsim.caller_file(NUMBER, CALLERS / "bank-wrong-pin.yaml")
    call = ivrsim.call(to=NUMBER, flow_file=FLOW)
    assert call.status == "completed", call.reason
    call.assert_path(["welcome", "pin", "locked", "goodbye"])
    assert [g["digits"] for g in call.gathers] == ["9999", "1111", "4321"]
    # each miss is said back, key by key, until the retries run out
    assert "Sorry, 9 9 9 9 is not your PIN." in call.prompts and "Sorry, 1 1 1 1 is not your PIN." in call.prompts
    call.heard("we could not check your pin")
    assert call.webhook("flow.completed")["path"] == ["welcome", "pin", "locked", "goodbye"]
    assert "balance" not in [hook.get("node") for hook in call.webhooks if hook["type"] == "flow.node_entered"]


def test_silence_times_out_every_try(ivrsim: IvrsimClient) -> None:
    ivrsim.caller_file(NUMBER, CALLERS / "silent.yaml")
    call = ivrsim.call(to=NUMBER, flow_file=FLOW)
    assert call.status == "completed", call.reason
    call.assert_path(["welcome", "pin", "locked", "goodbye"])
    assert [(g["digits"], g["reason"]) for g in call.gathers] == [("", "timeout")] * 3
    assert call.prompts.count("Sorry, I didn't hear anything.") == 2
    call.heard("please call back later")
    assert [hook["type"] for hook in call.webhooks][-1] == "call.completed"

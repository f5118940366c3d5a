"""The support line (support-menu.yaml): a main menu, a billing submenu, a recorded message, and an order
lookup whose branch the user's own app decides (its webhook node; ``orders_app`` in samples/conftest.py
plays that app on loopback). Callers: an order lookup, a wrong key then billing, and silence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ivrsim.flows import load_flow_file
from ivrsim.testing.plugin import IvrsimClient

HERE = Path(__file__).parent
CALLERS = HERE / "callers"
NUMBER = "+15557300003"


def support_flow(orders_url: str) -> dict[str, Any]:
    """The flow, its webhook pointed at the orders app of this test."""
    flow, _positions = load_flow_file(HERE / "support-menu.yaml")
    flow["variables"]["orders_url"] = orders_url
    return flow


def test_an_order_lookup_asks_the_app_which_branch(ivrsim: IvrsimClient, orders_app: Any) -> None:
    ivrsim.caller_file(NUMBER, CALLERS / "support-order.yaml")
    call = ivrsim.call(to=NUMBER, flow=support_flow(orders_app.url))
    assert call.status == "completed", call.reason
    call.assert_path(["main", "order_number", "lookup", "shipped", "goodbye", "hang_up"])
    assert [g["digits"] for g in call.gathers] == ["3", "1001"]
    [asked] = orders_app.requests
    assert asked["order"] == "1001" and asked["caller"].startswith("+")
    assert "Order 1 0 0 1 has shipped. It arrives tomorrow." in call.prompts  # eta set by the app's answer
    call.heard("has shipped it arrives tomorrow")
    completed = call.webhook("flow.completed")
    assert completed["variables"]["eta"] == "tomorrow" and completed["variables"]["order"] == "1001"


def test_a_wrong_key_then_billing_hears_the_invoice(ivrsim: IvrsimClient, orders_app: Any) -> None:
    ivrsim.caller_file(NUMBER, CALLERS / "support-wrong-then-billing.yaml")
    call = ivrsim.call(to=NUMBER, flow=support_flow(orders_app.url))
    assert call.status == "completed", call.reason
    call.assert_path(["main", "billing", "invoice", "goodbye", "hang_up"])
    assert [g["digits"] for g in call.gathers] == ["7", "1", "1"]
    assert call.prompts[1] == "Sorry, I didn't get that."
    call.heard("your last invoice was for forty two dollars")
    assert orders_app.requests == []  # no order was looked up
    entered = [hook["node"] for hook in call.webhooks if hook["type"] == "flow.node_entered"]
    assert entered == call.path


def test_silence_says_goodbye_after_the_retries(ivrsim: IvrsimClient, orders_app: Any) -> None:
    ivrsim.caller_file(NUMBER, CALLERS / "silent.yaml")
    call = ivrsim.call(to=NUMBER, flow=support_flow(orders_app.url))
    assert call.status == "completed", call.reason
    call.assert_path(["main", "goodbye", "hang_up"])
    assert [(g["digits"], g["reason"]) for g in call.gathers] == [("", "timeout")] * 3
    assert call.prompts.count("Sorry, I didn't hear anything.") == 2
    call.heard("goodbye")
    assert [hook["type"] for hook in call.webhooks][-1] == "call.completed"

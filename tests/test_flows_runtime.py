"""Flows run in real calls: the sample flows with their scripted callers (happy path, wrong input,
silence), speech yes/no, retries then failure, a webhook branch against a real loopback app, variables in
prompts, and the run-time loop guard. Real engine, TTS, line, DTMF receiver and pocketsphinx; virtual clock.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ivrsim.engine.callees import Phonebook
from ivrsim.engine.engine import CallEngine, CallRequest, EngineSettings
from ivrsim.engine.events import CallEvent
from ivrsim.flows import load_flow_file, runtime
from ivrsim.flows.document import MAX_STEPS_PER_CALL
from ivrsim.flows.runtime import match_phrase
from ivrsim.speech.tts import PromptCache, SpeechSynthesizer
from ivrsim.testing.http import JsonApp, serve_bytes, serve_json
from ivrsim.webhooks.app_client import AppClient, AppRequestError

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "flows"
CALLERS = SAMPLES / "callers"
NUMBER = "+15557001000"
FROM = "+15559876543"


def _orders(payload: Any) -> tuple[int, Any]:
    return 200, {"branch": "shipped" if payload["order"] == "1001" else "pending", "variables": {"eta": "tomorrow"}}


#: What the app the support flow's webhook asks answers, by path (any other path: HTTP 500).
APP_ROUTES: dict[str, Any] = {
    "/orders": _orders,
    "/loop": lambda _payload: (200, {"next": "count"}),
    "/nowhere": lambda _payload: (200, {"next": "no_such_node"}),
    "/overreach": lambda _payload: (200, {"next": "bye", "variables": {"eta": "soon", "pin": "0000", "balance": 1_000_000}}),
}


@pytest.fixture(scope="module")
def app() -> Iterator[JsonApp]:
    with serve_json(APP_ROUTES) as instance:
        yield instance


@pytest.fixture(scope="module")
def synthesizer(tmp_path_factory: pytest.TempPathFactory) -> SpeechSynthesizer:
    return SpeechSynthesizer(cache=PromptCache(tmp_path_factory.mktemp("prompts")))


def sample(name: str) -> dict[str, Any]:
    return copy.deepcopy(load_flow_file(SAMPLES / f"{name}.yaml")[0])


def run_flow(tmp_path: Path, synthesizer: SpeechSynthesizer, document: dict[str, Any], caller: str | dict[str, Any]) -> tuple[Any, list[CallEvent]]:
    """One call to a scripted caller (a file under samples/flows/callers, or an inline script) that runs ``document``."""
    script: Any = str(CALLERS / f"{caller}.yaml") if isinstance(caller, str) else caller

    async def scenario() -> tuple[Any, list[CallEvent]]:
        settings = EngineSettings(tmp_path / "data", clock="virtual", seed=7)
        book = Phonebook(entries={NUMBER: {"kind": "scripted", "script": script}})
        async with CallEngine(settings, phonebook=book, synthesizer=synthesizer) as engine:
            record = await engine.place(CallRequest(to=NUMBER, from_=FROM, flow=document))
            final = await engine.wait(record.id)
            return final, engine.store.events(record.id)

    return asyncio.run(scenario())


def facts(events: list[CallEvent], event_type: str) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == event_type]


def completed(events: list[CallEvent]) -> dict[str, Any]:
    [done] = facts(events, "flow.completed")
    return done


def said(events: list[CallEvent]) -> list[str]:
    return [f["text"] for f in facts(events, "prompt.started") if "text" in f]


SAMPLE_RUNS = [
    ("bank-balance", "bank-happy", ["welcome", "pin", "balance", "goodbye"]),
    ("bank-balance", "bank-wrong-pin", ["welcome", "pin", "locked", "goodbye"]),
    ("bank-balance", "silent", ["welcome", "pin", "locked", "goodbye"]),
    ("appointment-confirmation", "appointment-yes", ["greet", "confirm", "confirmed", "goodbye"]),
    ("appointment-confirmation", "appointment-wrong-then-no", ["greet", "confirm", "cancelled", "goodbye"]),
    ("appointment-confirmation", "silent", ["greet", "confirm", "call_back", "goodbye"]),
    ("support-menu", "support-order", ["main", "order_number", "lookup", "shipped", "goodbye", "hang_up"]),
    ("support-menu", "support-wrong-then-billing", ["main", "billing", "invoice", "goodbye", "hang_up"]),
    ("support-menu", "silent", ["main", "goodbye", "hang_up"]),
]


@pytest.mark.parametrize(("flow", "caller", "path"), SAMPLE_RUNS, ids=[f"{f}-{c}" for f, c, _ in SAMPLE_RUNS])
def test_each_sample_flow_takes_the_path_its_caller_leads_it(
    tmp_path: Path, synthesizer: SpeechSynthesizer, app: JsonApp, flow: str, caller: str, path: list[str]
) -> None:
    document = sample(flow)
    if flow == "support-menu":
        document["variables"]["orders_url"] = f"{app.url}/orders"
    final, events = run_flow(tmp_path, synthesizer, document, caller)
    assert final.status == "completed", final.reason
    done = completed(events)
    assert done["path"] == path
    assert done["reason"] == "hangup node"
    entered = facts(events, "flow.node_entered")
    assert [e["node"] for e in entered] == path
    assert entered[0]["node_type"] == document["nodes"][path[0]]["type"]
    types = [e.type for e in events]
    assert types.index("flow.completed") < types.index("call.completed")


def test_wrong_pins_are_retried_with_the_digits_said_back_then_the_failure_node(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    _final, events = run_flow(tmp_path, synthesizer, sample("bank-balance"), "bank-wrong-pin")
    assert [f["digits"] for f in facts(events, "gather.completed")] == ["9999", "1111", "4321"]
    assert "Sorry, 9 9 9 9 is not your PIN." in said(events)
    assert "Sorry, 1 1 1 1 is not your PIN." in said(events)
    assert facts(events, "flow.gather_failed") == [{"node": "pin", "attempts": 3, "last": "no_match"}]


def test_variables_fill_the_prompts(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    _final, events = run_flow(tmp_path, synthesizer, sample("bank-balance"), "bank-happy")
    assert "Thank you. Your balance is 1,234 dollars and 56 cents." in said(events)
    assert completed(events)["variables"]["pin"] == "1234"


def test_silence_plays_the_no_input_prompt_on_each_retry(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    _final, events = run_flow(tmp_path, synthesizer, sample("bank-balance"), "silent")
    assert [f["reason"] for f in facts(events, "gather.completed")] == ["timeout"] * 3
    assert said(events).count("Sorry, I didn't hear anything.") == 2


def test_a_spoken_yes_takes_the_yes_branch(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    _final, events = run_flow(tmp_path, synthesizer, sample("appointment-confirmation"), "appointment-yes")
    [gathered] = facts(events, "gather.completed")
    assert gathered["reason"] == "speech"
    assert gathered["speech"]["text"] in ("yes", "yeah")
    assert completed(events)["variables"]["answer"] == gathered["speech"]["text"]


def test_the_webhook_answer_picks_the_branch_and_sets_variables(tmp_path: Path, synthesizer: SpeechSynthesizer, app: JsonApp) -> None:
    document = sample("support-menu")
    document["variables"]["orders_url"] = f"{app.url}/orders"
    _final, events = run_flow(tmp_path, synthesizer, document, "support-order")
    asked = [r["json"] for r in app.requests if r["path"] == "/orders" and r["json"]["order"] == "1001"]
    assert asked and asked[-1] == {"order": "1001", "caller": FROM}
    assert "Order 1 0 0 1 has shipped. It arrives tomorrow." in said(events)


def test_a_failing_webhook_takes_on_error(tmp_path: Path, synthesizer: SpeechSynthesizer, app: JsonApp) -> None:
    document = sample("support-menu")
    document["variables"]["orders_url"] = f"{app.url}/down"
    final, events = run_flow(tmp_path, synthesizer, document, "support-order")
    assert final.status == "completed", final.reason
    assert completed(events)["path"][-3:] == ["lookup_failed", "goodbye", "hang_up"]
    [failed] = facts(events, "flow.webhook_failed")
    assert failed["node"] == "lookup" and "HTTP 500" in failed["error"]


def test_a_webhook_naming_no_node_fails_the_call_naming_the_node(tmp_path: Path, synthesizer: SpeechSynthesizer, app: JsonApp) -> None:
    document = {"nodes": {"ask": {"type": "webhook", "url": f"{app.url}/nowhere"}}}
    final, events = run_flow(tmp_path, synthesizer, document, "silent")
    assert final.status == "failed"
    assert "flow node ask" in final.reason and "next is not a node" in final.reason
    assert completed(events)["reason"] == "error"


def webhook_then_bye(url: str, method: str = "POST") -> dict[str, Any]:
    """A flow whose one webhook node asks ``url`` (a template of variable ``target``) and goes to bye on error."""
    return {"variables": {"target": url}, "nodes": {
        "ask": {"type": "webhook", "url": "{{ target }}", "method": method, "on_error": "bye"}, "bye": {"type": "hangup"}}}


def test_an_answer_nested_too_deeply_takes_on_error(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000  # json.loads raises RecursionError, not ValueError, on it
    with serve_bytes(nested, "application/json") as url:
        final, events = run_flow(tmp_path, synthesizer, webhook_then_bye(f"{url}/deep", method="GET"), "silent")
    assert final.status == "completed", final.reason
    assert completed(events)["path"] == ["ask", "bye"]
    [failed] = facts(events, "flow.webhook_failed")
    assert failed["node"] == "ask" and "nested too deeply" in failed["error"]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "http://[::1", "not a url"], ids=["file", "invalid", "junk"])
def test_a_webhook_url_that_is_not_http_takes_on_error_naming_the_node(tmp_path: Path, synthesizer: SpeechSynthesizer, url: str) -> None:
    final, events = run_flow(tmp_path, synthesizer, webhook_then_bye(url), "silent")
    assert final.status == "completed", final.reason
    assert completed(events)["path"] == ["ask", "bye"]
    [failed] = facts(events, "flow.webhook_failed")
    assert failed["node"] == "ask"
    assert "flow node ask" in failed["error"] and "not an http(s) URL" in failed["error"]


def test_a_webhook_url_that_is_not_http_without_on_error_fails_the_call_naming_the_node(
    tmp_path: Path, synthesizer: SpeechSynthesizer
) -> None:
    document = webhook_then_bye("file:///etc/passwd")
    del document["nodes"]["ask"]["on_error"]
    document["nodes"]["ask"]["next"] = "bye"
    final, events = run_flow(tmp_path, synthesizer, document, "silent")
    assert final.status == "failed"
    assert "flow node ask" in final.reason and "not an http(s) URL" in final.reason
    assert completed(events)["reason"] == "error"


def test_the_app_client_turns_an_invalid_url_into_an_app_request_error() -> None:
    async def ask() -> None:
        client = AppClient(timeout_s=5)
        try:
            await client.request("POST", "http://[::1/orders", json={})
        finally:
            await client.aclose()

    with pytest.raises(AppRequestError, match="not a valid URL"):
        asyncio.run(ask())


def test_a_loop_validation_cannot_see_is_stopped_at_run_time(
    tmp_path: Path, synthesizer: SpeechSynthesizer, app: JsonApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert MAX_STEPS_PER_CALL == 1000
    monkeypatch.setattr(runtime, "MAX_STEPS_PER_CALL", 60)  # the same guard, reached sooner (each step here is an HTTP request)
    document = {"nodes": {"count": {"type": "set", "variables": {"n": 1}, "next": "ask"}, "ask": {"type": "webhook", "url": f"{app.url}/loop"}}}
    final, events = run_flow(tmp_path, synthesizer, document, "silent")
    assert final.status == "failed"
    assert "entered 60 nodes" in final.reason and "a loop never ends" in final.reason
    assert completed(events)["path"] == ["count", "ask"] * 30


def test_a_caller_hanging_up_mid_flow_still_completes_the_flow(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    caller = {"name": "leaves", "answer_after_rings": 0, "steps": [{"wait_for_prompt": {"silence_ms": 400}}, {"hangup": {}}]}
    final, events = run_flow(tmp_path, synthesizer, sample("bank-balance"), caller)
    assert final.status == "completed" and final.reason == "the callee hung up"
    done = completed(events)
    assert done["reason"] == "caller hung up"
    assert done["path"] == ["welcome", "pin"]


def test_a_record_node_saves_the_recording_url(tmp_path: Path, synthesizer: SpeechSynthesizer) -> None:
    document = sample("support-menu")
    caller = {"name": "reports", "answer_after_rings": 0, "steps": [
        {"wait_for_prompt": {"silence_ms": 800}}, {"press": {"digits": "2"}}, {"wait_for_prompt": {"silence_ms": 600}},
        {"pause": {"seconds": 0.5}}, {"say": {"text": "my printer is broken"}}]}
    final, events = run_flow(tmp_path, synthesizer, document, caller)
    assert final.status == "completed", final.reason
    done = completed(events)
    assert done["path"] == ["main", "technical", "thanks", "goodbye", "hang_up"]
    assert done["variables"]["message"].endswith(".wav") and done["variables"]["recording_duration"] > 0.5


def test_phrases_match_words_fuzzily() -> None:
    phrases = {"yes|yeah": "ok", "no|nope": "cancel", "talk to someone": "agent"}
    assert match_phrase("Yes please", phrases) == "ok"
    assert match_phrase("nope", phrases) == "cancel"
    assert match_phrase("I want to talk to someone now", phrases) == "agent"
    assert match_phrase("talk to sumone", phrases) == "agent"
    assert match_phrase("banana", phrases) is None
    assert match_phrase("banana", {**phrases, "any": "other"}) == "other"


def test_a_webhook_answer_sets_only_the_variables_its_node_lists_in_sets(tmp_path: Path, synthesizer: SpeechSynthesizer, app: JsonApp) -> None:
    document = {"variables": {"pin": "1234"}, "nodes": {
        "ask": {"type": "webhook", "url": f"{app.url}/overreach", "sets": ["eta"], "next": "bye"},
        "bye": {"type": "say", "text": "PIN {{ pin | spell }}, {{ eta }}."}}}
    final, events = run_flow(tmp_path, synthesizer, document, "silent")
    assert final.status == "completed", final.reason
    variables = completed(events)["variables"]
    assert variables["pin"] == "1234" and variables["eta"] == "soon" and "balance" not in variables
    assert "PIN 1 2 3 4, soon." in said(events)
    [warning] = facts(events, "flow.webhook_warning")
    assert warning["node"] == "ask" and warning["ignored"] == ["pin", "balance"] and warning["ignored_count"] == 2
    assert warning["allowed"] == ["eta"] and "sets" in warning["message"]


def test_a_webhook_without_sets_may_set_no_variable(tmp_path: Path, synthesizer: SpeechSynthesizer, app: JsonApp) -> None:
    document = {"nodes": {"ask": {"type": "webhook", "url": f"{app.url}/overreach", "next": "bye"}, "bye": {"type": "hangup"}}}
    final, events = run_flow(tmp_path, synthesizer, document, "silent")
    assert final.status == "completed", final.reason
    assert not {"eta", "pin", "balance"} & set(completed(events)["variables"])
    [warning] = facts(events, "flow.webhook_warning")
    assert warning["ignored"] == ["eta", "pin", "balance"] and warning["allowed"] == []

"""/v1/voice/flows through a real server on loopback (real SQLite, real webhook receiver): CRUD with bad
input, calls that carry an inline flow or a flow_id, and flow.* events delivered to the call's webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ivrsim.api.server import BackgroundServer
from ivrsim.flows.document import MAX_FLOW_BYTES
from ivrsim.settings import Settings
from ivrsim.testing.waiting import wait_until

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FROM = "+15559876543"
SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "flows"
PIN_CALLER = "+15557002001"
SILENT = "+15557002002"
FINAL = ("completed", "busy", "no-answer", "failed")

MENU = {
    "name": "tiny",
    "nodes": {
        "hello": {"type": "say", "text": "Hello {{ who }}.", "next": "bye"},
        "bye": {"type": "hangup"},
    },
    "variables": {"who": "there"},
}


class Receiver:
    """A webhook receiver on loopback: records every POSTed JSON event."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def for_call(self, call_id: str) -> list[dict[str, Any]]:
        return [event for event in list(self.received) if event.get("call_id") == call_id]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    instance = Receiver()
    yield instance
    instance.server.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("flows-server")
    book = folder / "phonebook.yaml"
    book.write_text(json.dumps({"numbers": {
        PIN_CALLER: {"kind": "scripted", "script": str(SAMPLES / "callers" / "bank-happy.yaml")},
        SILENT: {"kind": "scripted", "script": str(SAMPLES / "callers" / "silent.yaml")},
    }}))
    settings = Settings(api_key=KEY, port=0, data_dir=folder / "data", phonebook=book, webhook_backoff_s=0.05)
    with BackgroundServer(settings) as running:
        yield running.base_url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=30) as http:
        yield http


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()["error"]


def wait_for(client: httpx.Client, call_id: str) -> dict[str, Any]:
    return wait_until(lambda: (c := client.get(f"/v1/voice/calls/{call_id}").json())["status"] in FINAL and c, timeout_s=60)


def events_of(client: httpx.Client, call_id: str) -> list[dict[str, Any]]:
    return client.get(f"/v1/voice/calls/{call_id}/events").json()["data"]


# -- CRUD ---------------------------------------------------------------------------------------------


def test_a_flow_is_stored_read_listed_replaced_and_deleted(client: httpx.Client) -> None:
    created = client.post("/v1/voice/flows", json={"name": "tiny", "flow": MENU})
    assert created.status_code == 200, created.text
    flow = created.json()
    assert flow["id"].startswith("flow_") and flow["name"] == "tiny" and flow["nodes"] == 2 and flow["yaml"] is None
    assert flow["flow"] == MENU
    assert client.get(f"/v1/voice/flows/{flow['id']}").json() == flow

    second = client.post("/v1/voice/flows", json={"name": "bank", "yaml": (SAMPLES / "bank-balance.yaml").read_text()}).json()
    assert second["yaml"].startswith("# A bank balance line") and second["flow"]["nodes"]["pin"]["branches"] == {"1234": "balance"}
    page = client.get("/v1/voice/flows", params={"limit": 1}).json()
    assert [f["id"] for f in page["data"]] == [second["id"]] and page["has_more"] is True
    after = client.get("/v1/voice/flows", params={"limit": 200, "starting_after": second["id"]}).json()
    assert flow["id"] in [f["id"] for f in after["data"]]

    replaced = client.put(f"/v1/voice/flows/{flow['id']}", json={"name": "tiny v2", "flow": {**MENU, "variables": {"who": "you"}}})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["name"] == "tiny v2" and replaced.json()["flow"]["variables"] == {"who": "you"}
    assert replaced.json()["created_at"] == flow["created_at"]

    assert client.delete(f"/v1/voice/flows/{flow['id']}").json() == {"id": flow["id"], "object": "flow", "deleted": True}
    assert error_of(client.get(f"/v1/voice/flows/{flow['id']}"), 404)["param"] == "id"
    assert error_of(client.delete(f"/v1/voice/flows/{flow['id']}"), 404)["code"] == "not_found"
    assert error_of(client.put(f"/v1/voice/flows/{flow['id']}", json={"name": "x", "flow": MENU}), 404)["code"] == "not_found"


def test_an_invalid_flow_is_refused_with_every_problem_and_the_first_path(client: httpx.Client) -> None:
    bad = {"nodes": {"menu": {"type": "gather", "branches": {"1": "menu", "3": "gone"}}, "x": {"type": "sey"}}}
    error = error_of(client.post("/v1/voice/flows", json={"name": "bad", "flow": bad}), 422)
    assert error["code"] == "invalid_flow"
    assert error["param"] == "flow.nodes.menu.branches.3"
    assert "flow.nodes.x.type: unknown node type 'sey'" in error["message"]
    assert error["message"].startswith("3 problems in the flow")  # the branch, the type, x unreachable

    error = error_of(client.post("/v1/voice/flows", json={"name": "bad", "yaml": "nodes:\n  hello: {type: say, text: Hi, next: menu}\n"}), 422)
    assert error["param"] == "yaml" and "yaml:2:38: next goes to node 'menu'" in error["message"]
    error = error_of(client.post("/v1/voice/flows", json={"name": "bad", "yaml": "nodes: [\n"}), 422)
    assert "not valid YAML" in error["message"]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"name": "x"}, 422, "flow"),
        ({"name": "x", "flow": MENU, "yaml": "nodes: {}"}, 422, "yaml"),
        ({"flow": MENU}, 422, "name"),
        ({"name": 3, "flow": MENU}, 422, "name"),
        ({"name": "x", "flow": "nodes: {}"}, 422, "flow"),
        ({"name": "x", "flow": MENU, "colour": "red"}, 422, "colour"),
        ({"name": "x", "flow": {"nodes": {"p": {"type": "pause", "seconds": "2"}}}}, 422, "flow.nodes.p.seconds"),
    ],
    ids=["no-flow", "both", "no-name", "int-name", "string-flow", "unknown-field", "string-seconds"],
)
def test_bad_bodies_name_the_field(client: httpx.Client, body: dict[str, Any], status: int, param: str) -> None:
    assert error_of(client.post("/v1/voice/flows", json=body), status)["param"] == param


def test_malformed_and_too_large_bodies(client: httpx.Client) -> None:
    response = client.post("/v1/voice/flows", content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert error_of(response, 400)["code"] == "invalid_json"
    big = {"name": "big", "flow": {"nodes": {"hello": {"type": "say", "text": "a" * (MAX_FLOW_BYTES + 10)}}}}
    error = error_of(client.post("/v1/voice/flows", json=big), 413)
    assert error["code"] == "flow_too_large" and error["param"] == "flow"
    error = error_of(client.post("/v1/voice/flows", json={"name": "big", "yaml": "#" * (MAX_FLOW_BYTES + 10)}), 413)
    assert error["param"] == "yaml"
    assert error_of(client.get("/v1/voice/flows", params={"starting_after": "flow_nope"}), 404)["param"] == "starting_after"
    assert error_of(client.get("/v1/voice/flows", params={"limit": 0}), 422)["param"] == "limit"
    assert client.get("/v1/voice/flows", headers={"Authorization": "Bearer wrong"}).status_code == 401


# -- calls --------------------------------------------------------------------------------------------


def test_a_call_with_an_inline_flow_runs_it_and_its_webhook_gets_the_flow_events(client: httpx.Client, receiver: Receiver) -> None:
    placed = client.post("/v1/voice/calls", json={"from": FROM, "to": SILENT, "flow": MENU, "webhook_url": receiver.url})
    assert placed.status_code == 200, placed.text
    call_id = placed.json()["id"]
    call = wait_for(client, call_id)
    assert call["status"] == "completed", call
    events = events_of(client, call_id)
    entered = [(e["node"], e["node_type"]) for e in events if e["type"] == "flow.node_entered"]
    assert entered == [("hello", "say"), ("bye", "hangup")]
    [done] = [e for e in events if e["type"] == "flow.completed"]
    assert done["path"] == ["hello", "bye"] and done["reason"] == "hangup node"
    assert "Hello there." in [e.get("text") for e in events if e["type"] == "prompt.started"]
    delivered = wait_until(lambda: (got := receiver.for_call(call_id)) and got[-1]["type"] == "call.completed" and got)
    types = [e["type"] for e in delivered]
    assert types.count("flow.node_entered") == 2 and types.count("flow.completed") == 1
    assert types.index("flow.completed") < types.index("call.completed")
    assert next(e for e in delivered if e["type"] == "flow.completed")["path"] == ["hello", "bye"]


def test_a_call_with_a_flow_id_runs_the_stored_flow(client: httpx.Client) -> None:
    stored = client.post("/v1/voice/flows", json={"name": "bank", "yaml": (SAMPLES / "bank-balance.yaml").read_text()}).json()
    placed = client.post("/v1/voice/calls", json={"from": FROM, "to": PIN_CALLER, "flow_id": stored["id"]})
    assert placed.status_code == 200, placed.text
    call = wait_for(client, placed.json()["id"])
    assert call["status"] == "completed", call
    [done] = [e for e in events_of(client, call["id"]) if e["type"] == "flow.completed"]
    assert done["path"] == ["welcome", "pin", "balance", "goodbye"]
    assert done["variables"]["pin"] == "1234"


def test_calls_with_a_bad_flow_or_an_unknown_flow_id_are_refused(client: httpx.Client) -> None:
    bad = {"nodes": {"hello": {"type": "say", "text": "Hi", "next": "menu"}}}
    error = error_of(client.post("/v1/voice/calls", json={"from": FROM, "to": SILENT, "flow": bad}), 422)
    assert error["code"] == "invalid_flow" and error["param"] == "flow.nodes.hello.next"
    error = error_of(client.post("/v1/voice/calls", json={"from": FROM, "to": SILENT, "flow_id": "flow_missing"}), 422)
    assert error["code"] == "unknown_flow" and error["param"] == "flow_id"
    error = error_of(client.post("/v1/voice/calls", json={"from": FROM, "to": SILENT, "flow": MENU, "flow_id": "flow_x"}), 422)
    assert "give one of flow, flow_id and url" in error["message"]

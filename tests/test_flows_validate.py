"""Flow validation (each kind of error at its line and column, or its JSON path for JSON data), the
Mermaid graph, and the `ivrsim flow` commands' output and exit codes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from textwrap import dedent
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from ivrsim.cli import main
from ivrsim.flows import (
    FlowError,
    FlowIssue,
    check_flow,
    load_flow_file,
    load_flow_text,
    validate_flow,
)
from ivrsim.flows.document import MAX_FLOW_BYTES, MAX_NODES
from ivrsim.flows.graph import graph_data, mermaid
from ivrsim.flows.template import render

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "flows"


def problems(text: str) -> list[FlowIssue]:
    document, positions = load_flow_text(dedent(text), "menu.yaml")
    return validate_flow(document, positions)


def only(text: str) -> FlowIssue:
    found = problems(text)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_the_samples_are_valid() -> None:
    for file in sorted(SAMPLES.glob("*.yaml")):
        document, positions = load_flow_file(file)
        assert validate_flow(document, positions) == [], file


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        # unknown node type
        ("""
         nodes:
           hello: {type: sey, text: Hi}
         """, 3, 17, ["unknown node type 'sey'", "say"]),
        # unknown key, pointed at the key
        ("""
         nodes:
           hello:
             type: say
             text: Hi
             txt: Hi
         """, 6, 5, ["unknown key 'txt'", "text"]),
        # missing required key
        ("""
         nodes:
           hello:
             type: say
         """, 3, 3, ["missing required key 'text'"]),
        # branch to nowhere
        ("""
         nodes:
           menu:
             type: gather
             branches:
               "1": billing
               "2": sales
           billing: {type: hangup}
         """, 7, 12, ["branch '2'", "'sales', which does not exist", "billing"]),
        # next to nowhere
        ("""
         nodes:
           hello: {type: say, text: Hi, next: menu}
         """, 3, 38, ["next goes to node 'menu', which does not exist"]),
        # unreachable
        ("""
         nodes:
           hello: {type: say, text: Hi}
           orphan: {type: hangup}
         """, 4, 3, ["node orphan is unreachable from start (hello)"]),
        # loop without an exit
        ("""
         nodes:
           hello: {type: say, text: Hi, next: again}
           again: {type: pause, seconds: 1, next: more}
           more: {type: goto, next: again}
         """, 4, 3, ["loop without an exit", "again, more"]),
        # unknown variable
        ("""
         nodes:
           hello: {type: say, text: "Hi {{ nmae }}"}
         """, 3, 28, ["unknown variable 'nmae'"]),
        # bad types: strict, no coercion
        ("""
         nodes:
           menu: {type: gather, num_digits: "4"}
         """, 3, 36, ["num_digits must be a whole number", "not a string"]),
        ("""
         nodes:
           menu: {type: gather, retries: 1.5}
         """, 3, 33, ["retries must be a whole number"]),
        ("""
         nodes:
           rec: {type: record, beep: "yes"}
         """, 3, 29, ["beep must be true or false"]),
        # a start that does not exist
        ("""
         start: main
         nodes:
           hello: {type: hangup}
         """, 2, 8, ["start names node 'main'"]),
        # not YAML
        ("""
         nodes:
           hello: {type: say, text: "Hi}
         """, 4, 1, ["not valid YAML"]),
        # a bad placeholder
        ("""
         nodes:
           hello: {type: say, text: "Hi {{ name.first }}"}
         """, 3, 28, ["is not a placeholder"]),
    ],
    ids=["type", "key", "required", "branch", "next", "unreachable", "loop", "variable", "str-number", "float-int", "str-bool", "start",
         "yaml", "placeholder"],
)
def test_each_kind_of_error_names_its_line_column_and_fix(text: str, line: int, column: int, words: list[str]) -> None:
    try:
        issue = only(text)
    except FlowError as error:  # text that is not YAML fails at load
        [issue] = error.errors
    assert (issue.file, issue.line, issue.column) == ("menu.yaml", line, column), str(issue)
    for word in words:
        assert word in issue.message, issue.message
    assert str(issue).startswith(f"menu.yaml:{line}:{column}: ")


def test_every_problem_is_listed_in_file_order() -> None:
    found = problems("""
        nodes:
          hello: {type: say, text: "{{ who }}", next: nowhere}
          menu: {type: gather, colour: red}
          x: {type: sey}
        """)
    assert [(p.line, p.path) for p in found] == [
        (3, "nodes.hello.text"), (3, "nodes.hello.next"), (4, "nodes.menu"), (4, "nodes.menu.colour"), (5, "nodes.x"), (5, "nodes.x.type")]


def test_json_data_errors_name_the_json_path() -> None:
    document = {"nodes": {"menu": {"type": "gather", "branches": {"1": "a", "3": "gone"}}, "a": {"type": "hangup"}}}
    [issue] = validate_flow(document)
    assert issue.path == "nodes.menu.branches.3"
    assert issue.line is None and str(issue).startswith("nodes.menu.branches.3: ")


def test_yes_and_no_are_words_not_booleans_and_digit_keys_are_strings() -> None:
    document, positions = load_flow_text(dedent("""
        nodes:
          ask:
            type: gather
            phrases: {yes: ok, no: ok}
            branches: {1: ok}
          ok: {type: hangup}
        """))
    assert validate_flow(document, positions) == []
    assert document["nodes"]["ask"]["phrases"] == {"yes": "ok", "no": "ok"}
    assert document["nodes"]["ask"]["branches"] == {"1": "ok"}


def test_phrases_need_speech_and_branches_exclude_next() -> None:
    found = problems("""
        nodes:
          ask:
            type: gather
            input: dtmf
            phrases: {yes: ok}
            next: ok
          ok: {type: hangup}
        """)
    messages = " | ".join(p.message for p in found)
    assert "phrases need speech input" in messages
    assert "drop next" in messages


def test_duplicate_keys_and_too_many_nodes_are_refused() -> None:
    with pytest.raises(FlowError) as raised:
        load_flow_text("nodes:\n  a: {type: hangup}\n  a: {type: hangup}\n", "dup.yaml")
    assert "'a' is given twice" in str(raised.value.errors[0]) and raised.value.errors[0].line == 3
    many = {"nodes": {f"n{i}": {"type": "hangup"} for i in range(MAX_NODES + 1)}}
    [issue] = validate_flow(many)
    assert f"over {MAX_NODES}" in issue.message
    with pytest.raises(FlowError) as raised:
        load_flow_text("#" * (MAX_FLOW_BYTES + 1))
    assert "over 256 kB" in str(raised.value)


def test_a_loop_with_a_way_out_is_fine() -> None:
    assert problems("""
        nodes:
          menu:
            type: gather
            branches: {"1": menu, "2": bye}
            on_failure: menu
          bye: {type: hangup}
        """) == []


def test_templates_render_variables_and_spell() -> None:
    assert render("PIN {{ pin | spell }}, {{ name }}{{missing}}.", {"pin": "1234", "name": "Alex"}) == "PIN 1 2 3 4, Alex."
    assert render("{{ n }} {{ ok }}", {"n": 3.0, "ok": True}) == "3 yes"


def test_check_flow_raises_with_every_problem() -> None:
    with pytest.raises(FlowError) as raised:
        check_flow({"nodes": {"a": {"type": "say"}, "b": {"type": "hangup"}}})
    assert len(raised.value.errors) == 2
    assert raised.value.code == "invalid_flow"


def test_the_graph_is_mermaid_with_labelled_branches() -> None:
    flow = check_flow(load_flow_file(SAMPLES / "support-menu.yaml")[0], default_name="support")
    text = mermaid(flow)
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert "    start_((start)) --> n0_main" in lines
    assert '    n0_main -- "1" --> n1_billing' in lines
    assert '    n6_lookup -- "shipped" --> n7_shipped' in lines
    assert '    n0_main -- "failure" --> n10_goodbye' in lines
    assert '    n11_hang_up(("hang_up (hangup)"))' in lines
    data = graph_data(flow)
    assert data["start"] == "main" and len(data["nodes"]) == 12
    assert {"from": "lookup", "to": "lookup_failed", "label": "error"} in data["edges"]


def test_a_quote_in_a_label_does_not_break_the_mermaid_text() -> None:
    flow = check_flow({"nodes": {"hi": {"type": "say", "text": 'Say "hello" <now>'}}})
    assert 'n0_hi["hi (say): Say #quot;hello#quot; #lt;now#gt;"]' in mermaid(flow)


def test_a_hash_in_a_label_or_branch_is_escaped_for_mermaid() -> None:
    flow = check_flow({"nodes": {
        "menu": {"type": "gather", "prompt": "Press #1; or #quot;", "branches": {"#": "bye", "1#": "bye"}},
        "bye": {"type": "hangup"}}})
    text = mermaid(flow)
    assert 'n0_menu{"menu (gather): Press #35;1; or #35;quot;"}' in text
    assert '    n0_menu -- "#35;" --> n1_bye' in text and '    n0_menu -- "1#35;" --> n1_bye' in text
    assert "#1;" not in text and " #quot;" not in text


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    good = cli("flow", "validate", str(SAMPLES / "bank-balance.yaml"))
    assert good.exit_code == 0, good.output
    assert "flow bank-balance is valid (5 nodes, starts at welcome)" in good.output
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("nodes:\n  hello: {type: say, text: Hi, next: menu}\n  lost: {type: hangup}\n")
    bad = cli("flow", "validate", str(bad_file))
    assert bad.exit_code == 1
    assert f"{bad_file}:2:38: next goes to node 'menu'" in bad.output
    assert f"{bad_file}:3:3: node lost is unreachable" in bad.output
    missing = cli("flow", "validate", str(tmp_path / "none.yaml"))
    assert missing.exit_code == 2
    assert "cannot read" in missing.output


def test_cli_validate_json_and_graph(tmp_path: Path) -> None:
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("nodes:\n  hello: {type: sey}\n")
    result = cli("flow", "validate", "--json", str(bad_file))
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["valid"] is False
    assert report["errors"][0]["line"] == 2 and report["errors"][0]["path"] == "nodes.hello.type"
    graph = cli("flow", "graph", str(SAMPLES / "appointment-confirmation.yaml"))
    assert graph.exit_code == 0 and graph.output.startswith("flowchart TD\n")
    assert '-- "yes|yeah|confirm" -->' in graph.output
    as_json = cli("flow", "graph", "--json", str(SAMPLES / "appointment-confirmation.yaml"))
    assert json.loads(as_json.output)["start"] == "greet"
    assert cli("flow", "graph", str(bad_file)).exit_code == 1


LAUGHS = "\n".join(
    [f'l0: &l0 [{", ".join(["lol"] * 9)}]']
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (LAUGHS, ["expands to over", "aliases"]),  # a billion laughs: 9^9 values from 1 kB
        ("[" * 20_000 + "]" * 20_000, ["nested too deeply"]),
        ("&a [*a]", ["nested too deeply"]),  # an alias that holds itself
        ("nodes:\n  a\x9a: 1", ["U+009A", "2:4"]),  # a character YAML does not allow
    ],
)
def test_hostile_yaml_is_refused_quickly_with_a_flow_error(text: str, words: list[str]) -> None:
    with pytest.raises(FlowError) as refused:
        load_flow_text(text, "menu.yaml")
    assert all(word in str(refused.value) for word in words), str(refused.value)


# -- values of the wrong kind anywhere: issues, never a crash -------------------------------------------

#: Every key a flow has, with one valid flow per node type to put a random value into.
VALID_NODES: dict[str, dict[str, Any]] = {
    "say": {"type": "say", "text": "Hi {{ who }}", "voice": "en-US", "loop": 1, "next": "bye"},
    "play": {"type": "play", "url": "http://127.0.0.1/a.wav", "loop": 1, "next": "bye"},
    "gather": {"type": "gather", "prompt": {"say": "Press", "voice": "en-US"}, "input": "dtmf speech", "num_digits": 1, "timeout": 5,
               "finish_on_key": "#", "hints": ["yes"], "speech_timeout": 1, "language": "en-US", "branches": {"1": "bye"},
               "phrases": {"yes": "bye"}, "retries": 1, "no_match": "No", "no_input": "None", "on_failure": "bye", "save_as": "pin"},
    "record": {"type": "record", "prompt": "Speak", "max_length": 5, "silence_timeout": 1, "finish_on_key": "#", "beep": True,
               "save_as": "message", "next": "bye"},
    "webhook": {"type": "webhook", "url": "http://127.0.0.1/x", "method": "POST", "body": {"a": ["{{ who }}"]}, "branches": {"ok": "bye"},
                "sets": ["who"], "timeout": 2, "on_error": "bye", "next": "bye"},
    "set": {"type": "set", "variables": {"who": "you"}, "next": "bye"},
    "pause": {"type": "pause", "seconds": 1, "next": "bye"},
    "goto": {"type": "goto", "next": "bye"},
}
FIELDS = [("top", key) for key in ("name", "description", "start", "variables", "nodes")] + [
    (node_type, key) for node_type, spec in VALID_NODES.items() for key in spec
]


def json_values() -> Any:
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8) | st.sampled_from(
        ["say", "bye", "first", "any", "1", "who", "", "dtmf"])
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=6) | st.sampled_from(["type", "say", "bye", "any", "1"]), inner, max_size=3), max_leaves=8)


def flow_with(node_type: str, key: str, value: Any) -> dict[str, Any]:
    nodes: dict[str, Any] = {"first": copy.deepcopy(VALID_NODES.get(node_type, VALID_NODES["say"])), "bye": {"type": "hangup"}}
    document: dict[str, Any] = {"name": "fuzz", "start": "first", "variables": {"who": "me"}, "nodes": nodes}
    if node_type == "top":
        document[key] = value
    else:
        nodes["first"][key] = value
    return document


def test_the_valid_base_flows_are_valid() -> None:
    for node_type in VALID_NODES:
        assert validate_flow(flow_with(node_type, "type", node_type)) == [], node_type


@pytest.mark.parametrize("value", [["say"], {"say": 1}, [], {}, [["x"]]])
@pytest.mark.parametrize(("node_type", "key"), [("say", "type"), ("gather", "branches"), ("gather", "phrases"), ("say", "next"),
                                                ("gather", "on_failure"), ("top", "start"), ("top", "variables"), ("webhook", "sets"),
                                                ("gather", "input"), ("webhook", "method"), ("webhook", "on_error")])
def test_a_list_or_mapping_where_a_name_goes_is_an_issue(node_type: str, key: str, value: Any) -> None:
    validate_flow(flow_with(node_type, key, value))  # no TypeError (unhashable), whatever it finds


def test_any_json_value_in_any_field_gives_issues_never_an_exception() -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(field=st.sampled_from(FIELDS), value=json_values())
    def check(field: tuple[str, str], value: Any) -> None:
        issues = validate_flow(flow_with(*field, value))
        assert all(isinstance(issue, FlowIssue) and issue.message for issue in issues)

    check()


def test_a_type_given_as_a_list_is_an_unknown_node_type_at_its_line() -> None:
    issue = only("""
        nodes:
          hello:
            type: [say, play]
            text: Hi
        """)
    assert (issue.line, issue.column) == (4, 11)
    assert "unknown node type (a list, not a name)" in issue.message and "say, play, gather" in issue.message


def test_cli_validate_reports_a_mapping_type_without_a_traceback(tmp_path: Path) -> None:
    flow_file = tmp_path / "bad.yaml"
    flow_file.write_text("nodes:\n  hello: {type: {say: 1}, text: Hi}\n")
    result = cli("flow", "validate", str(flow_file))
    assert result.exit_code == 1, result.output
    assert f"{flow_file}:2:17: unknown node type (a mapping, not a name)" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_api_refuses_a_list_type_with_422(tmp_path: Path) -> None:
    from ivrsim.api.server import BackgroundServer
    from ivrsim.settings import Settings

    bad = {"nodes": {"hello": {"type": ["say"], "text": "Hi"}}}
    settings = Settings(api_key="test-key", port=0, data_dir=tmp_path / "data")
    with BackgroundServer(settings) as running, httpx.Client(base_url=running.base_url, headers={"Authorization": "Bearer test-key"},
                                                               timeout=30) as client:
        stored = client.post("/v1/voice/flows", json={"name": "bad", "flow": bad})
        assert stored.status_code == 422, stored.text
        assert stored.json()["error"]["param"] == "flow.nodes.hello.type"
        assert "unknown node type" in stored.json()["error"]["message"]
        call = client.post("/v1/voice/calls", json={"from": "+15559876543", "to": "+15550100001", "flow": bad})
        assert call.status_code == 422, call.text
        assert "unknown node type" in call.json()["error"]["message"]

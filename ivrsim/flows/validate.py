"""Every problem of a flow document at once, each with its place (file, line, column, JSON path) and the fix.

Checked strictly (no coercion: "3" is not a number, 1 is not a string): the top-level keys, each node's
type, keys, required keys and their types; references (next, branches, phrases, on_failure, on_error)
to nodes that exist; nodes unreachable from ``start``; loops no node of which can reach an end; variables
used in templates that nothing sets.
"""

from __future__ import annotations

import re
from typing import Any

from ivrsim.flows.document import (
    BUILTIN_VARIABLES,
    MAX_NODES,
    NODE_KEYS,
    NODE_TYPES,
    REQUIRED_KEYS,
    TOP_LEVEL_KEYS,
    Flow,
    FlowError,
    FlowIssue,
    Node,
)
from ivrsim.flows.loader import Path_, Positions
from ivrsim.flows.template import VARIABLE_NAME, placeholders

NODE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
INPUT_TYPES = ("dtmf", "speech", "dtmf speech")
DIGIT_KEYS = re.compile(r"^[0-9*#]{1,32}$")
#: Keys of a gather's or record's prompt mapping.
PROMPT_KEYS = {"say": "str", "play": "str", "voice": "str"}
#: Most variables a flow may set up front, and the longest string value.
MAX_VARIABLES = 200
MAX_VALUE_CHARS = 4000
#: Template-bearing keys per node type (strings rendered at run time).
_TEMPLATED = {"say": ("text",), "play": ("url",), "gather": ("no_match", "no_input"), "webhook": ("url",)}

_JSON_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number", list: "a list", dict: "a mapping", type(None): "null"}


def _kind(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


class _Checker:
    def __init__(self, document: Any, positions: Positions) -> None:
        self.document = document
        self.positions = positions
        self.issues: list[FlowIssue] = []
        self.known_variables: set[str] = set(BUILTIN_VARIABLES)
        self.uses: list[tuple[Path_, str]] = []  # (where, variable)

    def add(self, path: Path_, message: str, at_key: bool = False) -> None:
        self.issues.append(self.positions.issue(path, message, at_key))

    # -- values ----------------------------------------------------------------------------------------

    def typed(self, path: Path_, value: Any, kind: str) -> bool:
        """Whether ``value`` is of ``kind`` (NODE_KEYS' names); adds the issue when not."""
        key = str(path[-1])
        if kind in ("str", "node"):
            ok = isinstance(value, str)
            want = "a node's name (a string)" if kind == "node" else "a string (quote it)"
        elif kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
            want = "a whole number without quotes, e.g. 3"
        elif kind == "number":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            want = "a number without quotes, e.g. 5 or 1.5"
        elif kind == "bool":
            ok = isinstance(value, bool)
            want = "true or false"
        elif kind == "str_list":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            want = "a list of strings"
        elif kind in ("node_map", "values", "body"):
            ok = isinstance(value, dict)
            want = "a mapping"
        elif kind == "prompt":
            ok = isinstance(value, (str, dict))
            want = "a text to say, or a mapping with say and/or play"
        elif kind == "input":
            ok = value in INPUT_TYPES
            want = "one of dtmf, speech, 'dtmf speech'"
        elif kind == "method":
            ok = value in ("GET", "POST")
            want = "GET or POST"
        else:  # pragma: no cover - NODE_KEYS names only these
            raise AssertionError(kind)
        if not ok:
            got = repr(value) if isinstance(value, (str, int, float)) and kind in ("input", "method") else _kind(value)
            self.add(path, f"{key} must be {want}, not {got}")
        return ok

    def template(self, path: Path_, text: str) -> None:
        names, problems = placeholders(text)
        for problem in problems:
            self.add(path, problem)
        self.uses.extend((path, name) for name in names)

    def variable_name(self, path: Path_, name: Any, what: str) -> None:
        if not isinstance(name, str) or not VARIABLE_NAME.match(name):
            self.add(path, f"{what} {name!r} is not a variable name; use letters, digits and _ (not first a digit), e.g. account_pin")
        else:
            self.known_variables.add(name)

    # -- the document ----------------------------------------------------------------------------------

    def check(self) -> None:
        document = self.document
        if not isinstance(document, dict):
            self.add((), f"a flow is a mapping with 'nodes:' (and optionally name, start, variables), not {_kind(document)}")
            return
        for key in document:
            if key not in TOP_LEVEL_KEYS:
                self.add((key,), f"unknown key {key!r} at the top of the flow; the keys are {', '.join(TOP_LEVEL_KEYS)}", at_key=True)
        for key in ("name", "description"):
            if key in document:
                self.typed((key,), document[key], "str")
        variables = document.get("variables")
        if variables is not None and self.typed(("variables",), variables, "values"):
            self.values(("variables",), variables)
        nodes = document.get("nodes")
        if nodes is None:
            self.add((), "missing 'nodes': add a mapping of named nodes, e.g. nodes: {hello: {type: say, text: Hello}}")
            return
        if not isinstance(nodes, dict) or not nodes:
            self.add(("nodes",), "nodes must be a mapping of named nodes with at least one node" + ("" if isinstance(nodes, dict) else f", not {_kind(nodes)}"))
            return
        if len(nodes) > MAX_NODES:
            self.add(("nodes",), f"the flow has {len(nodes)} nodes, over {MAX_NODES}; split it into smaller flows")
            return
        for name, spec in nodes.items():
            if not isinstance(name, str) or not NODE_NAME.match(name):
                self.add(("nodes", name), f"node name {name!r} is not usable; use letters, digits, _ and - (1 to 64, not first a digit or -)", at_key=True)
            self.node(("nodes", name), spec)
        start = document.get("start")
        if start is not None and self.typed(("start",), start, "node") and start not in nodes:
            self.add(("start",), f"start names node {start!r}, which does not exist; the nodes are {_names(nodes)}")
        self.graph(_sound_part(document, nodes))
        for path, name in self.uses:
            if name not in self.known_variables:
                self.add(path, f"unknown variable {name!r}: nothing sets it; set it (variables:, a set node, save_as, a webhook's sets) "
                               f"or use a built-in one: {', '.join(BUILTIN_VARIABLES)}")

    def values(self, path: Path_, values: dict[str, Any]) -> None:
        if len(values) > MAX_VARIABLES:
            self.add(path, f"{len(values)} variables, over {MAX_VARIABLES}; keep fewer")
        for name, value in values.items():
            self.variable_name((*path, name), name, "variable")
            if not isinstance(value, (str, int, float, bool)) or value is None:
                self.add((*path, name), f"variable {name} must be a string, number or true/false, not {_kind(value)}")
            elif isinstance(value, str):
                if len(value) > MAX_VALUE_CHARS:
                    self.add((*path, name), f"variable {name} is over {MAX_VALUE_CHARS} characters; shorten it")
                self.template((*path, name), value)

    def node(self, path: Path_, spec: Any) -> None:
        if not isinstance(spec, dict):
            self.add(path, f"node {path[-1]} must be a mapping with a type (one of {', '.join(NODE_TYPES)}), not {_kind(spec)}")
            return
        node_type = spec.get("type")
        if node_type is None:
            self.add(path, f"node {path[-1]} has no type; add type: one of {', '.join(NODE_TYPES)}")
            return
        if not isinstance(node_type, str) or node_type not in NODE_KEYS:  # a list or mapping is unhashable: test the kind first
            shown = repr(node_type) if isinstance(node_type, (str, int, float)) else f"({_kind(node_type)}, not a name)"
            self.add((*path, "type"), f"unknown node type {shown}; use one of {', '.join(NODE_TYPES)}")
            return
        keys = NODE_KEYS[node_type]
        for key, value in spec.items():
            if key == "type":
                continue
            if key not in keys:
                allowed = ", ".join(keys) or "no other keys"
                self.add((*path, key), f"unknown key {key!r} for a {node_type} node; it takes {allowed}", at_key=True)
                continue
            self.typed((*path, key), value, keys[key])
        for key in REQUIRED_KEYS.get(node_type, ()):
            if key not in spec:
                self.add(path, f"{node_type} node {path[-1]} is missing required key {key!r}; add {key}: ...", at_key=True)
        for key in _TEMPLATED.get(node_type, ()):
            if isinstance(spec.get(key), str):
                self.template((*path, key), spec[key])
        nodes = self.document["nodes"]
        for key, kind in keys.items():
            value = spec.get(key)
            if kind == "node" and isinstance(value, str) and value not in nodes:
                self.add((*path, key), f"{key} goes to node {value!r}, which does not exist; the nodes are {_names(nodes)}")
            if kind == "node_map" and isinstance(value, dict):
                self.branches((*path, key), value, key)
        if node_type in ("gather", "record"):
            self.prompt((*path, "prompt"), spec.get("prompt"))
        if isinstance(spec.get("save_as"), str):
            self.variable_name((*path, "save_as"), spec["save_as"], "save_as")
        getattr(self, f"node_{node_type}", lambda *_: None)(path, spec)

    def branches(self, path: Path_, branches: dict[str, Any], key: str) -> None:
        nodes = self.document["nodes"]
        if not branches:
            self.add(path, f"{key} is empty; give at least one branch or drop the key")
        for label, target in branches.items():
            if not isinstance(target, str):
                self.add((*path, label), f"branch {label!r} must name a node (a string), not {_kind(target)}")
            elif target not in nodes:
                self.add((*path, label), f"branch {label!r} goes to node {target!r}, which does not exist; the nodes are {_names(nodes)}")

    def prompt(self, path: Path_, prompt: Any) -> None:
        if isinstance(prompt, str):
            self.template(path, prompt)
        elif isinstance(prompt, dict):
            for key, value in prompt.items():
                if key not in PROMPT_KEYS:
                    self.add((*path, key), f"unknown key {key!r} in a prompt; it takes say, play and voice", at_key=True)
                elif self.typed((*path, key), value, "str") and key in ("say", "play"):
                    self.template((*path, key), value)
            if not ({"say", "play"} & set(prompt)):
                self.add(path, "a prompt mapping needs say (text) and/or play (a URL)")

    def positive(self, path: Path_, value: Any, what: str, low: float, high: float) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not (low <= value <= high):
            self.add(path, f"{what} must be between {low:g} and {high:g}, not {value}")

    def node_say(self, path: Path_, spec: dict[str, Any]) -> None:
        self.positive((*path, "loop"), spec.get("loop"), "loop", 1, 10)

    node_play = node_say

    def node_pause(self, path: Path_, spec: dict[str, Any]) -> None:
        self.positive((*path, "seconds"), spec.get("seconds"), "seconds", 0, 600)

    def node_record(self, path: Path_, spec: dict[str, Any]) -> None:
        self.positive((*path, "max_length"), spec.get("max_length"), "max_length", 1, 3600)
        self.positive((*path, "silence_timeout"), spec.get("silence_timeout"), "silence_timeout", 0.5, 60)

    def node_set(self, path: Path_, spec: dict[str, Any]) -> None:
        if isinstance(spec.get("variables"), dict):
            self.values((*path, "variables"), spec["variables"])

    def node_webhook(self, path: Path_, spec: dict[str, Any]) -> None:
        sets = spec.get("sets")
        for index, name in enumerate(sets if isinstance(sets, list) else []):  # not a list: typed() reported it
            if isinstance(name, str):
                self.variable_name((*path, "sets", index), name, "sets")
        self.positive((*path, "timeout"), spec.get("timeout"), "timeout", 0.1, 60)
        body = spec.get("body")
        if isinstance(body, dict):
            self.body((*path, "body"), body)

    def body(self, path: Path_, data: Any) -> None:
        if isinstance(data, str):
            self.template(path, data)
        elif isinstance(data, list):
            for index, item in enumerate(data):
                self.body((*path, index), item)
        elif isinstance(data, dict):
            for key, value in data.items():
                self.body((*path, key), value)

    def node_gather(self, path: Path_, spec: dict[str, Any]) -> None:
        self.positive((*path, "num_digits"), spec.get("num_digits"), "num_digits", 1, 32)
        self.positive((*path, "timeout"), spec.get("timeout"), "timeout", 0.5, 60)
        self.positive((*path, "speech_timeout"), spec.get("speech_timeout"), "speech_timeout", 0.1, 10)
        self.positive((*path, "retries"), spec.get("retries"), "retries", 0, 10)
        finish = spec.get("finish_on_key")
        if isinstance(finish, str) and finish not in ("", *"0123456789*#"):
            self.add((*path, "finish_on_key"), f"finish_on_key must be one key (0-9, * or #) or '' for none, not {finish!r}")
        branches: dict[str, Any] = spec["branches"] if isinstance(spec.get("branches"), dict) else {}
        phrases: dict[str, Any] = spec["phrases"] if isinstance(spec.get("phrases"), dict) else {}
        for label in branches:
            if label != "any" and not (isinstance(label, str) and DIGIT_KEYS.match(label)):
                self.add((*path, "branches", label), f"branch key {label!r} is not digits; use the keys pressed (e.g. \"1\", \"1234\") or any")
        for label in phrases:
            if label == "any":
                continue
            if not isinstance(label, str):
                self.add((*path, "phrases", label), f"phrase {label!r} must be words (a string), e.g. \"no|nope\"")
                continue
            if not any(part.strip() for part in label.split("|")) or any(not part.strip() for part in label.split("|")):
                self.add((*path, "phrases", label), f"phrase {label!r} is empty; write words, alternatives split by | (e.g. \"no|nope\")")
        input_type = gather_input(spec)
        if phrases and "speech" not in input_type.split():
            self.add((*path, "input"), f"phrases need speech input; set input: speech (or 'dtmf speech'), not {input_type!r}")
        if (branches or phrases) and "next" in spec:
            self.add((*path, "next"), "a gather with branches or phrases goes where they say; drop next, or use branches: {any: node} for any other input")
        if "no_match" in spec and not (branches or phrases):
            self.add((*path, "no_match"), "no_match needs branches or phrases to miss (without them any input goes on to next); add them, or drop no_match")

    # -- the graph -------------------------------------------------------------------------------------

    def graph(self, flow: Flow) -> None:
        nodes = flow.nodes
        successors = {name: [target for _, target in node.edges() if target in nodes] for name, node in nodes.items()}
        reachable = _reach(flow.start, successors)
        for name in nodes:
            if name not in reachable:
                self.add(("nodes", name), f"node {name} is unreachable from start ({flow.start}); link it from another node or remove it", at_key=True)
        predecessors: dict[str, list[str]] = {name: [] for name in nodes}
        for name, targets in successors.items():
            for target in targets:
                predecessors[target].append(name)
        # a broken node counts as an end: its own error says enough
        ends = [name for name, node in nodes.items() if node.can_end_flow or node.type not in NODE_KEYS]
        can_end = _reach_all(ends, predecessors)
        # A loop is a strongly connected component with a cycle; one none of whose nodes can end the flow
        # has no exit (the nodes of a component reach one another, so one can end only if all can).
        component = _components(list(nodes), successors)
        members: dict[int, list[str]] = {}
        for name in nodes:
            members.setdefault(component[name], []).append(name)
        reported: set[int] = set()
        for name in nodes:
            which = component[name]
            if name in can_end or which in reported or name not in reachable:
                continue
            loop = members[which]
            if loop == [name] and name not in successors[name]:
                continue
            reported.add(which)
            self.add(("nodes", name), f"loop without an exit: {', '.join(loop)} never reach a hangup or an end; "
                                      "give one of them a branch, on_failure or next that leaves the loop", at_key=True)


def _sound_part(document: dict[str, Any], nodes: dict[str, Any]) -> Flow:
    """The flow's graph as far as it can be read (broken nodes end, broken references are dropped), so that
    unreachable nodes and exitless loops are found alongside the other problems."""
    sound: dict[str, Node] = {}
    for name, spec in nodes.items():
        spec = spec if isinstance(spec, dict) else {}
        keep = {k: v for k, v in spec.items() if k != "type" and (k not in ("next", "on_failure", "on_error") or isinstance(v, str))}
        for key in ("branches", "phrases"):
            if key in keep:
                keep[key] = {k: v for k, v in keep[key].items() if isinstance(v, str)} if isinstance(keep[key], dict) else {}
        node_type = spec.get("type")
        sound[name] = Node(name, node_type if isinstance(node_type, str) else "?", keep)
    start = document.get("start")
    start = start if isinstance(start, str) and start in nodes else next(iter(nodes))
    return Flow("flow", start, sound)


def gather_input(spec: dict[str, Any]) -> str:
    """A gather's input: as given, else speech for phrases only, 'dtmf speech' for both, else dtmf."""
    if isinstance(spec.get("input"), str):
        return str(spec["input"])
    if spec.get("phrases"):
        return "dtmf speech" if spec.get("branches") else "speech"
    return "dtmf"


def _reach(start: str, edges: dict[str, list[str]]) -> set[str]:
    return _reach_all([start], edges)


def _reach_all(starts: list[str], edges: dict[str, list[str]]) -> set[str]:
    """Every node reachable from any of ``starts`` (themselves included): one pass, linear in the edges."""
    seen = set(starts)
    todo = list(starts)
    while todo:
        for target in edges.get(todo.pop(), []):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _components(names: list[str], edges: dict[str, list[str]]) -> dict[str, int]:
    """Each node's strongly connected component (a number): Tarjan's algorithm, iterative (a long chain of
    nodes needs no deep recursion), linear in nodes and edges."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    counter = 0
    for root in names:
        if root in index:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work: list[tuple[str, int]] = [(root, 0)]  # (node, how many of its edges were followed)
        while work:
            node, position = work[-1]
            targets = edges.get(node, [])
            if position < len(targets):
                work[-1] = (node, position + 1)
                target = targets[position]
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                number = index[node]  # the root's index names the component
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = number
                    if member == node:
                        break
    return component


def _names(nodes: dict[str, Any]) -> str:
    names = [str(name) for name in nodes]
    return ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")


def validate_flow(document: Any, positions: Positions | None = None) -> list[FlowIssue]:
    """Every problem of ``document`` (empty: valid), in the document's order where it has one."""
    checker = _Checker(document, positions or Positions())
    checker.check()
    if positions is not None and positions.values:
        return sorted(checker.issues, key=lambda issue: (issue.line or 0, issue.column or 0))
    return checker.issues


def check_flow(document: Any, positions: Positions | None = None, default_name: str = "flow") -> Flow:
    """The flow of ``document``; FlowError with every problem when it does not validate."""
    issues = validate_flow(document, positions)
    if issues:
        raise FlowError(issues)
    return Flow.from_document(document, default_name)

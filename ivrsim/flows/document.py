"""The flow as data: node types and their keys, the validated flow's dataclasses, and the error list.

A flow document is plain JSON data (what a call carries to a worker process, what the API stores)::

    name: bank-balance
    start: welcome                 # default: the first node
    variables: {attempts: 0}       # initial values
    nodes:
      welcome: {type: say, text: "Welcome to the bank.", next: pin}
      pin: {type: gather, prompt: "Enter your PIN, then press pound.", save_as: pin, branches: {"1234": ok}}
      ok: {type: say, text: "Your PIN was {{ pin | spell }}.", next: bye}
      bye: {type: hangup}

A node without ``next`` (and without branches) ends the flow there ("end"); ``hangup`` ends it at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ivrsim.exceptions import IvrsimError

#: Most nodes one flow may have.
MAX_NODES = 500
#: Largest flow document (YAML text or JSON), in bytes.
MAX_FLOW_BYTES = 256 * 1024
#: Most nodes one call may enter (a guard against loops that validation cannot see, e.g. a webhook's ``next``).
MAX_STEPS_PER_CALL = 1000
#: A gather's retries when the node gives none.
DEFAULT_RETRIES = 2
NO_MATCH_PROMPT = "Sorry, I didn't get that."
NO_INPUT_PROMPT = "Sorry, I didn't hear anything."

#: Variables every flow has: the last gather's input, the call's numbers and id, the last recording's.
BUILTIN_VARIABLES = ("digits", "speech", "confidence", "from", "to", "call_id", "recording_url", "recording_duration")

#: What each key of a node holds (``validate`` checks them strictly, without coercion):
#: str, int, number, bool, node (a node's name), node_map (keys -> node names), str_list, prompt (text, or
#: {say, play, voice}), input (dtmf | speech | dtmf speech), method (GET | POST), values (name -> scalar), body (JSON).
NODE_KEYS: dict[str, dict[str, str]] = {
    "say": {"text": "str", "voice": "str", "loop": "int", "next": "node"},
    "play": {"url": "str", "loop": "int", "next": "node"},
    "gather": {
        "prompt": "prompt", "voice": "str", "input": "input", "num_digits": "int", "timeout": "number", "finish_on_key": "str",
        "hints": "str_list", "speech_timeout": "number", "language": "str", "branches": "node_map", "phrases": "node_map",
        "retries": "int", "no_match": "str", "no_input": "str", "on_failure": "node", "save_as": "str", "next": "node",
    },
    "record": {"prompt": "prompt", "voice": "str", "max_length": "number", "silence_timeout": "number", "finish_on_key": "str",
               "beep": "bool", "save_as": "str", "next": "node"},
    "webhook": {"url": "str", "method": "method", "body": "body", "branches": "node_map", "sets": "str_list", "timeout": "number",
                "on_error": "node", "next": "node"},
    "set": {"variables": "values", "next": "node"},
    "pause": {"seconds": "number", "next": "node"},
    "hangup": {},
    "goto": {"next": "node"},
}
#: Keys each node type must have.
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "say": ("text",), "play": ("url",), "webhook": ("url",), "set": ("variables",), "pause": ("seconds",), "goto": ("next",),
}
NODE_TYPES = tuple(NODE_KEYS)
TOP_LEVEL_KEYS = ("name", "description", "start", "variables", "nodes")


@dataclass(frozen=True)
class FlowIssue:
    """One problem of a flow: where (``path`` as a JSON path, and the file's line and column when the
    document came from a file; 1-based) and what to do about it."""

    path: str
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.file or '<flow>'}:{self.line}:{self.column}: {self.message}"
        return f"{self.path or '<flow>'}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "message": self.message, "file": self.file, "line": self.line, "column": self.column}


class FlowError(IvrsimError):
    """A flow that does not validate; ``errors`` holds every problem found."""

    code = "invalid_flow"

    def __init__(self, errors: list[FlowIssue]) -> None:
        self.errors = list(errors)
        count = len(self.errors)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in the flow: " + "; ".join(str(e) for e in self.errors))


@dataclass(frozen=True)
class Node:
    """One named node: its ``type`` and the keys the document gave it (validated)."""

    name: str
    type: str
    spec: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.spec.get(key, default)

    def edges(self) -> list[tuple[str, str]]:
        """(label, target) of every way on from this node, in the document's order."""
        out: list[tuple[str, str]] = []
        for key in ("branches", "phrases"):
            for label, target in (self.spec.get(key) or {}).items():
                out.append((str(label), target))
        for key, label in (("on_failure", "failure"), ("on_error", "error"), ("next", "")):
            if isinstance(self.spec.get(key), str):
                out.append((label, self.spec[key]))
        return out

    @property
    def can_end_flow(self) -> bool:
        """Whether the flow may end at this node: a hangup, a node with nowhere to go, a gather whose
        retries run out without ``on_failure``, a webhook (its app may name any node, or fail)."""
        if self.type in ("hangup", "webhook"):
            return True
        if self.type == "gather" and "on_failure" not in self.spec:
            return True
        return not self.edges()


@dataclass(frozen=True)
class Flow:
    """A validated flow: its nodes in the document's order, the first to run, and initial variables."""

    name: str
    start: str
    nodes: dict[str, Node]
    variables: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: dict[str, Any], default_name: str = "flow") -> Flow:
        """The flow of a document that ``validate.validate_flow`` found no problem in."""
        nodes = {name: Node(name, spec["type"], {k: v for k, v in spec.items() if k != "type"}) for name, spec in document["nodes"].items()}
        start = document.get("start") or next(iter(nodes))
        return cls(str(document.get("name") or default_name), start, nodes, dict(document.get("variables") or {}))

"""IVR flows as data: a YAML (or JSON) document of named nodes, validated with positions, drawn as a
graph, and run by the engine as a dialogue (``runtime.flow_dialogue``).

- ``document``: the flow as dataclasses, the error list (``FlowIssue``, ``FlowError``) and the node types.
- ``loader``: YAML text to a plain document with the line and column of every value.
- ``validate``: every problem of a document at once, each naming its place and the fix.
- ``graph``: the nodes and edges, as Mermaid text or JSON.
- ``runtime``: the dialogue that interprets a validated document over a ``Conversation``.
"""

from ivrsim.flows.document import Flow, FlowError, FlowIssue
from ivrsim.flows.loader import load_flow_file, load_flow_text
from ivrsim.flows.validate import check_flow, validate_flow

__all__ = ["Flow", "FlowError", "FlowIssue", "check_flow", "load_flow_file", "load_flow_text", "validate_flow"]

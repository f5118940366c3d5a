"""A flow's nodes and edges: as Mermaid ``flowchart TD`` text (``ivrsim flow graph``) or as JSON data."""

from __future__ import annotations

import re
from typing import Any

from ivrsim.flows.document import Flow, Node

#: Mermaid shapes per node type: gathers and webhooks decide (a rhombus), hangup ends (a circle).
_SHAPES = {"gather": ("{", "}"), "webhook": ("{{", "}}"), "hangup": ("((", "))"), "record": ("[(", ")]")}


def _label(node: Node) -> str:
    detail = node.get("text") or node.get("url") or ""
    if node.type in ("gather", "record") and node.get("prompt") is not None:
        prompt = node.get("prompt")
        detail = prompt if isinstance(prompt, str) else (prompt.get("say") or prompt.get("play") or "")
    text = f"{node.name} ({node.type})" + (f": {detail}" if detail else "")
    if len(text) > 60:
        text = text[:57] + "..."
    return text


def _quoted(text: str) -> str:
    """Mermaid label text in quotes: '#' (which starts an entity: "#1;" would be a character code), quotes
    and angle brackets as entities; '#' first, so that the entities added after it stay entities."""
    return '"' + text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") + '"'


def _ids(flow: Flow) -> dict[str, str]:
    """Mermaid-safe, unique ids for the node names (``end`` and friends are keywords)."""
    ids: dict[str, str] = {}
    for index, name in enumerate(flow.nodes):
        ids[name] = f"n{index}_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
    return ids


def graph_data(flow: Flow) -> dict[str, Any]:
    """``{"name", "start", "nodes": [{"name", "type", "label"}], "edges": [{"from", "to", "label"}]}``."""
    return {
        "name": flow.name,
        "start": flow.start,
        "nodes": [{"name": node.name, "type": node.type, "label": _label(node)} for node in flow.nodes.values()],
        "edges": [{"from": node.name, "to": target, "label": label} for node in flow.nodes.values() for label, target in node.edges()],
    }


def mermaid(flow: Flow) -> str:
    """The flow as Mermaid text: a start marker, each node shaped by its type, edges labelled by branch."""
    ids = _ids(flow)
    lines = ["flowchart TD", f"    start_((start)) --> {ids[flow.start]}"]
    for node in flow.nodes.values():
        left, right = _SHAPES.get(node.type, ("[", "]"))
        lines.append(f"    {ids[node.name]}{left}{_quoted(_label(node))}{right}")
    for node in flow.nodes.values():
        for label, target in node.edges():
            arrow = f"-- {_quoted(label)} -->" if label else "-->"
            lines.append(f"    {ids[node.name]} {arrow} {ids[target]}")
    return "\n".join(lines) + "\n"

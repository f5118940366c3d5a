"""YAML text to a flow document (plain data) with the line and column of every key and value.

PyYAML's ``compose()`` gives nodes whose ``start_mark`` says where they are; the document is built from
them here, so that validation can point at the line. Mapping keys are always strings (``1:`` and ``yes:``
are the keys "1" and "yes", as a branch's digits and a phrase are meant), and only true/false are booleans
(YAML 1.1's yes/no/on/off stay strings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ivrsim.flows.document import MAX_FLOW_BYTES, FlowError, FlowIssue

#: A path into the document: keys and list indexes.
Path_ = tuple[str | int, ...]


class _FlowYamlLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2's booleans: only true/false."""


_FlowYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_FlowYamlLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


@dataclass
class Positions:
    """Where each path of a document is in its file (1-based line and column); empty for JSON data."""

    file: str | None = None
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def issue(self, path: Path_, message: str, at_key: bool = False) -> FlowIssue:
        """An issue at ``path``: at its key (``at_key``: unknown keys) or its value, else the nearest parent's."""
        dotted = json_path(path)
        probe = path
        while True:
            where = (self.keys.get(probe) if at_key else None) or self.values.get(probe) or self.keys.get(probe)
            if where is not None or not probe:
                break
            probe = probe[:-1]
        if where is None:
            return FlowIssue(dotted, message, self.file)
        return FlowIssue(dotted, message, self.file, where[0], where[1])


def json_path(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(loader: _FlowYamlLoader, node: yaml.Node, path: Path_, positions: Positions, issues: list[FlowIssue]) -> Any:
    if len(positions.values) >= MAX_FLOW_VALUES:  # aliases can make a small file expand exponentially ("billion laughs")
        raise FlowError([FlowIssue(json_path(path), f"the flow expands to over {MAX_FLOW_VALUES:,} values (aliases repeating aliases?); "
                                   "write it out plainly", positions.file, *_mark(node))])
    positions.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # merge keys (<<)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(FlowIssue(json_path(path), "a key must be a plain word or number, not a list or mapping", positions.file, *_mark(key_node)))
                continue
            key = str(key_node.value)
            if key in out:
                issues.append(FlowIssue(json_path((*path, key)), f"{key!r} is given twice; keep one", positions.file, *_mark(key_node)))
            positions.keys[(*path, key)] = _mark(key_node)
            out[key] = _build(loader, value_node, (*path, key), positions, issues)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, index), positions, issues) for index, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


#: Most values (mappings, lists, scalars) a flow document may hold once its aliases are expanded.
MAX_FLOW_VALUES = 50_000
#: Why a document nested beyond what can be read is refused.
TOO_DEEP = "the document is nested too deeply (or an alias refers to itself); a flow is a mapping of nodes a few levels deep"


def _line_column(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of ``position`` (a character index) in ``text``."""
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def load_flow_text(text: str, file: str | None = None) -> tuple[Any, Positions]:
    """The document in ``text`` (YAML, or JSON, which is YAML) and its positions. FlowError (with the
    line and column) for text that is not YAML or too large."""
    positions = Positions(file=file)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FLOW_BYTES:
        raise FlowError([FlowIssue("", f"the flow is over {MAX_FLOW_BYTES // 1024} kB; split it into smaller flows", file, 1, 1)])
    try:
        loader = _FlowYamlLoader(text)  # reads the text at once: a character YAML does not allow fails here
    except yaml.reader.ReaderError as error:
        line, column = _line_column(text, error.position)
        raise FlowError([FlowIssue("", f"not valid YAML: character U+{error.character:04X} is not allowed in YAML; remove it", file,
                                   line, column)]) from None
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise FlowError([FlowIssue("", f"not valid YAML: {error.problem or error.context}; fix the syntax here", file, line, column)]) from error
    except yaml.YAMLError as error:
        raise FlowError([FlowIssue("", f"not valid YAML ({type(error).__name__}); fix the syntax", file, 1, 1)]) from error
    except RecursionError:
        raise FlowError([FlowIssue("", TOO_DEEP, file, 1, 1)]) from None
    finally:
        loader.dispose()
    if root is None:
        raise FlowError([FlowIssue("", "the file is empty; a flow has 'nodes:' (a mapping of named nodes)", file, 1, 1)])
    issues: list[FlowIssue] = []
    try:
        document = _build(loader, root, (), positions, issues)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise FlowError([FlowIssue("", f"a value cannot be read: {getattr(error, 'problem', None) or error}", file, line, column)]) from error
    except RecursionError:  # nesting thousands deep, or an alias that holds itself
        raise FlowError([FlowIssue("", TOO_DEEP, file, 1, 1)]) from None
    if issues:
        raise FlowError(issues)
    return document, positions


def load_flow_file(path: str | Path) -> tuple[Any, Positions]:
    """``load_flow_text`` of a file; OSError when it cannot be read, FlowError when it is not YAML."""
    file = Path(path)
    size = file.stat().st_size
    if size > MAX_FLOW_BYTES:
        raise FlowError([FlowIssue("", f"the flow is {size:,} bytes, over {MAX_FLOW_BYTES // 1024} kB; split it into smaller flows", str(path), 1, 1)])
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FlowError([FlowIssue("", f"not UTF-8 text (byte {error.start}); save the file as UTF-8", str(path), 1, 1)]) from error
    return load_flow_text(text, str(path))

"""The flows' small, safe template: ``{{ name }}`` and ``{{ name | spell }}``, nothing else (no evaluation).

``spell`` says a value character by character ("1234" -> "1 2 3 4"), as a PIN or an account number is read
out; a missing value renders as nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

FILTERS = ("spell",)
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_INSIDE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\s*([A-Za-z_]+)\s*)?$")


def placeholders(text: str) -> tuple[list[str], list[str]]:
    """The variable names ``text`` uses, and what is wrong with each placeholder that is not one."""
    names: list[str] = []
    problems: list[str] = []
    for match in _PLACEHOLDER.finditer(text):
        inside = _INSIDE.match(match.group(1))
        if inside is None:
            problems.append(f"{match.group(0)[:60]!r} is not a placeholder; write {{{{ name }}}} or {{{{ name | spell }}}}")
        elif inside.group(2) is not None and inside.group(2) not in FILTERS:
            problems.append(f"unknown filter {inside.group(2)!r} in {match.group(0)[:60]!r}; the filter is: {', '.join(FILTERS)}")
        else:
            names.append(inside.group(1))
    leftover = _PLACEHOLDER.sub("", text)
    if "{{" in leftover:
        problems.append("a '{{' is not closed with '}}'")
    return names, problems


def show(value: Any) -> str:
    """A variable's value as it is said: booleans as yes/no, whole floats without '.0'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def render(text: str, variables: Mapping[str, Any]) -> str:
    """``text`` with its placeholders filled (validated beforehand: a bad one is left as written)."""

    def fill(match: re.Match[str]) -> str:
        inside = _INSIDE.match(match.group(1))
        if inside is None:
            return match.group(0)
        value = show(variables.get(inside.group(1)))
        if inside.group(2) == "spell":
            return " ".join(ch for ch in value if not ch.isspace())
        return value

    return _PLACEHOLDER.sub(fill, text)


def render_data(data: Any, variables: Mapping[str, Any]) -> Any:
    """Every string inside ``data`` (a webhook's body) rendered; other values as they are."""
    if isinstance(data, str):
        return render(data, variables)
    if isinstance(data, list):
        return [render_data(item, variables) for item in data]
    if isinstance(data, dict):
        return {key: render_data(value, variables) for key, value in data.items()}
    return data

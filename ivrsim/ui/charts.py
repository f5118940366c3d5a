"""Small SVG charts drawn on the server (no chart library): bar charts with their numbers written on the
bars (readable without colour), a latency histogram's bins, and a flow's graph with a call's path."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

#: Latency bin edges in ms: fine where turn latency usually is, coarse in the tail.
LATENCY_EDGES_MS = (0, 250, 500, 750, 1000, 1500, 2000, 3000, 5000)
#: About how wide one character of a chart's 12 px label is, in px (for deciding when labels would collide).
LABEL_CHAR_PX = 7.0


@dataclass(frozen=True)
class Bin:
    label: str
    low_ms: int
    high_ms: int | None
    count: int


def histogram_bins(histogram_ms: dict[int, int], edges_ms: tuple[int, ...] = LATENCY_EDGES_MS) -> list[Bin]:
    """Counts per latency value (ms -> count) summed into ``edges_ms`` ranges, the last one open."""
    bins = []
    for i, low in enumerate(edges_ms):
        high = edges_ms[i + 1] if i + 1 < len(edges_ms) else None
        count = sum(c for ms, c in histogram_ms.items() if ms >= low and (high is None or ms < high))
        bins.append(Bin(f"{low}–{high}" if high is not None else f"≥{low}", low, high, count))
    return bins


def bar_chart(items: list[tuple[str, float]], title: str, x_title: str = "", y_title: str = "", width: int = 560, height: int = 220) -> Markup:
    """Vertical bars with each value written above its bar; ``title`` is the accessible name."""
    left, right, top, bottom = 40, 10, 16, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((v for _, v in items), default=0) or 1
    slot = plot_w / max(len(items), 1)
    # Labels wider than their slot (about 7 px a character at 12 px) alternate between two lines, so
    # neighbours never run together ("750–1000" beside "1000–1500").
    stagger = max((len(label) for label, _ in items), default=0) * LABEL_CHAR_PX > slot * 0.95
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>",
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="currentColor"/>']
    for i, (label, value) in enumerate(items):
        bar_h = plot_h * value / peak
        x = left + i * slot + slot * 0.15
        y = top + plot_h - bar_h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{bar_h:.1f}" fill="#4a6fa5" stroke="#1b1b1b"/>')
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{y - 3:.1f}" text-anchor="middle">{escape(shown)}</text>')
        label_y = top + plot_h + 14 + (13 if stagger and i % 2 else 0)
        parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{label_y}" text-anchor="middle">{escape(label)}</text>')
    if x_title:
        parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">{escape(x_title)}</text>')
    if y_title:
        parts.append(f'<text x="12" y="{top + plot_h / 2:.1f}" text-anchor="middle" transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(y_title)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _layers(data: dict[str, Any]) -> dict[str, int]:
    """Each node's depth from the start (breadth first); unreachable nodes go below the rest."""
    edges: dict[str, list[str]] = {}
    for edge in data["edges"]:
        edges.setdefault(edge["from"], []).append(edge["to"])
    depth = {data["start"]: 0}
    queue = deque([data["start"]])
    while queue:
        name = queue.popleft()
        for target in edges.get(name, []):
            if target not in depth:
                depth[target] = depth[name] + 1
                queue.append(target)
    deepest = max(depth.values(), default=0)
    for node in data["nodes"]:
        depth.setdefault(node["name"], deepest + 1)
    return depth


def flow_svg(data: dict[str, Any], path: list[str] | None = None) -> Markup:
    """The flow top-down, one row per depth; nodes a call visited have a thick border and a step number."""
    visited: dict[str, list[int]] = {}
    for step, name in enumerate(path or [], start=1):
        visited.setdefault(name, []).append(step)
    depth = _layers(data)
    rows: dict[int, list[str]] = {}
    for node in data["nodes"]:
        rows.setdefault(depth[node["name"]], []).append(node["name"])
    box_w, box_h, gap_x, gap_y = 190, 44, 24, 56
    width = max(len(r) for r in rows.values()) * (box_w + gap_x) + gap_x if rows else 200
    height = (max(rows) + 1) * (box_h + gap_y) + gap_y if rows else 100
    where: dict[str, tuple[float, float]] = {}
    for level, names in rows.items():
        row_w = len(names) * (box_w + gap_x) - gap_x
        for i, name in enumerate(names):
            where[name] = ((width - row_w) / 2 + i * (box_w + gap_x), gap_y / 2 + level * (box_h + gap_y))
    by_name = {node["name"]: node for node in data["nodes"]}
    parts = [f'<svg class="chart flow" role="img" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
             'xmlns="http://www.w3.org/2000/svg">',
             f"<title>Flow {escape(data['name'])}: {len(data['nodes'])} nodes" + (f", the call's path: {escape(' → '.join(path))}" if path else "") + "</title>",
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
             '<path d="M 0 0 L 10 5 L 0 10 z" fill="currentColor"/></marker></defs>']
    walked = set(zip(path or [], (path or [])[1:]))
    # Parallel edges (several choices leading to the same node) are drawn once, their labels joined.
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for edge in data["edges"]:
        key = (edge["from"], edge["to"])
        if key not in merged:
            merged[key] = {**edge, "labels": []}
        if edge.get("label"):
            merged[key]["labels"].append(str(edge["label"]))
    for edge in merged.values():
        edge["label"] = " | ".join(dict.fromkeys(edge["labels"]))
    for edge in merged.values():
        if edge["from"] not in where or edge["to"] not in where:
            continue
        (x1, y1), (x2, y2) = where[edge["from"]], where[edge["to"]]
        on_path = (edge["from"], edge["to"]) in walked
        dash = "" if on_path else ' stroke-dasharray="5 3"' if path else ""
        style = f'fill="none" stroke="currentColor" stroke-width="{3 if on_path else 1.2}"{dash} marker-end="url(#arrow)"'
        if y2 > y1:  # down to a deeper row: straight, bottom to top
            sx, sy, ex, ey = x1 + box_w / 2, y1 + box_h, x2 + box_w / 2, y2
            parts.append(f'<line x1="{sx:.1f}" y1="{sy:.1f}" x2="{ex:.1f}" y2="{ey:.1f}" {style}/>')
            lx, ly = (sx + ex) / 2 + 4, (sy + ey) / 2
        else:  # back up (a menu loop) or along a row: a curve over the tops, out of the boxes' way
            sx, sy, ex, ey = x1 + box_w * 0.7, y1, x2 + box_w * 0.7, y2 + (box_h if y2 < y1 else 0)
            cx, cy = (sx + ex) / 2 + box_w * 0.45, min(sy, ey) - gap_y * 0.45
            parts.append(f'<path d="M {sx:.1f} {sy:.1f} Q {cx:.1f} {cy:.1f} {ex:.1f} {ey:.1f}" {style}/>')
            lx, ly = cx - 6, (cy + min(sy, ey)) / 2
        if edge.get("label"):
            label = edge["label"] if len(edge["label"]) <= 32 else edge["label"][:31] + "…"
            parts.append(f'<text x="{lx:.1f}" y="{ly:.1f}">{escape(label)}</text>')
    for name, (x, y) in where.items():
        node = by_name[name]
        steps = visited.get(name)
        start = " (start)" if name == data["start"] else ""
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{box_w}" height="{box_h}" rx="6" fill="{"#e8f0fe" if steps else "#fff"}" '
                     f'stroke="#1b1b1b" stroke-width="{3.5 if steps else 1}"/>')
        parts.append(f'<text x="{x + 8:.1f}" y="{y + 18:.1f}" font-weight="700">{escape((name + start)[:26])}</text>')
        parts.append(f'<text x="{x + 8:.1f}" y="{y + 35:.1f}">{escape(node["type"])}' + (f" · step {', '.join(map(str, steps))}" if steps else "") + "</text>")
    parts.append("</svg>")
    return Markup("".join(parts))

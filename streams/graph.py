"""Graph helpers for a stream's nodes and edges: topological order, cycles, and an SVG drawing.

Pure functions over node ids and ``(source, target)`` pairs, shared by config validation, the
admin drawing and the stream engine (which runs nodes in topological order).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.utils.html import escape


def topological_order(node_ids: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """Kahn's algorithm, stable in the nodes' declared order; ``None`` when the graph has a cycle."""
    successors: dict[str, list[str]] = defaultdict(list)
    incoming = dict.fromkeys(node_ids, 0)
    for source, target in edges:
        successors[source].append(target)
        incoming[target] += 1
    ready = [node_id for node_id in node_ids if incoming[node_id] == 0]
    order: list[str] = []
    while ready:
        node_id = ready.pop(0)
        order.append(node_id)
        for target in successors[node_id]:
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    return order if len(order) == len(incoming) else None


def find_cycle(node_ids: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """One cycle as ``[a, b, …, a]`` (empty when there is none). Iterative, so deep graphs are fine."""
    successors: dict[str, list[str]] = defaultdict(list)
    for source, target in edges:
        successors[source].append(target)
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in node_ids:
        if start in state:
            continue
        path: list[str] = [start]
        iterators = [iter(successors[start])]
        state[start] = 1
        while iterators:
            following = next(iterators[-1], None)
            if following is None:
                state[path.pop()] = 2
                iterators.pop()
            elif state.get(following) == 1:
                return path[path.index(following) :] + [following]
            elif following not in state:
                state[following] = 1
                path.append(following)
                iterators.append(iter(successors[following]))
    return []


def layers(node_ids: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Depth of every node: 0 for sources, else one more than its deepest predecessor."""
    order = topological_order(node_ids, edges) or list(node_ids)
    predecessors: dict[str, list[str]] = defaultdict(list)
    for source, target in edges:
        predecessors[target].append(source)
    depth: dict[str, int] = {}
    for node_id in order:
        depth[node_id] = max((depth.get(p, 0) + 1 for p in predecessors[node_id] if p in depth), default=0)
    return depth


BOX_WIDTH, BOX_HEIGHT, GAP_X, GAP_Y, MARGIN = 180, 52, 70, 24, 16


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stream_graph_svg(nodes: Sequence[dict], edges: Sequence[dict]) -> str:
    """The stream as boxes (name and type) in columns by depth, with arrows along the edges."""
    node_ids = [str(node.get("id")) for node in nodes]
    pairs = [
        (str(edge.get("source")), str(edge.get("target")))
        for edge in edges
        if edge.get("source") in node_ids and edge.get("target") in node_ids
    ]
    depth = layers(node_ids, pairs)
    rows: dict[int, int] = defaultdict(int)
    position: dict[str, tuple[int, int]] = {}
    for node_id in node_ids:
        column = depth[node_id]
        position[node_id] = (
            MARGIN + column * (BOX_WIDTH + GAP_X),
            MARGIN + rows[column] * (BOX_HEIGHT + GAP_Y),
        )
        rows[column] += 1
    columns = max(depth.values(), default=0) + 1
    height_rows = max(rows.values(), default=1)
    width = 2 * MARGIN + columns * BOX_WIDTH + (columns - 1) * GAP_X
    height = 2 * MARGIN + height_rows * BOX_HEIGHT + (height_rows - 1) * GAP_Y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="stream-graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Stream graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    for source, target in pairs:
        (x1, y1), (x2, y2) = position[source], position[target]
        parts.append(
            f'<line class="edge" data-source="{escape(source)}" data-target="{escape(target)}" '
            f'x1="{x1 + BOX_WIDTH}" y1="{y1 + BOX_HEIGHT // 2}" x2="{x2}" y2="{y2 + BOX_HEIGHT // 2}" '
            'stroke="#555" stroke-width="1.5" marker-end="url(#arrow)"/>'
        )
    for node, node_id in zip(nodes, node_ids, strict=True):
        x, y = position[node_id]
        name = str(node.get("name") or node_id)
        node_type = str(node.get("type") or "")
        parts.append(
            f'<g class="node" data-node-id="{escape(node_id)}"><title>{escape(name)} ({escape(node_type)})</title>'
            f'<rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="6" fill="#f4f7fb" stroke="#417690"/>'
            f'<text x="{x + 10}" y="{y + 21}" font-family="sans-serif" font-size="13" font-weight="bold" '
            f'fill="#222">{escape(_short(name))}</text>'
            f'<text x="{x + 10}" y="{y + 40}" font-family="sans-serif" font-size="11" fill="#666">'
            f"{escape(_short(node_type))}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)

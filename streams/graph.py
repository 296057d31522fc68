"""Graph helpers for a stream's nodes and edges: topological order, cycles, and an SVG drawing.

Pure functions over node ids and ``(source, target)`` pairs, shared by config validation, the
admin drawing and the stream engine (which runs nodes in topological order).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

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


BOX_WIDTH, BOX_HEIGHT, GAP_X, GAP_Y, MARGIN = 148, 50, 40, 18, 12
# Node colours by health (``node_health``): fill and border; anything else is the neutral look.
HEALTH_COLOURS = {
    "ok": ("#e8f3e8", "#3a7d3a"),
    "warning": ("#fff4dc", "#b7791f"),
    "failing": ("#fbe4e4", "#b03a3a"),
    "idle": ("#f4f7fb", "#8a99a8"),
}
NEUTRAL = ("#f4f7fb", "#417690")


def _short(text: str, limit: int = 20) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _barycentre(
    node_id: str,
    predecessors: Mapping[str, list[str]],
    row_of: Mapping[str, float],
    declared: Mapping[str, int],
) -> tuple[float, int]:
    """Where a node sits best in its column: the mean row of its placed predecessors (else its
    declared position), ties in declared order."""
    placed = [row_of[source] for source in predecessors[node_id] if source in row_of]
    return (sum(placed) / len(placed) if placed else declared[node_id], declared[node_id])


def layered_positions(
    node_ids: Sequence[str], pairs: Sequence[tuple[str, str]]
) -> dict[str, tuple[int, int]]:
    """(column, row) of every node: columns by depth, rows ordered by their predecessors' rows
    (barycentres, so edges cross less), each column centred on the tallest one."""
    depth = layers(node_ids, pairs)
    predecessors: dict[str, list[str]] = defaultdict(list)
    for source, target in pairs:
        predecessors[target].append(source)
    columns: dict[int, list[str]] = defaultdict(list)
    for node_id in node_ids:
        columns[depth[node_id]].append(node_id)
    row_of: dict[str, float] = {}
    for column in sorted(columns):
        members = columns[column]
        declared = {node_id: index for index, node_id in enumerate(members)}

        members.sort(
            key=lambda node_id, declared=declared: _barycentre(node_id, predecessors, row_of, declared)
        )
        for index, node_id in enumerate(members):
            row_of[node_id] = index
    tallest = max((len(members) for members in columns.values()), default=1)
    return {
        node_id: (column, index * 2 + (tallest - len(members)))  # half rows: centred columns
        for column, members in columns.items()
        for index, node_id in enumerate(members)
    }


def stream_graph_svg(
    nodes: Sequence[dict], edges: Sequence[dict], *, node_health: Mapping[str, str] | None = None
) -> str:
    """The stream as boxes (name and type) in layers by depth, left to right, with curved arrows.

    The drawing carries its natural size in ``viewBox`` and ``data-width``; the page scales it to
    fit its panel (or shows it at full size, scrolling). ``node_health`` maps node ids to
    ``ok``/``warning``/``failing``/``idle``: the node's colours and a ``data-health`` attribute.
    """
    node_health = node_health or {}
    node_ids = [str(node.get("id")) for node in nodes]
    pairs = [
        (str(edge.get("source")), str(edge.get("target")))
        for edge in edges
        if edge.get("source") in node_ids and edge.get("target") in node_ids
    ]
    grid = layered_positions(node_ids, pairs)
    position = {
        node_id: (MARGIN + column * (BOX_WIDTH + GAP_X), MARGIN + half_rows * (BOX_HEIGHT + GAP_Y) // 2)
        for node_id, (column, half_rows) in grid.items()
    }
    columns = max((column for column, _ in grid.values()), default=0) + 1
    rows = max((half_rows // 2 + half_rows % 2 for _, half_rows in grid.values()), default=0) + 1
    width = 2 * MARGIN + columns * BOX_WIDTH + (columns - 1) * GAP_X
    height = 2 * MARGIN + rows * BOX_HEIGHT + (rows - 1) * GAP_Y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="stream-graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" data-width="{width}" role="img" aria-label="Stream graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    for source, target in pairs:
        (x1, y1), (x2, y2) = position[source], position[target]
        start_x, start_y, end_x, end_y = x1 + BOX_WIDTH, y1 + BOX_HEIGHT // 2, x2, y2 + BOX_HEIGHT // 2
        bend = max(GAP_X // 2, (end_x - start_x) // 2)
        parts.append(
            f'<path class="edge" data-source="{escape(source)}" data-target="{escape(target)}" '
            f'd="M {start_x} {start_y} C {start_x + bend} {start_y}, {end_x - bend} {end_y}, {end_x} {end_y}" '
            'fill="none" stroke="#555" stroke-width="1.5" marker-end="url(#arrow)"/>'
        )
    for node, node_id in zip(nodes, node_ids, strict=True):
        x, y = position[node_id]
        name = str(node.get("name") or node_id)
        node_type = str(node.get("type") or "")
        health = node_health.get(node_id, "")
        fill, stroke = HEALTH_COLOURS.get(health, NEUTRAL)
        health_attribute = f' data-health="{escape(health)}"' if health else ""
        parts.append(
            f'<g class="node{" node-" + escape(health) if health else ""}" data-node-id="{escape(node_id)}"'
            f"{health_attribute}><title>{escape(name)} ({escape(node_type)}){' · ' + escape(health) if health else ''}"
            f'</title><rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="6" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"/>'
            f'<text x="{x + 9}" y="{y + 20}" font-family="sans-serif" font-size="12" font-weight="bold" '
            f'fill="#222">{escape(_short(name))}</text>'
            f'<text x="{x + 9}" y="{y + 38}" font-family="sans-serif" font-size="11" fill="#555">'
            f"{escape(_short(node_type, 22))}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)

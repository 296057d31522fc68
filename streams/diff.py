"""What changed between two configurations of a stream (two tagged versions, or a version and the
latest configuration): nodes added, removed or changed field by field, edges added and removed,
the stream's own settings, and a unified diff of the pretty-printed configurations.

Pure functions over ``StreamSnapshot.export()`` dictionaries; the admin's version comparison draws
the result.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

# The stream's own settings compared one by one (nodes and edges are compared by id below). The
# tag is left out: it names the versions being compared, it is not a change between them.
SETTINGS = ("name", "description", "processingType", "schemaVersion", "annotation", "nodeGroups")
MISSING = object()
CONTEXT_LINES = 3


@dataclass(frozen=True)
class FieldChange:
    """One leaf that differs: ``path`` in dot notation (``config.conditions[0].value``), each side
    as JSON text, or ``None`` where that side does not have it."""

    path: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class NodeChange:
    node_id: str
    name: str
    type: str
    status: str  # "added", "removed" or "changed"
    changes: list[FieldChange] = field(default_factory=list)


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "header", "hunk", "added", "removed" or "context"
    text: str


@dataclass(frozen=True)
class StreamDiff:
    before_label: str
    after_label: str
    settings: list[FieldChange]
    nodes: list[NodeChange]
    edges_added: list[tuple[str, str]]
    edges_removed: list[tuple[str, str]]
    lines: list[DiffLine]

    @property
    def is_empty(self) -> bool:
        return not (self.settings or self.nodes or self.edges_added or self.edges_removed)

    def counts(self) -> dict[str, int]:
        return {
            status: sum(node.status == status for node in self.nodes)
            for status in ("added", "removed", "changed")
        }


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a JSON value by its path; an empty object or list is a leaf of its own."""
    if isinstance(value, dict) and value:
        leaves: dict[str, Any] = {}
        for key in value:
            leaves.update(_leaves(value[key], f"{path}.{key}" if path else str(key)))
        return leaves
    if isinstance(value, list) and value:
        leaves = {}
        for index, item in enumerate(value):
            leaves.update(_leaves(item, f"{path}[{index}]"))
        return leaves
    return {path: value}


def field_changes(before: Any, after: Any, *, path: str = "") -> list[FieldChange]:
    """The leaves that differ between two JSON values, in the order they appear (before's first)."""
    old, new = _leaves(before, path), _leaves(after, path)
    changes = []
    for leaf in [*old, *(leaf for leaf in new if leaf not in old)]:
        left, right = old.get(leaf, MISSING), new.get(leaf, MISSING)
        if left is MISSING or right is MISSING or _json(left) != _json(right):
            changes.append(
                FieldChange(
                    path=leaf,
                    before=None if left is MISSING else _json(left),
                    after=None if right is MISSING else _json(right),
                )
            )
    return changes


def _nodes_by_id(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(node.get("id")): node for node in config.get("nodes") or [] if isinstance(node, dict)}


def _edges(config: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (str(edge.get("source")), str(edge.get("target")))
        for edge in config.get("edges") or []
        if isinstance(edge, dict)
    ]


def _node_change(node: dict[str, Any], status: str, changes: list[FieldChange] | None = None) -> NodeChange:
    return NodeChange(
        node_id=str(node.get("id")),
        name=str(node.get("name") or node.get("id")),
        type=str(node.get("type") or ""),
        status=status,
        changes=changes or [],
    )


def _compared(config: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if key != "tag"}


def stream_config_diff(
    before: dict[str, Any], after: dict[str, Any], *, before_label: str, after_label: str
) -> StreamDiff:
    """Compare two exported configurations: ``before`` is the older side."""
    settings = [
        change for name in SETTINGS for change in field_changes(before.get(name), after.get(name), path=name)
    ]
    old_nodes, new_nodes = _nodes_by_id(before), _nodes_by_id(after)
    nodes = []
    # Nodes in the newer configuration's order, removed ones after them in the older order.
    for node_id, node in new_nodes.items():
        if node_id not in old_nodes:
            nodes.append(_node_change(node, "added"))
            continue
        changes = field_changes(
            {k: v for k, v in old_nodes[node_id].items() if k != "id"},
            {k: v for k, v in node.items() if k != "id"},
        )
        if changes:
            nodes.append(_node_change(node, "changed", changes))
    nodes.extend(
        _node_change(node, "removed") for node_id, node in old_nodes.items() if node_id not in new_nodes
    )
    old_edges, new_edges = _edges(before), _edges(after)
    lines = []
    for line in difflib.unified_diff(
        json.dumps(_compared(before), indent=2, sort_keys=True, ensure_ascii=False).splitlines(),
        json.dumps(_compared(after), indent=2, sort_keys=True, ensure_ascii=False).splitlines(),
        fromfile=before_label,
        tofile=after_label,
        lineterm="",
        n=CONTEXT_LINES,
    ):
        if line.startswith(("---", "+++")):
            kind = "header"
        elif line.startswith("@@"):
            kind = "hunk"
        else:
            kind = {"+": "added", "-": "removed"}.get(line[:1], "context")
        lines.append(DiffLine(kind=kind, text=line))
    return StreamDiff(
        before_label=before_label,
        after_label=after_label,
        settings=settings,
        nodes=nodes,
        edges_added=[edge for edge in new_edges if edge not in old_edges],
        edges_removed=[edge for edge in old_edges if edge not in new_edges],
        lines=lines,
    )

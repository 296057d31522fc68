"""A stream configuration (the ``streamConfig`` of an import, what an export gives back), validated.

``stream_config_parse(raw)`` checks everything a stream must satisfy before it is stored and
raises ``InvalidStreamConfig`` (400 VALIDATION_ERROR) with one detail per problem, each pointing
at the offending place (``"nodes[2].config.meterKey"``, ``"edges[0].target"``):

- the top-level keys and their types (unknown keys are refused, never stored);
- unique node ids, known node types, every node's config valid for its type (``streams.nodes``);
- edges between existing nodes, no duplicates, no cycles; input nodes have no incoming edges and
  output nodes no outgoing ones;
- node groups naming existing nodes; meter keys unique within the stream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from streams.exceptions import InvalidStreamConfig
from streams.graph import find_cycle
from streams.nodes import NODE_TYPES, Config, MeterConfig, NodeConfigInvalid, NodeRole, node_config_parse

SUPPORTED_SCHEMA_VERSIONS = (1,)
PROCESSING_TYPES = ("batch", "realtime")
NAME_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 1024
TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
NODE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
MAX_NODES = 500
MAX_EDGES = 2000

CONFIG_KEYS = {
    "name",
    "description",
    "processingType",
    "schemaVersion",
    "nodes",
    "edges",
    "nodeGroups",
    "annotation",
    "tag",
}
NODE_KEYS = {"id", "name", "type", "config", "description", "position"}
EDGE_KEYS = {"source", "target"}
GROUP_KEYS = {"id", "name", "nodeIds"}


@dataclass
class StreamConfig:
    """A validated configuration. ``nodes``/``edges``/… are stored as given (plus meter keys)."""

    name: str
    description: str
    processing_type: str
    schema_version: int
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    node_groups: list[dict[str, Any]]
    annotation: dict[str, Any]
    tag: str | None
    node_configs: dict[str, Config] = field(default_factory=dict)

    def meter_node_ids(self) -> list[str]:
        return [node["id"] for node in self.nodes if node["type"] == "meter"]

    def with_meter_keys(self, keys: dict[str, str]) -> StreamConfig:
        """A copy where meter node ``id`` gets ``config.meterKey = keys[id]``."""
        nodes = []
        for node in self.nodes:
            if node["id"] in keys:
                node = {**node, "config": {**node.get("config", {}), "meterKey": keys[node["id"]]}}
            nodes.append(node)
        return stream_config_parse({**self.as_dict(), "nodes": nodes})

    def resource_refs(self) -> set[tuple[str, str]]:
        refs: set[tuple[str, str]] = set()
        for config in self.node_configs.values():
            refs.update(config.resource_refs())
        return refs

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "processingType": self.processing_type,
            "schemaVersion": self.schema_version,
            "nodes": self.nodes,
            "edges": self.edges,
            "nodeGroups": self.node_groups,
            "annotation": self.annotation,
            "tag": self.tag,
        }


TAG_MESSAGE = "A tag is 1 to 100 letters, digits, '.', '_', '+' or '-', starting with a letter or digit."


def _tag_valid(tag: Any) -> bool:
    return isinstance(tag, str) and bool(TAG_PATTERN.fullmatch(tag))


def tag_validate(tag: Any, field_name: str = "tag") -> str:
    if not _tag_valid(tag):
        raise InvalidStreamConfig(details=[{"field": field_name, "message": TAG_MESSAGE}])
    return tag


class _Problems(list):
    def add(self, field_name: str, message: str) -> None:
        self.append({"field": field_name, "message": message})


def _string(
    problems: _Problems, raw: dict, key: str, *, required: bool, max_length: int, default: str = ""
) -> str:
    value = raw.get(key, None)
    if value is None:
        if required:
            problems.add(key, "This field is required.")
        return default
    if not isinstance(value, str):
        problems.add(key, "Must be a string.")
        return default
    if required and not value.strip():
        problems.add(key, "Must not be blank.")
    if len(value) > max_length:
        problems.add(key, f"Must be at most {max_length} characters.")
    return value


def _list_of_objects(problems: _Problems, raw: dict, key: str, *, required: bool, maximum: int) -> list[dict]:
    value = raw.get(key)
    if value is None:
        if required:
            problems.add(key, "This field is required.")
        return []
    if not isinstance(value, list):
        problems.add(key, "Must be a list.")
        return []
    if len(value) > maximum:
        problems.add(key, f"At most {maximum} items.")
        return []
    objects = []
    for index, item in enumerate(value):
        if isinstance(item, dict):
            objects.append(item)
        else:
            problems.add(f"{key}[{index}]", "Must be an object.")
    return objects if len(objects) == len(value) else []


def _unknown_keys(problems: _Problems, prefix: str, item: dict, allowed: set[str]) -> None:
    for key in sorted(set(item) - allowed):
        problems.add(f"{prefix}.{key}" if prefix else key, "Unknown field.")


def stream_config_parse(raw: Any) -> StreamConfig:
    """Validate a stream configuration; raise ``InvalidStreamConfig`` listing every problem."""
    problems = _Problems()
    if not isinstance(raw, dict):
        raise InvalidStreamConfig(
            details=[{"field": "", "message": "The stream configuration must be an object."}]
        )
    _unknown_keys(problems, "", raw, CONFIG_KEYS)

    name = _string(problems, raw, "name", required=True, max_length=NAME_MAX_LENGTH)
    description = _string(problems, raw, "description", required=False, max_length=DESCRIPTION_MAX_LENGTH)
    processing_type = raw.get("processingType", "batch")
    if not isinstance(processing_type, str) or processing_type not in PROCESSING_TYPES:
        problems.add("processingType", "Must be batch or realtime.")
    schema_version = raw.get("schemaVersion", 1)
    if type(schema_version) is not int or schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        problems.add(
            "schemaVersion", f"Supported schema versions: {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}."
        )
    tag = raw.get("tag")
    if tag is not None and not _tag_valid(tag):
        problems.add("tag", TAG_MESSAGE)
    annotation = raw.get("annotation", {})
    if annotation is None:
        annotation = {}
    if not isinstance(annotation, dict):
        problems.add("annotation", "Must be an object.")

    nodes = _list_of_objects(problems, raw, "nodes", required=True, maximum=MAX_NODES)
    edges = _list_of_objects(problems, raw, "edges", required=False, maximum=MAX_EDGES)
    node_groups = _list_of_objects(problems, raw, "nodeGroups", required=False, maximum=MAX_NODES)

    node_configs, roles = _check_nodes(problems, nodes)
    _check_edges(problems, nodes, edges, roles)
    _check_groups(problems, node_groups, set(roles))

    if problems:
        raise InvalidStreamConfig(details=list(problems))
    return StreamConfig(
        name=name,
        description=description,
        processing_type=processing_type,
        schema_version=schema_version,
        nodes=nodes,
        edges=edges,
        node_groups=node_groups,
        annotation=annotation,
        tag=tag,
        node_configs=node_configs,
    )


def _check_nodes(problems: _Problems, nodes: list[dict]) -> tuple[dict[str, Config], dict[str, NodeRole]]:
    configs: dict[str, Config] = {}
    roles: dict[str, NodeRole] = {}
    meter_keys: dict[str, int] = {}
    for index, node in enumerate(nodes):
        prefix = f"nodes[{index}]"
        _unknown_keys(problems, prefix, node, NODE_KEYS)
        node_id = node.get("id")
        if not isinstance(node_id, str) or not NODE_ID_PATTERN.fullmatch(node_id):
            problems.add(f"{prefix}.id", "A node id is 1 to 100 letters, digits, '_', '.', ':' or '-'.")
            node_id = None
        elif node_id in roles:
            problems.add(f"{prefix}.id", f"Duplicate node id '{node_id}'.")
            node_id = None
        name = node.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            problems.add(f"{prefix}.name", "A node name is 1 to 100 characters.")
        if "description" in node and not isinstance(node["description"], str):
            problems.add(f"{prefix}.description", "Must be a string.")
        position = node.get("position")
        if position is not None and not (
            isinstance(position, dict)
            and set(position) <= {"x", "y"}
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in position.values())
        ):
            problems.add(f"{prefix}.position", "Must be an object {x, y} of numbers.")
        node_type = node.get("type")
        registered = NODE_TYPES.get(node_type) if isinstance(node_type, str) else None
        if registered is None:
            problems.add(f"{prefix}.type", f"Unknown node type; one of: {', '.join(NODE_TYPES)}.")
            continue
        if node_id is not None:
            roles[node_id] = registered.role
        try:
            config = node_config_parse(node_type, node.get("config", {}))
        except NodeConfigInvalid as exc:
            for path, message in exc.problems:
                problems.add(f"{prefix}.config.{path}" if path else f"{prefix}.config", message)
            continue
        if node_id is not None:
            configs[node_id] = config
        if isinstance(config, MeterConfig) and config.meter_key:
            if config.meter_key in meter_keys:
                problems.add(
                    f"{prefix}.config.meterKey",
                    f"Meter key '{config.meter_key}' is used by nodes[{meter_keys[config.meter_key]}] too.",
                )
            meter_keys.setdefault(config.meter_key, index)
    return configs, roles


def _check_edges(
    problems: _Problems, nodes: list[dict], edges: list[dict], roles: dict[str, NodeRole]
) -> None:
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for index, edge in enumerate(edges):
        prefix = f"edges[{index}]"
        _unknown_keys(problems, prefix, edge, EDGE_KEYS)
        source, target = edge.get("source"), edge.get("target")
        valid = True
        for key, value in (("source", source), ("target", target)):
            if not isinstance(value, str) or value not in roles:
                problems.add(f"{prefix}.{key}", f"No node with id '{value}'.")
                valid = False
        if not valid:
            continue
        if (source, target) in seen:
            problems.add(prefix, f"Duplicate edge {source} -> {target}.")
            continue
        seen.add((source, target))
        if roles[target] is NodeRole.INPUT:
            problems.add(f"{prefix}.target", f"Node '{target}' is an input node and takes no incoming edges.")
        if roles[source] is NodeRole.OUTPUT:
            problems.add(f"{prefix}.source", f"Node '{source}' is an output node and has no outgoing edges.")
        pairs.append((source, target))
    cycle = find_cycle(list(roles), pairs)
    if cycle:
        problems.add("edges", f"The edges form a cycle: {' -> '.join(cycle)}.")


def _check_groups(problems: _Problems, groups: list[dict], node_ids: set[str]) -> None:
    group_ids: set[str] = set()
    for index, group in enumerate(groups):
        prefix = f"nodeGroups[{index}]"
        _unknown_keys(problems, prefix, group, GROUP_KEYS)
        group_id = group.get("id")
        if not isinstance(group_id, str) or not NODE_ID_PATTERN.fullmatch(group_id):
            problems.add(f"{prefix}.id", "A group id is 1 to 100 letters, digits, '_', '.', ':' or '-'.")
        elif group_id in group_ids:
            problems.add(f"{prefix}.id", f"Duplicate group id '{group_id}'.")
        else:
            group_ids.add(group_id)
        if "name" in group and (not isinstance(group["name"], str) or len(group["name"]) > 100):
            problems.add(f"{prefix}.name", "A group name is a string of at most 100 characters.")
        members = group.get("nodeIds", [])
        if not isinstance(members, list):
            problems.add(f"{prefix}.nodeIds", "Must be a list of node ids.")
            continue
        for member_index, member in enumerate(members):
            if not isinstance(member, str) or member not in node_ids:
                problems.add(f"{prefix}.nodeIds[{member_index}]", f"No node with id '{member}'.")

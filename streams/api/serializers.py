"""Shapes of the stream-management endpoints (seed 000 "Stream management")."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.errors import ValidationFailed
from config.api.serializers import StrictSerializerMixin, TimestampField
from streams.config import (
    DESCRIPTION_MAX_LENGTH,
    MAX_EDGES,
    MAX_NODES,
    NAME_MAX_LENGTH,
    NODE_ID_PATTERN,
    PROCESSING_TYPES,
    SUPPORTED_SCHEMA_VERSIONS,
    TAG_PATTERN,
)
from streams.engine.selectors import HealthState
from streams.models import OutputDelivery
from streams.nodes import NODE_TYPES

# --- Documentation shapes of the JSON parts (nodes, edges, groups) --------------------------------


# Raw JSON Schema, so the schema says exactly what ``streams.config.stream_config_parse`` checks (a
# node's ``config`` depends on its type and is checked by ``streams.nodes``: see docs/streams.md).
_ID_SCHEMA = {"type": "string", "pattern": NODE_ID_PATTERN.pattern}
NODE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "name", "type"],
    "properties": {
        "id": {**_ID_SCHEMA, "description": "Unique in the stream; edges refer to it."},
        "name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"\S"},
        "type": {"type": "string", "enum": list(NODE_TYPES)},
        "config": {
            "type": "object",
            "additionalProperties": True,
            "description": "The node type's settings (see docs/streams.md); checked for the type.",
        },
        "description": {"type": "string"},
        "position": {
            "type": "object",
            "nullable": True,
            "additionalProperties": False,
            "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
            "description": "{x, y} for drawing.",
        },
    },
}
EDGE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["source", "target"],
    "properties": {
        "source": {"type": "string", "description": "Node id records come from."},
        "target": {"type": "string", "description": "Node id records go to."},
    },
}
NODE_GROUP_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id"],
    "properties": {
        "id": _ID_SCHEMA,
        "name": {"type": "string", "maxLength": 100},
        "nodeIds": {"type": "array", "items": {"type": "string"}},
    },
}


NODES_SCHEMA = {"type": "array", "items": NODE_SCHEMA, "maxItems": MAX_NODES}
EDGES_SCHEMA = {"type": "array", "items": EDGE_SCHEMA, "maxItems": MAX_EDGES, "nullable": True}
NODE_GROUPS_SCHEMA = {"type": "array", "items": NODE_GROUP_SCHEMA, "maxItems": MAX_NODES, "nullable": True}


@extend_schema_field(NODES_SCHEMA)
class NodesField(serializers.JSONField):
    """A JSONField whose OpenAPI shape is declared by the decorator above."""


@extend_schema_field(EDGES_SCHEMA)
class EdgesField(serializers.JSONField):
    """A JSONField whose OpenAPI shape is declared by the decorator above."""


@extend_schema_field(NODE_GROUPS_SCHEMA)
class NodeGroupsField(serializers.JSONField):
    """A JSONField whose OpenAPI shape is declared by the decorator above."""


@extend_schema_field({"type": "object", "additionalProperties": True, "nullable": True})
class ObjectField(serializers.JSONField):
    """A JSONField whose OpenAPI shape is declared by the decorator above."""


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": NAME_MAX_LENGTH, "pattern": r"\S"})
class StreamNameField(serializers.CharField):
    """A CharField whose OpenAPI shape is declared by the decorator above."""


@extend_schema_field({"type": "string", "pattern": TAG_PATTERN.pattern, "nullable": True})
class TagField(serializers.CharField):
    """A CharField whose OpenAPI shape is declared by the decorator above."""


# Who made or changed a stream (``streams.services``); named in OpenAPI (ENUM_NAME_OVERRIDES).
ACTOR_TYPES = ["client", "apiKey", "user"]


class ActorSerializer(serializers.Serializer):
    type = serializers.ChoiceField(
        choices=ACTOR_TYPES,
        help_text="An OAuth client (Application Access), an API key or an admin user.",
    )
    id = serializers.CharField(help_text="The client id, API key id or admin username.")


# --- Stream ---------------------------------------------------------------------------------------


class StreamConfigSerializer(serializers.Serializer):
    """What an export answers and an import takes as ``streamConfig``."""

    refuses_unknown_fields = True  # stream_config_parse refuses unknown keys (the schema says so)

    annotation = ObjectField(required=False, help_text="Free-form metadata (notes, layout).")
    description = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=DESCRIPTION_MAX_LENGTH
    )
    edges = EdgesField(required=False)
    name = StreamNameField(max_length=NAME_MAX_LENGTH)
    nodeGroups = NodeGroupsField(required=False)
    nodes = NodesField()
    processingType = serializers.ChoiceField(choices=list(PROCESSING_TYPES), required=False, default="batch")
    schemaVersion = serializers.ChoiceField(
        choices=list(SUPPORTED_SCHEMA_VERSIONS), required=False, default=1
    )
    tag = TagField(
        required=False, allow_null=True, help_text="When set, the import also saves a version with this tag."
    )


class StreamSerializer(serializers.Serializer):
    """A stream (or one of its tagged versions) as GET answers it; reads a ``StreamSnapshot``."""

    annotation = ObjectField()
    cas = serializers.IntegerField(help_text="Incremented on every save.")
    createdAt = TimestampField(source="created_at")
    createdBy = ActorSerializer(source="created_by")
    description = serializers.CharField()
    edges = EdgesField()
    id = serializers.UUIDField()
    name = serializers.CharField()
    nodeGroups = NodeGroupsField(source="node_groups")
    nodes = NodesField()
    processingType = serializers.CharField(source="processing_type")
    schemaVersion = serializers.IntegerField(source="schema_version")
    solutionId = serializers.UUIDField(source="solution_id")
    tag = serializers.CharField(allow_null=True)
    updatedAt = TimestampField(source="updated_at")
    updatedBy = ActorSerializer(source="updated_by")


STREAM_FIELDS = tuple(StreamSerializer().fields)


def _without_required(schema):
    """A JSON Schema where no property is required, at any depth (what a ``fields`` projection answers)."""
    if isinstance(schema, dict):
        return {key: _without_required(value) for key, value in schema.items() if key != "required"}
    if isinstance(schema, list):
        return [_without_required(item) for item in schema]
    return schema


@extend_schema_field(_without_required(NODES_SCHEMA))
class NodesProjectionField(NodesField):
    """NodesField with the OpenAPI shape declared by the decorator above."""


@extend_schema_field(_without_required(EDGES_SCHEMA))
class EdgesProjectionField(EdgesField):
    """EdgesField with the OpenAPI shape declared by the decorator above."""


@extend_schema_field(_without_required(NODE_GROUPS_SCHEMA))
class NodeGroupsProjectionField(NodeGroupsField):
    """NodeGroupsField with the OpenAPI shape declared by the decorator above."""


class ActorProjectionSerializer(ActorSerializer):
    def get_fields(self):
        fields = super().get_fields()
        for field_ in fields.values():
            field_.required = False
        return fields


class StreamProjectionSerializer(StreamSerializer):
    """A stream as GET answers it: every field, or with ``fields`` only those asked for (and, in
    nested objects, only the nested fields asked for), so the schema requires none of them."""

    createdBy = ActorProjectionSerializer(source="created_by")
    edges = EdgesProjectionField()
    nodeGroups = NodeGroupsProjectionField(source="node_groups")
    nodes = NodesProjectionField()
    updatedBy = ActorProjectionSerializer(source="updated_by")

    def get_fields(self):
        fields = super().get_fields()
        for field_ in fields.values():
            field_.required = False
        return fields


class StreamListSerializer(serializers.Serializer):
    nextCursor = serializers.CharField(required=False, help_text="Absent on the last page.")
    streams = StreamProjectionSerializer(many=True)


class StreamVersionListSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Versions matching the filters, before skip/limit.")
    versions = StreamSerializer(many=True)


class StreamImportSerializer(StrictSerializerMixin, serializers.Serializer):
    """POST /streams/import. ``streamConfig`` is validated by ``streams.config`` in the service."""

    allowNodeDeletion = serializers.BooleanField(required=False, default=False)
    onNameConflict = serializers.ChoiceField(choices=["overwrite", "create-new", "skip"], required=False)
    solutionId = serializers.CharField(max_length=36)
    streamConfig = serializers.JSONField()

    def validate_streamConfig(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object.")
        return value

    @classmethod
    def documented(cls) -> type[serializers.Serializer]:
        class StreamImport(cls):
            """Imports a stream configuration into a solution (onNameConflict: without it a clash is 409)."""

            solutionId = serializers.UUIDField()
            streamConfig = StreamConfigSerializer()

        return StreamImport


class StreamImportResponseSerializer(serializers.Serializer):
    importAction = serializers.ChoiceField(choices=["created", "overwritten", "skipped"])
    stream = StreamSerializer()
    tag = serializers.CharField(allow_null=True)


# --- fields=name,nodes.name ------------------------------------------------------------------------


WHOLE = None  # in a fields tree: the field is asked for whole

# A nested field name (a node config key, an annotation key…): letters, digits, "_" and "-".
FIELD_NAME = r"[A-Za-z0-9_-]+"
_FIELD_PATH = rf"(?:{'|'.join(STREAM_FIELDS)})(?:\.{FIELD_NAME})*"
# The whole ``fields`` parameter, for the schema; ``fields_parse`` checks the same, item by item.
FIELDS_PATTERN = rf"^(?:{_FIELD_PATH}(?:,{_FIELD_PATH})*)?$"
_FIELD_NAME_RE = re.compile(FIELD_NAME)


def fields_parse(raw: str | None) -> dict | None:
    """``"name,nodes.name"`` → ``{"name": WHOLE, "nodes": {"name": WHOLE}}``; ``None`` or ``""``: every field.

    A field asked for whole (``nodes``) wins over its parts (``nodes.name``). Items are separated
    by commas without spaces, as ``FIELDS_PATTERN`` says.
    """
    if raw is None or raw == "":
        return None
    tree: dict = {}
    for item in raw.split(","):
        path = item.split(".")
        if any(not _FIELD_NAME_RE.fullmatch(part) for part in path):
            raise ValidationFailed.for_field(
                "fields",
                f"'{item}' is not a field path: names of letters, digits, _ or - joined by dots, "
                "items separated by commas without spaces.",
            )
        if path[0] not in STREAM_FIELDS:
            raise ValidationFailed.for_field(
                "fields", f"Unknown field '{path[0]}'; one of: {', '.join(STREAM_FIELDS)}."
            )
        node = tree
        for part in path[:-1]:
            if part in node and node[part] is WHOLE:
                break
            node = node.setdefault(part, {})
        else:
            node[path[-1]] = WHOLE
    return tree


def project(value: Any, tree: dict | None) -> Any:
    """Keep only the fields of ``tree`` in ``value``; lists are projected item by item."""
    if tree is WHOLE:
        return value
    if isinstance(value, list):
        return [project(item, tree) for item in value]
    if isinstance(value, dict):
        return {key: project(value[key], sub) for key, sub in tree.items() if key in value}
    return value


# --- Preview and the session lookup (the stream engine) ----------------------------------------------


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "object", "additionalProperties": True},
        "minItems": 1,
        "maxItems": 1000,
    }
)
class RecordsField(serializers.JSONField):
    """A JSONField whose OpenAPI shape is declared by the decorator above."""


class StreamPreviewSerializer(StrictSerializerMixin, serializers.Serializer):
    """Sample records to run through the stream (fed to its input nodes); nothing is persisted."""

    records = RecordsField(help_text="1 to 1000 records (JSON objects).")
    tag = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Preview this tagged version instead of the latest configuration.",
    )

    def validate_records(self, value: Any) -> list:
        from streams.engine.services import PREVIEW_MAX_RECORDS

        if not isinstance(value, list) or not 1 <= len(value) <= PREVIEW_MAX_RECORDS:
            raise serializers.ValidationError(f"Give a list of 1 to {PREVIEW_MAX_RECORDS} records.")
        return value


class CountsSerializer(serializers.Serializer):
    # ``in`` is a Python keyword: declared through ``fields`` below.
    out = serializers.IntegerField()
    rejected = serializers.IntegerField()

    def get_fields(self):
        fields = super().get_fields()
        fields["in"] = serializers.IntegerField()
        return fields


class RejectionSerializer(serializers.Serializer):
    record = serializers.JSONField()
    reason = serializers.CharField()


class PreviewNodeSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    type = serializers.CharField()
    counts = CountsSerializer()
    records = serializers.ListField(child=serializers.DictField(), help_text="The node's output records.")
    rejections = RejectionSerializer(many=True)
    note = serializers.CharField(required=False, help_text="What differs from a real run (nothing sent…).")


class StreamPreviewResponseSerializer(serializers.Serializer):
    nodes = PreviewNodeSerializer(many=True, help_text="The nodes that received records, in execution order.")
    counts = CountsSerializer(
        help_text="Records in (to input nodes), out (of the last nodes), rejected (all nodes)."
    )


def preview_body(result) -> dict[str, Any]:
    nodes = []
    for node_result in result.nodes:
        item = {
            "id": node_result.node.id,
            "name": node_result.node.name,
            "type": node_result.node.type,
            "counts": node_result.counts(),
            "records": node_result.out,
            "rejections": [
                {"record": rejection.record, "reason": rejection.reason}
                for rejection in node_result.rejections
            ],
        }
        if node_result.note:
            item["note"] = node_result.note
        nodes.append(item)
    return {
        "nodes": nodes,
        "counts": {"in": result.records_in, "out": result.records_out, "rejected": result.records_rejected},
    }


class SessionSerializer(serializers.Serializer):
    """A script aggregation session, as seed 000's lookup answers it."""

    createdAt = TimestampField(source="created_at")
    data = serializers.DictField()
    meta = serializers.DictField()
    timeoutAt = TimestampField(source="timeout_at")
    updatedAt = TimestampField(source="updated_at")


# --- Output deliveries and health (streams/api/outputs.py) ----------------------------------------


class OutputDeliverySerializer(serializers.Serializer):
    """One request an output node sends (or sent): its records are not repeated here."""

    deliveryId = serializers.UUIDField(source="delivery_id")
    nodeId = serializers.CharField(source="node_id")
    runId = serializers.UUIDField(source="run_id", allow_null=True)
    status = serializers.ChoiceField(choices=OutputDelivery.Status.values)
    recordCount = serializers.IntegerField(source="record_count")
    attempts = serializers.IntegerField()
    maxAttempts = serializers.IntegerField(source="max_attempts")
    createdAt = TimestampField(source="created_at")
    lastAttemptAt = TimestampField(source="last_attempt_at", allow_null=True)
    nextAttemptAt = TimestampField(source="next_attempt_at", allow_null=True)
    deliveredAt = TimestampField(source="delivered_at", allow_null=True)
    lastStatusCode = serializers.IntegerField(source="last_status_code", allow_null=True)
    lastError = serializers.CharField(source="last_error")


class OutputDeliveryListSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    deliveries = OutputDeliverySerializer(many=True)


class ErrorLineSerializer(serializers.Serializer):
    source = serializers.CharField(help_text='"run", or the id of the output node.')
    message = serializers.CharField()
    count = serializers.IntegerField(
        help_text="Failed runs, or failed attempts, that ended with this message."
    )
    lastAt = TimestampField(source="last_at", allow_null=True)


class StreamHealthSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=HealthState.values)
    lagBatches = serializers.IntegerField(source="lag_batches")
    lagSeconds = serializers.FloatField(source="lag_seconds")
    consecutiveFailures = serializers.IntegerField(source="consecutive_failures")
    lastError = serializers.CharField(source="last_error")
    errors = ErrorLineSerializer(many=True)
    outboxPending = serializers.IntegerField(source="outbox_pending")
    outboxDead = serializers.IntegerField(source="outbox_dead")
    outboxOldestPendingSeconds = serializers.FloatField(source="outbox_oldest_pending_seconds")

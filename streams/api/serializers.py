"""Shapes of the stream-management endpoints (seed 000 "Stream management")."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.errors import ValidationFailed
from config.api.serializers import StrictSerializerMixin, TimestampField
from streams.nodes import NODE_TYPES

# --- Documentation shapes of the JSON parts (nodes, edges, groups) --------------------------------


class NodeDocSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Unique in the stream; edges refer to it.")
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=list(NODE_TYPES))
    config = serializers.DictField(help_text="The node type's settings; see docs/streams.md.")
    description = serializers.CharField(required=False)
    position = serializers.DictField(required=False, help_text="{x, y} for drawing.")


class EdgeDocSerializer(serializers.Serializer):
    source = serializers.CharField(help_text="Node id records come from.")
    target = serializers.CharField(help_text="Node id records go to.")


class NodeGroupDocSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField(required=False)
    nodeIds = serializers.ListField(child=serializers.CharField())


@extend_schema_field(NodeDocSerializer(many=True))
class NodesField(serializers.JSONField):
    pass


@extend_schema_field(EdgeDocSerializer(many=True))
class EdgesField(serializers.JSONField):
    pass


@extend_schema_field(NodeGroupDocSerializer(many=True))
class NodeGroupsField(serializers.JSONField):
    pass


@extend_schema_field({"type": "object", "additionalProperties": True})
class ObjectField(serializers.JSONField):
    pass


class ActorSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["client", "apiKey", "user"],
                                   help_text="An OAuth client (Application Access), an API key or an admin user.")
    id = serializers.CharField(help_text="The client id, API key id or admin username.")


# --- Stream ---------------------------------------------------------------------------------------


class StreamConfigSerializer(serializers.Serializer):
    """What an export answers and an import takes as ``streamConfig``."""

    annotation = ObjectField(required=False, help_text="Free-form metadata (notes, layout).")
    description = serializers.CharField(required=False, allow_blank=True, max_length=1024)
    edges = EdgesField(required=False)
    name = serializers.CharField(max_length=200)
    nodeGroups = NodeGroupsField(required=False)
    nodes = NodesField()
    processingType = serializers.ChoiceField(choices=["batch", "realtime"], required=False, default="batch")
    schemaVersion = serializers.IntegerField(required=False, default=1)
    tag = serializers.CharField(required=False, allow_null=True,
                                help_text="When set, the import also saves a version with this tag.")


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


class StreamListSerializer(serializers.Serializer):
    nextCursor = serializers.CharField(required=False, help_text="Absent on the last page.")
    streams = StreamSerializer(many=True)


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

            streamConfig = StreamConfigSerializer()

        return StreamImport


class StreamImportResponseSerializer(serializers.Serializer):
    importAction = serializers.ChoiceField(choices=["created", "overwritten", "skipped"])
    stream = StreamSerializer()
    tag = serializers.CharField(allow_null=True)


# --- fields=name,nodes.name ------------------------------------------------------------------------


WHOLE = None  # in a fields tree: the field is asked for whole


def fields_parse(raw: str | None) -> dict | None:
    """``"name,nodes.name"`` → ``{"name": WHOLE, "nodes": {"name": WHOLE}}``; ``None``: every field.

    A field asked for whole (``nodes``) wins over its parts (``nodes.name``).
    """
    if raw is None or not raw.strip():
        return None
    tree: dict = {}
    for item in raw.split(","):
        path = item.strip().split(".")
        if path == [""]:
            continue
        if any(not part for part in path):
            raise ValidationFailed.for_field("fields", f"'{item.strip()}' is not a field path.")
        if path[0] not in STREAM_FIELDS:
            raise ValidationFailed.for_field("fields", f"Unknown field '{path[0]}'; one of: {', '.join(STREAM_FIELDS)}.")
        node = tree
        for part in path[:-1]:
            if part in node and node[part] is WHOLE:
                break
            node = node.setdefault(part, {})
        else:
            node[path[-1]] = WHOLE
    return tree or None


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


@extend_schema_field({"type": "array", "items": {"type": "object", "additionalProperties": True},
                      "minItems": 1, "maxItems": 1000})
class RecordsField(serializers.JSONField):
    pass


class StreamPreviewSerializer(StrictSerializerMixin, serializers.Serializer):
    """Sample records to run through the stream (fed to its input nodes); nothing is persisted."""

    records = RecordsField(help_text="1 to 1000 records (JSON objects).")
    tag = serializers.CharField(required=False, allow_null=True, allow_blank=True,
                                help_text="Preview this tagged version instead of the latest configuration.")

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
    counts = CountsSerializer(help_text="Records in (to input nodes), out (of the last nodes), rejected (all nodes).")


def preview_body(result) -> dict[str, Any]:
    nodes = []
    for node_result in result.nodes:
        item = {
            "id": node_result.node.id, "name": node_result.node.name, "type": node_result.node.type,
            "counts": node_result.counts(), "records": node_result.out,
            "rejections": [{"record": rejection.record, "reason": rejection.reason}
                           for rejection in node_result.rejections],
        }
        if node_result.note:
            item["note"] = node_result.note
        nodes.append(item)
    return {"nodes": nodes, "counts": {"in": result.records_in, "out": result.records_out,
                                       "rejected": result.records_rejected}}


class SessionSerializer(serializers.Serializer):
    """A script aggregation session, as seed 000's lookup answers it."""

    createdAt = TimestampField(source="created_at")
    data = serializers.DictField()
    meta = serializers.DictField()
    timeoutAt = TimestampField(source="timeout_at")
    updatedAt = TimestampField(source="updated_at")

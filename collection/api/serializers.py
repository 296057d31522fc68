"""Shapes of the collector API (seed 000, "Online collection management")."""

from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from collection.models import NAME_PATTERN, Collector
from config.api.serializers import ApiModelSerializer, StrictSerializerMixin, TimestampField

NAME_MESSAGE = "name may contain only letters, digits, spaces and the characters - _ . ( )."


class CollectorSerializer(ApiModelSerializer):
    createdAt = TimestampField(source="created_at", read_only=True)
    updatedAt = TimestampField(source="updated_at", read_only=True)

    class Meta:
        model = Collector
        fields = ["createdAt", "id", "name", "status", "updatedAt"]
        read_only_fields = fields


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "object"}, {"type": "array"}]})
class SendDataField(serializers.JSONField):
    """The send-data payload: a string, an object or an array (null and bare numbers are refused)."""


class CollectorWriteSerializer(StrictSerializerMixin, serializers.Serializer):
    """Create and update bodies: ``{"name": "…"}`` (1–80 characters, ``^[\\w\\s().-]+$``)."""

    patch_is_partial = False  # PATCH takes the whole body too: name is required (config.api.schema)

    name = serializers.CharField(
        min_length=1, max_length=80, validators=[RegexValidator(NAME_PATTERN, message=NAME_MESSAGE)]
    )


class CollectorDeletedSerializer(serializers.Serializer):
    deletedCount = serializers.IntegerField()


class SendDataRequestSerializer(serializers.Serializer):
    """Documentation only: the send-data view decodes its body with msgspec."""

    refuses_unknown_fields = True  # the view's msgspec struct forbids them: additionalProperties false

    data = SendDataField(help_text="A string, an object or an array; stored as received.")


class SendDataResponseSerializer(serializers.Serializer):
    ingestionId = serializers.UUIDField()

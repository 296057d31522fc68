"""Serializer base classes: timestamps as ISO 8601 UTC with milliseconds and ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import models
from rest_framework import serializers


def format_timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class TimestampField(serializers.DateTimeField):
    """Accepts ISO 8601 with ``Z`` or an offset; answers UTC with milliseconds and ``Z``."""

    def to_representation(self, value):
        if not value:
            return None
        if isinstance(value, str):
            value = super().to_internal_value(value)
        return format_timestamp(value)

    def to_internal_value(self, value):
        # DRF makes naive input aware in the default timezone before we could see it: check the text.
        if isinstance(value, str):
            try:
                naive = datetime.fromisoformat(value.strip()).tzinfo is None
            except ValueError:
                naive = False  # DRF's own parser reports the format error
            if naive:
                raise serializers.ValidationError("Timestamp must carry a timezone (Z or an offset).")
        parsed = super().to_internal_value(value)
        return parsed.astimezone(UTC)


class ApiModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = dict(serializers.ModelSerializer.serializer_field_mapping)
    serializer_field_mapping[models.DateTimeField] = TimestampField


class StrictSerializerMixin:
    """Rejects unknown body fields (``accountId``, counters…) instead of ignoring them silently."""

    # The schema says it too (``additionalProperties: false``, config.api.schema.ApiAutoSchema).
    # Field names of which a body must hold at least one (the schema's ``anyOf`` of ``required``).
    requires_one_of: tuple[str, ...] = ()

    def to_internal_value(self, data):
        if isinstance(data, dict):
            known = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - known)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)

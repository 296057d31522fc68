"""Serializer base classes: timestamps as ISO 8601 UTC with milliseconds and ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

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
        # The seeds' times are UTC: a time without an offset is read as UTC (DRF would make it aware in
        # the server's default timezone, which is nobody's contract).
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.strip())
            except ValueError:
                parsed = None  # DRF's own parser reports the format error
            if parsed is not None and parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
        parsed = super().to_internal_value(value)
        return parsed.astimezone(UTC)


class ApiModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = dict(serializers.ModelSerializer.serializer_field_mapping)
    serializer_field_mapping[models.DateTimeField] = TimestampField


# The JSON types the OpenAPI document gives each kind of field. DRF would coerce others (``0`` into
# ``"0"``, ``"12"`` into 12, ``"yes"`` into true, an integer into a UUID), accepting what the schema
# refuses; a strict body takes exactly the documented types.
_JSON_TYPES: tuple[tuple[tuple[type, ...], tuple[type, ...], str], ...] = (
    ((serializers.BooleanField,), (bool,), "Must be a boolean."),
    ((serializers.IntegerField,), (int,), "Must be an integer."),
    ((serializers.FloatField, serializers.DecimalField), (int, float), "Must be a number."),
    (
        (serializers.CharField, serializers.UUIDField, serializers.DateTimeField, serializers.DateField),
        (str,),
        "Must be a string.",
    ),
)


def _wrong_types(field: serializers.Field, value: Any, path: str) -> dict[str, list[str]]:
    """``{path: [message]}`` for ``value`` (and the items of lists and maps) of a type the schema refuses."""
    if value is None:
        return {}  # null is the field's own rule (allow_null)
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        return {
            where: message
            for index, item in enumerate(value)
            for where, message in _wrong_types(field.child, item, f"{path}[{index}]").items()
        }
    if isinstance(field, serializers.DictField) and isinstance(value, dict):
        return {
            where: message
            for key, item in value.items()
            for where, message in _wrong_types(field.child, item, f"{path}.{key}").items()
        }
    for field_classes, json_types, message in _JSON_TYPES:
        if isinstance(field, field_classes):
            right = isinstance(value, json_types) and (bool in json_types or not isinstance(value, bool))
            return {} if right else {path: [message]}
    return {}


class StrictSerializerMixin:
    """Rejects unknown body fields (``accountId``, counters…) instead of ignoring them silently,
    and values of another JSON type than the field's (no coercion)."""

    # The schema says it too (``additionalProperties: false``, config.api.schema.ApiAutoSchema).
    # Field names of which a body must hold at least one (the schema's ``anyOf`` of ``required``).
    requires_one_of: tuple[str, ...] = ()
    # Field names of which a body must hold exactly one (the schema's ``oneOf`` of ``required``).
    requires_exactly_one_of: tuple[str, ...] = ()

    # Names the API answers for this resource besides this serializer's own read-only fields. A body
    # sent back as read (GET, edit, PATCH) carries them: on an update they are ignored, not refused;
    # names the API never answers stay "Unknown field".
    answered_fields: tuple[str, ...] = ()

    def to_internal_value(self, data):
        if isinstance(data, dict):
            if getattr(self, "instance", None) is not None:
                data = {name: value for name, value in data.items() if not self._answered_read_only(name)}
            writable = {name: field for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - set(writable))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
            wrong = {
                where: message
                for name, value in data.items()
                for where, message in _wrong_types(writable[name], value, name).items()
            }
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)

    def _answered_read_only(self, name: str) -> bool:
        field = self.fields.get(name)
        if field is not None:
            return field.read_only
        return name in self.answered_fields

"""Shapes of meter types, meters and metered records (seed 000's field names and samples).

Fields are named in camelCase in ``Meta.fields`` and built from the model field of the same
name in snake_case, so every length, pattern and validator comes from the model, declared once.
"""

from __future__ import annotations

import re
from decimal import Decimal

from django.db import models
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.schema import NOT_BLANK_PATTERN
from config.api.serializers import ApiModelSerializer, StrictSerializerMixin, format_timestamp
from metering import periods
from metering.models import Meter, MeteredRecord, MeterType
from metering.validators import MAX_DIMENSION_LENGTH, MAX_DIMENSIONS, validate_dimensions


class NumberField(serializers.DecimalField):
    """An exact decimal inside; a JSON number outside (``1000``, ``12.5``), never a string."""

    def to_representation(self, value):
        if value is None:
            return None
        value = Decimal(value)
        return int(value) if value == value.to_integral_value() else float(value)


_THRESHOLD_NAME = {"type": "string", "minLength": 1, "maxLength": 80, "pattern": NOT_BLANK_PATTERN}


@extend_schema_field(
    {
        "type": "array",
        "maxItems": 5,
        "items": {
            "oneOf": [
                {
                    "title": "Using absolute value",
                    "type": "object",
                    "required": ["value"],
                    "additionalProperties": False,
                    "properties": {"name": _THRESHOLD_NAME, "value": {"type": "number", "minimum": 0}},
                },
                {
                    "title": "Using percentage of capacity",
                    "type": "object",
                    "required": ["capacityPercentage"],
                    "additionalProperties": False,
                    "properties": {
                        "name": _THRESHOLD_NAME,
                        "capacityPercentage": {"type": "number", "minimum": 0},
                    },
                },
            ]
        },
    }
)
class ThresholdsField(serializers.JSONField):
    """A JSONField whose OpenAPI shape is declared by the decorator above."""


DIMENSIONS_SCHEMA = {
    "type": "array",
    "maxItems": MAX_DIMENSIONS,
    "uniqueItems": True,
    "items": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_DIMENSION_LENGTH,
        "pattern": NOT_BLANK_PATTERN,
    },
}


@extend_schema_field(DIMENSIONS_SCHEMA)
class DimensionsField(serializers.JSONField):
    """Dimension names as ``validate_dimensions`` checks them (distinct, not blank), said in the schema."""

    def __init__(self, **kwargs):
        kwargs.setdefault("validators", [validate_dimensions])
        super().__init__(**kwargs)


@extend_schema_field({**DIMENSIONS_SCHEMA, "minItems": 1})
class NonEmptyDimensionsField(DimensionsField):
    """DimensionsField holding at least one name."""

    def to_internal_value(self, data):
        if data == []:
            raise serializers.ValidationError("Give at least one value.")
        return super().to_internal_value(data)


@extend_schema_field({"type": "array", "items": {"type": "object", "additionalProperties": True}})
class ObjectListField(serializers.JSONField):
    """A JSONField whose OpenAPI shape is declared by the decorator above."""


@extend_schema_field({"type": "object", "additionalProperties": True})
class ObjectField(serializers.JSONField):
    """A JSONField whose OpenAPI shape is declared by the decorator above."""


class TimezoneField(serializers.CharField):
    """An IANA timezone name; documented as the enum of the names ``validate_timezone`` accepts."""


class TimezoneFieldSchema(OpenApiSerializerFieldExtension):
    """The enum is built when the schema is, not at import (it reads the installed tz database)."""

    target_class = TimezoneField

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "enum": sorted(periods.timezone_names())}


@extend_schema_field({"type": "string", "maxLength": 100, "pattern": periods.CRON_PATTERN})
class CronField(serializers.CharField):
    """A reset schedule: ``periods.validate_cron`` (through the model) checks what the pattern says,
    and that the schedule fires at all."""


# Model fields whose OpenAPI shape the field class above declares (validation stays on the model).
FIELD_SHAPES = {
    "thresholds": ThresholdsField,
    "dimensions": DimensionsField,
    "groups": ObjectListField,
    "group_breakdowns": ObjectListField,
    "custom_fields": ObjectField,
    "carry_first": ObjectField,
    "carry_last": ObjectField,
    "meter_metadata": ObjectField,
    "timezone": TimezoneField,
}


class CamelCaseModelSerializer(ApiModelSerializer):
    """``Meta.fields`` in camelCase, each built from its snake_case model field."""

    serializer_field_mapping = {
        **ApiModelSerializer.serializer_field_mapping,
        models.DecimalField: NumberField,
    }

    def build_field(self, field_name, info, model_class, nested_depth):
        model_field = re.sub(r"(?<!^)(?=[A-Z])", "_", field_name).lower()
        field_class, kwargs = super().build_field(model_field, info, model_class, nested_depth)
        field_class = FIELD_SHAPES.get(model_field, field_class)
        if model_field != field_name:
            kwargs["source"] = model_field
        return field_class, kwargs


class AggregationSerializer(StrictSerializerMixin, serializers.Serializer):
    type = serializers.ChoiceField(source="aggregation", choices=MeterType.Aggregation.choices)


class ResetScheduleSerializer(StrictSerializerMixin, serializers.Serializer):
    cron = CronField(source="reset_cron", max_length=100)


class MeterTypeSerializer(StrictSerializerMixin, CamelCaseModelSerializer):
    """A meter type, in and out. ``aggregation`` is required on create and cannot change."""

    aggregation = AggregationSerializer(source="*")
    resetSchedule = ResetScheduleSerializer(source="*")
    numberOfMeters = serializers.IntegerField(source="number_of_meters", read_only=True)

    class Meta:
        model = MeterType
        fields = [
            "accountId",
            "activeFrom",
            "activeTo",
            "aggregation",
            "apiName",
            "capacity",
            "category",
            "createdAt",
            "description",
            "dimensions",
            "externalRef",
            "id",
            "name",
            "numberOfMeters",
            "resetSchedule",
            "status",
            "thresholds",
            "timezone",
            "unit",
            "updatedAt",
        ]
        read_only_fields = ["accountId", "createdAt", "id", "updatedAt"]
        # "string or null" in seed 000's PATCH: null means the default (now, DEFAULT) or none.
        extra_kwargs = {
            name: {"allow_null": True} for name in ("activeFrom", "activeTo", "category", "externalRef")
        }
        validators: list = []


class MeterMetadataSerializer(serializers.Serializer):
    recordCount = serializers.IntegerField()
    lastIngestedAt = serializers.DateTimeField(allow_null=True)


def _meter_metadata(meter: Meter) -> dict:
    return {"recordCount": meter.record_count, "lastIngestedAt": format_timestamp(meter.last_ingested_at)}


class MeterSerializer(CamelCaseModelSerializer):
    """A meter as answered (seed 000's sample); unit, timezone and type name come from its type."""

    meterMetaData = serializers.SerializerMethodField()
    meterTypeName = serializers.CharField(source="meter_type.name", read_only=True)
    timezone = serializers.CharField(read_only=True)
    unit = serializers.CharField(read_only=True)

    class Meta:
        model = Meter
        fields = [
            "capacity",
            "carryFirst",
            "carryLast",
            "createdAt",
            "customFields",
            "deleteOnReset",
            "groupBreakdowns",
            "groups",
            "id",
            "meterKey",
            "meterMetaData",
            "meterTypeId",
            "meterTypeName",
            "periodEnd",
            "periodStart",
            "thresholds",
            "timezone",
            "unit",
            "updatedAt",
            "userId",
            "value",
        ]
        read_only_fields = fields

    @extend_schema_field(MeterMetadataSerializer)
    def get_meterMetaData(self, meter: Meter) -> dict:
        return _meter_metadata(meter)


class MeterCreateSerializer(StrictSerializerMixin, CamelCaseModelSerializer):
    """Seed 000's create body: ``meterTypeId`` or the type's ``externalRef``, plus meterKey and userId."""

    requires_exactly_one_of = ("meterTypeId", "externalRef")  # services.meter_create refuses both and neither

    meterTypeId = serializers.CharField(source="meter_type_id", max_length=36, required=False)
    externalRef = serializers.CharField(
        source="external_ref", max_length=MeterType._meta.get_field("external_ref").max_length, required=False
    )

    class Meta:
        model = Meter
        fields = ["customFields", "externalRef", "meterKey", "meterTypeId", "userId"]
        validators: list = []


class MeterUpdateSerializer(StrictSerializerMixin, CamelCaseModelSerializer):
    answered_fields = tuple(MeterSerializer.Meta.fields)

    class Meta:
        model = Meter
        fields = ["capacity", "customFields", "deleteOnReset", "thresholds"]
        validators: list = []


class MeteredRecordSerializer(CamelCaseModelSerializer):
    """One flushed period of a meter (Usage Engine's metered record)."""

    meterId = serializers.UUIDField(source="source_meter_id", read_only=True)
    meterMetaData = ObjectField(source="meter_metadata", read_only=True)

    class Meta:
        model = MeteredRecord
        fields = [
            "carryFirst",
            "carryLast",
            "createdAt",
            "customFields",
            "groups",
            "id",
            "meterId",
            "meterKey",
            "meterMetaData",
            "meterTypeId",
            "meterTypeName",
            "periodEnd",
            "periodStart",
            "timezone",
            "unit",
            "updatedAt",
            "userId",
            "value",
        ]
        read_only_fields = fields

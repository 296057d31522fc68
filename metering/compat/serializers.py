"""Shapes of the compatible APIs (seed 002, seed 004): request validation and the OpenAPI document."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.serializers import StrictSerializerMixin
from metering.api.serializers import DimensionsField, NonEmptyDimensionsField
from metering.compat import billing
from metering.compat.amberflo import DEFINITION_TYPES, SHOWN_TYPES
from metering.compat.usage_queries import AGGREGATIONS, INTERVALS
from metering.ledger import VALUE_LIMIT
from metering.models import MeterEventFilteringRule, MeterType
from metering.validators import validate_api_name, validate_meter_type_name

VALUE_LIMIT_INT = int(VALUE_LIMIT)
API_NAME_LENGTH = MeterType._meta.get_field("api_name").max_length
DISPLAY_NAME_LENGTH = MeterType._meta.get_field("name").max_length
DIMENSION_LENGTH = 100


class MeterDefinitionSerializer(serializers.Serializer):
    """Seed 002's MeterDefinition (COUNT_OF_EVENTS and MIN_IN_PERIOD show types made through /meter-types)."""

    meterApiName = serializers.CharField()
    displayName = serializers.CharField()
    label = serializers.CharField()
    type = serializers.ChoiceField(choices=SHOWN_TYPES)
    meterTimeInMillis = serializers.IntegerField(help_text="Creation time, Unix milliseconds.")
    dimensions = serializers.ListField(child=serializers.CharField())


def _display_name(**kwargs) -> serializers.CharField:
    """The meter type's name, with its rules (a definition is a meter type)."""
    return serializers.CharField(
        max_length=DISPLAY_NAME_LENGTH, validators=[validate_meter_type_name], **kwargs
    )


class MeterDefinitionRequestSerializer(StrictSerializerMixin, serializers.Serializer):
    """Seed 002's MeterDefinitionRequest; the names follow the meter type's rules."""

    meterApiName = serializers.CharField(max_length=API_NAME_LENGTH, validators=[validate_api_name])
    displayName = _display_name()
    type = serializers.ChoiceField(choices=DEFINITION_TYPES)
    dimensions = DimensionsField(required=False, allow_null=True)
    # Amberflo's definitions carry a label; it is accepted and answered as the meterApiName.
    label = serializers.CharField(required=False, allow_blank=True, max_length=API_NAME_LENGTH)


class MeterDefinitionUpdateSerializer(StrictSerializerMixin, serializers.Serializer):
    """PUT takes a MeterDefinition: found by meterApiName; displayName and dimensions change,
    the type must stay; label and meterTimeInMillis are read-only and ignored."""

    meterApiName = serializers.CharField(max_length=API_NAME_LENGTH)
    displayName = _display_name(required=False)
    type = serializers.ChoiceField(choices=SHOWN_TYPES, required=False)
    dimensions = DimensionsField(required=False, allow_null=True)
    label = serializers.CharField(required=False, allow_blank=True)
    meterTimeInMillis = serializers.IntegerField(required=False)


FILTER_DIMENSIONS = 20
FILTER_VALUES = 1000
FILTER_VALUE_LENGTH = 1000


@extend_schema_field(
    {
        "type": "object",
        "maxProperties": FILTER_DIMENSIONS,
        "additionalProperties": {
            "type": "array",
            "maxItems": FILTER_VALUES,
            # "" (or blanks, trimmed) selects the events without the dimension.
            "items": {"type": "string", "maxLength": FILTER_VALUE_LENGTH},
        },
    }
)
class DimensionFilterField(serializers.DictField):
    """``{dimension: [values]}``: values are trimmed; ``""`` matches the events without the
    dimension (the group whose ``groupInfo`` value is ``""``)."""

    def __init__(self, **kwargs):
        super().__init__(
            child=serializers.ListField(
                child=serializers.CharField(max_length=FILTER_VALUE_LENGTH, allow_blank=True),
                max_length=FILTER_VALUES,
            ),
            **kwargs,
        )

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > FILTER_DIMENSIONS:
            raise serializers.ValidationError(f"At most {FILTER_DIMENSIONS} dimensions.")
        return value


_SECONDS = {"min_value": 0, "max_value": 253_402_300_799}


class TimeRangeSerializer(StrictSerializerMixin, serializers.Serializer):
    """The Amberflo SDK's ``timeRange``; without ``endTimeInSeconds`` the range ends now."""

    startTimeInSeconds = serializers.IntegerField(**_SECONDS)
    endTimeInSeconds = serializers.IntegerField(required=False, **_SECONDS)


class TakeSerializer(StrictSerializerMixin, serializers.Serializer):
    """The Amberflo SDK's ``take``: only the ``limit`` groups with the highest total (the lowest
    with ``isAscending``)."""

    limit = serializers.IntegerField(min_value=1, max_value=10_000)
    isAscending = serializers.BooleanField(required=False, default=False)


class UsageQueryRequestSerializer(StrictSerializerMixin, serializers.Serializer):
    """Seed 002's UsageQueryRequest, with the range flat (the seed) or nested in ``timeRange``
    (the Amberflo SDK), and the SDK's ``take``."""

    requires_exactly_one_of = ("startTimeInSeconds", "timeRange")

    meterApiName = serializers.CharField(max_length=API_NAME_LENGTH)
    startTimeInSeconds = serializers.IntegerField(required=False, **_SECONDS)
    endTimeInSeconds = serializers.IntegerField(required=False, **_SECONDS)
    timeRange = TimeRangeSerializer(required=False)
    aggregation = serializers.ChoiceField(choices=AGGREGATIONS)
    timeGroupingInterval = serializers.ChoiceField(choices=list(INTERVALS))
    groupBy = serializers.ListField(
        child=serializers.CharField(max_length=DIMENSION_LENGTH),
        required=False,
        max_length=10,
    )
    customerFilter = serializers.ListField(
        child=serializers.CharField(max_length=320),
        required=False,
        max_length=1000,
    )
    filter = DimensionFilterField(required=False)
    take = TakeSerializer(required=False)

    def validate(self, attrs):
        """The range as ``startTimeInSeconds`` / ``endTimeInSeconds``, whichever form was sent."""
        nested = attrs.pop("timeRange", None)
        if nested is not None:
            if "startTimeInSeconds" in attrs or "endTimeInSeconds" in attrs:
                raise serializers.ValidationError(
                    {
                        "timeRange": "Give the range either in timeRange or as startTimeInSeconds/endTimeInSeconds."
                    }
                )
            attrs["startTimeInSeconds"] = nested["startTimeInSeconds"]
            attrs["endTimeInSeconds"] = nested.get("endTimeInSeconds")
        elif "startTimeInSeconds" not in attrs:
            raise serializers.ValidationError({"startTimeInSeconds": "This field is required."})
        elif "endTimeInSeconds" not in attrs:
            raise serializers.ValidationError({"endTimeInSeconds": "This field is required."})
        end = attrs["endTimeInSeconds"]
        if end is not None and end <= attrs["startTimeInSeconds"]:
            raise serializers.ValidationError({"endTimeInSeconds": "Must be after startTimeInSeconds."})
        return attrs


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "groupInfo": {
                        "type": "object",
                        "additionalProperties": {"type": "string", "nullable": True},
                    },
                    "records": {
                        "type": "array",
                        "items": {"type": "object", "additionalProperties": {"type": "number"}},
                    },
                },
            },
        },
    }
)
class ClientMetersField(serializers.JSONField):
    """A JSONField whose OpenAPI shape is declared by the decorator above."""


class UsageQueryResponseSerializer(serializers.Serializer):
    """Seed 002's UsageQueryResponse: per meter, each group's records, ``{"<bucket start, Unix s>": value}``."""

    clientMeters = ClientMetersField()


class FilteringRuleSerializer(StrictSerializerMixin, serializers.Serializer):
    """Seed 002's FilteringRule."""

    meterApiName = serializers.CharField(max_length=API_NAME_LENGTH)
    ruleId = serializers.CharField(
        max_length=36,
        required=False,
        help_text="Give it to update that rule, or to create a rule under that id.",
    )
    dimensionName = serializers.CharField(max_length=DIMENSION_LENGTH)
    dimensionValues = NonEmptyDimensionsField()
    action = serializers.ChoiceField(choices=MeterEventFilteringRule.Action.values)


# A usage amount as ``decoding.decode_amount`` takes it: a JSON number below 10^26 in magnitude.
AMOUNT_SCHEMA = {
    "type": "number",
    "maximum": VALUE_LIMIT_INT,
    "exclusiveMaximum": True,
    "minimum": -VALUE_LIMIT_INT,
    "exclusiveMinimum": True,
}


@extend_schema_field(AMOUNT_SCHEMA)
class AmountField(serializers.FloatField):
    """Documents an amount (AMOUNT_SCHEMA)."""


def name_map_schema(values: dict, max_properties: int) -> dict:
    """An object of names to ``values``, as the msgspec structs check it."""
    return {"type": "object", "maxProperties": max_properties, "additionalProperties": values}


@extend_schema_field(
    name_map_schema(
        {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}, billing.MAX_METADATA
    )
)
class MetadataField(serializers.DictField):
    """Documents the report's metadata: names to strings, numbers or booleans."""


class UsageReportSerializer(serializers.Serializer):
    """Seed 004's report-usage body (documentation: ``billing.UsageReport`` decodes it with msgspec,
    which trims nothing: hence ``trim_whitespace=False``). A field may be left out but not null;
    unknown fields are ignored."""

    requires_one_of = ("meterId", "meterName")

    value = AmountField()
    customerId = serializers.CharField(max_length=320, trim_whitespace=False)
    meterId = serializers.UUIDField(required=False, help_text="Give meterId or meterName.")
    meterName = serializers.CharField(
        required=False,
        max_length=billing.MAX_NAME_LENGTH,
        trim_whitespace=False,
        help_text="Give meterId or meterName.",
    )
    timestamp = serializers.DateTimeField(
        required=False, help_text="ISO 8601 with a timezone; defaults to now."
    )
    metadata = MetadataField(required=False, help_text="Names to strings, numbers or booleans.")


class ReportQueuedSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["queued"])
    requestId = serializers.UUIDField()


class ReportDuplicateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["duplicate"])
    idempotencyKey = serializers.CharField()

"""Shapes of the compatible APIs (seed 002, seed 004): request validation and the OpenAPI document."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.serializers import StrictSerializerMixin
from metering.compat.amberflo import DEFINITION_TYPES, SHOWN_TYPES
from metering.compat.usage_queries import AGGREGATIONS, INTERVALS
from metering.models import MeterEventFilteringRule

API_NAME_LENGTH = 100
DIMENSION_LENGTH = 100


class MeterDefinitionSerializer(serializers.Serializer):
    """Seed 002's MeterDefinition (COUNT_OF_EVENTS and MIN_IN_PERIOD show types made through /meter-types)."""

    meterApiName = serializers.CharField()  # noqa: N815 - the API's field names
    displayName = serializers.CharField()  # noqa: N815
    label = serializers.CharField()
    type = serializers.ChoiceField(choices=SHOWN_TYPES)
    meterTimeInMillis = serializers.IntegerField(help_text="Creation time, Unix milliseconds.")  # noqa: N815
    dimensions = serializers.ListField(child=serializers.CharField())


class MeterDefinitionRequestSerializer(StrictSerializerMixin, serializers.Serializer):
    """Seed 002's MeterDefinitionRequest."""

    meterApiName = serializers.CharField(max_length=API_NAME_LENGTH)  # noqa: N815
    displayName = serializers.CharField(max_length=80)  # noqa: N815
    type = serializers.ChoiceField(choices=DEFINITION_TYPES)
    dimensions = serializers.ListField(child=serializers.CharField(max_length=DIMENSION_LENGTH), required=False,
                                       max_length=20)


class MeterDefinitionUpdateSerializer(StrictSerializerMixin, serializers.Serializer):
    """PUT takes a MeterDefinition: found by meterApiName; displayName and dimensions change,
    the type must stay; label and meterTimeInMillis are read-only and ignored."""

    meterApiName = serializers.CharField(max_length=API_NAME_LENGTH)  # noqa: N815
    displayName = serializers.CharField(max_length=80, required=False)  # noqa: N815
    type = serializers.ChoiceField(choices=SHOWN_TYPES, required=False)
    dimensions = serializers.ListField(child=serializers.CharField(max_length=DIMENSION_LENGTH), required=False,
                                       max_length=20)
    label = serializers.CharField(required=False)
    meterTimeInMillis = serializers.IntegerField(required=False)  # noqa: N815


@extend_schema_field({"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}})
class DimensionFilterField(serializers.DictField):
    def __init__(self, **kwargs):
        super().__init__(child=serializers.ListField(child=serializers.CharField(max_length=1000), max_length=1000),
                         **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > 20:
            raise serializers.ValidationError("At most 20 dimensions.")
        return value


class UsageQueryRequestSerializer(StrictSerializerMixin, serializers.Serializer):
    """Seed 002's UsageQueryRequest."""

    meterApiName = serializers.CharField(max_length=API_NAME_LENGTH)  # noqa: N815
    startTimeInSeconds = serializers.IntegerField(min_value=0, max_value=253_402_300_799)  # noqa: N815
    endTimeInSeconds = serializers.IntegerField(min_value=0, max_value=253_402_300_799)  # noqa: N815
    aggregation = serializers.ChoiceField(choices=AGGREGATIONS)
    timeGroupingInterval = serializers.ChoiceField(choices=list(INTERVALS))  # noqa: N815
    groupBy = serializers.ListField(child=serializers.CharField(max_length=DIMENSION_LENGTH), required=False,  # noqa: N815
                                    max_length=10)
    customerFilter = serializers.ListField(child=serializers.CharField(max_length=320), required=False,  # noqa: N815
                                           max_length=1000)
    filter = DimensionFilterField(required=False)

    def validate(self, attrs):
        if attrs["endTimeInSeconds"] <= attrs["startTimeInSeconds"]:
            raise serializers.ValidationError({"endTimeInSeconds": "Must be after startTimeInSeconds."})
        return attrs


@extend_schema_field({"type": "object", "additionalProperties": {"type": "array", "items": {
    "type": "object", "properties": {
        "groupInfo": {"type": "object", "additionalProperties": {"type": "string", "nullable": True}},
        "records": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}},
    }}}})
class ClientMetersField(serializers.JSONField):
    """A JSONField whose OpenAPI shape is declared by the decorator above."""


class UsageQueryResponseSerializer(serializers.Serializer):
    """Seed 002's UsageQueryResponse: per meter, each group's records, ``{"<bucket start, Unix s>": value}``."""

    clientMeters = ClientMetersField()  # noqa: N815


class FilteringRuleSerializer(StrictSerializerMixin, serializers.Serializer):
    """Seed 002's FilteringRule."""

    meterApiName = serializers.CharField(max_length=API_NAME_LENGTH)  # noqa: N815
    ruleId = serializers.CharField(max_length=36, required=False, help_text="Give it to update that rule.")  # noqa: N815
    dimensionName = serializers.CharField(max_length=DIMENSION_LENGTH)  # noqa: N815
    dimensionValues = serializers.ListField(child=serializers.CharField(max_length=DIMENSION_LENGTH),  # noqa: N815
                                            min_length=1, max_length=20)
    action = serializers.ChoiceField(choices=MeterEventFilteringRule.Action.values)


class UsageReportSerializer(serializers.Serializer):
    """Seed 004's report-usage body (documentation: the endpoint decodes it with msgspec)."""

    value = serializers.FloatField()
    customerId = serializers.CharField()  # noqa: N815
    meterId = serializers.UUIDField(required=False, help_text="Give meterId or meterName.")  # noqa: N815
    meterName = serializers.CharField(required=False, help_text="Give meterId or meterName.")  # noqa: N815
    timestamp = serializers.DateTimeField(required=False, help_text="ISO 8601; defaults to now.")
    metadata = serializers.DictField(required=False, help_text="Values: string, number or boolean.")


class ReportQueuedSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["queued"])
    requestId = serializers.UUIDField()  # noqa: N815


class ReportDuplicateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["duplicate"])
    idempotencyKey = serializers.CharField()  # noqa: N815


class PriceSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    unitAmount = serializers.FloatField()  # noqa: N815
    currency = serializers.CharField()


class SubscriptionProductSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    prices = PriceSerializer(many=True)


class SubscriptionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    customerId = serializers.CharField()  # noqa: N815
    status = serializers.ChoiceField(choices=["active"])
    createdAt = serializers.CharField()  # noqa: N815
    products = SubscriptionProductSerializer(many=True)


class MeterSubscriptionsSerializer(serializers.Serializer):
    """Seed 004's answer: the meter and the subscriptions (with their products) that use it."""

    meterId = serializers.UUIDField()  # noqa: N815
    meterName = serializers.CharField()  # noqa: N815
    subscriptions = SubscriptionSerializer(many=True)

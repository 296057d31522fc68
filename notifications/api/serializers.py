"""Shapes of the notification-endpoint API (camelCase, timestamps with milliseconds and Z)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.serializers import ApiModelSerializer, StrictSerializerMixin, TimestampField
from notifications.models import Delivery, DeliveryAttempt, EventType, NotificationEndpoint


class NotificationEndpointSerializer(ApiModelSerializer):
    eventTypes = serializers.ListField(child=serializers.CharField(), source="event_types")
    isActive = serializers.BooleanField(source="is_active")
    createdAt = TimestampField(source="created_at")
    updatedAt = TimestampField(source="updated_at")

    class Meta:
        model = NotificationEndpoint
        fields = ["id", "url", "description", "eventTypes", "isActive", "createdAt", "updatedAt"]
        read_only_fields = fields


class NotificationEndpointCreatedSerializer(NotificationEndpointSerializer):
    secret = serializers.CharField(help_text="The signing secret (whsec_…). Shown only in this response.")

    class Meta(NotificationEndpointSerializer.Meta):
        fields = [*NotificationEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


@extend_schema_field({"type": "string", "maxLength": 2048, "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://\S+$"})
class UrlField(serializers.CharField):
    """Checked by ``notifications.outbound.validate_target_url`` (scheme, host, public addresses)."""


class NotificationEndpointWriteSerializer(StrictSerializerMixin, serializers.Serializer):
    """Body of POST (url required) and PATCH (every field optional) /notification-endpoints.
    Unknown fields are refused."""

    url = UrlField(max_length=2048, help_text="http(s) URL on a public address.")
    eventTypes = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices),
        source="event_types",
        min_length=1,
        max_length=len(EventType.choices) * 2,
        required=False,
        help_text="Event types to deliver; all of them when omitted at creation.",
    )
    description = serializers.CharField(max_length=200, allow_blank=True, required=False)
    isActive = serializers.BooleanField(source="is_active", required=False)


class DeliveryAttemptSerializer(ApiModelSerializer):
    attemptedAt = TimestampField(source="attempted_at")
    statusCode = serializers.IntegerField(source="status_code", allow_null=True)
    durationMs = serializers.IntegerField(source="duration_ms", allow_null=True)

    class Meta:
        model = DeliveryAttempt
        fields = ["number", "attemptedAt", "statusCode", "error", "durationMs"]
        read_only_fields = fields


class DeliveryEventSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The webhook-id header of every attempt.")
    type = serializers.CharField(source="event_type")
    timestamp = TimestampField(source="created_at")
    data = serializers.JSONField(source="payload")


class DeliverySerializer(ApiModelSerializer):
    event = DeliveryEventSerializer()
    attemptCount = serializers.IntegerField(source="attempt_count")
    maxAttempts = serializers.IntegerField(source="max_attempts")
    nextAttemptAt = TimestampField(source="next_attempt_at", allow_null=True)
    lastStatusCode = serializers.IntegerField(source="last_status_code", allow_null=True)
    lastError = serializers.CharField(source="last_error")
    createdAt = TimestampField(source="created_at")
    updatedAt = TimestampField(source="updated_at")
    attempts = DeliveryAttemptSerializer(many=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "event",
            "status",
            "attemptCount",
            "maxAttempts",
            "nextAttemptAt",
            "lastStatusCode",
            "lastError",
            "createdAt",
            "updatedAt",
            "attempts",
        ]
        read_only_fields = fields

"""Shapes of the global parameters API (seed 000). The field rules live in ``parameters.services``."""

from __future__ import annotations

from rest_framework import serializers

from config.api.serializers import ApiModelSerializer, StrictSerializerMixin, TimestampField
from parameters.models import Parameter


class StringField(serializers.CharField):
    """A JSON string, kept exactly as sent: no coercion of numbers, no trimming."""

    default_error_messages = {"invalid": "Must be a string."}

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ParameterCreateSerializer(StrictSerializerMixin, serializers.Serializer):
    name = StringField(help_text="1-900 characters, ^[\\w.-]+(?:/[\\w.-]+)*$, at most 10 levels separated by /.")
    type = serializers.ChoiceField(
        choices=["standard", "sensitive"],
        error_messages={"invalid_choice": 'type must be "standard" or "sensitive" (case-sensitive).'},
        help_text="Case-sensitive. sensitive: encrypted at rest and never returned. Cannot be updated.",
    )
    value = StringField(help_text="1-8192 characters.")
    description = StringField(required=False, help_text="At most 1024 characters.")


class ParameterUpdateSerializer(StrictSerializerMixin, serializers.Serializer):
    description = StringField(required=False, help_text="At most 1024 characters.")
    value = StringField(required=False, help_text="1-8192 characters.")
    type = StringField(required=False, help_text="Cannot be updated: only the current type is accepted.")


class ParameterNameSerializer(serializers.Serializer):
    name = serializers.CharField()


class ParameterSerializer(ApiModelSerializer):
    """A parameter as GET answers it. ``value`` is left out for a sensitive parameter."""

    updatedAt = TimestampField(source="updated_at", read_only=True)
    value = serializers.CharField(
        required=False, help_text="Present for standard parameters only: a sensitive value is never returned."
    )

    class Meta:
        model = Parameter
        fields = ["description", "name", "type", "updatedAt", "value"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if instance.is_sensitive:
            data.pop("value", None)
        return data


class ParameterListSerializer(serializers.Serializer):
    parameters = ParameterSerializer(many=True)


class ParametersDeleteSerializer(StrictSerializerMixin, serializers.Serializer):
    parameters = serializers.ListField(
        child=StringField(), allow_empty=False, max_length=100,
        help_text="Unique parameter names (at most 100). Unknown names are answered in invalidParameters.",
    )


class ParametersDeletedSerializer(serializers.Serializer):
    deletedCount = serializers.IntegerField()
    deletedParameters = serializers.ListField(child=serializers.CharField())
    invalidParameters = serializers.ListField(child=serializers.CharField())

"""Shapes of the global parameters API (seed 000). The field rules live in ``parameters.services``."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.serializers import ApiModelSerializer, StrictSerializerMixin, TimestampField
from parameters.models import (
    DESCRIPTION_MAX_LENGTH,
    MAX_PARAMETERS_PER_ACCOUNT,
    NAME_MAX_LENGTH,
    NAME_MAX_LEVELS,
    VALUE_MAX_LENGTH,
    Parameter,
)

# NAME_PATTERN (ASCII \w) with the level limit, as JSON Schema (ECMA-262) says it.
NAME_SCHEMA_PATTERN = rf"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+){{0,{NAME_MAX_LEVELS - 1}}}$"


class StringField(serializers.CharField):
    """A JSON string, kept exactly as sent: no trimming (and, in a strict body, no coercion of numbers)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)


# The rules are checked by ``parameters.services`` (one place, with one set of messages, for the API
# and the admin); these fields only say them in the schema.


class NonBlankStringField(StringField):
    """Refuses "" with the service's own message, and says minLength 1 in the schema."""

    blank_message = ""

    def __init__(self, **kwargs):
        kwargs["allow_blank"] = False
        kwargs.setdefault("error_messages", {"blank": self.blank_message})
        super().__init__(**kwargs)


@extend_schema_field(
    {"type": "string", "minLength": 1, "maxLength": NAME_MAX_LENGTH, "pattern": NAME_SCHEMA_PATTERN}
)
class NameField(NonBlankStringField):
    blank_message = f"name must be 1 to {NAME_MAX_LENGTH} characters long."


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": VALUE_MAX_LENGTH})
class ValueField(NonBlankStringField):
    blank_message = f"value must be 1 to {VALUE_MAX_LENGTH} characters long."


@extend_schema_field({"type": "string", "maxLength": DESCRIPTION_MAX_LENGTH})
class DescriptionField(StringField):
    """StringField with the OpenAPI shape declared by the decorator above."""


@extend_schema_field({"type": "string", "enum": ["standard", "sensitive"]})
class TypeField(StringField):
    """StringField with the OpenAPI shape declared by the decorator above."""


class ParameterCreateSerializer(StrictSerializerMixin, serializers.Serializer):
    name = NameField(
        help_text="1-900 characters, ^[\\w.-]+(?:/[\\w.-]+)*$, at most 10 levels separated by /."
    )
    type = serializers.ChoiceField(
        choices=["standard", "sensitive"],
        error_messages={"invalid_choice": 'type must be "standard" or "sensitive" (case-sensitive).'},
        help_text="Case-sensitive. sensitive: encrypted at rest and never returned. Cannot be updated.",
    )
    value = ValueField(help_text="1-8192 characters.")
    description = DescriptionField(required=False, help_text="At most 1024 characters.")


class ParameterUpdateSerializer(StrictSerializerMixin, serializers.Serializer):
    requires_one_of = ("description", "value")

    description = DescriptionField(required=False, help_text="At most 1024 characters.")
    value = ValueField(required=False, help_text="1-8192 characters.")
    type = TypeField(
        required=False,
        help_text="Cannot be updated: only the current type is accepted (400 PARAMETER_TYPE_IMMUTABLE).",
    )


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


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string"},
        "minItems": 1,
        "maxItems": MAX_PARAMETERS_PER_ACCOUNT,
        "uniqueItems": True,
    }
)
class UniqueNamesField(serializers.ListField):
    """ListField with the OpenAPI shape declared by the decorator above."""


class ParametersDeleteSerializer(StrictSerializerMixin, serializers.Serializer):
    parameters = UniqueNamesField(
        child=StringField(),
        allow_empty=False,
        max_length=MAX_PARAMETERS_PER_ACCOUNT,
        help_text="Unique parameter names (at most 100). Unknown names are answered in invalidParameters.",
    )


class ParametersDeletedSerializer(serializers.Serializer):
    deletedCount = serializers.IntegerField()
    deletedParameters = serializers.ListField(child=serializers.CharField())
    invalidParameters = serializers.ListField(child=serializers.CharField())

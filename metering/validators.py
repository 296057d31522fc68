"""Field rules of meter types and meters, declared once on the model fields.

Model fields carry these validators, so the API serializers (DRF copies model validators), the
admin forms and the services' ``full_clean()`` all apply the same rules. Their error codes are their
own: a model field replaces the message of a code it knows (a JSONField's ``invalid`` reads "Value
must be valid JSON."), which would hide what is wrong.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator

from metering import periods

MAX_THRESHOLDS = 5
MAX_THRESHOLD_NAME_LENGTH = 80
MAX_DIMENSIONS = 20
MAX_DIMENSION_LENGTH = 100

validate_meter_type_name = RegexValidator(
    r"^[\w\s().-]+\Z",
    "Only letters, digits, spaces and the characters - _ . ( ) are allowed.",
)
validate_api_name = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z",
    "Only letters, digits and - _ . are allowed, starting with a letter or digit.",
)


def validate_cron(value: str) -> None:
    try:
        periods.validate_cron(value)
    except periods.InvalidSchedule as error:
        raise ValidationError(str(error), code="invalid_cron")


def validate_timezone(value: str) -> None:
    try:
        periods.validate_timezone(value)
    except periods.InvalidSchedule as error:
        raise ValidationError(str(error), code="invalid_timezone")


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def validate_thresholds(value: Any) -> None:
    """At most five, each ``{"name"?, "value": n}`` or ``{"name"?, "capacityPercentage": p}``."""
    if not isinstance(value, list):
        raise ValidationError("Thresholds must be a list.", code="invalid_thresholds")
    if len(value) > MAX_THRESHOLDS:
        raise ValidationError(f"At most {MAX_THRESHOLDS} thresholds are allowed.", code="max_length")
    names: set[str] = set()
    for position, threshold in enumerate(value, start=1):
        prefix = f"Threshold {position}"
        if not isinstance(threshold, dict):
            raise ValidationError(f"{prefix} must be an object.", code="invalid_thresholds")
        unknown = sorted(set(threshold) - {"name", "value", "capacityPercentage"})
        if unknown:
            raise ValidationError(
                f"{prefix} has unknown fields: {', '.join(unknown)}.", code="invalid_thresholds"
            )
        kinds = [key for key in ("value", "capacityPercentage") if key in threshold]
        if len(kinds) != 1:
            raise ValidationError(
                f"{prefix} must have exactly one of value or capacityPercentage.", code="invalid_thresholds"
            )
        amount = threshold[kinds[0]]
        if not _is_number(amount) or amount < 0:
            raise ValidationError(f"{prefix}: {kinds[0]} must be a number >= 0.", code="invalid_thresholds")
        if "name" in threshold:
            name = threshold["name"]
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_THRESHOLD_NAME_LENGTH:
                raise ValidationError(
                    f"{prefix}: name must be a non-empty string of at most {MAX_THRESHOLD_NAME_LENGTH} characters.",
                    code="invalid_thresholds",
                )
            if name in names:
                raise ValidationError(
                    f"{prefix}: the name '{name}' is used twice.", code="invalid_thresholds"
                )
            names.add(name)


def thresholds_use_capacity(thresholds: list[dict[str, Any]]) -> bool:
    return any("capacityPercentage" in threshold for threshold in thresholds or [])


def validate_dimensions(value: Any) -> None:
    """Dimension names the compatible APIs group usage by: distinct non-empty strings."""
    if not isinstance(value, list):
        raise ValidationError("Dimensions must be a list of strings.", code="invalid_dimensions")
    if len(value) > MAX_DIMENSIONS:
        raise ValidationError(f"At most {MAX_DIMENSIONS} dimensions are allowed.", code="max_length")
    if not all(isinstance(item, str) and 0 < len(item.strip()) <= MAX_DIMENSION_LENGTH for item in value):
        raise ValidationError(
            f"Each dimension must be a non-empty string of at most {MAX_DIMENSION_LENGTH} characters.",
            code="invalid_dimensions",
        )
    if len(set(value)) != len(value):
        raise ValidationError("Dimensions must be distinct.", code="invalid_dimensions")


def validate_json_object(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError("Must be a JSON object.", code="not_an_object")

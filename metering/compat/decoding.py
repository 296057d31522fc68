"""Request bodies of the hot paths, decoded and validated by msgspec (no DRF on these paths)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import msgspec

from config.api.errors import ApiError, ValidationFailed
from metering.ledger import VALUE_LIMIT

_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def decode(decoder: msgspec.json.Decoder, body: bytes) -> Any:
    """Decode ``body`` or raise the API's 400: MALFORMED_JSON, or VALIDATION_ERROR with the field."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as error:
        match = _PATH.match(str(error))
        message = match.group("message") if match else str(error)
        # msgspec names a map's value "[...]": the field is the map itself.
        field = (match.group("path") or "").replace("[...]", "").lstrip(".") if match else ""
        missing = re.match(r"Object missing required field `(\w+)`", message)
        if missing:
            field = f"{field}.{missing.group(1)}".lstrip(".") if field else missing.group(1)
        raise ValidationFailed(f"{field}: {message}" if field else message,
                               details=[{"field": field, "message": message}])
    except msgspec.DecodeError as error:
        raise ApiError(f"The body is not valid JSON: {error}", code="MALFORMED_JSON", status=400)


def check_amount(value: Decimal | None, field: str) -> None:
    """A usage amount must be a finite number below 10^26 in magnitude (numeric(38, 12))."""
    if value is not None and (not value.is_finite() or abs(value) >= VALUE_LIMIT):
        raise ValidationFailed.for_field(field, "Must be a finite number below 10^26 in magnitude.")

"""Request bodies of the hot paths, decoded and validated by msgspec (no DRF on these paths)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import msgspec

from config.api.errors import ApiError, ValidationFailed
from config.api.parsers import check_structure
from metering.ledger import VALUE_LIMIT

_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def decode(decoder: msgspec.json.Decoder, body: bytes) -> Any:
    """Decode ``body`` or raise the API's 400: MALFORMED_JSON, or VALIDATION_ERROR with the field.

    A null character (``\\u0000``, the only way JSON can carry one) is refused wherever it is, as on
    every endpoint: PostgreSQL can store it in neither text nor jsonb, not even in data correction.
    msgspec refuses lone surrogates itself. The walk runs only for bodies holding the escape.
    """
    try:
        decoded = decoder.decode(body)
        if b"\\u0000" in body:
            check_structure(msgspec.json.decode(body))
        return decoded
    except msgspec.ValidationError as error:
        match = _PATH.match(str(error))
        message = match.group("message") if match else str(error)
        # msgspec names a map's value "[...]": the field is the map itself.
        field = (match.group("path") or "").replace("[...]", "").lstrip(".") if match else ""
        missing = re.match(r"Object missing required field `(\w+)`", message)
        if missing:
            field = f"{field}.{missing.group(1)}".lstrip(".") if field else missing.group(1)
        raise ValidationFailed(
            f"{field}: {message}" if field else message, details=[{"field": field, "message": message}]
        )
    except msgspec.DecodeError as error:
        raise ApiError(f"The body is not valid JSON: {error}", code="MALFORMED_JSON", status=400)


# The first byte of a JSON number (msgspec has checked the JSON is well formed).
_NUMBER_START = frozenset(b"-0123456789")
AMOUNT_MESSAGE = "Must be a finite number below 10^26 in magnitude."


def decode_amount(raw: msgspec.Raw, field: str) -> Decimal:
    """A usage amount, exact: a JSON number below 10^26 in magnitude (numeric(38, 12)).

    Amounts are decoded as ``msgspec.Raw`` because msgspec would turn a string ("12", "NaN") into a
    Decimal too, and the schema says number: a string, null or anything else is a 400.
    """
    text = bytes(raw)
    if text[0] not in _NUMBER_START:
        raise ValidationFailed.for_field(field, "Must be a number.")
    value = Decimal(text.decode("ascii"))
    if abs(value) >= VALUE_LIMIT:
        raise ValidationFailed.for_field(field, AMOUNT_MESSAGE)
    return value

"""JSON and number conversions between the ledger's Python values and its columns."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import msgspec

ENCODER = msgspec.json.Encoder(decimal_format="number")
SORTED_ENCODER = msgspec.json.Encoder(decimal_format="number", order="sorted")


def json_number(value: Decimal | None) -> int | float | None:
    """A Decimal as a JSON number (meter groups, notification payloads)."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def to_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def from_json(value: Any) -> Any:
    """A JSON column's value as Python (PostgreSQL rows read through the ledger's cursor hold text)."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def encode(value: Any) -> str:
    return ENCODER.encode(value).decode()


# A JSON \u0000 escape (not an escaped backslash followed by "u0000").
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def storable_json(text: str) -> str:
    """JSON text PostgreSQL's jsonb takes: a refused record keeps every field, its NUL characters
    (records from streams may hold them) shown as U+FFFD, so that the correction can be stored."""
    return _NUL_ESCAPE.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def storable_text(text: str) -> str:
    return text.replace("\x00", "\ufffd")


def json_text(value: Any) -> str:
    """A JSON column's value as text (rows read from PostgreSQL already hold it as text)."""
    return value if isinstance(value, str) else encode(value)

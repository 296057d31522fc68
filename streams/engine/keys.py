"""Keys built from ordered field values: session keys, deduplication keys, group keys.

``session_key`` is the ONE function that turns ordered field values into a session's key. The
script aggregator computes it from a record's key fields; ``GET /aggregation/stores/{id}/sessions/
lookup?fieldValues=…`` computes it from the query's strings. For both to meet, a record's values
are first written the way a user types them in a query (``field_value_text``): strings as they
are, integers in decimal, integral doubles without ``.0`` (JSON has one number type), other doubles
in Python's shortest round-trip form, booleans as ``true``/``false``. Order matters:
``["a", "b"]`` and ``["b", "a"]`` are different sessions.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from streams.engine.records import MISSING, path_getter


class KeyFieldInvalid(ValueError):
    """A record cannot be keyed: a key field is missing, null, an object or a list."""


def field_value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise KeyFieldInvalid("is not a finite number")
        return str(int(value)) if value.is_integer() else repr(value)
    raise KeyFieldInvalid(
        "is null" if value is None else f"is {'an object' if isinstance(value, dict) else 'a list'}"
    )


def session_key(field_values: Sequence[str]) -> str:
    """The key of the session for these field values, in the key fields' order (64 hex digits)."""
    canonical = json.dumps(list(field_values), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def key_values_reader(key_fields: Sequence[str]) -> Callable[[dict], tuple[list[Any], str]]:
    """``record -> (the key fields' values, session_key of their texts)``; raises
    ``KeyFieldInvalid`` naming the field that cannot be part of a key."""
    getters = [(field, path_getter(field)) for field in key_fields]

    def read(record: dict) -> tuple[list[Any], str]:
        values, texts = [], []
        for field, get in getters:
            value = get(record)
            if value is MISSING:
                raise KeyFieldInvalid(f"key field {field} is missing")
            try:
                texts.append(field_value_text(value))
            except KeyFieldInvalid as exc:
                raise KeyFieldInvalid(f"key field {field} {exc}")
            values.append(value)
        return values, session_key(texts)

    return read

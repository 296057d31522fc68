"""JSON decoding with input limits, for DRF views and plain hot-path views alike.

Rejected with 400 before any work is done: malformed JSON, NaN/Infinity and numbers out of the
float range, nesting deeper than ``MAX_JSON_DEPTH``. (Bodies over ``API_MAX_BODY_BYTES`` never get
here: the middleware answers 413 first, which also bounds array sizes.)
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from rest_framework.parsers import JSONParser

from config.api.errors import ApiError

MAX_JSON_DEPTH = 32


class MalformedJson(ApiError):
    status = 400
    code = "MALFORMED_JSON"
    message = "The request body is not valid JSON."


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a valid JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _check_depth(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise MalformedJson(f"JSON nesting deeper than {MAX_JSON_DEPTH} levels.", code="JSON_TOO_DEEP")
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, (dict, list)))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))


def decode_json(body: bytes | str) -> Any:
    """Decode a request body or raise ``MalformedJson`` (400)."""
    if not body:
        raise MalformedJson("The request body is empty.")
    try:
        value = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise MalformedJson(f"JSON nesting deeper than {MAX_JSON_DEPTH} levels.", code="JSON_TOO_DEEP")
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedJson(f"The request body is not valid JSON: {exc}"[:300])
    _check_depth(value)
    return value


def is_finite_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, Decimal)):
        return True
    return isinstance(value, float) and math.isfinite(value)


class LimitedJSONParser(JSONParser):
    """DRF's JSON parser with the limits above."""

    def parse(self, stream, media_type=None, parser_context=None):
        # MalformedJson propagates through DRF's request parsing to the exception handler.
        return decode_json(stream.read() if stream is not None else b"")

"""JSON decoding with input limits, for DRF views and plain hot-path views alike.

Rejected with 400 before any work is done: malformed JSON, NaN/Infinity and numbers out of the
float range, nesting deeper than ``MAX_JSON_DEPTH``, and strings (values or keys) holding a null
character or a lone surrogate: PostgreSQL stores neither in text or jsonb, so they would fail
deep inside a write as a 500 instead of here as a 400. (Bodies over ``API_MAX_BODY_BYTES`` never get
here: the middleware answers 413 first, which also bounds array sizes.)
"""

from __future__ import annotations

import json
import math
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


NULL_CHARACTER_MESSAGE = "Null characters are not allowed."  # DRF's own wording, for one message
SURROGATE_MESSAGE = "Strings must be valid Unicode (no lone surrogates)."


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return NULL_CHARACTER_MESSAGE
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def check_structure(value: Any) -> None:
    """Depth and string contents, iteratively (a recursive walk would overflow on deep input).
    A field path (``records[3].name``) is built only for containers and for an error."""
    stack: list[tuple[Any, int, str, str | int | None]] = [(value, 1, "", None)]
    while stack:
        node, depth, parent, key = stack.pop()
        if isinstance(node, str):
            problem = _string_problem(node)
            if problem:
                path = parent if key is None else _path(parent, key)
                raise ApiError(problem, details=[{"field": path, "message": problem}])
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > MAX_JSON_DEPTH:
            raise MalformedJson(f"JSON nesting deeper than {MAX_JSON_DEPTH} levels.", code="JSON_TOO_DEEP")
        path = parent if key is None else _path(parent, key)
        if isinstance(node, dict):
            for name, child in node.items():
                problem = _string_problem(name)
                if problem:
                    raise ApiError(problem, details=[{"field": _path(path, name), "message": problem}])
                stack.append((child, depth + 1, path, name))
        else:
            stack.extend((child, depth + 1, path, index) for index, child in enumerate(node))


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
    check_structure(value)
    return value


class LimitedJSONParser(JSONParser):
    """DRF's JSON parser with the limits above."""

    def parse(self, stream, media_type=None, parser_context=None):
        # MalformedJson propagates through DRF's request parsing to the exception handler.
        return decode_json(stream.read() if stream is not None else b"")

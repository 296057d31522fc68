"""Python (JSON-shaped) values to CEL values and back.

``from_cel`` is where a result becomes the record the next node receives, so it is also where a
result the rest of the engine cannot use is refused with its reason: a number that is not finite
(NaN, infinity: no JSON form, and PostgreSQL's jsonb refuses them), a string holding a NUL
character or a lone surrogate (PostgreSQL cannot store either).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from typing import Any

import celpy
from celpy import celtypes
from celpy.evaluation import CELEvalError

from streams.engine.cel.budget import CelError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_new_int = int.__new__


def int64(value: int) -> celtypes.IntType:
    """``IntType(value)`` for a Python int: celpy's constructor builds a decorator on every call
    (about 10 µs); inside the int64 range the result is the same object shape, made directly."""
    if INT64_MIN <= value <= INT64_MAX:
        return _new_int(celtypes.IntType, value)
    raise ValueError("overflow")


_SCALARS_TO_CEL: dict[type, Callable[[Any], Any]] = {
    str: celtypes.StringType,
    int: int64,
    float: celtypes.DoubleType,
    bool: celtypes.BoolType,
}


def to_cel(value: Any) -> Any:
    """A JSON-shaped Python value as celpy's ``json_to_cel`` makes it, a little faster."""
    convert = _SCALARS_TO_CEL.get(type(value))
    if convert is not None:
        return convert(value)
    if value is None:
        return None
    if isinstance(value, dict):
        return celtypes.MapType({to_cel(key): to_cel(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return celtypes.ListType([to_cel(item) for item in value])
    return celpy.json_to_cel(value)  # datetimes, timedeltas, subclasses: celpy's own rules


def _map_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return _text(str(key))


def _format_timestamp(value: datetime.datetime) -> str:
    value = value.astimezone(datetime.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


NOT_FINITE = "the result is not a finite number (NaN or infinity): it has no JSON form"
NUL_CHARACTER = "the result holds a NUL character (\\u0000), which cannot be stored"
LONE_SURROGATE = "the result holds a lone surrogate (\\ud800-\\udfff), which is not valid Unicode"


def _text(value: str) -> str:
    if "\x00" in value:
        raise CelError(NUL_CHARACTER)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise CelError(LONE_SURROGATE)
    return value


def from_cel(value: Any) -> Any:
    """A CEL result as a JSON-shaped Python value (the record the next node receives)."""
    if isinstance(value, CELEvalError):
        raise CelError(message(value))
    if value is None:
        return None
    if isinstance(value, bool | celtypes.BoolType):  # BoolType subclasses int (not bool): test it first
        return bool(value)
    if isinstance(value, celtypes.TimestampType | datetime.datetime):
        return _format_timestamp(value)
    if isinstance(value, celtypes.DurationType | datetime.timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CelError(NOT_FINITE)
        return float(value)
    if isinstance(value, str):
        return _text(str(value))
    if isinstance(value, bytes):
        return _text(value.decode("utf-8", errors="replace"))
    if isinstance(value, dict):
        return {_map_key(key): from_cel(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [from_cel(item) for item in value]
    raise CelError(f"the result has no JSON form ({type(value).__name__})")


def message(error: BaseException) -> str:
    if isinstance(error, CELEvalError) and error.args:
        text = str(error.args[0])
        # celpy appends the whole activation to "undeclared reference" messages; keep the name only.
        return text.split(" (in activation", 1)[0]
    return str(error) or error.__class__.__name__

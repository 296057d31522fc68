"""Conditions of the filter node and of the Meter processor's guiding rules, as predicates.

A condition compares one record field with a typed value (``streams.nodes.Condition``, already
validated). The record's value must be of the condition's type — with two conversions a JSON
producer often needs: for ``number`` a numeric string (``"12.5"``), for ``boolean`` the strings
``"true"``/``"false"`` (any case). A field that is missing, null or of another type fails every
positive operator (``equals``, ``contains``, ``in``, ``greaterThan``…) and satisfies the negative
ones (``notEquals``, ``notContains``, ``notIn``) and ``notExists``. String comparisons are exact
(case-sensitive). Numbers compare by value (``1`` equals ``1.0``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from streams.engine.records import MISSING, path_getter
from streams.nodes import Condition

Predicate = Callable[[dict], bool]
NO_VALUE: Any = object()  # the field's value cannot be read as the condition's type

NEGATIVE_OPERATORS = frozenset({"notEquals", "notContains", "notIn"})


def _as_string(value: Any) -> Any:
    return value if isinstance(value, str) else NO_VALUE


def _as_number(value: Any) -> Any:
    if isinstance(value, bool):
        return NO_VALUE
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return NO_VALUE
        return number if math.isfinite(number) else NO_VALUE
    return NO_VALUE


def _as_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return NO_VALUE


_CONVERTERS = {"string": _as_string, "number": _as_number, "boolean": _as_boolean}


def _comparison(operator: str, expected: Any) -> Callable[[Any], bool]:
    if operator == "equals":
        return lambda value: value == expected
    if operator == "notEquals":
        return lambda value: value != expected
    if operator == "contains":
        return lambda value: expected in value
    if operator == "notContains":
        return lambda value: expected not in value
    if operator == "startsWith":
        return lambda value: value.startswith(expected)
    if operator == "endsWith":
        return lambda value: value.endswith(expected)
    if operator == "greaterThan":
        return lambda value: value > expected
    if operator == "greaterThanOrEqual":
        return lambda value: value >= expected
    if operator == "lessThan":
        return lambda value: value < expected
    if operator == "lessThanOrEqual":
        return lambda value: value <= expected
    if operator in ("in", "notIn"):
        members = frozenset(expected)
        return (lambda value: value in members) if operator == "in" else (lambda value: value not in members)
    raise ValueError(f"unknown operator {operator}")


def condition_predicate(condition: Condition) -> Predicate:
    get = path_getter(condition.field)
    operator = condition.operator
    if operator == "exists":
        return lambda record: get(record) not in (MISSING, None)
    if operator == "notExists":
        return lambda record: get(record) in (MISSING, None)
    convert = _CONVERTERS[condition.type]
    compare = _comparison(operator, condition.value)
    unreadable = operator in NEGATIVE_OPERATORS
    # Values already of the condition's type skip the conversion (the common case, per record).
    native = {"string": (str,), "number": (int, float), "boolean": (bool,)}[condition.type]
    name = condition.field if "." not in condition.field else None

    def predicate(record: dict) -> bool:
        value = record.get(name) if name is not None else get(record)
        if value is MISSING or value is None:
            return unreadable
        if type(value) not in native:
            value = convert(value)
            if value is NO_VALUE:
                return unreadable
        return compare(value)

    return predicate


def conditions_predicate(conditions: Sequence[Condition], operator: str) -> Predicate:
    """All conditions (``AND``) or any (``OR``); an empty list matches every record."""
    predicates = tuple(condition_predicate(condition) for condition in conditions)
    if not predicates:
        return lambda record: True
    if len(predicates) == 1:
        return predicates[0]
    if operator == "OR":
        return lambda record: any(predicate(record) for predicate in predicates)
    return lambda record: all(predicate(record) for predicate in predicates)

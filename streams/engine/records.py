"""Records are JSON objects (dicts). Field paths are dot-separated (``customer.id``).

Nodes never change a record they received: several successors may share it. ``path_set``
copies the dicts along the path it writes (copy-on-write) and leaves the original untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MISSING: Any = object()  # a field the record does not have (``None`` is a present null)


class PathConflict(ValueError):
    """Setting ``a.b`` where ``a`` holds something other than an object."""


def path_getter(path: str) -> Callable[[dict], Any]:
    """A fast ``record -> value`` for ``path`` (``MISSING`` when absent), built once per node."""
    segments = tuple(path.split("."))
    if len(segments) == 1:
        name = segments[0]
        return lambda record: record.get(name, MISSING)

    def get(record: dict) -> Any:
        value: Any = record
        for segment in segments:
            if type(value) is not dict:
                return MISSING
            value = value.get(segment, MISSING)
            if value is MISSING:
                return MISSING
        return value

    return get


def path_get(record: dict, path: str) -> Any:
    return path_getter(path)(record)


def paths_set(record: dict, assignments: list[tuple[tuple[str, ...], Any]]) -> dict:
    """A copy of ``record`` with each ``(segments, value)`` set; nested objects on the way are
    copied (or created). Raises ``PathConflict`` when a segment on the way is not an object."""
    result = dict(record)
    copied: set[int] = {id(result)}
    for segments, value in assignments:
        target = result
        for depth, segment in enumerate(segments[:-1]):
            child = target.get(segment, MISSING)
            if child is MISSING or child is None:
                child = {}
            elif type(child) is not dict:
                raise PathConflict(
                    f"cannot set {'.'.join(segments)}: {'.'.join(segments[: depth + 1])} is not an object"
                )
            if id(child) not in copied:
                child = dict(child)
                copied.add(id(child))
            target[segment] = child
            target = child
        target[segments[-1]] = value
    return result

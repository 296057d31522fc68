"""limit/skip pagination and sortBy/sortOrder, as every list endpoint of the seeds has them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db.models import QuerySet

from config.api.errors import ValidationFailed

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Larger offsets overflow the database's OFFSET (a 64-bit integer) and can never find a row anyway.
MAX_SKIP = 2**31 - 1
INTEGER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class Page:
    limit: int
    skip: int


def _int_param(params, name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = params.get(name)
    if raw is None:  # absent; an empty value is not an integer (400), as the schema says
        return default
    # Plain ASCII digits only: int() would also take "1_0", " 7" and other scripts' digits.
    if not isinstance(raw, str) or not INTEGER.fullmatch(raw):
        raise ValidationFailed.for_field(name, f"{name} must be an integer.")
    try:
        value = int(raw)
    except ValueError:  # more digits than int() converts: out of any range
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValidationFailed.for_field(name, f"{name} must be {bound}.")
    return value


def page_from(params) -> Page:
    return Page(
        limit=_int_param(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        skip=_int_param(params, "skip", 0, 0, MAX_SKIP),
    )


def sort_queryset(queryset: QuerySet, params, *, fields: dict[str, str], default: str) -> QuerySet:
    """``fields`` maps the API's sortBy names to model fields; ``default`` is an API name."""
    sort_by = params.get("sortBy", default)
    if sort_by not in fields:
        raise ValidationFailed.for_field("sortBy", f"sortBy must be one of: {', '.join(sorted(fields))}.")
    order = params.get("sortOrder", "ASC")
    if order not in ("ASC", "DESC"):
        raise ValidationFailed.for_field("sortOrder", "sortOrder must be ASC or DESC.")
    prefix = "-" if order == "DESC" else ""
    return queryset.order_by(f"{prefix}{fields[sort_by]}", f"{prefix}pk")


def paginate(queryset: QuerySet, params) -> QuerySet:
    page = page_from(params)
    return queryset[page.skip : page.skip + page.limit]

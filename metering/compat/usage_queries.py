"""Seed 002's ``POST /usage``: a meter's usage per time bucket, grouped and filtered.

Exact at any alignment: the events with ``startTimeInSeconds ≤ time < endTimeInSeconds``, in
UTC calendar buckets (HOUR, DAY, WEEK from Monday, MONTH), each keyed by its bucket's start in
Unix seconds — the first and last buckets count only their part inside the range. Whole hours
come from the hourly rollups, the partial ones from the ledger (``metering.usage_buckets``);
grouping by or filtering on dimensions reads the ledger. Callable from selectors too
(``usage_query(account_id=…, query=UsageQuery(…))``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings

from config.api.errors import ValidationFailed
from metering.compat.amberflo import meter_definition_get
from metering.usage_buckets import (
    INTERVALS,
    Figures,
    TooManyBuckets,
    UsageScope,
    bucket_after,
    bucket_floor,
    bucket_starts,
    usage_per_bucket,
)

CUSTOMER = "customerId"
AGGREGATIONS = ("SUM", "MAX", "COUNT")
__all__ = [
    "AGGREGATIONS",
    "CUSTOMER",
    "INTERVALS",
    "UsageQuery",
    "bucket_after",
    "bucket_floor",
    "usage_query",
]


@dataclass(frozen=True)
class UsageQuery:
    meter_api_name: str
    start: datetime
    end: datetime
    aggregation: str
    interval: str
    group_by: list[str] = field(default_factory=list)
    customers: list[str] | None = None
    filters: dict[str, list[str]] = field(default_factory=dict)
    # The Amberflo SDK's ``take``: keep the ``take_limit`` groups of highest total (lowest if ascending).
    take_limit: int | None = None
    take_ascending: bool = False


def buckets(start: datetime, end: datetime, interval: str) -> list[datetime]:
    """Every bucket start (UTC) from the one holding ``start`` to the last before ``end``."""
    limit = settings.USAGE_QUERY_MAX_BUCKETS
    try:
        return bucket_starts(start, end, interval, limit=limit)
    except TooManyBuckets:
        raise ValidationFailed.for_field(
            "timeGroupingInterval", f"The range holds more than {limit} {interval.lower()} buckets."
        )


def usage_query(*, account_id: uuid.UUID, query: UsageQuery) -> dict[str, Any]:
    """``{"clientMeters": {meterApiName: [{"groupInfo": {...}, "records": [{"<bucket seconds>": value}]}]}}``.

    Every bucket of the range is answered (0 when it has no usage). SUM adds values, MAX keeps
    the highest (0 without usage), COUNT counts events; a UNIQUE_CUSTOMERS_COUNT definition
    answers the number of distinct customers with usage in the bucket whatever the aggregation.
    ``groupInfo`` holds each requested dimension's value as text (a number or boolean as its JSON
    text); an event without the dimension is in the group whose value is ``""``.
    """
    if query.aggregation not in AGGREGATIONS:
        raise ValidationFailed.for_field(
            "aggregation", f"aggregation must be one of: {', '.join(AGGREGATIONS)}."
        )
    if query.interval not in INTERVALS:
        raise ValidationFailed.for_field(
            "timeGroupingInterval", f"timeGroupingInterval must be one of: {', '.join(INTERVALS)}."
        )
    if query.end <= query.start:
        raise ValidationFailed.for_field(
            "endTimeInSeconds", "endTimeInSeconds must be after startTimeInSeconds."
        )
    meter_type = meter_definition_get(account_id=account_id, meter_api_name=query.meter_api_name)
    all_buckets = buckets(query.start, query.end, query.interval)
    dimensions = [name for name in dict.fromkeys(query.group_by) if name != CUSTOMER]
    by_customer = CUSTOMER in query.group_by
    customers = query.customers
    filters = dict(query.filters)
    if CUSTOMER in filters:
        wanted = filters.pop(CUSTOMER)
        customers = [c for c in customers if c in wanted] if customers is not None else list(wanted)
    unique = meter_type.counts_unique_customers
    found = usage_per_bucket(
        scope=UsageScope(
            account_id=account_id, meter_type_ids=[meter_type.pk], customers=customers, filters=filters
        ),
        start=query.start,
        end=query.end,
        interval=query.interval,
        dimensions=dimensions,
        by_customer=by_customer,
        unique_customers=unique,
    )
    series: dict[tuple, dict[datetime, Any]] = {}
    for (bucket, *group), figures in found.items():
        series.setdefault(tuple(group), {})[bucket] = _value(figures, query.aggregation, unique)
    if not series and not query.group_by:
        series[()] = {}
    groups = sorted(series)
    if query.take_limit is not None:
        groups = _taken(groups, series, query)
    names = dimensions + ([CUSTOMER] if by_customer else [])
    return {
        "clientMeters": {
            meter_type.api_name: [
                {
                    "groupInfo": dict(zip(names, (str(part) for part in group), strict=True)),
                    "records": [
                        {str(int(bucket.timestamp())): series[group].get(bucket, 0)} for bucket in all_buckets
                    ],
                }
                for group in groups
            ]
        }
    }


def _taken(groups: list[tuple], series: dict[tuple, dict[datetime, Any]], query: UsageQuery) -> list[tuple]:
    """The ``take_limit`` groups whose value over the range (the highest bucket for MAX, the sum of
    the buckets otherwise) is highest, or lowest when ascending; ties in group order. Answered in
    that rank order, as Amberflo answers a ``take``."""

    def total(group: tuple) -> float:
        values = list(series[group].values())
        return float(max(values, default=0) if query.aggregation == "MAX" else sum(values))

    ranked = sorted(groups, key=lambda group: total(group) if query.take_ascending else -total(group))
    return ranked[: query.take_limit]


def _value(figures: Figures, aggregation: str, unique: bool) -> int | float:
    if unique:
        return figures.customers
    if aggregation == "SUM":
        return float(figures.total)
    if aggregation == "MAX":
        return float(figures.highest) if figures.highest is not None else 0.0
    return figures.records

"""Seed 002's ``POST /usage``: a meter's usage per time bucket, grouped and filtered.

Without dimension grouping or filters the answer comes from the hourly rollups (a month of one
customer is at most 744 rows, whatever its event count); the time range is then taken at hour
precision (``startTimeInSeconds`` rounded down to the hour). Grouping by or filtering on
dimensions reads the ledger itself, at the second.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Trunc

from config.api.errors import ValidationFailed
from metering.compat.amberflo import meter_definition_get
from metering.models import UsageRecord, UsageRollup

CUSTOMER = "customerId"
INTERVALS = {"HOUR": "hour", "DAY": "day", "WEEK": "week", "MONTH": "month"}
AGGREGATIONS = ("SUM", "MAX", "COUNT")


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


def bucket_floor(moment: datetime, interval: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if interval == "HOUR":
        return moment
    moment = moment.replace(hour=0)
    if interval == "WEEK":  # ISO weeks: Monday
        return moment - timedelta(days=moment.weekday())
    if interval == "MONTH":
        return moment.replace(day=1)
    return moment


def bucket_after(bucket: datetime, interval: str) -> datetime:
    if interval == "HOUR":
        return bucket + timedelta(hours=1)
    if interval == "DAY":
        return bucket + timedelta(days=1)
    if interval == "WEEK":
        return bucket + timedelta(days=7)
    return bucket.replace(year=bucket.year + bucket.month // 12, month=bucket.month % 12 + 1)


def buckets(start: datetime, end: datetime, interval: str) -> list[datetime]:
    """Every bucket start from the one holding ``start`` to the last before ``end``."""
    limit = settings.USAGE_QUERY_MAX_BUCKETS
    found: list[datetime] = []
    bucket = bucket_floor(start, interval)
    while bucket < end:
        if len(found) >= limit:
            raise ValidationFailed.for_field(
                "timeGroupingInterval", f"The range holds more than {limit} {interval.lower()} buckets."
            )
        found.append(bucket)
        bucket = bucket_after(bucket, interval)
    return found


def usage_query(*, account_id: uuid.UUID, query: UsageQuery) -> dict[str, Any]:
    """``{"clientMeters": {meterApiName: [{"groupInfo": {...}, "records": [{"<bucket seconds>": value}]}]}}``.

    Every bucket of the range is answered (0 when it has no usage). A UNIQUE_CUSTOMERS_COUNT
    definition answers the number of distinct customers with usage in the bucket.
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
    if dimensions or filters:
        rows = _from_ledger(
            account_id,
            meter_type.pk,
            query,
            dimensions,
            by_customer,
            customers,
            filters,
            meter_type.counts_unique_customers,
        )
    else:
        rows = _from_rollups(
            account_id, meter_type.pk, query, by_customer, customers, meter_type.counts_unique_customers
        )
    series: dict[tuple, dict[datetime, Any]] = {}
    for row in rows:
        group = tuple(row[f"g{position}"] for position in range(len(dimensions))) + (
            (row["user_id"],) if by_customer else ()
        )
        if meter_type.counts_unique_customers:
            value: Any = row["customers"]
        elif query.aggregation == "SUM":
            value = float(row["total"] or Decimal(0))
        elif query.aggregation == "MAX":
            value = float(row["highest"] if row["highest"] is not None else Decimal(0))
        else:
            value = int(row["records"] or 0)
        series.setdefault(group, {})[row["bucket"]] = value
    if not series and not query.group_by:
        series[()] = {}
    names = dimensions + ([CUSTOMER] if by_customer else [])
    answer = []
    for group in sorted(series, key=lambda key: tuple("" if part is None else str(part) for part in key)):
        values = series[group]
        answer.append(
            {
                "groupInfo": {
                    name: (None if part is None else str(part))
                    for name, part in zip(names, group, strict=True)
                },
                "records": [{str(int(bucket.timestamp())): values.get(bucket, 0)} for bucket in all_buckets],
            }
        )
    return {"clientMeters": {meter_type.api_name: answer}}


def _figures(value: str, highest: str, records, unique: bool) -> dict[str, Any]:
    """The aggregates of a bucket. The distinct-customer count only when the definition answers it:
    a COUNT(DISTINCT) forces a sorted aggregate, far slower over a month of every customer."""
    figures = {"total": Sum(value), "highest": Max(highest), "records": records}
    if unique:
        figures["customers"] = Count("user_id", distinct=True)
    return figures


def _from_rollups(account_id, meter_type_id, query: UsageQuery, by_customer: bool, customers, unique: bool):
    rows = UsageRollup.objects.filter(
        account_id=account_id,
        meter_type_id=meter_type_id,
        hour__gte=bucket_floor(query.start, "HOUR"),
        hour__lt=query.end,
    )
    if customers is not None:
        rows = rows.filter(user_id__in=customers)
    rows = rows.annotate(bucket=Trunc("hour", INTERVALS[query.interval], tzinfo=UTC))
    return (
        rows.values("bucket", *(["user_id"] if by_customer else []))
        .annotate(**_figures("sum", "max", Sum("count"), unique))
        .order_by()
    )


def _from_ledger(
    account_id,
    meter_type_id,
    query: UsageQuery,
    dimensions,
    by_customer: bool,
    customers,
    filters,
    unique: bool,
):
    rows = UsageRecord.objects.filter(
        account_id=account_id,
        meter_type_id=meter_type_id,
        timestamp__gte=query.start,
        timestamp__lt=query.end,
    )
    if customers is not None:
        rows = rows.filter(user_id__in=customers)
    for position, (name, values) in enumerate(filters.items()):
        rows = rows.annotate(**{f"f{position}": KeyTextTransform(name, "dimensions")}).filter(
            **{f"f{position}__in": [str(value) for value in values]}
        )
    groups = {
        f"g{position}": KeyTextTransform(name, "dimensions") for position, name in enumerate(dimensions)
    }
    rows = rows.annotate(bucket=Trunc("timestamp", INTERVALS[query.interval], tzinfo=UTC), **groups)
    return (
        rows.values("bucket", *groups, *(["user_id"] if by_customer else []))
        .annotate(**_figures("value", "value", Count("id"), unique))
        .order_by()
    )

"""Exact usage per time bucket: the hourly rollups for whole hours, the ledger for the rest.

Every answer about usage over a time range (``POST /usage``, the console's and the admin's usage
per day) reads through ``usage_per_bucket``. A range is half-open, ``start ≤ timestamp < end``, at
any alignment (to the second, or finer). Buckets are calendar buckets — ``HOUR``, ``DAY``,
``WEEK`` (from Monday) or ``MONTH`` — in a zone: UTC for the Amberflo dialect, the meter type's
timezone for the console's days. A record counts in the bucket that holds its timestamp, read
from exactly one source:

- an hour (UTC) that lies wholly inside the range and inside one bucket comes from its rollup
  rows (one row per customer and hour, whatever the number of records in it);
- every other instant of the range comes from the ledger itself: the partial hour at each end of
  the range, and an hour that a bucket boundary cuts (a local midnight of a zone off UTC by a
  fraction of an hour, such as Asia/Kolkata). Without a customer filter the ledger is read for
  the customers the rollups of those hours name, so its (account, meter type, userId, timestamp)
  index answers each edge with a few probes per customer, whatever the size of the ledger.

Grouping by or filtering on dimensions reads the ledger alone (rollups have no dimensions). A
dimension an event lacks reads as ``""`` (never null), in groups and in filters alike.

Distinct-customer counts cannot be added across sources: a bucket read from both (an edge bucket)
unions the customers of its rollup hours with those of its ledger part; every other bucket counts
them in SQL.

The raw ledger of months detached by the retention (``LEDGER_RETENTION_MONTHS``) is gone: there,
only whole hours (the rollups) are answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal

from django.db.models import CharField, Count, Max, Min, Q, QuerySet, Sum
from django.db.models.expressions import Func
from django.db.models.fields.json import compile_json_path
from django.db.models.functions import Trunc

from metering import aggregation as aggregation_rules
from metering.models import UsageRecord, UsageRollup

INTERVALS = ("HOUR", "DAY", "WEEK", "MONTH")
_TRUNC = {"HOUR": "hour", "DAY": "day", "WEEK": "week", "MONTH": "month"}
HOUR = timedelta(hours=1)


# --- buckets --------------------------------------------------------------------------------------


def hour_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_ceil(moment: datetime) -> datetime:
    floor = hour_floor(moment)
    return floor if floor == moment else floor + HOUR


def bucket_floor(moment: datetime, interval: str, zone: tzinfo = UTC) -> datetime:
    """The start (UTC) of the ``interval`` bucket of ``zone`` that holds ``moment``."""
    local = moment.astimezone(zone).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    if interval != "HOUR":
        local = local.replace(hour=0)
        if interval == "WEEK":  # ISO weeks: Monday
            local -= timedelta(days=local.weekday())
        elif interval == "MONTH":
            local = local.replace(day=1)
    return local.replace(tzinfo=zone).astimezone(UTC)


def bucket_after(bucket: datetime, interval: str, zone: tzinfo = UTC) -> datetime:
    """The start (UTC) of the bucket after the one starting at ``bucket`` (wall-clock arithmetic in
    ``zone``, so a day is 23 or 25 hours across a DST change)."""
    if interval == "HOUR":
        return bucket + HOUR
    local = bucket.astimezone(zone).replace(tzinfo=None)
    if interval == "DAY":
        local += timedelta(days=1)
    elif interval == "WEEK":
        local += timedelta(days=7)
    else:
        local = local.replace(year=local.year + local.month // 12, month=local.month % 12 + 1)
    return local.replace(tzinfo=zone).astimezone(UTC)


def bucket_starts(start: datetime, end: datetime, interval: str, zone: tzinfo = UTC, limit: int = 0) -> list:
    """Every bucket start (UTC) from the bucket holding ``start`` to the last one before ``end``.
    More than ``limit`` buckets (when given) raises ``TooManyBuckets``."""
    found: list[datetime] = []
    bucket = bucket_floor(start, interval, zone)
    while bucket < end:
        if limit and len(found) >= limit:
            raise TooManyBuckets(limit)
        found.append(bucket)
        bucket = bucket_after(bucket, interval, zone)
    return found


class TooManyBuckets(ValueError):
    def __init__(self, limit: int):
        super().__init__(f"The range holds more than {limit} buckets.")
        self.limit = limit


# --- figures --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Figures:
    """A bucket's usage: the sum of values, the number of records, the highest and lowest value
    (None without records) and the number of distinct customers (when asked for)."""

    total: Decimal = Decimal(0)
    records: int = 0
    highest: Decimal | None = None
    lowest: Decimal | None = None
    customers: int = 0
    customer_ids: set[str] = field(default_factory=set)

    def value(self, aggregation: str) -> Decimal | None:
        """The bucket's usage as a meter type's aggregation counts it: SUM adds values, INCREMENT
        counts records, MAX keeps the highest, MIN the lowest (None without records)."""
        return aggregation_rules.from_totals(
            aggregation, total=self.total, count=self.records, highest=self.highest, lowest=self.lowest
        )

    def add(self, total, records, highest, lowest) -> None:
        if not records:
            return
        self.total += Decimal(total)
        self.records += int(records)
        highest, lowest = Decimal(highest), Decimal(lowest)
        self.highest = highest if self.highest is None else max(self.highest, highest)
        self.lowest = lowest if self.lowest is None else min(self.lowest, lowest)


# --- dimensions -----------------------------------------------------------------------------------


class DimensionText(Func):
    """A dimension's value as text: a string as itself, a number or boolean as its JSON text
    (``3``, ``2.5``, ``true``), ``""`` when the record lacks it (or holds null).

    Plain text on every database, so ``IN`` compares text with text (Django's key transforms
    compare a JSON-decoded right-hand side on SQLite, which fails for plain strings)."""

    output_field = CharField()

    def __init__(self, name: str):
        super().__init__("dimensions")
        self.name = name

    def as_sql(self, compiler, connection, **extra_context):  # SQLite and others: json_extract
        column, params = compiler.compile(self.source_expressions[0])
        path = compile_json_path([self.name])
        sql = (
            f"COALESCE(CASE json_type({column}, %s) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
            f"WHEN 'null' THEN NULL ELSE CAST(json_extract({column}, %s) AS TEXT) END, '')"
        )
        return sql, (*params, path, *params, path)

    def as_postgresql(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        return f"COALESCE(({column} ->> %s), '')", (*params, self.name)


# --- the query ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageScope:
    """Whose usage: an account's meter types, optionally some customers and dimension values."""

    account_id: uuid.UUID
    meter_type_ids: Sequence[uuid.UUID]
    customers: Sequence[str] | None = None
    filters: dict[str, Sequence[str]] = field(default_factory=dict)


Range = tuple[datetime, datetime]


def usage_per_bucket(
    *,
    scope: UsageScope,
    start: datetime,
    end: datetime,
    interval: str,
    zone: tzinfo = UTC,
    dimensions: Sequence[str] = (),
    by_customer: bool = False,
    by_type: bool = False,
    unique_customers: bool = False,
) -> dict[tuple, Figures]:
    """Usage in ``[start, end)`` per bucket of ``zone``: ``{(bucket start in UTC, [meter type id],
    *dimension values, [userId]): Figures}``, for the keys that have records only."""
    if interval not in _TRUNC:
        raise ValueError(f"interval must be one of {INTERVALS}.")
    answer: dict[tuple, Figures] = {}
    if end <= start:
        return answer
    names = (["meter_type_id"] if by_type else []) + [f"g{i}" for i in range(len(dimensions))]
    if by_customer:
        names.append("user_id")
    reading = _Reading(scope, interval, zone, dimensions, names, answer)
    if dimensions or scope.filters:
        reading.add(reading.ledger([(start, end)], directory=False), unique=unique_customers)
        return answer
    ledger, rollups = _plan(start, end, interval, zone)
    if not unique_customers:
        if rollups:
            reading.add(reading.rollups(rollups))
        if ledger:
            reading.add(reading.ledger(ledger, directory=True))
        return answer
    # Distinct customers: a bucket read from both sources unites their customers in Python.
    mixed = _mixed_buckets(ledger, rollups, interval, zone)
    alone, shared = _without(rollups, mixed), _within(rollups, mixed)
    if alone:
        reading.add(reading.rollups(alone), unique=True)
    if shared:
        reading.add(reading.rollups(shared), unite=True)
    if ledger:
        reading.add(reading.ledger(ledger, directory=True), unite=True)
    for figures in answer.values():
        if figures.customer_ids:
            figures.customers = len(figures.customer_ids)
            figures.customer_ids = set()
    return answer


def _plan(start: datetime, end: datetime, interval: str, zone: tzinfo) -> tuple[list[Range], list[Range]]:
    """``[start, end)`` as ledger ranges and rollup hour ranges, each rollup hour inside one bucket."""
    first, last = hour_ceil(start), hour_floor(end)
    if first >= last:
        return [(start, end)], []
    # Hours that a bucket boundary cuts (a midnight of a zone off UTC by a fraction of an hour).
    cut = sorted(
        {hour_floor(b) for b in bucket_starts(first, last, interval, zone)[1:] if b != hour_floor(b)}
    )
    ledger: list[Range] = [(start, first)] if start < first else []
    rollups: list[Range] = []
    cursor = first
    for hour in cut:
        if cursor < hour:
            rollups.append((cursor, hour))
        ledger.append((hour, hour + HOUR))
        cursor = hour + HOUR
    if cursor < last:
        rollups.append((cursor, last))
    if last < end:
        ledger.append((last, end))
    return _merged(ledger), rollups


def _merged(ranges: Iterable[Range]) -> list[Range]:
    merged: list[Range] = []
    for low, high in sorted(ranges):
        if merged and merged[-1][1] >= low:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _mixed_buckets(ledger: list[Range], rollups: list[Range], interval: str, zone: tzinfo) -> list[Range]:
    """The buckets (as ranges) that hold both a ledger part and a rollup part."""
    buckets = {bucket for low, high in ledger for bucket in bucket_starts(low, high, interval, zone)}
    spans = [(bucket, bucket_after(bucket, interval, zone)) for bucket in buckets]
    return _merged(span for span in spans if _within(rollups, [span]))


def _within(ranges: list[Range], cuts: list[Range]) -> list[Range]:
    return [
        (max(low, cut_low), min(high, cut_high))
        for low, high in ranges
        for cut_low, cut_high in cuts
        if max(low, cut_low) < min(high, cut_high)
    ]


def _without(ranges: list[Range], cuts: list[Range]) -> list[Range]:
    left = list(ranges)
    for cut_low, cut_high in cuts:
        pieces: list[Range] = []
        for low, high in left:
            if low < cut_low:
                pieces.append((low, min(high, cut_low)))
            if cut_high < high:
                pieces.append((max(low, cut_high), high))
        left = pieces
    return left


def _between(column: str, ranges: Iterable[Range]) -> Q:
    condition = Q()
    for low, high in ranges:
        condition |= Q(**{f"{column}__gte": low, f"{column}__lt": high})
    return condition


@dataclass
class _Reading:
    """One query's sources and how their grouped rows add up into ``answer``."""

    scope: UsageScope
    interval: str
    zone: tzinfo
    dimensions: Sequence[str]
    names: list[str]
    answer: dict[tuple, Figures]

    def scoped(self, queryset: QuerySet) -> QuerySet:
        scope = self.scope
        ids = list(scope.meter_type_ids)
        queryset = queryset.filter(account_id=scope.account_id)
        queryset = (
            queryset.filter(meter_type_id=ids[0]) if len(ids) == 1 else queryset.filter(meter_type_id__in=ids)
        )
        if scope.customers is not None:
            queryset = queryset.filter(user_id__in=list(scope.customers))
        return queryset

    def rollups(self, ranges: list[Range]) -> tuple[QuerySet, dict]:
        rows = self.scoped(UsageRollup.objects).filter(_between("hour", ranges))
        rows = rows.annotate(bucket=Trunc("hour", _TRUNC[self.interval], tzinfo=self.zone))
        return rows, {
            "f_total": Sum("sum"),
            "f_records": Sum("count"),
            "f_highest": Max("max"),
            "f_lowest": Min("min"),
        }

    def ledger(self, ranges: list[Range], *, directory: bool) -> tuple[QuerySet, dict]:
        rows = self.scoped(UsageRecord.objects).filter(_between("timestamp", ranges))
        for position, (name, values) in enumerate(self.scope.filters.items()):
            rows = rows.annotate(**{f"f{position}": DimensionText(name)}).filter(
                **{f"f{position}__in": [str(value) for value in values]}
            )
        if directory and self.scope.customers is None:
            # The customers with usage in these hours, from their rollups: the ledger is then read
            # through its (account, meter type, userId, timestamp) index, a few rows per customer.
            hours = sorted({hour for low, high in ranges for hour in _hours(low, high)})
            # Read first, then bound as a list: the ledger is probed through its index per customer
            # (a subquery lets the planner scan the month's partitions instead).
            customers = sorted(
                set(self.scoped(UsageRollup.objects).filter(hour__in=hours).values_list("user_id", flat=True))
            )
            rows = rows.filter(user_id__in=customers)
        groups = {f"g{position}": DimensionText(name) for position, name in enumerate(self.dimensions)}
        rows = rows.annotate(bucket=Trunc("timestamp", _TRUNC[self.interval], tzinfo=self.zone), **groups)
        return rows, {
            "f_total": Sum("value"),
            "f_records": Count("id"),
            "f_highest": Max("value"),
            "f_lowest": Min("value"),
        }

    def add(self, source: tuple[QuerySet, dict], *, unique: bool = False, unite: bool = False) -> None:
        """Adds a source's grouped rows. ``unique``: count distinct customers in SQL; ``unite``:
        fetch them, to be united with another source's."""
        rows, aggregates = source
        columns = ["bucket", *self.names]
        if unite and "user_id" not in columns:
            columns.append("user_id")
        if unique:
            aggregates = {**aggregates, "f_customers": Count("user_id", distinct=True)}
        width = len(self.names)
        for row in rows.values(*columns).annotate(**aggregates).order_by().values_list(*columns, *aggregates):
            key = (row[0].astimezone(UTC), *row[1 : 1 + width])
            figures = self.answer.get(key)
            if figures is None:
                figures = self.answer[key] = Figures()
            total, records, highest, lowest = row[len(columns) : len(columns) + 4]
            figures.add(total, records, highest, lowest)
            if unique:
                figures.customers += int(row[-1])
            elif unite:
                figures.customer_ids.add(row[len(columns) - 1])


def _hours(low: datetime, high: datetime) -> list[datetime]:
    hours = []
    hour = hour_floor(low)
    while hour < high:
        hours.append(hour)
        hour += HOUR
    return hours

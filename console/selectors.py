"""Reads for the dashboard and the console's pages. Every function reads for one account.

``usage_by_meter_type_per_day`` is the dashboard's only source of usage figures; it reads exact
days through ``metering.usage_buckets`` (hourly rollups, the ledger for cut hours), so its cost
depends on the window, not on the number of records.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Case, Count, F, FloatField, Min, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Cast, NullIf
from django.utils.timezone import now as utc_now

from collection import selectors as collection_selectors
from collection.models import Collector
from console.charts import format_exact
from metering import selectors as metering_selectors
from metering.compat.usage_queries import UsageQuery, usage_query
from metering.models import DataCorrection, Meter, MeterType
from metering.usage_buckets import UsageScope, bucket_after, bucket_floor, usage_per_bucket
from notifications.models import Delivery, EventType, NotificationEvent
from streams.models import Solution, Stream, StreamRun

# --- Usage per meter type and day -----------------------------------------------------------


@dataclass(frozen=True)
class MeterTypeDailyUsage:
    """One meter type's usage on each of the last days, oldest first.

    ``days`` are calendar dates in the meter type's timezone, ending today there. ``values[i]`` is
    the usage on ``days[i]``, combined over the type's meters as its aggregation does (SUM and
    INCREMENT add, MAX keeps the highest, MIN the lowest), or ``None`` when nothing is known for
    that day (which is not the same as 0).
    """

    meter_type_id: uuid.UUID
    name: str
    unit: str
    aggregation: str
    timezone: str
    days: tuple[date, ...]
    values: tuple[Decimal | None, ...]

    @property
    def has_usage(self) -> bool:
        return any(value is not None for value in self.values)


def usage_by_meter_type_per_day(
    account_id: uuid.UUID,
    days: int,
    *,
    now: datetime | None = None,
    meter_type_ids: list[uuid.UUID] | None = None,
) -> list[MeterTypeDailyUsage]:
    """Each of the account's meter types (by name) with its usage on each of the last ``days`` days.

    A day is a calendar day in the meter type's timezone, ``[local midnight, next local midnight)``,
    exactly: whole hours come from the ledger's hourly rollups, and an hour that a local midnight
    cuts (timezones off UTC by a fraction of an hour, such as Asia/Kolkata) from the ledger itself
    (``metering.usage_buckets``), so the cost depends on the window and the customers, not on the
    number of records. Today counts whole (records up to the clock skew ahead of now included).
    A day combines its records as the type's aggregation does: SUM adds values, INCREMENT counts
    records, MAX keeps the highest, MIN the lowest. The figures are the records' own times,
    independent of reset schedules and flushes. Meter types deleted since are left out. One query
    per source and timezone, whatever the number of meter types; ``meter_type_ids`` keeps only those
    (a meter type's own page).
    """
    if days < 1:
        raise ValueError("days must be at least 1.")
    now = now or utc_now()
    meter_types = MeterType.objects.filter(account_id=account_id).order_by("name", "id")
    if meter_type_ids is not None:
        meter_types = meter_types.filter(pk__in=meter_type_ids)
    by_zone: dict[str, list[MeterType]] = {}
    for meter_type in meter_types:
        by_zone.setdefault(meter_type.timezone, []).append(meter_type)
    values: dict[uuid.UUID, tuple[tuple[date, ...], tuple[Decimal | None, ...]]] = {}
    for zone_name, zone_types in by_zone.items():
        zone = ZoneInfo(zone_name)
        today = now.astimezone(zone).date()
        dates = tuple(today - timedelta(days=days - 1 - offset) for offset in range(days))
        start = bucket_floor(datetime.combine(dates[0], datetime.min.time(), zone), "DAY", zone)
        end = bucket_after(bucket_floor(now, "DAY", zone), "DAY", zone)
        found = usage_per_bucket(
            scope=UsageScope(account_id=account_id, meter_type_ids=[t.pk for t in zone_types]),
            start=start,
            end=end,
            interval="DAY",
            zone=zone,
            by_type=True,
        )
        for meter_type in zone_types:
            daily: list[Decimal | None] = [None] * days
            for (bucket, type_id), figures in found.items():
                if type_id == meter_type.pk:
                    index = (bucket.astimezone(zone).date() - dates[0]).days
                    if 0 <= index < days:
                        daily[index] = figures.value(meter_type.aggregation)
            values[meter_type.pk] = (dates, tuple(daily))
    return [
        MeterTypeDailyUsage(
            meter_type_id=meter_type.pk,
            name=meter_type.name,
            unit=meter_type.unit,
            aggregation=meter_type.aggregation,
            timezone=meter_type.timezone,
            days=values[meter_type.pk][0],
            values=values[meter_type.pk][1],
        )
        for meter_type in meter_types
    ]


def usage_by_meter_type_per_hour(
    account_id: uuid.UUID, hours: int, *, now: datetime | None = None
) -> list[MeterTypeDailyUsage]:
    """Each of the account's meter types (by name) with its usage in each of the last ``hours``
    UTC hours, this one so far (``days`` then holds the hours' starts, in UTC): the dashboard's
    first-day view, when a day per bar shows one bar. Combined as ``usage_by_meter_type_per_day``
    combines a day; one query for every meter type."""
    if hours < 1:
        raise ValueError("hours must be at least 1.")
    now = now or utc_now()
    meter_types = list(MeterType.objects.filter(account_id=account_id).order_by("name", "id"))
    starts = tuple(
        bucket_floor(now, "HOUR", UTC) - timedelta(hours=hours - 1 - offset) for offset in range(hours)
    )
    found = (
        usage_per_bucket(
            scope=UsageScope(
                account_id=account_id, meter_type_ids=[meter_type.pk for meter_type in meter_types]
            ),
            start=starts[0],
            end=starts[-1] + timedelta(hours=1),
            interval="HOUR",
            by_type=True,
        )
        if meter_types
        else {}
    )
    position = {start: index for index, start in enumerate(starts)}
    usage = []
    for meter_type in meter_types:
        hourly: list[Decimal | None] = [None] * hours
        for (bucket, type_id), figures in found.items():
            if type_id == meter_type.pk and bucket in position:
                hourly[position[bucket]] = figures.value(meter_type.aggregation)
        usage.append(
            MeterTypeDailyUsage(
                meter_type_id=meter_type.pk,
                name=meter_type.name,
                unit=meter_type.unit,
                aggregation=meter_type.aggregation,
                timezone="UTC",
                days=starts,
                values=tuple(hourly),
            )
        )
    return usage


# --- Meters near capacity -------------------------------------------------------------------


def near_capacity_percent() -> int:
    return settings.CONSOLE_NEAR_CAPACITY_PERCENT


def near_capacity(meters: QuerySet[Meter], *, percent: int | None = None) -> QuerySet[Meter]:
    """The meters of ``meters`` whose value is at least ``percent`` % of their capacity, fullest first.

    Compared exactly (``value * 100 >= capacity * percent``). A capacity of 0 counts as over once
    the value is above 0 (and sorts first); meters without a capacity or without a value yet (MAX
    and MIN before their first record) are never near. Each meter gets ``percent_of_capacity`` (a
    float for display, ``None`` for a capacity of 0).
    """
    percent = near_capacity_percent() if percent is None else percent
    return (
        meters.alias(value_times_100=F("value") * 100)
        .filter(Q(capacity__gt=0, value_times_100__gte=F("capacity") * percent) | Q(capacity=0, value__gt=0))
        .annotate(
            percent_of_capacity=Case(
                When(capacity=0, then=Value(None, output_field=FloatField())),
                default=Cast(F("value"), FloatField()) * 100 / NullIf(Cast(F("capacity"), FloatField()), 0.0),
                output_field=FloatField(),
            )
        )
        .order_by(F("percent_of_capacity").desc(nulls_first=True), "-value", "user_id", "id")
    )


def meters_near_capacity(account_id: uuid.UUID, *, percent: int | None = None) -> QuerySet[Meter]:
    return near_capacity(
        Meter.objects.filter(account_id=account_id).select_related("meter_type"), percent=percent
    )


# --- Meter types ----------------------------------------------------------------------------


def meter_types_with_counts(account_id: uuid.UUID) -> QuerySet[MeterType]:
    """The account's meter types by name, each with ``number_of_meters``."""
    return (
        metering_selectors.meter_types_with_meter_counts()
        .filter(account_id=account_id)
        .order_by("name", "id")
    )


# --- Notifications --------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdNotification:
    """A ``threshold.crossed`` event as the dashboard shows it, with its deliveries' outcome."""

    event: NotificationEvent
    meter: Meter | None
    threshold: str
    value: str
    succeeded: int
    pending: int
    failed: int


def _threshold_label(threshold: Any) -> str:
    """``warning (80 %)``, ``950``: the payload's threshold as a user wrote it."""
    if not isinstance(threshold, dict):
        return ""
    if "capacityPercentage" in threshold:
        level = f"{threshold['capacityPercentage']} % of capacity"
    elif "value" in threshold:
        level = str(threshold["value"])
    else:
        level = ""
    name = str(threshold.get("name") or "")
    return f"{name} ({level})" if name and level else name or level


def _payload_value(value: Any) -> str:
    """A payload's number as written (850, not 850.0); other JSON shown as is; nothing is ''."""
    if value is None:
        return ""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return format_exact(value)
    return str(value)


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def recent_threshold_notifications(account_id: uuid.UUID, *, limit: int = 10) -> list[ThresholdNotification]:
    """The latest ``threshold.crossed`` events, newest first, with their meter (from ``meterId`` in the
    payload, when it still exists in the account) and how many deliveries succeeded, wait or failed."""
    events = list(
        NotificationEvent.objects.filter(account_id=account_id, event_type=EventType.THRESHOLD_CROSSED)
        .annotate(
            succeeded=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.SUCCEEDED)),
            pending=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.PENDING)),
            failed=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.FAILED)),
        )
        .order_by("-created_at", "-id")[:limit]
    )
    payloads = [event.payload if isinstance(event.payload, dict) else {} for event in events]
    meter_ids = {meter_id for payload in payloads if (meter_id := _uuid_or_none(payload.get("meterId")))}
    meters = Meter.objects.filter(account_id=account_id, pk__in=meter_ids).select_related("meter_type")
    meters_by_id: dict[uuid.UUID | None, Meter] = {meter.pk: meter for meter in meters} if meter_ids else {}
    return [
        ThresholdNotification(
            event=event,
            meter=meters_by_id.get(_uuid_or_none(payload.get("meterId"))),
            threshold=_threshold_label(payload.get("threshold")),
            value=_payload_value(payload.get("value")),
            succeeded=event.succeeded,
            pending=event.pending,
            failed=event.failed,
        )
        for event, payload in zip(events, payloads, strict=True)
    ]


def failed_deliveries(account_id: uuid.UUID) -> QuerySet[Delivery]:
    """Webhook deliveries that gave up (FAILED), latest first, with their event and endpoint."""
    return (
        Delivery.objects.filter(account_id=account_id, status=Delivery.Status.FAILED)
        .select_related("event", "endpoint")
        .order_by("-updated_at", "-id")
    )


# --- Streams --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamCounts:
    solutions: int
    streams: int
    realtime: int
    batch: int


def stream_counts(account_id: uuid.UUID) -> StreamCounts:
    counts = Stream.objects.filter(account_id=account_id).aggregate(
        streams=Count("id"),
        realtime=Count("id", filter=Q(processing_type=Stream.ProcessingType.REALTIME)),
        batch=Count("id", filter=Q(processing_type=Stream.ProcessingType.BATCH)),
    )
    return StreamCounts(solutions=Solution.objects.filter(account_id=account_id).count(), **counts)


def recently_updated_streams(account_id: uuid.UUID) -> QuerySet[Stream]:
    return (
        Stream.objects.filter(account_id=account_id).select_related("solution").order_by("-updated_at", "-id")
    )


def stream_runs_with_errors(account_id: uuid.UUID) -> QuerySet[StreamRun]:
    """Runs that failed, or that rejected records, newest first, with their stream."""
    return (
        StreamRun.objects.filter(account_id=account_id)
        .filter(Q(status=StreamRun.Status.FAILED) | Q(records_rejected__gt=0))
        .select_related("stream")
        .order_by("-started_at", "-id")
    )


@dataclass(frozen=True)
class StreamRunErrorCounts:
    """Runs of the last ``hours`` hours: how many failed, how many rejected records (and how many)."""

    hours: int
    failed: int
    with_rejections: int
    rejected_records: int


def stream_run_error_counts(account_id: uuid.UUID, *, now: datetime, hours: int = 24) -> StreamRunErrorCounts:
    counts = StreamRun.objects.filter(
        account_id=account_id, started_at__gte=now - timedelta(hours=hours)
    ).aggregate(
        failed=Count("id", filter=Q(status=StreamRun.Status.FAILED)),
        with_rejections=Count("id", filter=Q(records_rejected__gt=0)),
        rejected_records=Sum("records_rejected"),
    )
    return StreamRunErrorCounts(
        hours=hours,
        failed=counts["failed"],
        with_rejections=counts["with_rejections"],
        rejected_records=counts["rejected_records"] or 0,
    )


# --- Collectors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CollectorIntake:
    """One collector's intake over the window: per minute (oldest first, the current minute last and
    still filling) and per minute on average over the time elapsed in the window."""

    collector: Collector
    minutes: tuple[datetime, ...]
    batches: tuple[int, ...]
    records: tuple[int, ...]
    bytes: tuple[int, ...]
    elapsed_minutes: float

    def _rate(self, values: tuple[int, ...]) -> float:
        return sum(values) / self.elapsed_minutes

    @property
    def batches_per_minute(self) -> float:
        return self._rate(self.batches)

    @property
    def records_per_minute(self) -> float:
        return self._rate(self.records)

    @property
    def bytes_per_minute(self) -> float:
        return self._rate(self.bytes)

    @property
    def total_batches(self) -> int:
        return sum(self.batches)


def intake_window(minutes: int, now: datetime) -> tuple[datetime, ...]:
    """The window's minute starts (UTC): the current minute and the ``minutes - 1`` before it."""
    if minutes < 1:
        raise ValueError("minutes must be at least 1.")
    current = now.astimezone(UTC).replace(second=0, microsecond=0)
    return tuple(current - timedelta(minutes=offset) for offset in range(minutes - 1, -1, -1))


def collectors_with_intake(account_id: uuid.UUID, *, minutes: int, now: datetime) -> list[CollectorIntake]:
    """Every collector of the account (by name) with its batches, records and bytes per minute over
    the last ``minutes`` minutes, from the collected-batch log (two queries). The rates divide by
    the time elapsed in the window (the current minute counts as far as it has gone)."""
    window = intake_window(minutes, now)
    elapsed = max((now - window[0]).total_seconds() / 60, 1 / 60)
    collectors = list(Collector.objects.filter(account_id=account_id).order_by("name", "id"))
    if not collectors:
        return []
    found: dict[tuple[uuid.UUID, datetime], collection_selectors.IntakeMinute] = {
        (row.collector_id, row.minute): row
        for row in collection_selectors.collector_intake_per_minute(
            account_id=account_id, since=window[0], until=now
        )
    }
    intake = []
    for collector in collectors:
        rows = [found.get((collector.pk, minute)) for minute in window]
        intake.append(
            CollectorIntake(
                collector=collector,
                minutes=window,
                elapsed_minutes=elapsed,
                batches=tuple(row.batches if row else 0 for row in rows),
                records=tuple(row.records if row else 0 for row in rows),
                bytes=tuple(row.bytes if row else 0 for row in rows),
            )
        )
    return intake


# --- Data correction ------------------------------------------------------------------------


@dataclass(frozen=True)
class CorrectionBacklog:
    """Open data corrections: how many per reason (most first), in all, and the oldest one's age."""

    by_reason: list[dict[str, Any]]
    total: int
    oldest_at: datetime | None


def correction_backlog(account_id: uuid.UUID) -> CorrectionBacklog:
    """One grouped query over the account's OPEN corrections (the list index covers it)."""
    rows = list(
        DataCorrection.objects.filter(account_id=account_id, status=DataCorrection.Status.OPEN)
        .values("reason")
        .order_by()
        .annotate(count=Count("id"), oldest=Min("created_at"))
    )
    labels = dict(DataCorrection.Reason.choices)
    by_reason = sorted(
        (
            {
                "reason": row["reason"],
                "label": labels.get(row["reason"], row["reason"]),
                "count": row["count"],
                "oldest": row["oldest"],
            }
            for row in rows
        ),
        key=lambda row: (-row["count"], row["reason"]),
    )
    return CorrectionBacklog(
        by_reason=by_reason,
        total=sum(row["count"] for row in by_reason),
        oldest_at=min((row["oldest"] for row in by_reason), default=None),
    )


# --- Usage explorer -------------------------------------------------------------------------

# /usage's aggregations for each meter type's own (it has no MIN: a MIN type shows its highest).
USAGE_AGGREGATION = {"SUM": "SUM", "INCREMENT": "COUNT", "MAX": "MAX", "MIN": "MAX"}


@dataclass(frozen=True)
class ExploredUsage:
    """One meter type's usage per bucket as ``POST /usage`` answers it for ``request`` (its body),
    and its top customers over the whole range (largest first)."""

    meter_type: MeterType
    request: dict[str, Any]
    buckets: tuple[datetime, ...]
    values: tuple[float | int, ...]
    top_customers: tuple[tuple[str, float | int], ...]

    @property
    def aggregation(self) -> str:
        return self.request["aggregation"]

    @property
    def combined(self) -> float | int:
        """The range's figure: the sum of the buckets (SUM, COUNT), or the highest (MAX)."""
        return _combine(self.aggregation, self.values)


def _combine(aggregation: str, values) -> float | int:
    values = list(values)
    if not values:
        return 0
    return max(values) if aggregation == "MAX" else sum(values)


def usage_request(
    meter_type: MeterType,
    *,
    start: datetime,
    end: datetime,
    interval: str,
    customers: list[str] | None = None,
    group_by: list[str] | None = None,
) -> dict[str, Any]:
    """The ``POST /usage`` body for one meter type over ``[start, end)`` (whole seconds)."""
    body: dict[str, Any] = {
        "meterApiName": meter_type.api_name,
        "startTimeInSeconds": int(start.timestamp()),
        "endTimeInSeconds": int(end.timestamp()),
        "aggregation": USAGE_AGGREGATION[meter_type.aggregation],
        "timeGroupingInterval": interval,
    }
    if customers:
        body["customerFilter"] = list(customers)
    if group_by:
        body["groupBy"] = list(group_by)
    return body


def _usage_answer(account_id: uuid.UUID, body: dict[str, Any]) -> list[dict[str, Any]]:
    """``usage_query`` (the function ``POST /usage`` calls) for a request body: its groups."""
    query = UsageQuery(
        meter_api_name=body["meterApiName"],
        start=datetime.fromtimestamp(body["startTimeInSeconds"], UTC),
        end=datetime.fromtimestamp(body["endTimeInSeconds"], UTC),
        aggregation=body["aggregation"],
        interval=body["timeGroupingInterval"],
        group_by=list(body.get("groupBy") or []),
        customers=list(body["customerFilter"]) if body.get("customerFilter") else None,
    )
    answer = usage_query(account_id=account_id, query=query)
    return next(iter(answer["clientMeters"].values()), [])


def _records(group: dict[str, Any]) -> list[tuple[datetime, float | int]]:
    return [
        (datetime.fromtimestamp(int(seconds), UTC), value)
        for record in group["records"]
        for seconds, value in record.items()
    ]


def explore_usage(
    account_id: uuid.UUID,
    *,
    meter_types: list[MeterType],
    start: datetime,
    end: datetime,
    interval: str,
    customers: list[str] | None = None,
    top: int = 10,
) -> list[ExploredUsage]:
    """Each meter type's usage per bucket, exactly as ``POST /usage`` answers the same choices (the
    same query function), and its ``top`` customers. Two queries per meter type. Raises
    ``ValidationFailed`` as /usage does (a range of too many buckets)."""
    explored = []
    for meter_type in meter_types:
        body = usage_request(meter_type, start=start, end=end, interval=interval, customers=customers)
        groups = _usage_answer(account_id, body)
        records = _records(groups[0]) if groups else []
        per_customer = _usage_answer(account_id, body | {"groupBy": ["customerId"]})
        ranked = sorted(
            (
                (
                    group["groupInfo"].get("customerId") or "",
                    _combine(body["aggregation"], [value for _, value in _records(group)]),
                )
                for group in per_customer
            ),
            key=lambda item: (-item[1], item[0]),
        )
        explored.append(
            ExploredUsage(
                meter_type=meter_type,
                request=body,
                buckets=tuple(bucket for bucket, _ in records),
                values=tuple(value for _, value in records),
                top_customers=tuple(item for item in ranked if item[1])[:top],
            )
        )
    return explored


def known_customers(account_id: uuid.UUID, *, limit: int = 1000) -> list[str]:
    """The customers (user ids) of the account's meters, by name: the explorer's search list."""
    return list(
        Meter.objects.filter(account_id=account_id)
        .order_by("user_id")
        .values_list("user_id", flat=True)
        .distinct()[:limit]
    )


@dataclass(frozen=True)
class ThresholdCrossing:
    """A meter's threshold crossing (metering's ``ThresholdEvent``: one per threshold and period),
    with the ``threshold.crossed`` notification sent for it, if any endpoint subscribed."""

    event: Any
    threshold: str
    notification: NotificationEvent | None
    succeeded: int
    pending: int
    failed: int


def threshold_crossings(account_id: uuid.UUID) -> QuerySet:
    """Every threshold crossing of the account, newest first, with its meter and meter type."""
    from metering.models import ThresholdEvent

    return (
        ThresholdEvent.objects.filter(account_id=account_id)
        .select_related("meter__meter_type")
        .order_by("-crossed_at", "-id")
    )


def recent_threshold_crossings(account_id: uuid.UUID, *, limit: int = 10) -> list[ThresholdCrossing]:
    """The latest threshold crossings (the Threshold events list, newest first) and the delivery
    outcome of the notification each one sent (found by the ``thresholdEventId`` of its payload)."""
    events = list(threshold_crossings(account_id)[:limit])
    notifications = (
        {
            str((notification.payload or {}).get("thresholdEventId")): notification
            for notification in NotificationEvent.objects.filter(
                account_id=account_id,
                event_type=EventType.THRESHOLD_CROSSED,
                payload__thresholdEventId__in=[str(event.pk) for event in events],
            ).annotate(
                succeeded=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.SUCCEEDED)),
                pending=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.PENDING)),
                failed=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.FAILED)),
            )
        }
        if events
        else {}
    )
    crossings = []
    for event in events:
        thresholds = event.meter.thresholds if isinstance(event.meter.thresholds, list) else []
        written = thresholds[event.threshold_index] if event.threshold_index < len(thresholds) else {}
        label = _threshold_label({"name": event.name, **(written if isinstance(written, dict) else {})})
        notification = notifications.get(str(event.pk))
        crossings.append(
            ThresholdCrossing(
                event=event,
                threshold=label or f"threshold {event.threshold_index + 1}",
                notification=notification,
                succeeded=getattr(notification, "succeeded", 0),
                pending=getattr(notification, "pending", 0),
                failed=getattr(notification, "failed", 0),
            )
        )
    return crossings

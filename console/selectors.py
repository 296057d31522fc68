"""Reads for the dashboard and the console's pages. Every function reads for one account.

``usage_by_meter_type_per_day`` is the dashboard's only source of usage figures; it reads the
usage ledger's hourly rollups, so its cost depends on the window, not on the number of records.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Case, Count, F, FloatField, Max, Min, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Cast, NullIf
from django.utils.timezone import now as utc_now

from console.charts import format_exact
from metering import selectors as metering_selectors
from metering.models import Meter, MeterType, UsageRollup
from notifications.models import Delivery, EventType, NotificationEvent
from streams.models import Solution, Stream

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


class _DailyValues:
    """Combines values into one meter type's days, as the type's aggregation combines records."""

    def __init__(self, meter_type: MeterType, days: int, now: datetime):
        self.meter_type = meter_type
        self.zone = ZoneInfo(meter_type.timezone)
        self.today = now.astimezone(self.zone).date()
        self.first = self.today - timedelta(days=days - 1)
        self.values: list[Decimal | None] = [None] * days

    def add(self, day: date, row: dict[str, Any]) -> None:
        index = (day - self.first).days
        if not 0 <= index < len(self.values):
            return
        aggregation = self.meter_type.aggregation
        value = {"MAX": row["highest"], "MIN": row["lowest"]}.get(aggregation, row["total"])
        if value is None:
            return
        current = self.values[index]
        if current is None:
            self.values[index] = value
        elif aggregation == MeterType.Aggregation.MAX:
            self.values[index] = max(current, value)
        elif aggregation == MeterType.Aggregation.MIN:
            self.values[index] = min(current, value)
        else:
            self.values[index] = current + value

    def result(self) -> MeterTypeDailyUsage:
        meter_type = self.meter_type
        return MeterTypeDailyUsage(
            meter_type_id=meter_type.pk, name=meter_type.name, unit=meter_type.unit,
            aggregation=meter_type.aggregation, timezone=meter_type.timezone,
            days=tuple(self.first + timedelta(days=offset) for offset in range(len(self.values))),
            values=tuple(self.values),
        )


def usage_by_meter_type_per_day(account_id: uuid.UUID, days: int, *,
                                now: datetime | None = None) -> list[MeterTypeDailyUsage]:
    """Each of the account's meter types (by name) with its usage on each of the last ``days`` days.

    Read from the usage ledger's hourly rollups (``UsageRollup``) in two queries whatever the
    number of customers or records: the meter types, then the rollups of their window summed per
    type and hour. Each hour counts on the calendar day its start falls on in the meter type's
    timezone (for timezones off UTC by a fraction of an hour, such as Asia/Kolkata, the hour's
    start decides). A day combines its hours as the type's aggregation combines records: SUM adds
    values, INCREMENT counts records, MAX keeps the highest, MIN the lowest. The figures are the
    records' own times, independent of reset schedules and flushes. Meter types deleted since are
    left out.
    """
    if days < 1:
        raise ValueError("days must be at least 1.")
    now = now or utc_now()
    meter_types = MeterType.objects.filter(account_id=account_id).order_by("name", "id")
    by_type = {meter_type.pk: _DailyValues(meter_type, days, now) for meter_type in meter_types}
    if not by_type:
        return []
    # A generous UTC bound (timezones reach 14 h either side); each hour is placed exactly below.
    hourly = (
        UsageRollup.objects.filter(account_id=account_id, meter_type_id__in=list(by_type),
                                   hour__gt=now - timedelta(days=days + 1), hour__lte=now)
        .values("meter_type_id", "hour").order_by()
        .annotate(total=Sum("sum"), records=Sum("count"), highest=Max("max"), lowest=Min("min"))
    )
    for row in hourly:
        daily = by_type[row["meter_type_id"]]
        if daily.meter_type.aggregation == MeterType.Aggregation.INCREMENT:
            row["total"] = Decimal(row["records"])
        daily.add(row["hour"].astimezone(daily.zone).date(), row)
    return [daily.result() for daily in by_type.values()]


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
        .annotate(percent_of_capacity=Case(
            When(capacity=0, then=Value(None, output_field=FloatField())),
            default=Cast(F("value"), FloatField()) * 100 / NullIf(Cast(F("capacity"), FloatField()), 0.0),
            output_field=FloatField(),
        ))
        .order_by(F("percent_of_capacity").desc(nulls_first=True), "-value", "user_id", "id")
    )


def meters_near_capacity(account_id: uuid.UUID, *, percent: int | None = None) -> QuerySet[Meter]:
    return near_capacity(Meter.objects.filter(account_id=account_id).select_related("meter_type"), percent=percent)


# --- Meter types ----------------------------------------------------------------------------


def meter_types_with_counts(account_id: uuid.UUID) -> QuerySet[MeterType]:
    """The account's meter types by name, each with ``number_of_meters``."""
    return metering_selectors.meter_types_with_meter_counts().filter(account_id=account_id).order_by("name", "id")


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
    meters_by_id = {meter.pk: meter for meter in meters} if meter_ids else {}
    return [
        ThresholdNotification(
            event=event, meter=meters_by_id.get(_uuid_or_none(payload.get("meterId"))),
            threshold=_threshold_label(payload.get("threshold")),
            value=_payload_value(payload.get("value")),
            succeeded=event.succeeded, pending=event.pending, failed=event.failed,
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
    return Stream.objects.filter(account_id=account_id).select_related("solution").order_by("-updated_at", "-id")

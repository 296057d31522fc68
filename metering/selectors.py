"""Reads of meter types, meters and metered records."""

from __future__ import annotations

import uuid

from django.db.models import Count, F, QuerySet

from metering.models import Meter, MeteredRecord, MeterType


def meter_types_with_meter_counts() -> QuerySet[MeterType]:
    """Meter types with ``number_of_meters``; callers filter by account."""
    return MeterType.objects.annotate(number_of_meters=Count("meters"))


def meter_type_with_meter_count(*, meter_type_id: uuid.UUID) -> MeterType:
    return meter_types_with_meter_counts().get(pk=meter_type_id)


def meters_with_types() -> QuerySet[Meter]:
    """Meters with their type (name, unit, timezone are read from it); callers filter by account."""
    return Meter.objects.select_related("meter_type")


def metered_records_of_meter(*, meter: Meter) -> QuerySet[MeteredRecord]:
    return MeteredRecord.objects.filter(account_id=meter.account_id, source_meter_id=meter.pk)


def meters_by_value(*, meter_type: MeterType) -> QuerySet[Meter]:
    """A meter type's meters, highest value first (no value last), then by customer."""
    return meter_type.meters.select_related("meter_type").order_by(
        F("value").desc(nulls_last=True), "user_id"
    )


def threshold_events_of_meter(*, meter: Meter) -> QuerySet:
    """A meter's threshold crossings, newest first."""
    return meter.threshold_events.order_by("-crossed_at", "-id")

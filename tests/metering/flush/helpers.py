"""Builders for flush tests: many meters at once, in a known state, without the ledger."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from metering.models import Meter, MeteredRecord, MeterType


def bulk_meters(
    meter_type: MeterType,
    count: int,
    *,
    period_start: datetime,
    period_end: datetime,
    values: list[Decimal | None] | None = None,
    record_count: int = 1,
    user_prefix: str | None = None,
    **fields: Any,
) -> list[Meter]:
    """``count`` meters of ``meter_type`` in the period [period_start, period_end), each with the
    usage in ``values`` (what the ledger would have counted), made with one INSERT."""
    user_prefix = user_prefix or f"user-{uuid.uuid4().hex[:8]}-"
    meters = [
        Meter(
            id=uuid.uuid4(),
            account_id=meter_type.account_id,
            meter_type=meter_type,
            meter_key="a1f8797b-c827-4483-b6cf-6d3d3baa18a7",
            user_id=f"{user_prefix}{index}@example.com",
            value=values[index] if values is not None else meter_type.empty_value(),
            record_count=record_count if values is not None and values[index] is not None else 0,
            period_start=period_start,
            period_end=period_end,
            unit=meter_type.unit,
            timezone=meter_type.timezone,
            created_at=period_start,
            **fields,
        )
        for index in range(count)
    ]
    return Meter.objects.bulk_create(meters, batch_size=2_000)


def records_by_meter() -> dict[uuid.UUID, list[MeteredRecord]]:
    found: dict[uuid.UUID, list[MeteredRecord]] = {}
    for record in MeteredRecord.objects.order_by("period_start"):
        found.setdefault(record.source_meter_id, []).append(record)
    return found

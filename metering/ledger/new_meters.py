"""Meters created on first usage (types with ``auto_create_meters``): the customer's meter covers
the type's current period (from its last reset, or from activeFrom), so the usage that created it
counts."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from config.ttlcache import TtlCache
from metering import aggregation, periods
from metering.ledger.encoding import encode
from metering.ledger.records import MissingMeter, NewMeterRow

# (cron, timezone) → the period holding the last ``now`` asked (config.ttlcache: bounded, least
# recently used out; an hour at most, and only while ``now`` is inside it).
_period_cache: TtlCache[tuple[datetime, datetime]] = TtlCache(ttl=lambda: 3600.0)


def current_period(cron: str, tz_name: str, now: datetime) -> tuple[datetime, datetime]:
    """``(start, end)`` of the schedule's period holding ``now`` (``periods.period_containing``),
    cached until ``end``."""
    key = (cron, tz_name)
    cached = _period_cache.get(key)
    if cached is not None and cached[0] <= now < cached[1]:
        return cached
    start, end = periods.period_containing(cron, tz_name, now)
    _period_cache.put(key, (start, end))
    return start, end


def new_meter_rows(missing: Iterable[MissingMeter], now: datetime) -> list[NewMeterRow]:
    """The rows of the missing meters, sorted by (type, user) (the lock order); a type whose
    active window has not begun in the current period gets none."""
    rows = []
    for meter_type, user_id in sorted(missing, key=lambda item: (item.meter_type.id, item.user_id)):
        start, end = current_period(meter_type.reset_cron, meter_type.timezone, now)
        start = max(start, meter_type.active_from)
        if start >= end:
            continue
        rows.append(
            NewMeterRow(
                uuid.uuid4(),
                meter_type.id,
                user_id,
                meter_type.capacity,
                encode(meter_type.thresholds),
                aggregation.empty_value(meter_type.aggregation),
                start,
                end,
                meter_type.unit,
                meter_type.timezone,
            )
        )
    return rows

"""Scrape-time gauges of the metering app at ``GET /metrics`` (registered in ``MeteringConfig.ready``)."""

from __future__ import annotations

from django.db.models import Min
from django.utils.timezone import now as utc_now

from metering.models import Meter


def flush_lag() -> list[tuple[dict[str, str], float]]:
    """``metering_flush_lag_seconds``: seconds since the oldest due meter's period ended (0: none due)."""
    now = utc_now()
    oldest = Meter.objects.filter(period_end__lte=now).aggregate(oldest=Min("period_end"))["oldest"]
    return [({}, (now - oldest).total_seconds() if oldest is not None else 0.0)]


def register() -> None:
    from config.metrics import register_gauge

    register_gauge("metering_flush_lag_seconds", "Seconds since the oldest due meter's period ended", flush_lag)

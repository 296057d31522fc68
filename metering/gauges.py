"""Scrape-time gauges of the metering app at ``GET /metrics`` (registered in ``MeteringConfig.ready``)."""

from __future__ import annotations

from django.db.models import Min
from django.utils.timezone import now as utc_now

from metering import partitions
from metering.models import Meter


def flush_lag() -> list[tuple[dict[str, str], float]]:
    """``metering_flush_lag_seconds``: seconds since the oldest due meter's period ended (0: none due)."""
    now = utc_now()
    oldest = Meter.objects.filter(period_end__lte=now).aggregate(oldest=Min("period_end"))["oldest"]
    return [({}, (now - oldest).total_seconds() if oldest is not None else 0.0)]


def ledger_partitions_ahead() -> list[tuple[dict[str, str], float]]:
    """``metering_ledger_partitions_ahead_months`` (PostgreSQL): months after the current one that
    have a ledger partition, counted without a gap; -1 when the current month has none (its rows
    go to DEFAULT). No sample on other databases."""
    attached = partitions.ledger_partitions()
    if not attached:
        return []
    months = set(attached.values())
    month = partitions.month_start(utc_now())
    ahead = -1
    while month in months:
        ahead += 1
        month = partitions.add_months(month, 1)
    return [({}, float(ahead))]


def register() -> None:
    from config.metrics import register_gauge

    register_gauge(
        "metering_flush_lag_seconds", "Seconds since the oldest due meter's period ended", flush_lag
    )
    register_gauge(
        "metering_ledger_partitions_ahead_months",
        "Months after the current one with a ledger partition (-1: the current month has none)",
        ledger_partitions_ahead,
    )

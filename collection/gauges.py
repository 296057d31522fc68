"""Scrape-time gauges of the collection app at ``GET /metrics`` (registered in ``ready``)."""

from __future__ import annotations

from django.db.models import OuterRef, Subquery
from django.utils.timezone import now as utc_now

from collection.models import CollectedBatch, ConsumerOffset


def run_lag() -> list[tuple[dict[str, str], float]]:
    """``collection_run_lag_seconds{consumer}``: age of the oldest batch each reader (``stream:<id>``)
    has not consumed yet; 0 when it is caught up. One query."""
    oldest = (
        CollectedBatch.objects.filter(
            collector_id=OuterRef("collector_id"), sequence__gt=OuterRef("last_sequence")
        )
        .order_by("sequence")
        .values("received_at")[:1]
    )
    now = utc_now()
    rows = (
        ConsumerOffset.objects.annotate(oldest=Subquery(oldest))
        .values_list("consumer", "oldest")
        .order_by("consumer")
    )
    return [
        ({"consumer": consumer}, max((now - received).total_seconds(), 0.0) if received else 0.0)
        for consumer, received in rows
    ]


def register() -> None:
    from config.metrics import register_gauge

    register_gauge(
        "collection_run_lag_seconds", "Age of the oldest collected batch a reader has not consumed", run_lag
    )

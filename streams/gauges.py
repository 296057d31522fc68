"""Scrape-time gauges of the streams app at ``GET /metrics`` (registered in ``StreamsConfig.ready``):
each stream's output outbox, one query."""

from __future__ import annotations

from django.db.models import Count, Min, Q
from django.utils.timezone import now as utc_now

from streams.models import OutputDelivery

Samples = list[tuple[dict[str, str], float]]


def _outbox_rows() -> list[dict]:
    return list(
        OutputDelivery.objects.exclude(status=OutputDelivery.Status.DELIVERED)
        .values("stream_id")
        .annotate(
            pending=Count("id", filter=Q(status=OutputDelivery.Status.PENDING)),
            dead=Count("id", filter=Q(status=OutputDelivery.Status.DEAD)),
            oldest=Min("created_at", filter=Q(status=OutputDelivery.Status.PENDING)),
        )
        .order_by("stream_id")
    )


def outbox_depth() -> Samples:
    """``stream_outbox_depth{stream}``: deliveries waiting to be sent (PENDING), per stream with any
    delivery not delivered yet (dead letters included, so a stream drained to 0 shows 0)."""
    return [({"stream": str(row["stream_id"])}, float(row["pending"])) for row in _outbox_rows()]


def outbox_oldest_pending() -> Samples:
    """``stream_outbox_oldest_pending_seconds{stream}``: age of the oldest waiting delivery (0: none)."""
    now = utc_now()
    return [
        (
            {"stream": str(row["stream_id"])},
            max((now - row["oldest"]).total_seconds(), 0.0) if row["oldest"] else 0.0,
        )
        for row in _outbox_rows()
    ]


def outbox_dead() -> Samples:
    """``stream_outbox_dead{stream}``: dead letters (deliveries that used every attempt)."""
    return [({"stream": str(row["stream_id"])}, float(row["dead"])) for row in _outbox_rows()]


def register() -> None:
    from config.metrics import register_gauge

    register_gauge("stream_outbox_depth", "Output deliveries waiting to be sent, per stream", outbox_depth)
    register_gauge(
        "stream_outbox_oldest_pending_seconds",
        "Age of each stream's oldest output delivery waiting to be sent",
        outbox_oldest_pending,
    )
    register_gauge(
        "stream_outbox_dead", "Output deliveries that used every attempt (dead letters)", outbox_dead
    )

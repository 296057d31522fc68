"""Scrape-time gauges of the notifications app at ``GET /metrics`` (registered in ``ready``)."""

from __future__ import annotations

from notifications.models import Delivery


def failed_deliveries() -> list[tuple[dict[str, str], float]]:
    """``webhook_deliveries_failed``: webhook deliveries that gave up (FAILED), all accounts."""
    return [({}, float(Delivery.objects.filter(status=Delivery.Status.FAILED).count()))]


def register() -> None:
    from config.metrics import register_gauge

    register_gauge("webhook_deliveries_failed", "Webhook deliveries that gave up (FAILED)", failed_deliveries)

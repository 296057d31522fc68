"""Celery tasks: thin, take ids, call one service, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from notifications import services


@shared_task(name="notifications.deliver", ignore_result=True)
def deliver(delivery_id: str) -> None:
    """Attempt one delivery now if it is due (a no-op if it is not, or another worker holds it)."""
    services.delivery_attempt(delivery_id=delivery_id)


@shared_task(name="notifications.sweep_due_deliveries", ignore_result=True)
def sweep_due_deliveries() -> int:
    """Run by beat (``notifications: retry sweep``): attempts due deliveries in a bounded batch."""
    return services.delivery_sweep_due()

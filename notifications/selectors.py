"""Reads of the notifications app."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch, QuerySet

from notifications.models import Delivery, DeliveryAttempt


def deliveries_for_endpoint(*, endpoint_id: uuid.UUID, account_id: uuid.UUID) -> QuerySet[Delivery]:
    """An endpoint's deliveries with their event and attempts, for the API and the admin."""
    return (
        Delivery.objects.filter(endpoint_id=endpoint_id, account_id=account_id)
        .select_related("event")
        .prefetch_related(Prefetch("attempts", queryset=DeliveryAttempt.objects.order_by("number")))
    )

"""Thresholds: a meter crossing one upward (reaching the limit counts) creates one threshold event
per threshold and period, and the ``threshold.crossed`` notification, in the ledger's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from metering.ledger.encoding import from_json, json_number, to_decimal
from metering.ledger.records import Crossing, MeterState

if TYPE_CHECKING:
    from metering.ledger.store import Store


def threshold_limit(threshold: dict[str, Any], capacity: Decimal | None) -> Decimal | None:
    """A threshold's absolute limit: its ``value``, or ``capacityPercentage`` of the capacity."""
    if "value" in threshold:
        return Decimal(str(threshold["value"]))
    if capacity is None or "capacityPercentage" not in threshold:
        return None
    return Decimal(capacity) * Decimal(str(threshold["capacityPercentage"])) / 100


def crossed(meter: MeterState, before: Decimal | None) -> list[Crossing]:
    """Thresholds the update moved the value across, upward (reaching the limit counts)."""
    after = to_decimal(meter.value)
    thresholds = from_json(meter.thresholds)
    if after is None or not thresholds:
        return []
    crossings = []
    for position, threshold in enumerate(thresholds):
        limit = threshold_limit(threshold, to_decimal(meter.capacity))
        if limit is not None and (before is None or before < limit) and after >= limit:
            crossings.append(
                Crossing(meter.id, position, threshold.get("name") or "", limit, after, meter.period_start)
            )
    return crossings


def record_crossings(
    store: Store, crossings: list[Crossing], meters: dict[uuid.UUID, MeterState], now: datetime
) -> None:
    """One threshold event per threshold and period; the notification goes with the new ones only."""
    from notifications.services import Notification, notification_publish_many

    for crossing in crossings:
        crossing.event_id = uuid.uuid4()
    inserted = store.insert_threshold_events(crossings, now)
    notifications = []
    for crossing in crossings:
        if crossing.event_id not in inserted:
            crossing.event_id = None
            continue
        notifications.append(
            Notification(
                account_id=store.account_id,
                event_type="threshold.crossed",
                payload=threshold_payload(meters[crossing.meter_id], crossing, now),
            )
        )
    if notifications:
        notification_publish_many(notifications=notifications)


def threshold_payload(meter: MeterState, crossing: Crossing, now: datetime) -> dict[str, Any]:
    """The ``threshold.crossed`` webhook's ``data``."""
    from config.api.serializers import format_timestamp

    threshold = dict((from_json(meter.thresholds) or [])[crossing.threshold_index])
    return {
        "thresholdEventId": str(crossing.event_id),
        "meterId": str(meter.id),
        "meterTypeId": str(meter.meter_type_id),
        "meterKey": meter.meter_key,
        "userId": meter.user_id,
        "threshold": {"index": crossing.threshold_index, **threshold, "limit": json_number(crossing.limit)},
        "value": json_number(crossing.value),
        "capacity": json_number(to_decimal(meter.capacity)),
        "periodStart": format_timestamp(meter.period_start),
        "periodEnd": format_timestamp(meter.period_end),
        "crossedAt": format_timestamp(now),
    }

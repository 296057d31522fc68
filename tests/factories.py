"""The tests' builders of meter types and meters, made through the metering services (one place:
each suite's conftest names its own defaults and calls these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import time_machine

from metering import services
from metering.models import Meter, MeterType

METER_TYPE_DEFAULTS: dict[str, Any] = {
    "name": "API calls",
    "unit": "requests",
    "aggregation": "SUM",
    "reset_cron": "0 0 1 * *",
    "timezone": "Etc/UTC",
}
METER_DEFAULTS: dict[str, Any] = {"meter_key": "default", "user_id": "alice"}


def make_meter_type(account, *, at: datetime | None = None, **overrides: Any) -> MeterType:
    """A monthly SUM type unless ``overrides`` say otherwise; made (and active from) ``at`` when given."""
    values = {**METER_TYPE_DEFAULTS, **overrides}
    if at is None:
        return services.meter_type_create(account_id=account.pk, **values)
    with time_machine.travel(at, tick=False):
        return services.meter_type_create(account_id=account.pk, **values)


def make_meter(meter_type: MeterType, *, at: datetime | None = None, **overrides: Any) -> Meter:
    """A meter of ``meter_type``; created at ``at`` (its period starts then) when given."""
    values = {**METER_DEFAULTS, **overrides}
    if at is None:
        return services.meter_create(account_id=meter_type.account_id, meter_type_id=meter_type.pk, **values)
    with time_machine.travel(at, tick=False):
        return services.meter_create(account_id=meter_type.account_id, meter_type_id=meter_type.pk, **values)

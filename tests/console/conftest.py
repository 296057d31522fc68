"""Builders for the console's tests.

Meter types and meters are made through the metering services, usage through the usage ledger
(``ingest``). ``set_value`` writes a meter's value directly, for the near-capacity panel.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from accounts import services as account_services
from metering import services as metering_services
from metering.ledger import UsageInput, usage_apply
from metering.models import Meter, MeterType

# Every app whose objects the dashboard shows.
OPERATOR_APPS = ("accounts", "metering", "collection", "streams", "parameters", "notifications", "console")


def make_type(account, *, since: datetime | None = None, **overrides: Any) -> MeterType:
    """``since``: made (and active) from then, so the ledger accepts usage records from then on."""
    values = {
        "name": "API calls",
        "unit": "requests",
        "aggregation": "SUM",
        "reset_cron": "0 0 * * *",
        "timezone": "Etc/UTC",
        "capacity": Decimal(1000),
    }
    values.update(overrides)
    if since is None:
        return metering_services.meter_type_create(account_id=account.pk, **values)
    with time_machine.travel(since, tick=False):
        return metering_services.meter_type_create(account_id=account.pk, **values)


def ingest(meter_type: MeterType, *records: tuple[str, datetime, int | str]) -> None:
    """Usage records (customer, time, value) through the usage ledger, as the APIs send them."""
    batch = [
        UsageInput(user_id=user, value=value, timestamp=at, meter_type_id=meter_type.pk)
        for user, at, value in records
    ]
    result = usage_apply(account_id=meter_type.account_id, records=batch, source="api")
    assert [item.outcome for item in result.results] == ["ACCEPTED"] * len(records)


def make_meter(meter_type: MeterType, user_id: str = "ann@example.com", meter_key: str = "gateway") -> Meter:
    return metering_services.meter_create(
        account_id=meter_type.account_id, meter_type_id=meter_type.pk, meter_key=meter_key, user_id=user_id
    )


def set_value(meter: Meter, value: Decimal | int | None) -> Meter:
    """What the usage ledger leaves on a meter (not on this branch yet)."""
    Meter.objects.filter(pk=meter.pk).update(value=None if value is None else Decimal(value))
    meter.refresh_from_db()
    return meter


def staff_of(account, username: str, apps: tuple[str, ...] = OPERATOR_APPS):
    """A staff user of ``account`` who may view and change everything in ``apps``."""
    user = get_user_model().objects.create_user(username=username, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=apps))
    account_services.account_user_link(user=user, account=account)
    return user


@pytest.fixture
def staff_client(client, account):
    client.force_login(staff_of(account, "ann"))
    return client

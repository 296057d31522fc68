"""Builders for the console's tests.

Meter types and meters are made through the metering services, usage through the usage ledger
(``ingest``). ``set_value`` writes a meter's value directly, for the near-capacity panel.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from accounts import services as account_services
from metering.ledger import UsageInput, usage_apply
from metering.models import Meter, MeterType
from tests import factories

# Every app whose objects the dashboard shows.
OPERATOR_APPS = ("accounts", "metering", "collection", "streams", "parameters", "notifications", "console")


def make_type(account, *, since: datetime | None = None, **overrides: Any) -> MeterType:
    """A daily SUM type of capacity 1000. ``since``: made (and active) from then, so the ledger
    accepts usage records from then on."""
    return factories.make_meter_type(
        account, at=since, **{"reset_cron": "0 0 * * *", "capacity": Decimal(1000), **overrides}
    )


def ingest(meter_type: MeterType, *records: tuple[str, datetime, int | str]) -> None:
    """Usage records (customer, time, value) through the usage ledger, as the APIs send them."""
    batch = [
        UsageInput(user_id=user, value=value, timestamp=at, meter_type_id=meter_type.pk)
        for user, at, value in records
    ]
    result = usage_apply(account_id=meter_type.account_id, records=batch, source="api")
    assert [item.outcome for item in result.results] == ["ACCEPTED"] * len(records)


def make_meter(meter_type: MeterType, user_id: str = "ann@example.com", meter_key: str = "gateway") -> Meter:
    return factories.make_meter(meter_type, user_id=user_id, meter_key=meter_key)


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

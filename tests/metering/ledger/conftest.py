"""Fixtures of the usage ledger tests: a clock frozen inside the meters' current period."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import time_machine

from metering.ledger import UsageInput, UsageResult, usage_apply
from metering.models import Meter, MeterType
from tests import factories

# Types and meters are made at START (their first period runs to 2027-02-01); tests run at NOW.
START = datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
PERIOD_END = datetime(2027, 2, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def make_type(account, at: datetime = START, **overrides: Any) -> MeterType:
    """A monthly SUM type made (and active from) ``at``."""
    return factories.make_meter_type(account, at=at, **{"api_name": "api-calls", **overrides})


def make_meter(
    meter_type: MeterType, user_id: str = "alice", meter_key: str = "default", **overrides
) -> Meter:
    return factories.make_meter(meter_type, at=START, user_id=user_id, meter_key=meter_key, **overrides)


def usage(
    meter_type: MeterType | None = None,
    user: str | None = "alice",
    value: Any = 1,
    at: Any = NOW,
    key: str | None = None,
    **fields: Any,
) -> UsageInput:
    return UsageInput(
        user_id=user,
        value=value,
        timestamp=at,
        meter_type_id=meter_type.pk if meter_type else None,
        idempotency_key=key,
        **fields,
    )


def apply(account, records: list[UsageInput], **kwargs: Any) -> UsageResult:
    kwargs.setdefault("source", "api")
    return usage_apply(account_id=account.pk, records=records, **kwargs)


def value_of(meter: Meter) -> Decimal | None:
    meter.refresh_from_db()
    return meter.value

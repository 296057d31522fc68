"""The hourly rollups usage queries and the dashboard read always equal the raw ledger: random
batches with duplicates (same key again, in the batch and across batches) and refused records
(corrections), with a fixed seed."""

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from metering.ledger import UsageInput, usage_apply
from metering.models import UsageRecord, UsageRollup
from tests.console.conftest import make_meter, make_type

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
CUSTOMERS = ("ann", "bob", "cid")


def ledger_by_hour(account) -> dict[tuple, tuple]:
    hours: dict[tuple, list[Decimal]] = defaultdict(list)
    for meter_type_id, user_id, timestamp, value in UsageRecord.objects.filter(account=account).values_list(
        "meter_type_id", "user_id", "timestamp", "value"
    ):
        hours[(meter_type_id, user_id, timestamp.replace(minute=0, second=0, microsecond=0))].append(value)
    return {
        key: (sum(values, Decimal(0)), len(values), max(values), min(values)) for key, values in hours.items()
    }


def rollups(account) -> dict[tuple, tuple]:
    return {
        (row.meter_type_id, row.user_id, row.hour): (row.sum, row.count, row.max, row.min)
        for row in UsageRollup.objects.filter(account=account)
    }


def test_rollups_equal_the_ledger_after_random_batches_duplicates_and_corrections(account, other_account):
    rng = random.Random(20261122)
    with time_machine.travel(NOW - timedelta(days=5), tick=False):
        types = [
            make_type(account, name="Calls"),
            make_type(account, name="Bytes", aggregation="MAX"),
            make_type(other_account, name="Calls"),
        ]
        for meter_type in types:
            for user in CUSTOMERS:
                make_meter(meter_type, user)
    keys: list[str] = []
    outcomes: dict[str, int] = defaultdict(int)
    with time_machine.travel(NOW, tick=False):
        for batch_number in range(12):
            batch = []
            for _ in range(rng.randint(1, 25)):
                meter_type = rng.choice(types)
                if keys and rng.random() < 0.15:
                    key = rng.choice(keys)  # a duplicate: the first record with this key counts
                else:
                    key = f"k{len(keys)}"
                    keys.append(key)
                value = rng.choice(
                    [str(Decimal(rng.randint(-500, 5000)) / 100), "not a number"]
                    if rng.random() < 0.1
                    else [str(Decimal(rng.randint(-500, 5000)) / 100)]
                )
                at = NOW - timedelta(minutes=rng.randint(0, 3 * 24 * 60), seconds=rng.randint(0, 59))
                batch.append(
                    UsageInput(
                        user_id=rng.choice(CUSTOMERS),
                        value=value,
                        timestamp=at,
                        meter_type_id=meter_type.pk,
                        idempotency_key=f"{meter_type.account_id}:{key}",
                    )
                )
            result = usage_apply(
                account_id=account.pk if batch_number % 3 else other_account.pk, records=batch, source="api"
            )
            for item in result.results:
                outcomes[item.outcome] += 1
            assert ledger_by_hour(account) == rollups(account)
            assert ledger_by_hour(other_account) == rollups(other_account)

    # The seed gives every kind of record, and the ledger holds exactly the accepted ones.
    assert set(outcomes) >= {"ACCEPTED", "DUPLICATE", "CORRECTION"}
    stored = UsageRecord.objects.filter(account__in=[account, other_account]).count()
    assert stored == outcomes["ACCEPTED"]
    assert (
        sum(row.count for row in UsageRollup.objects.filter(account__in=[account, other_account])) == stored
    )

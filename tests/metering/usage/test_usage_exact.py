"""Usage over a time range is exact at any alignment: ``start ≤ timestamp < end`` (issue 20).

The rollups answer whole hours, the ledger the partial ones; these pin the edges by hand (the
Hypothesis model in test_usage_model.py checks the same against a recount at random).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from console.selectors import usage_by_meter_type_per_day
from metering.compat import amberflo
from metering.compat.usage_queries import UsageQuery, usage_query
from metering.ledger import UsageInput, usage_apply
from metering.usage_buckets import UsageScope, usage_per_bucket

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 1, 20, 12, tzinfo=UTC)
DAY = datetime(2027, 1, 8, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def define(account, name="api-calls", kind=amberflo.SUM_OF_ALL_USAGE, dimensions=("region",)):
    with time_machine.travel(datetime(2027, 1, 1, tzinfo=UTC), tick=False):
        return amberflo.meter_definition_create(
            account_id=account.pk,
            meter_api_name=name,
            display_name=name,
            kind=kind,
            dimensions=list(dimensions),
        )


def put(account, name, *events):
    """events: (customer, value, time, dimensions)"""
    result = usage_apply(
        account_id=account.pk,
        source="api",
        records=[
            UsageInput(
                user_id=customer,
                value=value,
                timestamp=moment,
                meter_api_name=name,
                dimensions=dimensions,
                idempotency_key=f"{name}-{index}",
            )
            for index, (customer, value, moment, dimensions) in enumerate(events)
        ],
    )
    assert result.accepted == len(events), result


def answer(account, start, end, interval="HOUR", aggregation="SUM", name="api-calls", **more):
    query = UsageQuery(
        meter_api_name=name, start=start, end=end, aggregation=aggregation, interval=interval, **more
    )
    return usage_query(account_id=account.pk, query=query)["clientMeters"][name]


def at(hour, minute=0, second=0):
    return DAY + timedelta(hours=hour, minutes=minute, seconds=second)


def test_a_range_inside_hours_counts_only_its_seconds_and_never_its_end(account):
    define(account)
    put(
        account,
        "api-calls",
        ("alice", 1, at(5, 0), {"region": "eu"}),  # before the range, in its first hour
        ("alice", 2, at(5, 40), {"region": "eu"}),  # exactly at the start: counted
        ("bob", 4, at(5, 59, 59), {}),  # no region
        ("alice", 8, at(6, 19, 59), {"region": "us"}),
        ("alice", 16, at(6, 20), {"region": "us"}),  # exactly at the end: not counted
        ("bob", 32, at(6, 59), {"region": "us"}),
    )
    start, end = at(5, 40), at(6, 20)
    hour5, hour6 = str(int(at(5).timestamp())), str(int(at(6).timestamp()))

    assert answer(account, start, end) == [{"groupInfo": {}, "records": [{hour5: 6.0}, {hour6: 8.0}]}]
    assert answer(account, start, end, aggregation="COUNT")[0]["records"] == [{hour5: 2}, {hour6: 1}]
    assert answer(account, start, end, aggregation="MAX")[0]["records"] == [{hour5: 4.0}, {hour6: 8.0}]
    day = str(int(DAY.timestamp()))
    assert answer(account, start, end, interval="DAY")[0]["records"] == [{day: 14.0}]
    # Grouped by a dimension (the ledger) and by customer (the rollups and the ledger) agree with
    # the total; an event without the dimension is in the group "", never null.
    assert answer(account, start, end, interval="DAY", group_by=["region"]) == [
        {"groupInfo": {"region": ""}, "records": [{day: 4.0}]},
        {"groupInfo": {"region": "eu"}, "records": [{day: 2.0}]},
        {"groupInfo": {"region": "us"}, "records": [{day: 8.0}]},
    ]
    assert answer(account, start, end, interval="DAY", group_by=["customerId"]) == [
        {"groupInfo": {"customerId": "alice"}, "records": [{day: 10.0}]},
        {"groupInfo": {"customerId": "bob"}, "records": [{day: 4.0}]},
    ]
    assert answer(account, start, end, interval="DAY", filters={"region": [""]}) == [
        {"groupInfo": {}, "records": [{day: 4.0}]}
    ]


def test_a_range_over_many_hours_reads_rollups_between_two_partial_edges(account):
    define(account)
    put(
        account,
        "api-calls",
        ("alice", 1, at(1, 29, 59), {}),
        ("alice", 2, at(1, 30), {}),
        ("alice", 4, at(2, 0), {}),
        ("bob", 8, at(10, 15), {}),
        ("bob", 16, at(22, 44, 59), {}),
        ("bob", 32, at(22, 45), {}),
        ("bob", 64, at(30, 0), {}),
    )
    start, end = at(1, 30), at(22, 45)
    day = str(int(DAY.timestamp()))

    assert answer(account, start, end, interval="DAY")[0]["records"] == [{day: 30.0}]
    assert answer(account, start, end, interval="DAY", aggregation="COUNT")[0]["records"] == [{day: 4}]
    month = str(int(datetime(2027, 1, 1, tzinfo=UTC).timestamp()))
    assert answer(account, start, end, interval="MONTH", customers=["bob"])[0]["records"] == [{month: 24.0}]
    weekly = answer(account, start, end, interval="WEEK", group_by=["customerId"])
    assert [group["records"][0].popitem()[1] for group in weekly] == [6.0, 24.0]


def test_distinct_customers_unite_the_rollup_hours_and_the_ledger_edge_of_a_bucket(account):
    define(account, "active", kind=amberflo.UNIQUE_CUSTOMERS_COUNT)
    put(
        account,
        "active",
        ("alice", 1, at(3, 10), {}),  # edge (ledger) and whole hour (rollup): one customer
        ("alice", 1, at(7, 0), {}),
        ("bob", 1, at(3, 5), {}),  # before the range
        ("carol", 1, at(9, 0), {}),
        ("dave", 1, at(12, 30), {}),  # the end edge
        ("erin", 1, at(12, 45), {}),  # after the range
    )
    day = str(int(DAY.timestamp()))
    assert answer(account, at(3, 6), at(12, 40), interval="DAY", name="active")[0]["records"] == [{day: 3}]
    assert answer(account, at(3, 6), at(12, 40), interval="HOUR", name="active")[0]["records"][0] == {
        str(int(at(3).timestamp())): 1
    }


def test_days_in_a_timezone_off_utc_by_half_an_hour_are_exact(account):
    meter_type = define(account, dimensions=())
    kolkata = ZoneInfo("Asia/Kolkata")  # midnight there is 18:30 UTC
    midnight = datetime(2027, 1, 19, tzinfo=kolkata)
    meter_type.timezone = "Asia/Kolkata"
    meter_type.save(update_fields=["timezone"])
    put(
        account,
        "api-calls",
        ("alice", 1, midnight - timedelta(seconds=1), {}),  # 18:29:59 UTC: the day before
        ("alice", 2, midnight, {}),
        ("bob", 4, midnight + timedelta(minutes=29), {}),
        ("bob", 8, midnight + timedelta(hours=5), {}),
    )
    found = usage_per_bucket(
        scope=UsageScope(account_id=account.pk, meter_type_ids=[meter_type.pk]),
        start=midnight - timedelta(days=1),
        end=midnight + timedelta(days=1),
        interval="DAY",
        zone=kolkata,
    )
    assert {bucket.astimezone(kolkata).date().day: f.total for (bucket,), f in found.items()} == {
        18: Decimal(1),
        19: Decimal(14),
    }
    daily = usage_by_meter_type_per_day(account.pk, 3, now=NOW)[0]
    assert daily.values == (Decimal(1), Decimal(14), None)

"""``usage_apply``: exactly once, each aggregation, meter state, rollups, thresholds, statements per batch."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from metering.ledger import MeterOptions, Outcome, UsageInput, meters_recompute, usage_dedup_keys_purge
from metering.models import DataCorrection, Meter, ThresholdEvent, UsageDedupKey, UsageRecord, UsageRollup
from notifications.models import NotificationEndpoint, NotificationEvent
from tests.metering.ledger.conftest import (
    NOW,
    PERIOD_END,
    START,
    apply,
    make_meter,
    make_type,
    usage,
    value_of,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen")]


@pytest.fixture
def calls(account):
    return make_type(account)


@pytest.fixture
def meter(calls):
    return make_meter(calls)


# --- exactly once -------------------------------------------------------------------------------


def test_the_same_events_sent_three_times_count_once_and_replays_say_duplicate(account, calls, meter):
    batch = [usage(calls, value=5, key="e1"), usage(calls, value=7, key="e2")]

    first = apply(account, batch)
    second = apply(account, batch)
    third = apply(account, batch)

    assert [r.outcome for r in first.results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert [r.outcome for r in second.results] == [Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert [r.outcome for r in third.results] == [Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert (first.accepted, second.duplicates, third.duplicates) == (2, 2, 2)
    assert value_of(meter) == Decimal(12)
    assert meter.record_count == 2
    assert UsageRecord.objects.count() == 2
    assert UsageDedupKey.objects.filter(account=account).count() == 2


def test_a_key_twice_in_one_batch_counts_once(account, calls, meter):
    result = apply(account, [usage(calls, value=5, key="k"), usage(calls, value=9, key="k")])

    assert [r.outcome for r in result.results] == [Outcome.ACCEPTED, Outcome.DUPLICATE]
    assert value_of(meter) == Decimal(5)
    assert list(UsageRecord.objects.values_list("value", flat=True)) == [Decimal(5)]


def test_records_without_a_key_get_a_generated_one_and_all_count(account, calls, meter):
    result = apply(account, [usage(calls, value=1), usage(calls, value=1)])

    keys = [r.idempotency_key for r in result.results]
    assert result.accepted == 2 and len(set(keys)) == 2 and all(key.startswith("gen:") for key in keys)
    assert sorted(UsageRecord.objects.values_list("idempotency_key", flat=True)) == sorted(keys)
    assert value_of(meter) == Decimal(2)


def test_keys_are_per_account(account, other_account, calls, meter):
    theirs = make_meter(make_type(other_account), user_id="alice")
    apply(account, [usage(calls, value=3, key="same")])
    other = apply(other_account, [usage(theirs.meter_type, value=4, key="same")])

    assert other.accepted == 1
    assert (value_of(meter), value_of(theirs)) == (Decimal(3), Decimal(4))


def test_a_duplicate_with_another_body_is_flagged_key_reused(account, calls, meter):
    apply(
        account,
        [UsageInput(user_id="alice", value=1, meter_type_id=calls.pk, idempotency_key="k", request_hash="a")],
    )
    same = apply(
        account,
        [UsageInput(user_id="alice", value=1, meter_type_id=calls.pk, idempotency_key="k", request_hash="a")],
    )
    other = apply(
        account,
        [UsageInput(user_id="alice", value=2, meter_type_id=calls.pk, idempotency_key="k", request_hash="b")],
    )

    assert (same.results[0].outcome, same.results[0].key_reused) == (Outcome.DUPLICATE, False)
    assert (other.results[0].outcome, other.results[0].key_reused) == (Outcome.DUPLICATE, True)
    assert value_of(meter) == Decimal(1)


def test_very_long_keys_are_hashed_and_still_deduplicate(account, calls, meter):
    long_key = "x" * 1000
    first = apply(account, [usage(calls, key=long_key)])
    second = apply(account, [usage(calls, key=long_key)])

    assert first.results[0].idempotency_key.startswith("sha256:")
    assert second.results[0].outcome == Outcome.DUPLICATE
    assert value_of(meter) == Decimal(1)


# --- aggregations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "aggregation,values,expected",
    [
        ("SUM", [3, "2.5", Decimal("0.000000000001")], Decimal("5.500000000001")),
        ("INCREMENT", [3, 100, 7], Decimal(3)),
        ("MAX", [3, 11, 7], Decimal(11)),
        ("MIN", [3, -1, 7], Decimal(-1)),
    ],
)
def test_each_aggregation(account, aggregation, values, expected):
    meter = make_meter(make_type(account, aggregation=aggregation))
    apply(account, [usage(meter.meter_type, value=values[0])])
    apply(account, [usage(meter.meter_type, value=value) for value in values[1:]])

    assert value_of(meter) == expected
    assert meter.record_count == 3
    assert meter.last_ingested_at == NOW


@pytest.mark.parametrize("aggregation", ["MAX", "MIN"])
def test_max_and_min_stay_empty_until_the_first_record(account, aggregation):
    meter = make_meter(make_type(account, aggregation=aggregation))
    assert value_of(meter) is None

    apply(account, [usage(meter.meter_type, value=-4)])

    assert value_of(meter) == Decimal(-4)


def test_max_keeps_the_extreme_across_batches(account):
    meter = make_meter(make_type(account, aggregation="MAX"))
    apply(account, [usage(meter.meter_type, value=9)])
    apply(account, [usage(meter.meter_type, value=4)])

    assert value_of(meter) == Decimal(9)


# --- the open period ----------------------------------------------------------------------------


def test_only_records_of_the_open_period_change_the_meter_but_all_are_in_the_ledger(account, settings):
    calls = make_type(account, at=START - timedelta(days=2))
    meter = make_meter(calls)
    before_period = START - timedelta(hours=1)
    after_period = PERIOD_END + timedelta(seconds=1)
    settings.USAGE_CLOCK_SKEW_SECONDS = 60 * 60 * 24 * 30
    result = apply(
        account,
        [
            usage(calls, value=1, at=before_period),
            usage(calls, value=10, at=NOW),
            usage(calls, value=100, at=after_period),
        ],
    )

    assert result.accepted == 3
    assert [r.counted for r in result.results] == [False, True, False]
    assert value_of(meter) == Decimal(10)
    assert meter.record_count == 1
    assert sorted(UsageRecord.objects.values_list("value", flat=True)) == [1, 10, 100]


def test_timestamps_are_read_as_iso_text_unix_milliseconds_or_datetimes(account, calls, meter):
    at = NOW - timedelta(minutes=5)
    apply(
        account,
        [
            usage(calls, at="2027-01-10T11:55:00Z"),
            usage(calls, at=int(at.timestamp() * 1000)),
            usage(calls, at=str(int(at.timestamp() * 1000))),
            usage(calls, at=at),
            usage(calls, at=None),
        ],
    )

    times = sorted(UsageRecord.objects.values_list("timestamp", flat=True))
    assert times == [at, at, at, at, NOW]


# --- groups, breakdowns, carry fields -----------------------------------------------------------


def test_groups_breakdowns_and_carry_fields(account):
    meter = make_meter(make_type(account, dimensions=["region"]))
    options = MeterOptions(carry_first=("plan",), carry_last=("plan", "device"))
    first = [
        usage(
            meter.meter_type,
            value=2,
            at=NOW - timedelta(minutes=30),
            group="gold",
            dimensions={"region": "eu"},
            fields={"region": "eu", "plan": "p1", "device": "d1"},
        ),
        usage(
            meter.meter_type,
            value=3,
            at=NOW - timedelta(minutes=10),
            group="silver",
            dimensions={"region": "us"},
            fields={"region": "us", "plan": "p2", "device": "d2"},
        ),
    ]
    apply(account, first, options=options)
    # Out of order: an earlier record arrives later and becomes carryFirst; the latest stays carryLast.
    later = [
        usage(
            meter.meter_type,
            value=5,
            at=NOW - timedelta(minutes=50),
            group="gold",
            dimensions={"region": "eu"},
            fields={"region": "eu", "plan": "p0", "device": "d0"},
        ),
        usage(meter.meter_type, value=1, at=NOW - timedelta(minutes=20), dimensions={}, fields={}),
    ]
    apply(account, later, options=options)

    meter.refresh_from_db()
    assert meter.value == Decimal(11)
    assert meter.groups == [
        {"key": "gold", "value": 7, "recordCount": 2},
        {"key": "silver", "value": 3, "recordCount": 1},
    ]
    assert meter.group_breakdowns == [
        {"fields": {"region": "eu"}, "value": 7, "recordCount": 2},
        {"fields": {"region": "us"}, "value": 3, "recordCount": 1},
        {"fields": {"region": None}, "value": 1, "recordCount": 1},
    ]
    assert meter.carry_first == {"plan": "p0"}
    assert meter.carry_last == {"plan": "p2", "device": "d2"}
    assert (meter.carry_first_at, meter.carry_last_at) == (
        NOW - timedelta(minutes=50),
        NOW - timedelta(minutes=10),
    )


def test_group_by_fields_of_the_meter_processor_replace_the_types_dimensions(account):
    meter = make_meter(make_type(account, dimensions=["region"], aggregation="MAX"))
    apply(
        account,
        [usage(meter.meter_type, value=v, fields={"sku": sku}) for v, sku in [(4, "a"), (9, "a"), (2, "b")]],
        options=MeterOptions(group_by=("sku",)),
    )

    meter.refresh_from_db()
    assert meter.group_breakdowns == [
        {"fields": {"sku": "a"}, "value": 9, "recordCount": 2},
        {"fields": {"sku": "b"}, "value": 2, "recordCount": 1},
    ]


def test_carry_fields_of_an_earlier_period_are_replaced(account, calls, meter):
    Meter.objects.filter(pk=meter.pk).update(
        carry_first={"plan": "old"},
        carry_first_at=START - timedelta(days=3),
        carry_last={"plan": "old"},
        carry_last_at=START - timedelta(days=1),
    )
    apply(
        account,
        [usage(calls, fields={"plan": "new"})],
        options=MeterOptions(carry_first=("plan",), carry_last=("plan",)),
    )

    meter.refresh_from_db()
    assert (meter.carry_first, meter.carry_last) == ({"plan": "new"}, {"plan": "new"})


# --- meters: which one, and made on first usage -------------------------------------------------


def test_a_meter_key_picks_the_meter_among_several(account, calls):
    gateway = make_meter(calls, meter_key="gateway")
    batch = make_meter(calls, meter_key="batch")

    apply(account, [usage(calls, value=2, meter_key="batch")])
    result = apply(account, [usage(calls, value=1)])

    assert (value_of(gateway), value_of(batch)) == (Decimal(0), Decimal(2))
    assert (result.results[0].outcome, result.results[0].reason) == (Outcome.CORRECTION, "AMBIGUOUS_METER")


def test_meters_of_auto_create_types_are_made_on_first_usage_for_the_current_period(account):
    meter_type = make_type(account, name="Storage", api_name="storage")
    meter_type.auto_create_meters = True
    meter_type.save()

    result = apply(
        account,
        [
            usage(meter_type, user="bob", value=2, at=NOW - timedelta(days=2)),
            usage(meter_type, user="bob", value=3),
            usage(meter_type, user="carol", value=4),
        ],
    )

    assert result.accepted == 3
    bob = Meter.objects.get(user_id="bob")
    assert (bob.meter_key, bob.value, bob.record_count) == ("default", Decimal(5), 2)
    assert (bob.period_start, bob.period_end, bob.created_at) == (START, PERIOD_END, NOW)
    assert Meter.objects.get(user_id="carol").value == Decimal(4)


def test_the_first_usage_meter_starts_at_active_from_when_the_type_became_active_mid_period(account):
    became_active = datetime(2027, 1, 5, 8, 0, tzinfo=UTC)
    meter_type = make_type(account, at=became_active, name="Late", api_name="late")
    meter_type.auto_create_meters = True
    meter_type.save()

    apply(account, [usage(meter_type, user="bob")])

    assert Meter.objects.get(user_id="bob").period_start == meter_type.active_from == became_active


# --- rollups ------------------------------------------------------------------------------------


def test_rollups_equal_the_ledger_after_random_ingests_duplicates_and_corrections(account):
    rng = random.Random(20270110)
    types = [
        make_type(account, name=f"T{n}", api_name=f"t{n}", aggregation=agg)
        for n, agg in enumerate(["SUM", "MAX"])
    ]
    for meter_type in types:
        meter_type.auto_create_meters = True
        meter_type.save()
    keys = [f"k{n}" for n in range(150)]
    for _ in range(12):
        batch = []
        for _ in range(rng.randint(1, 40)):
            bad = rng.random() < 0.1
            batch.append(
                usage(
                    rng.choice(types),
                    user=None if bad else rng.choice(["a", "b", "c"]),
                    value=Decimal(rng.randint(-5, 50)) / 4,
                    key=rng.choice(keys),
                    at=NOW - timedelta(minutes=rng.randint(0, 60 * 48)),
                )
            )
        apply(account, batch)

    expected: dict[tuple, list[Decimal]] = defaultdict(list)
    for record in UsageRecord.objects.filter(account=account):
        hour = record.timestamp.replace(minute=0, second=0, microsecond=0)
        expected[(record.meter_type_id, record.user_id, hour)].append(record.value)
    rollups = {
        (r.meter_type_id, r.user_id, r.hour): (r.sum, r.count, r.max, r.min)
        for r in UsageRollup.objects.filter(account=account)
    }
    assert rollups == {
        key: (sum(values), len(values), max(values), min(values)) for key, values in expected.items()
    }
    assert DataCorrection.objects.filter(reason="MISSING_USER_ID").exists()
    assert UsageRecord.objects.count() == len(
        set(UsageRecord.objects.values_list("idempotency_key", flat=True))
    )
    for meter in Meter.objects.filter(account=account).select_related("meter_type"):
        values = list(UsageRecord.objects.filter(meter_id=meter.pk).values_list("value", flat=True))
        assert meter.value == (sum(values) if meter.meter_type.aggregation == "SUM" else max(values))


# --- thresholds ---------------------------------------------------------------------------------


def test_crossing_thresholds_upward_records_one_event_per_threshold_and_period(account):
    meter_type = make_type(
        account,
        capacity=100,
        thresholds=[{"name": "warning", "capacityPercentage": 80}, {"name": "limit", "value": 100}],
    )
    meter = make_meter(meter_type)
    endpoint = NotificationEndpoint.objects.create(
        account=account,
        url="https://hooks.example.com/x",
        event_types=["threshold.crossed"],
        secret_encrypted="-",
    )

    first = apply(account, [usage(meter_type, value=79)])
    second = apply(account, [usage(meter_type, value=1)])
    third = apply(account, [usage(meter_type, value=30)])
    fourth = apply(account, [usage(meter_type, value=30)])

    assert (len(first.crossings), len(second.crossings), len(third.crossings), len(fourth.crossings)) == (
        0,
        1,
        1,
        0,
    )
    events = list(ThresholdEvent.objects.order_by("threshold_index"))
    assert [(e.threshold_index, e.name, e.threshold_value, e.value, e.period_start) for e in events] == [
        (0, "warning", Decimal(80), Decimal(80), START),
        (1, "limit", Decimal(100), Decimal(110), START),
    ]
    payloads = [
        event.payload for event in NotificationEvent.objects.filter(account=account).order_by("created_at")
    ]
    assert [p["threshold"] for p in payloads] == [
        {"index": 0, "name": "warning", "capacityPercentage": 80, "limit": 80},
        {"index": 1, "name": "limit", "value": 100, "limit": 100},
    ]
    assert payloads[0] | {"thresholdEventId": None} == {
        "thresholdEventId": None,
        "meterId": str(meter.pk),
        "meterTypeId": str(meter_type.pk),
        "meterKey": "default",
        "userId": "alice",
        "threshold": payloads[0]["threshold"],
        "value": 80,
        "capacity": 100,
        "periodStart": "2027-01-01T00:00:00.000Z",
        "periodEnd": "2027-02-01T00:00:00.000Z",
        "crossedAt": "2027-01-10T12:00:00.000Z",
    }
    assert endpoint.deliveries.count() == 2


def test_a_new_period_can_cross_the_same_threshold_again(account):
    meter = make_meter(make_type(account, thresholds=[{"value": 5}]))
    apply(account, [usage(meter.meter_type, value=6)])
    Meter.objects.filter(pk=meter.pk).update(value=0, period_start=NOW - timedelta(hours=1))
    apply(account, [usage(meter.meter_type, value=6)])

    assert sorted(ThresholdEvent.objects.values_list("period_start", flat=True)) == [
        START,
        NOW - timedelta(hours=1),
    ]


# --- set-based: statements per batch --------------------------------------------------------------


def _statements(account, records) -> list[str]:
    executed: list[str] = []

    def count(execute, sql, params, many, context):
        executed.append(sql.split()[0])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        apply(account, records)
    return [sql for sql in executed if sql not in ("SAVEPOINT", "RELEASE")]


def test_a_batch_runs_the_same_statements_whatever_its_size(account, calls):
    for user in ("a", "b", "c"):
        make_meter(calls, user_id=user)
    small = _statements(account, [usage(calls, user="a")])
    large = _statements(account, [usage(calls, user=random.choice("abc")) for _ in range(1000)])

    assert small == large == ["WITH", "WITH", "SELECT", "UPDATE"]
    assert UsageRecord.objects.count() == 1001


def test_duplicates_need_no_meter_statements(account, calls, meter):
    batch = [usage(calls, key=f"k{n}") for n in range(10)]
    apply(account, batch)

    assert _statements(account, batch) == ["WITH", "WITH"]


def test_records_time_zone_handling_is_utc(account, calls, meter):
    apply(account, [usage(calls, at="2027-01-10T13:30:00+02:00")])

    assert UsageRecord.objects.get().timestamp == datetime(2027, 1, 10, 11, 30, tzinfo=UTC)
    assert UsageRollup.objects.get().hour == datetime(2027, 1, 10, 11, 0, tzinfo=UTC)


# --- maintenance: the reset's catch-up, the key purge ---------------------------------------------


def test_records_after_period_end_are_counted_into_the_next_period_when_the_meter_is_reset(
    account, calls, meter
):
    ended = NOW - timedelta(hours=1)
    Meter.objects.filter(pk=meter.pk).update(period_end=ended)
    late = apply(account, [usage(calls, value=4, at=NOW - timedelta(minutes=30), key="late")])
    assert (late.accepted, late.results[0].counted, value_of(meter)) == (1, False, Decimal(0))

    # What the reset does: a new period from the old end, then the catch-up, in one transaction.
    Meter.objects.filter(pk=meter.pk).update(
        period_start=ended, period_end=PERIOD_END, value=0, record_count=0
    )
    assert meters_recompute(meter_ids=[meter.pk]) == 1
    assert (value_of(meter), meter.record_count) == (Decimal(4), 1)

    apply(account, [usage(calls, value=6, key="next")])
    meters_recompute(meter_ids=[meter.pk])
    assert (value_of(meter), meter.record_count) == (Decimal(10), 2)


@pytest.mark.parametrize("aggregation,expected", [("INCREMENT", 2), ("MAX", 7), ("MIN", 3)])
def test_recompute_follows_the_aggregation(account, aggregation, expected):
    meter = make_meter(make_type(account, aggregation=aggregation))
    apply(account, [usage(meter.meter_type, value=7), usage(meter.meter_type, value=3)])
    Meter.objects.filter(pk=meter.pk).update(value=None, record_count=0)

    meters_recompute(meter_ids=[meter.pk])

    assert (value_of(meter), meter.record_count) == (Decimal(expected), 2)


def test_keys_older_than_the_window_are_purged_and_their_records_cannot_come_back(
    account, calls, meter, frozen, settings
):
    settings.IDEMPOTENCY_WINDOW_DAYS = 35  # the ledger then accepts records only 35 days back
    apply(account, [usage(calls, key="old")])
    frozen.shift(timedelta(days=37))
    apply(account, [usage(calls, key="recent", at=NOW + timedelta(days=37))])

    assert usage_dedup_keys_purge() == 1
    assert list(UsageDedupKey.objects.values_list("key", flat=True)) == ["recent"]
    replay = apply(account, [usage(calls, key="old")])
    assert replay.results[0].reason == "TIMESTAMP_TOO_OLD"


def test_beat_purges_expired_keys_daily(account, calls, meter, frozen, settings):
    from django_celery_beat.models import PeriodicTask

    settings.IDEMPOTENCY_WINDOW_DAYS = 35

    from metering.tasks import purge_usage_dedup_keys

    scheduled = PeriodicTask.objects.get(name="metering: purge idempotency keys")
    assert (scheduled.task, scheduled.enabled, scheduled.crontab.hour, scheduled.crontab.minute) == (
        "metering.purge_usage_dedup_keys",
        True,
        "3",
        "47",
    )
    apply(account, [usage(calls, key="old")])
    frozen.shift(timedelta(days=37))

    assert purge_usage_dedup_keys.apply().get() == 1
    assert not UsageDedupKey.objects.exists()


def test_the_reset_folds_usage_that_arrived_after_period_end_into_the_new_period(account, calls, meter):
    from metering.flush import meters_flush_due
    from metering.models import MeteredRecord

    ended = NOW - timedelta(hours=1)
    apply(account, [usage(calls, value=5, at=ended - timedelta(minutes=10), key="in-period")])
    Meter.objects.filter(pk=meter.pk).update(period_end=ended)
    late = apply(account, [usage(calls, value=4, at=NOW - timedelta(minutes=30), key="late")])
    assert late.results[0].counted is False

    assert meters_flush_due(now=NOW) == 1

    record = MeteredRecord.objects.get(source_meter_id=meter.pk)
    meter.refresh_from_db()
    assert (record.value, record.period_end) == (Decimal(5), ended)
    assert (meter.period_start, meter.value, meter.record_count) == (ended, Decimal(4), 1)

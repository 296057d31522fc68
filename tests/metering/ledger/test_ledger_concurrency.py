"""Concurrent callers on their own database connections: one effect per key, no lost update, no deadlock."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
import time_machine
from django.db import connection

from metering.ledger import Outcome
from metering.models import Meter, ThresholdEvent, UsageDedupKey, UsageRecord, UsageRollup
from notifications.models import NotificationEndpoint, NotificationEvent
from tests.metering.ledger.conftest import NOW, apply, make_meter, make_type, usage, value_of

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(workers: list[Callable[[], object]], timeout: float = 180) -> list[object]:
    """Start every worker at once, each on its own thread (so its own connection), and collect results."""
    barrier = threading.Barrier(len(workers))
    results: list[object] = [None] * len(workers)

    def run(position: int, work: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[position] = work()
        except BaseException as error:
            results[position] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n, work)) for n, work in enumerate(workers)]
    with time_machine.travel(NOW, tick=True):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a worker is stuck"
    errors = [result for result in results if isinstance(result, BaseException)]
    assert not errors, errors
    return results


def test_twenty_concurrent_requests_with_the_same_key_count_once(account):
    meter = make_meter(make_type(account))

    results = run_together([lambda: apply(account, [usage(meter.meter_type, value=5, key="same")])] * 20)

    outcomes = sorted(result.results[0].outcome for result in results)
    assert outcomes == [Outcome.ACCEPTED] + [Outcome.DUPLICATE] * 19
    meter.refresh_from_db()
    assert (meter.value, meter.record_count) == (Decimal(5), 1)
    assert UsageRecord.objects.count() == 1
    assert UsageRollup.objects.get().count == 1


def test_two_concurrent_batches_on_one_meter_both_count(account):
    meter = make_meter(make_type(account))

    def batch(prefix: str):
        return lambda: apply(
            account, [usage(meter.meter_type, value=1, key=f"{prefix}{n}") for n in range(300)]
        )

    run_together([batch("a"), batch("b")])

    meter.refresh_from_db()
    assert (meter.value, meter.record_count) == (Decimal(600), 600)
    assert UsageRollup.objects.get().sum == Decimal(600)


def test_overlapping_batches_in_opposite_orders_never_deadlock_and_count_each_key_once(account):
    """Every batch shares keys, meters, rollup rows and new customers with the others, in its own order."""
    meter_type = make_type(account)
    meter_type.auto_create_meters = True
    meter_type.save()
    users = [f"user{n}" for n in range(12)]
    records = [(f"key{n}", users[n % len(users)]) for n in range(120)]

    def batch(seed: int):
        shuffled = random.Random(seed).sample(records, len(records))
        return lambda: apply(
            account, [usage(meter_type, user=user, value=1, key=key) for key, user in shuffled]
        )

    results = run_together([batch(seed) for seed in range(6)])

    assert sum(result.accepted for result in results) == 120
    assert sum(result.duplicates for result in results) == 600
    assert Meter.objects.count() == 12
    assert sorted(Meter.objects.values_list("value", flat=True)) == [Decimal(10)] * 12
    assert UsageDedupKey.objects.count() == UsageRecord.objects.count() == 120


def test_batches_over_existing_meters_in_opposite_orders_never_deadlock(account):
    """The one-statement path (every meter exists): its meter locks are taken in id order too."""
    meter_type = make_type(account)
    meters = [make_meter(meter_type, user_id=f"user{n}") for n in range(12)]
    records = [(f"key{n}", f"user{n % 12}") for n in range(120)]

    def batch(seed: int):
        shuffled = random.Random(seed).sample(records, len(records))
        return lambda: apply(
            account, [usage(meter_type, user=user, value=1, key=key) for key, user in shuffled]
        )

    results = run_together([batch(seed) for seed in range(6)])

    assert sum(result.accepted for result in results) == 120
    assert sorted(value_of(meter) for meter in meters) == [Decimal(10)] * 12
    assert (
        sum(Meter.objects.filter(pk__in=[m.pk for m in meters]).values_list("record_count", flat=True)) == 120
    )


def test_a_hundred_concurrent_ingests_crossing_a_threshold_record_one_event_and_one_notification(account):
    meter = make_meter(make_type(account, thresholds=[{"name": "ten", "value": 10}]))
    NotificationEndpoint.objects.create(
        account=account,
        url="https://hooks.example.com/x",
        event_types=["threshold.crossed"],
        secret_encrypted="-",
    )

    def five_ingests(worker: int):
        # 20 connections at once, 100 ingests in all (the server's connection limit is shared).
        return lambda: [
            apply(account, [usage(meter.meter_type, value=1, key=f"k{worker}-{n}")]) for n in range(5)
        ]

    run_together([five_ingests(worker) for worker in range(20)])

    meter.refresh_from_db()
    assert meter.value == Decimal(100)
    assert ThresholdEvent.objects.count() == 1
    assert ThresholdEvent.objects.get().value == Decimal(10)
    assert NotificationEvent.objects.filter(event_type="threshold.crossed").count() == 1

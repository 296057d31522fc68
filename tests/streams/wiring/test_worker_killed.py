"""A real Celery worker killed with SIGKILL in the middle of a realtime stream run (collector →
map → meter processor), then a new worker: every collected batch is applied exactly once.

The run is caught mid-run with row locks, never with sleeps: the test holds the consumer's offset
row while it sends the second lot of batches (the worker's run waits to read them), lets go of it
(the run reads every one of them and counts them into the ledger), and holds the meters' rows (the
run waits inside its transaction, its usage rows written but not committed). PostgreSQL names the
waiting backend (``pg_blocking_pids``); the worker is killed right then.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from decimal import Decimal

import psycopg
import pytest
from django.db.models import Sum

from collection.models import CollectedBatch, Collector, ConsumerOffset
from config.celery import app
from metering.models import DataCorrection, Meter, UsageRecord
from metering.services import meter_create, meter_type_create
from streams import services as stream_services
from streams.models import StreamRun
from tests.conftest import client_for
from tests.streams.conftest import ACTOR
from tests.support.celery_worker import running_worker, worker_database_url

KEY = "9d0c2c6e-0000-4000-8000-00000000dead"
CUSTOMERS = ["c0", "c1", "c2"]
FIRST_BATCHES, SECOND_BATCHES, PER_BATCH = 4, 12, 50


def batch(number: int) -> list[dict]:
    """Batch ``number``'s records: no idempotencyKey, so only the run's transaction (and the meter
    processor's position-based keys) stand between a re-run and a double count."""
    return [
        {"customer": CUSTOMERS[(number + index) % 3], "amount": (number * PER_BATCH + index) % 9 + 1}
        for index in range(PER_BATCH)
    ]


def sums(batches: range) -> dict[str, Decimal]:
    totals = dict.fromkeys(CUSTOMERS, Decimal(0))
    for number in batches:
        for item in batch(number):
            totals[item["customer"]] += item["amount"]
    return totals


def wait_for(condition: Callable[[], object], what: str, timeout: float = 90) -> object:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


class Locker:
    """A connection of the test's own that holds row locks in an open transaction."""

    def __init__(self, sql: str, params: list):
        self.connection = psycopg.connect(worker_database_url())
        self.connection.execute(sql, params).fetchall()  # psycopg opens the transaction: the locks stay
        self.pid = self.connection.info.backend_pid

    def blocked(self) -> list[int]:
        """The backends waiting for this connection's locks."""
        rows = self.connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [self.pid]
        ).fetchall()
        return [pid for (pid,) in rows]

    def release(self) -> None:
        self.connection.rollback()
        self.connection.close()


def backend_alive(pid: int) -> bool:
    with psycopg.connect(worker_database_url()) as connection:
        return bool(connection.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone())


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_run_and_replaced_applies_every_batch_exactly_once(account, tmp_path):
    api = client_for(account)
    collector = Collector.objects.create(account=account, name="killed", status=Collector.Status.ACTIVE)
    meter_type = meter_type_create(
        account_id=account.pk,
        name="Calls",
        unit="call",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
        category="standard",
    )
    meters = {
        customer: meter_create(
            account_id=account.pk, meter_key=KEY, user_id=customer, meter_type_id=meter_type.pk
        )
        for customer in CUSTOMERS
    }
    solution = stream_services.solution_create(account=account, name="Killed")
    stream = stream_services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor=ACTOR,
        stream_config={
            "name": "Calls",
            "processingType": "realtime",
            "nodes": [
                {
                    "id": "in",
                    "name": "In",
                    "type": "onlineCollector",
                    "config": {"collectorId": str(collector.pk)},
                },
                {
                    "id": "shape",
                    "name": "Shape",
                    "type": "map",
                    "config": {"fields": {"userId": "record.customer", "value": "record.amount"}},
                },
                {
                    "id": "meter",
                    "name": "Meter",
                    "type": "meter",
                    "config": {"meterKey": KEY, "guidingRules": [{"category": "standard", "conditions": []}]},
                },
            ],
            "edges": [{"source": "in", "target": "shape"}, {"source": "shape", "target": "meter"}],
        },
    ).stream
    consumer = f"stream:{stream.pk}"
    offset = ConsumerOffset.objects.filter(collector=collector, consumer=consumer)

    def send(numbers: range) -> int:
        for number in numbers:
            response = api.post(
                f"/online-collection/collectors/{collector.pk}/data",
                json.dumps({"data": batch(number)}),
                content_type="application/json",
            )
            assert response.status_code == 200, response.content
        return CollectedBatch.objects.filter(collector=collector).order_by("-sequence")[0].sequence

    def values() -> dict[str, Decimal]:
        return {
            meter.user_id: meter.value
            for meter in Meter.objects.filter(pk__in=[m.pk for m in meters.values()])
        }

    first, second = range(FIRST_BATCHES), range(FIRST_BATCHES, FIRST_BATCHES + SECOND_BATCHES)
    with running_worker(tmp_path) as doomed:
        first_last = send(first)
        wait_for(lambda: offset.get().last_sequence == first_last, "the first batches to be consumed")
        assert values() == sums(first)

        # The worker's next run waits to read: every batch of the second lot is stored meanwhile.
        meters_held = Locker("SELECT id FROM metering_meter WHERE account_id = %s FOR UPDATE", [account.pk])
        offset_held = Locker(
            "SELECT id FROM collection_consumeroffset WHERE collector_id = %s AND consumer = %s FOR UPDATE",
            [collector.pk, consumer],
        )
        try:
            second_last = send(second)
            wait_for(offset_held.blocked, "the worker's run to wait for the offset row")
            offset_held.release()
            # It reads the whole second lot and counts it, until the meters' locks stop it.
            (in_flight,) = wait_for(meters_held.blocked, "the worker's run to wait for the meters")
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
        finally:
            meters_held.release()
        # PostgreSQL rolls the dead worker's transaction back once it sees the connection closed.
        wait_for(lambda: not backend_alive(in_flight), "the dead worker's transaction to end")

    # Nothing of the run in flight is left: the offset, the meters and the ledger are as before it.
    assert offset.get().last_sequence == first_last
    assert values() == sums(first)
    assert UsageRecord.objects.filter(account=account).count() == FIRST_BATCHES * PER_BATCH
    killed = StreamRun.objects.get(stream=stream, status=StreamRun.Status.RUNNING)  # it never finished

    with running_worker(tmp_path) as replacement:
        # The killed task's message is redelivered once Redis's visibility timeout passes, and beat
        # catches a stream up behind its collector every 5 s: both are sent here, so both kinds of
        # re-run happen (the second finds nothing left).
        app.send_task("streams.run_stream", args=[str(stream.pk), "realtime"])
        app.send_task("streams.catch_up_realtime")
        wait_for(lambda: offset.get().last_sequence == second_last, "the replacement to consume the rest")
        assert replacement.poll() is None, replacement.stderr.read().decode()

        total = FIRST_BATCHES + SECOND_BATCHES
        assert values() == sums(range(total))
        records = UsageRecord.objects.filter(account=account)
        assert records.count() == total * PER_BATCH
        assert records.aggregate(total=Sum("value"))["total"] == sum(sums(range(total)).values())
        assert not DataCorrection.objects.filter(account=account).exists()
        runs = StreamRun.objects.filter(stream=stream).exclude(pk=killed.pk)
        assert not runs.filter(status=StreamRun.Status.FAILED).exists()
        assert (
            sum(runs.filter(status=StreamRun.Status.SUCCEEDED).values_list("records_in", flat=True))
            == total * PER_BATCH
        )

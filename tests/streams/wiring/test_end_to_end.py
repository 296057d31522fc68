"""THE END-TO-END TEST: send data through the real endpoint, a real Celery worker runs the
realtime stream (collector → filter → map → meter processor with two guiding rules), the
meters hold exactly the expected sums, then a flush writes the metered records."""

from __future__ import annotations

import datetime
import json
import time
from decimal import Decimal

import pytest

from collection.models import CollectedBatch, Collector, ConsumerOffset
from metering.flush import meters_flush_all_due
from metering.models import DataCorrection, Meter, MeteredRecord
from metering.services import meter_create, meter_type_create
from streams import services as stream_services
from streams.models import StreamRun
from tests.conftest import client_for
from tests.streams.conftest import ACTOR
from tests.support.celery_worker import running_worker

KEY = "9d0c2c6e-0000-4000-8000-00000000e2e0"
BATCHES, PER_BATCH = 100, 100
CUSTOMERS = [f"c{n}" for n in range(4)]


@pytest.fixture
def worker(tmp_path):
    with running_worker(tmp_path) as process:
        yield process


def record(n: int) -> dict:
    """Record ``n``: every 50th is noise (filtered out), every 97th has a bad amount, every 89th
    no customer (both go to data correction); even ones are on the pro plan."""
    return {
        "kind": "noise" if n % 50 == 49 else "call",
        "customer": "" if n % 89 == 88 else CUSTOMERS[n % 4],
        "plan": "pro" if n % 2 == 0 else "free",
        "amount": "x" if n % 97 == 96 else n % 7 + 1,
        "idempotencyKey": f"r{n}",
    }


def records() -> list[dict]:
    """10,000 records; the last 100 repeat records 0-99 (a sender's retry): counted once."""
    sent = [record(n) for n in range(BATCHES * PER_BATCH - 100)]
    return sent + [record(n) for n in range(100)]


def expected() -> tuple[dict, int]:
    sums: dict[tuple[str, str], int] = {}
    bad = 0
    for n in range(BATCHES * PER_BATCH - 100):
        item = record(n)
        if item["kind"] != "call":
            continue
        if item["customer"] == "" or item["amount"] == "x":
            bad += 1
            continue
        category = "premium" if item["plan"] == "pro" else "standard"
        sums[(category, item["customer"])] = sums.get((category, item["customer"]), 0) + item["amount"]
    return sums, bad


@pytest.mark.django_db(transaction=True)
def test_ten_thousand_records_through_a_real_worker_are_metered_exactly_once(account, worker):
    api = client_for(account)
    collector = Collector.objects.create(account=account, name="e2e", status=Collector.Status.ACTIVE)
    types = {}
    for category in ("premium", "standard"):
        types[category] = meter_type_create(
            account_id=account.pk,
            name=f"{category} calls",
            unit="call",
            aggregation="SUM",
            reset_cron="0 0 1 * *",
            timezone="Etc/UTC",
            category=category,
        )
        for customer in CUSTOMERS:
            meter_create(
                account_id=account.pk, meter_key=KEY, user_id=customer, meter_type_id=types[category].pk
            )
    solution = stream_services.solution_create(account=account, name="E2E")
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
                    "id": "calls",
                    "name": "Calls only",
                    "type": "filter",
                    "config": {
                        "conditions": [
                            {"field": "kind", "type": "string", "operator": "equals", "value": "call"}
                        ]
                    },
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
                    "config": {
                        "meterKey": KEY,
                        "guidingRules": [
                            {
                                "category": "premium",
                                "conditions": [
                                    {"field": "plan", "type": "string", "operator": "equals", "value": "pro"}
                                ],
                            },
                            {"category": "standard", "conditions": []},
                        ],
                    },
                },
            ],
            "edges": [
                {"source": "in", "target": "calls"},
                {"source": "calls", "target": "shape"},
                {"source": "shape", "target": "meter"},
            ],
        },
    ).stream

    sent = records()
    for start in range(0, len(sent), PER_BATCH):
        response = api.post(
            f"/online-collection/collectors/{collector.pk}/data",
            json.dumps({"data": sent[start : start + PER_BATCH]}),
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
    last = (
        CollectedBatch.objects.filter(collector=collector)
        .order_by("-sequence")
        .values_list("sequence", flat=True)[0]
    )
    offset = ConsumerOffset.objects.filter(collector=collector, consumer=f"stream:{stream.pk}")
    deadline = time.monotonic() + 120
    while offset.get().last_sequence < last and time.monotonic() < deadline:
        assert worker.poll() is None, worker.stderr.read().decode()
        time.sleep(0.2)
    assert offset.get().last_sequence == last

    sums, bad = expected()
    held = {
        (meter.meter_type.category, meter.user_id): meter.value
        for meter in Meter.objects.select_related("meter_type").filter(account=account)
    }
    assert held == {key: Decimal(sums.get(key, 0)) for key in held}
    assert len(held) == 8 and sum(sums.values()) > 0
    corrections = DataCorrection.objects.filter(account=account, source="stream")
    assert corrections.count() == bad
    assert set(corrections.values_list("reason", "node")) == {
        ("MISSING_USER_ID", "meter"),
        ("NON_NUMERIC_VALUE", "meter"),
    }
    runs = StreamRun.objects.filter(stream=stream)
    assert not runs.filter(
        status="FAILED"
    ).exists()  # (a run that finds nothing new is still RUNNING or gone)
    assert sum(runs.filter(status="SUCCEEDED").values_list("records_in", flat=True)) == BATCHES * PER_BATCH

    # The period ends: the flush writes one metered record per meter with its value.
    period_end = (
        Meter.objects.filter(account=account).order_by("period_end").values_list("period_end", flat=True)[0]
    )
    meters_flush_all_due(now=period_end + datetime.timedelta(seconds=1))
    flushed = {(r.meter_type_id, r.user_id): r.value for r in MeteredRecord.objects.filter(account=account)}
    assert flushed == {
        (types[category].pk, customer): Decimal(sums.get((category, customer), 0))
        for category in ("premium", "standard")
        for customer in CUSTOMERS
    }

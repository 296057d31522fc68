"""Issue 18, Must show 1, end to end on PostgreSQL with a real Celery worker: account A imports a
realtime stream naming account B's collector; B sends data through the real endpoint; nothing of
it reaches A — no inspected record, no usage in A's ledger or meters, no data correction, no
request to A's HTTP forwarder (a real local HTTP server) — while B's own stream, the control,
gets every record; and B's log is pruned as if A's stream did not exist."""

from __future__ import annotations

import datetime
import json
import time
from decimal import Decimal

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from collection.models import CollectedBatch, Collector, ConsumerOffset
from collection.services import collected_batches_prune
from metering.models import DataCorrection, Meter, UsageRecord
from metering.services import meter_create, meter_type_create
from streams.models import InspectRecord, Stream, StreamRun
from streams.services import solution_create
from streams.tasks import run_stream
from tests.conftest import client_for
from tests.streams.engine.conftest import Receiver
from tests.support.celery_worker import running_worker

KEY = "0e2e0e2e-0000-4000-8000-0000000000a1"
BATCHES = 5


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def worker(tmp_path):
    with running_worker(tmp_path, OUTBOUND_ALLOW_PRIVATE_TARGETS="true") as process:
        yield process


def reader(collector_id, name: str, forward_to: str, meter_key: str | None = None) -> dict:
    """collector → inspect → forwarder, and collector → meter (when ``meter_key``)."""
    nodes = [
        {"id": "in", "name": "In", "type": "onlineCollector", "config": {"collectorId": str(collector_id)}},
        {"id": "seen", "name": "Seen", "type": "inspect", "config": {"keepLast": 100}},
        {"id": "out", "name": "Out", "type": "httpForwarder", "config": {"url": forward_to}},
    ]
    edges = [{"source": "in", "target": "seen"}, {"source": "seen", "target": "out"}]
    if meter_key:
        nodes.append({"id": "meter", "name": "Meter", "type": "meter", "config": {"meterKey": meter_key}})
        edges.append({"source": "in", "target": "meter"})
    return {"name": name, "processingType": "realtime", "nodes": nodes, "edges": edges}


def imported(client, account, config) -> Stream:
    solution = solution_create(account=account, name=f"Solution of {config['name']}")
    response = client.post(
        "/streams/import",
        json.dumps({"solutionId": str(solution.pk), "streamConfig": config}),
        content_type="application/json",
    )
    assert response.status_code in (200, 201), response.content
    return Stream.objects.get(pk=response.json()["stream"]["id"])


def wait_until(condition, worker, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert worker.poll() is None, worker.stderr.read().decode()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def unacknowledged() -> set[bytes]:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        return set(broker.hkeys("unacked"))
    finally:
        broker.close()


def queue_drained(before: set[bytes]) -> bool:
    """Every task sent since ``before`` was taken has finished: none waits in the broker's queue,
    none is held unacknowledged (``run_stream`` acknowledges late, so a task in flight is held;
    ``before`` holds what an earlier test's killed worker left there)."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        return broker.llen("celery") == 0 and set(broker.hkeys("unacked")) <= before
    finally:
        broker.close()


def records(batch: int) -> list[dict]:
    return [{"userId": "u1", "value": 10, "secret": f"b{batch}r{n}"} for n in range(3)]


@pytest.mark.django_db(transaction=True)
def test_a_stream_naming_another_accounts_collector_gets_nothing_through_a_real_worker(
    account, other_account, receiver, worker, settings
):
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    left_over = unacknowledged()
    attacker, victim = client_for(account, name="attacker"), client_for(other_account, name="victim")
    collector = Collector.objects.create(account=other_account, name="victim", status=Collector.Status.ACTIVE)
    # A holds a meter of the meter key its stream counts into: anything that reached it would count.
    meter_type = meter_type_create(
        account_id=account.pk,
        name="stolen",
        unit="u",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
    )
    meter_create(account_id=account.pk, meter_key=KEY, user_id="u1", meter_type_id=meter_type.pk)
    theirs = imported(attacker, account, reader(collector.pk, "Foreign", f"{receiver.url}/a", meter_key=KEY))
    own = imported(victim, other_account, reader(collector.pk, "Own", f"{receiver.url}/b"))

    for batch in range(BATCHES):
        response = victim.post(
            f"/online-collection/collectors/{collector.pk}/data",
            json.dumps({"data": records(batch)}),
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
    # A's stream, also run by hand as a queued task (what a catch-up sweep would do).
    run_stream.delay(str(theirs.pk), "realtime")
    last = CollectedBatch.objects.filter(collector=collector).order_by("-sequence")[0].sequence
    own_offset = ConsumerOffset.objects.filter(collector=collector, consumer=f"stream:{own.pk}")
    sent = [record for batch in range(BATCHES) for record in records(batch)]
    wait_until(
        lambda: (
            own_offset.get().last_sequence == last
            and sum(map(len, receiver.bodies())) >= len(sent)
            and queue_drained(left_over)
        ),
        worker,
    )

    # The control: B's own stream got every record, inspected and forwarded to /b.
    assert sorted(r.record["secret"] for r in InspectRecord.objects.filter(stream=own)) == sorted(
        r["secret"] for r in sent
    )
    assert {request["path"] for request in receiver.requests} == {"/b"}
    assert sorted(r["secret"] for body in receiver.bodies() for r in body) == sorted(
        r["secret"] for r in sent
    )
    # A: no reader, no run, nothing inspected, counted, corrected or forwarded.
    assert not ConsumerOffset.objects.filter(consumer=f"stream:{theirs.pk}").exists()
    assert not StreamRun.objects.filter(stream=theirs).exists()
    assert not InspectRecord.objects.filter(account=account).exists()
    assert not UsageRecord.objects.filter(account=account).exists()
    assert not DataCorrection.objects.filter(account=account).exists()
    assert list(Meter.objects.filter(account=account).values_list("value", flat=True)) == [Decimal(0)]

    # B's log is pruned as if A's stream did not exist: everything B consumed goes.
    later = timezone.now() + datetime.timedelta(hours=settings.COLLECTION_RETENTION_HOURS + 1)
    assert collected_batches_prune(now=later) == BATCHES
    assert not CollectedBatch.objects.filter(collector=collector).exists()

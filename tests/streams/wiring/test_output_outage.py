"""A realtime stream (collector → map → meter processor, and collector → httpForwarder) drained by
a real Celery worker, its forwarder's target a real HTTP server on 127.0.0.1.

- Target down: every record is counted exactly once while the deliveries wait in the outbox.
- Target back: every record is delivered, each request with its Delivery-Id, none lost.
- A worker killed with SIGKILL while a request is out (the target holds it unanswered): the
  replacement sends it again with the same Delivery-Id; deduplicated on that id, the target has
  every record exactly once, and the meters counted nothing twice.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from collection.models import CollectedBatch, Collector, ConsumerOffset
from config.celery import app
from metering.models import DataCorrection, Meter, UsageRecord
from metering.services import meter_create, meter_type_create
from streams import services as stream_services
from streams.models import OutputDelivery, StreamRun
from tests.conftest import client_for
from tests.metering.scale.test_gauges import sample
from tests.streams.conftest import ACTOR
from tests.streams.wiring.test_worker_killed import wait_for
from tests.support.celery_worker import running_worker

KEY = "9d0c2c6e-0000-4000-8000-0000000ff11e"
CUSTOMERS = ["c0", "c1", "c2"]
PER_BATCH = 40
# The worker retries quickly (backoff 0.2–0.5 s) and never gives up within the test; a lapsed
# claim (timeoutSeconds 3 + 1 s) is attempted again.
WORKER_ENV = {
    "OUTBOUND_ALLOW_PRIVATE_TARGETS": "1",
    "STREAM_OUTPUT_BACKOFF_BASE_SECONDS": "0.2",
    "STREAM_OUTPUT_BACKOFF_MAX_SECONDS": "0.5",
    "STREAM_OUTPUT_MAX_ATTEMPTS": "1000",
    "STREAM_OUTPUT_LEASE_MARGIN_SECONDS": "1",
}


class Target:
    """The billing system: a real HTTP server on a fixed port that can be down (nothing listens:
    connections are refused), up, or holding its next request unanswered."""

    def __init__(self):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.hold = threading.Event()  # set: the next request waits for ``release``
        self.released = threading.Event()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    def up(self) -> None:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                holding = target.hold.is_set()
                with target.lock:
                    target.requests.append(
                        {"headers": dict(self.headers), "body": json.loads(body), "held": holding}
                    )
                if holding:
                    target.hold.clear()
                    target.released.wait(timeout=60)
                with contextlib.suppress(OSError):  # the sender may be gone (killed)
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *args):
                """Quiet: no access log on the console."""

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/usage"

    def received(self) -> list[dict]:
        with self.lock:
            return list(self.requests)


@pytest.fixture
def target():
    target = Target()
    target.up()  # binds a free port, kept for the whole test
    yield target
    target.released.set()
    target.down()


def batch(number: int) -> list[dict]:
    return [
        {
            "customer": CUSTOMERS[(number + index) % 3],
            "amount": (number * PER_BATCH + index) % 7 + 1,
            "n": f"{number}.{index}",
        }
        for index in range(PER_BATCH)
    ]


def sums(batches: range) -> dict[str, Decimal]:
    totals = dict.fromkeys(CUSTOMERS, Decimal(0))
    for number in batches:
        for item in batch(number):
            totals[item["customer"]] += item["amount"]
    return totals


def setup_stream(account, target: Target):
    collector = Collector.objects.create(account=account, name="gateway", status=Collector.Status.ACTIVE)
    meter_type = meter_type_create(
        account_id=account.pk,
        name="Calls",
        unit="call",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
        category="standard",
    )
    meters = [
        meter_create(account_id=account.pk, meter_key=KEY, user_id=customer, meter_type_id=meter_type.pk)
        for customer in CUSTOMERS
    ]
    solution = stream_services.solution_create(account=account, name="Outage")
    stream = stream_services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor=ACTOR,
        stream_config={
            "name": "Calls and billing",
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
                {
                    "id": "billing",
                    "name": "Billing",
                    "type": "httpForwarder",
                    "config": {"url": target.url, "timeoutSeconds": 3},
                },
            ],
            "edges": [
                {"source": "in", "target": "shape"},
                {"source": "shape", "target": "meter"},
                {"source": "in", "target": "billing"},
            ],
        },
    ).stream
    return collector, meters, stream


def send(api, collector, numbers: range) -> int:
    for number in numbers:
        response = api.post(
            f"/online-collection/collectors/{collector.pk}/data",
            json.dumps({"data": batch(number)}),
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
    return CollectedBatch.objects.filter(collector=collector).order_by("-sequence")[0].sequence


def values(meters) -> dict[str, Decimal]:
    return {meter.user_id: meter.value for meter in Meter.objects.filter(pk__in=[m.pk for m in meters])}


def delivered_records(requests: list[dict]) -> list[str]:
    """The records the target has, each request counted once per Delivery-Id (its deduplication)."""
    seen, records = set(), []
    for request in requests:
        delivery_id = request["headers"]["Delivery-Id"]
        if delivery_id not in seen:
            seen.add(delivery_id)
            records += [record["n"] for record in request["body"]]
    return records


def assert_counted_exactly_once(account, meters, stream, batches: range) -> None:
    assert values(meters) == sums(batches)
    records = UsageRecord.objects.filter(account=account)
    assert records.count() == len(batches) * PER_BATCH
    assert not DataCorrection.objects.filter(account=account).exists()
    assert not StreamRun.objects.filter(stream=stream, status=StreamRun.Status.FAILED).exists()


@pytest.mark.django_db(transaction=True)
def test_a_target_down_delays_deliveries_never_counting_and_gets_every_record_back_up(
    account, target, tmp_path, client, monkeypatch
):
    api = client_for(account)
    collector, meters, stream = setup_stream(account, target)
    offset = ConsumerOffset.objects.filter(collector=collector, consumer=f"stream:{stream.pk}")
    outbox = OutputDelivery.objects.filter(stream=stream, node_id="billing")
    batches = range(12)
    # The worker writes its counters where /metrics reads them (as `make run` sets it up).
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    target.down()
    with running_worker(tmp_path, **WORKER_ENV, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)) as worker:
        last = send(api, collector, batches)
        wait_for(lambda: offset.get().last_sequence == last, "every batch to be counted")
        assert_counted_exactly_once(account, meters, stream, batches)
        # Every record waits in the outbox; the head has been tried (and refused), none was sent.
        wait_for(lambda: outbox.filter(attempts__gte=2).exists(), "the worker to retry the head")
        assert not outbox.exclude(status="PENDING").exists()
        assert sum(outbox.values_list("record_count", flat=True)) == len(batches) * PER_BATCH
        head = outbox.order_by("id").first()
        assert head.last_error.startswith(f"POST {target.url}: the request failed (Could not connect")
        assert target.received() == []
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
        assert sample(client, "stream_outbox_depth") == {f'{{stream="{stream.pk}"}}': float(outbox.count())}
        counted = sample(client, "usage_records_total")
        assert counted['{outcome="accepted",source="stream"}'] == len(batches) * PER_BATCH

        target.up()  # same port: the worker's next retry (within 0.5 s) gets through
        wait_for(lambda: not outbox.exclude(status="DELIVERED").exists(), "every delivery to be delivered")
        assert worker.poll() is None, worker.stderr.read().decode()

    requests = target.received()
    assert all(request["headers"]["Delivery-Id"] for request in requests)
    assert sorted({request["headers"]["Delivery-Id"] for request in requests}) == sorted(
        str(delivery_id) for delivery_id in outbox.values_list("delivery_id", flat=True)
    )
    # Exactly once per delivery id, none lost, in the order the records were collected.
    assert len(requests) == outbox.count()
    assert delivered_records(requests) == [record["n"] for number in batches for record in batch(number)]
    assert_counted_exactly_once(account, meters, stream, batches)  # delivering re-ran no metering


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_delivery_loses_nothing_and_counts_nothing_twice(account, target, tmp_path):
    api = client_for(account)
    collector, meters, stream = setup_stream(account, target)
    offset = ConsumerOffset.objects.filter(collector=collector, consumer=f"stream:{stream.pk}")
    outbox = OutputDelivery.objects.filter(stream=stream, node_id="billing")
    batches = range(8)
    target.hold.set()  # the first request that arrives is held unanswered
    with running_worker(tmp_path, **WORKER_ENV) as doomed:
        last = send(api, collector, batches)
        wait_for(lambda: target.received(), "the first delivery's request to arrive")
        (held,) = target.received()
        in_flight = outbox.get(delivery_id=held["headers"]["Delivery-Id"])
        assert (in_flight.status, in_flight.attempts, in_flight.last_error) == (
            "PENDING",
            1,
            OutputDelivery.IN_FLIGHT,
        )
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    target.released.set()  # the held request is answered to a dead socket: its sender never knew

    with running_worker(tmp_path, **WORKER_ENV) as replacement:
        # What beat does: catch the stream up behind its collector, and sweep the outbox every few
        # seconds (the killed delivery's claim lapses after timeoutSeconds + 1 s).
        app.send_task("streams.run_stream", args=[str(stream.pk), "realtime"])
        app.send_task("streams.catch_up_realtime")
        wait_for(lambda: offset.get().last_sequence == last, "every batch to be counted")

        def all_delivered() -> bool:
            app.send_task("streams.sweep_output_deliveries")
            time.sleep(0.5)
            return not outbox.exclude(status="DELIVERED").exists()

        wait_for(all_delivered, "every delivery to be delivered")
        assert replacement.poll() is None, replacement.stderr.read().decode()

    requests = target.received()
    in_flight.refresh_from_db()
    # The killed attempt's request went again, with the same Delivery-Id, as attempt 2.
    assert [
        r["headers"]["Delivery-Attempt"]
        for r in requests
        if r["headers"]["Delivery-Id"] == str(in_flight.delivery_id)
    ] == ["1", "2"]
    assert (in_flight.status, in_flight.attempts) == ("DELIVERED", 2)
    assert len(requests) == outbox.count() + 1
    assert delivered_records(requests) == [record["n"] for number in batches for record in batch(number)]
    assert_counted_exactly_once(account, meters, stream, batches)

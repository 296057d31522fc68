"""Records per second through collector -> filter -> meter processor, beside it an httpForwarder
to a local HTTP sink, on PostgreSQL, drained by ONE Celery worker process (``--pool solo``),
beside the usage ledger alone on the same records.

    DATABASE_URL=postgres://… REDIS_URL=redis://… CELERY_BROKER_URL=redis://… \\
        .venv/bin/python bench/stream_pipeline.py [--batches 200] [--per-batch 500] [--rounds 3] \\
        [--no-forwarder]

The forwarder queues every record the filter keeps in the outputs' outbox, in the run's
transaction; the same worker sends them after each commit (500 per request) to a sink in this
process that answers 200 at once. Per round the bench reports the pipeline's rate (records
counted per second, until the offset reaches the last batch: the rate at which records arrive in
the outbox), what still waited in the outbox when the pipeline finished and how fast the worker
drained that (records / the time until the last delivery was DELIVERED): the outbox keeps up when
it drains at least as fast as records arrive. The same worker does both, one task at a time.

Each round pre-loads ``batches`` collected batches of ``per-batch`` records into the collector
(not timed), sends one ``streams.run_stream`` task and times the worker draining the log: each
run reads up to 100 batches, filters, routes by two guiding rules and counts every record into
the ledger (dedup keys, ledger rows, rollups, meter updates), advancing the offset in the same
transaction. Then, as the ceiling to compare against, the same records — already decoded, routed
and turned into ledger records, with fresh keys — go through ``metering.ledger.usage_apply``
alone, 100 batches' worth per call and transaction as a run does, in this process: what the
stream engine adds is the difference. The machine is shared and loaded, so compare the ratio
(pipeline / ledger alone) of the same round. Bounded: a round gives up after 300 s. The bench's
account is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    ROOT,
    django_setup,
    ensure_database,
    machine_note,
    migrate,
    require_postgres_and_redis,
)

KEY = "b0b0b0b0-0000-4000-8000-00000000be9c"
CUSTOMERS = [f"c{n}" for n in range(50)]
BATCHES_PER_RUN = 100


def batch_records(batch: int, per_batch: int) -> list[dict]:
    return [
        {
            "userId": CUSTOMERS[(batch + i) % len(CUSTOMERS)],
            "value": i % 5 + 1,
            "plan": "pro" if i % 2 else "free",
            "status": 200,
        }
        for i in range(per_batch)
    ]


class Sink:
    """The forwarder's target: a local HTTP server that reads each request and answers 200, counting
    requests and distinct Delivery-Ids (the bench process's own thread, kept cheap: no JSON decoding)."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        sink = self
        self.requests = 0
        self.delivery_ids: set[str] = set()
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink.lock:
                    sink.requests += 1
                    sink.delivery_ids.add(self.headers.get("Delivery-Id", ""))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                """Quiet: no access log on the console."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/usage"


def ledger_alone(account_id, types: dict[str, uuid.UUID], batches: int, per_batch: int) -> float:
    """Seconds for ``usage_apply`` over the same records as a round, in calls of one run's size."""
    from django.db import transaction

    from metering.ledger import MeterOptions, UsageInput, usage_apply
    from metering.models import UsageSource

    tag = uuid.uuid4().hex
    calls = []
    for first in range(0, batches, BATCHES_PER_RUN):
        inputs = []
        for batch in range(first, min(batches, first + BATCHES_PER_RUN)):
            for index, record in enumerate(batch_records(batch, per_batch)):
                category = "premium" if record["plan"] == "pro" else "standard"
                inputs.append(
                    UsageInput(
                        user_id=record["userId"],
                        value=record["value"],
                        meter_type_id=types[category],
                        meter_key=KEY,
                        idempotency_key=f"alone:{tag}:{batch}:{index}",
                        fields=record,
                        group=category,
                        node="meter",
                        record=record,
                    )
                )
        calls.append(inputs)
    started = time.perf_counter()
    for inputs in calls:
        with transaction.atomic():
            usage_apply(
                account_id=account_id,
                records=inputs,
                source=UsageSource.STREAM,
                source_ref="bench",
                options=MeterOptions(),
            )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--per-batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-forwarder", action="store_true", help="without the httpForwarder (the pipeline as it was)"
    )
    args = parser.parse_args()
    env = require_postgres_and_redis()
    ensure_database(env["DATABASE_URL"])
    migrate(env)
    django_setup(env)

    from accounts import services as account_services
    from collection.models import CollectedBatch, Collector, ConsumerOffset
    from collection.services import collected_batch_append
    from config.celery import app
    from metering.models import Meter
    from metering.services import meter_create, meter_type_create
    from streams import services as stream_services

    account = account_services.account_get_or_create(name=f"bench-stream-pipeline-{os.getpid()}")
    collector = Collector.objects.create(account=account, name="bench", status=Collector.Status.ACTIVE)
    types = {}
    for category in ("premium", "standard"):
        meter_type = meter_type_create(
            account_id=account.pk,
            name=f"Bench {category}",
            unit="call",
            aggregation="SUM",
            reset_cron="0 0 1 * *",
            timezone="Etc/UTC",
            category=category,
        )
        types[category] = meter_type.pk
        for customer in CUSTOMERS:
            meter_create(account_id=account.pk, meter_key=KEY, user_id=customer, meter_type_id=meter_type.pk)
    from streams.models import OutputDelivery

    sink = Sink()
    solution = stream_services.solution_create(account=account, name="Bench")
    stream = stream_services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor={"type": "bench"},
        stream_config={
            "name": "Bench pipeline",
            "processingType": "batch",
            "nodes": [
                {
                    "id": "in",
                    "name": "In",
                    "type": "onlineCollector",
                    "config": {"collectorId": str(collector.pk)},
                },
                {
                    "id": "ok",
                    "name": "OK",
                    "type": "filter",
                    "config": {
                        "conditions": [
                            {"field": "status", "type": "number", "operator": "lessThan", "value": 500}
                        ]
                    },
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
            ]
            + (
                []
                if args.no_forwarder
                else [
                    {
                        "id": "forward",
                        "name": "Forward",
                        "type": "httpForwarder",
                        "config": {"url": sink.url},
                    }
                ]
            ),
            "edges": [{"source": "in", "target": "ok"}, {"source": "ok", "target": "meter"}]
            + ([] if args.no_forwarder else [{"source": "ok", "target": "forward"}]),
        },
    ).stream
    total = args.batches * args.per_batch
    offset = ConsumerOffset.objects.filter(collector=collector, consumer=f"stream:{stream.pk}")
    app.control.purge()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--loglevel=WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env={**os.environ, **env, "OUTBOUND_ALLOW_PRIVATE_TARGETS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    outbox = OutputDelivery.objects.filter(stream=stream)
    print(
        f"stream pipeline: collector -> filter -> meter processor (2 guiding rules, {2 * len(CUSTOMERS)} meters)"
        + ("" if args.no_forwarder else " + httpForwarder to a local sink")
        + f", PostgreSQL, 1 worker; {total} records in {args.batches} batches of {args.per_batch} per round"
    )
    results = []
    forwarded: list[float] = []
    delivered_before = 0
    try:
        for _ in range(60):  # bounded: the worker answers a ping once it consumes
            if app.control.ping(timeout=0.5):
                break
        for round_number in range(1, args.rounds + 1):
            for batch in range(args.batches):
                collected_batch_append(
                    account_id=account.pk,
                    collector_id=collector.pk,
                    payload=json.dumps(batch_records(batch, args.per_batch)),
                )
            last = (
                CollectedBatch.objects.filter(collector=collector)
                .order_by("-sequence")
                .values_list("sequence", flat=True)[0]
            )
            counted_before = sum(Meter.objects.filter(account=account).values_list("record_count", flat=True))
            started = time.perf_counter()
            app.send_task("streams.run_stream", args=[str(stream.pk), "manual"])
            deadline = time.monotonic() + 300
            while offset.get().last_sequence < last and time.monotonic() < deadline:
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
            drained = offset.get().last_sequence == last
            counted = (
                sum(Meter.objects.filter(account=account).values_list("record_count", flat=True))
                - counted_before
            )
            outbox_line = ""
            if not args.no_forwarder:
                waiting = sum(outbox.exclude(status="DELIVERED").values_list("record_count", flat=True))
                while outbox.exclude(status="DELIVERED").exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
                sent_elapsed = time.perf_counter() - started
                delivered = sum(outbox.filter(status="DELIVERED").values_list("record_count", flat=True))
                tail = max(sent_elapsed - elapsed, 1e-6)
                drain = waiting / tail if waiting else float("inf")
                forwarded.append((drain, total / elapsed))
                outbox_line = (
                    f"\n         outbox: {waiting} records waited when the pipeline finished, all delivered "
                    f"{sent_elapsed - elapsed:.2f} s later: drains at "
                    + ("(nothing left)" if waiting == 0 else f"{drain:,.0f} records/s")
                    + f" while arriving at {total / elapsed:,.0f} records/s; end to end {total / sent_elapsed:,.0f} "
                    f"records/s (delivered={delivered - delivered_before}, requests={sink.requests}, "
                    f"distinct delivery ids={len(sink.delivery_ids)})"
                )
                delivered_before = delivered
            alone = ledger_alone(account.pk, types, args.batches, args.per_batch)
            results.append((total / elapsed, total / alone))
            print(
                f"round {round_number}: pipeline {total / elapsed:>9,.0f} records/s ({elapsed:.2f} s, "
                f"drained={drained}, counted={counted})   usage_apply alone {total / alone:>9,.0f} records/s "
                f"({alone:.2f} s)   ratio {alone / elapsed:.2f}" + outbox_line
            )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    best_pipeline, best_alone = max(r[0] for r in results), max(r[1] for r in results)
    print(
        f"best: pipeline {best_pipeline:,.0f} records/s, usage_apply alone {best_alone:,.0f} records/s, "
        f"ratio {best_pipeline / best_alone:.2f} (target: 20,000 records/s through the pipeline)"
    )
    if forwarded:
        keeps_up = all(drain >= arriving for drain, arriving in forwarded)
        print(
            f"outbox: drains at least as fast as records arrive in every round: {'yes' if keeps_up else 'NO'} "
            f"(slowest drain {min(drain for drain, _ in forwarded):,.0f} records/s)"
        )
    print(machine_note())
    from django.db.models import ProtectedError

    from metering.models import DataCorrection, MeterType, UsageDedupKey, UsageRecord, UsageRollup

    stream_services.stream_delete(stream=stream)
    solution.delete()
    # The ledger's rows first: left behind, they would make every later run of a bench slower.
    for model in (UsageRecord, UsageDedupKey, UsageRollup, DataCorrection):
        model.objects.filter(account_id=account.pk).delete()
    Meter.objects.filter(account=account).delete()
    try:
        MeterType.objects.filter(account=account).delete()
        account.delete()
    except ProtectedError:
        print(f"(the bench account {account.pk} is left behind: rows still refer to it)")


if __name__ == "__main__":
    main()

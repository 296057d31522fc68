"""Records per second through collector -> filter -> meter processor, on PostgreSQL, drained by
ONE Celery worker process (``--pool solo``).

    DATABASE_URL=postgres://… REDIS_URL=redis://… CELERY_BROKER_URL=redis://… \\
        .venv/bin/python bench/stream_pipeline.py [--batches 200] [--per-batch 500]

Pre-loads ``batches`` collected batches of ``per-batch`` records into a fresh collector (not
timed), then sends one ``streams.run_stream`` task and times the worker draining the log: each
run reads up to 100 batches, filters, routes by two guiding rules and counts every record into
the ledger (dedup keys, ledger rows, rollups, meter updates), advancing the offset in the same
transaction. Bounded: gives up after 300 s. The bench's account is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    ROOT,
    django_setup,
    ensure_database,
    machine_note,
    migrate,
    require_postgres_and_redis,
)

KEY = "b0b0b0b0-0000-4000-8000-00000000be9c"
CUSTOMERS = [f"c{n}" for n in range(50)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--per-batch", type=int, default=500)
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
    for category in ("premium", "standard"):
        meter_type = meter_type_create(account_id=account.pk, name=f"Bench {category}", unit="call",
                                       aggregation="SUM", reset_cron="0 0 1 * *", timezone="Etc/UTC",
                                       category=category)
        for customer in CUSTOMERS:
            meter_create(account_id=account.pk, meter_key=KEY, user_id=customer, meter_type_id=meter_type.pk)
    solution = stream_services.solution_create(account=account, name="Bench")
    stream = stream_services.stream_import(account=account, solution_id=solution.pk, actor={"type": "bench"},
                                           stream_config={
        "name": "Bench pipeline", "processingType": "batch",
        "nodes": [
            {"id": "in", "name": "In", "type": "onlineCollector", "config": {"collectorId": str(collector.pk)}},
            {"id": "ok", "name": "OK", "type": "filter", "config": {"conditions": [
                {"field": "status", "type": "number", "operator": "lessThan", "value": 500}]}},
            {"id": "meter", "name": "Meter", "type": "meter", "config": {"meterKey": KEY, "guidingRules": [
                {"category": "premium", "conditions": [
                    {"field": "plan", "type": "string", "operator": "equals", "value": "pro"}]},
                {"category": "standard", "conditions": []}]}},
        ],
        "edges": [{"source": "in", "target": "ok"}, {"source": "ok", "target": "meter"}],
    }).stream
    total = args.batches * args.per_batch
    for batch in range(args.batches):
        data = [{"userId": CUSTOMERS[(batch + i) % len(CUSTOMERS)], "value": i % 5 + 1,
                 "plan": "pro" if i % 2 else "free", "status": 200} for i in range(args.per_batch)]
        collected_batch_append(account_id=account.pk, collector_id=collector.pk, payload=json.dumps(data))
    last = CollectedBatch.objects.filter(collector=collector).order_by("-sequence").values_list("sequence",
                                                                                                flat=True)[0]
    app.control.purge()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--concurrency=1",
         "--loglevel=WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(60):  # bounded: the worker answers a ping once it consumes
            if app.control.ping(timeout=0.5):
                break
        offset = ConsumerOffset.objects.filter(collector=collector, consumer=f"stream:{stream.pk}")
        started = time.perf_counter()
        app.send_task("streams.run_stream", args=[str(stream.pk), "manual"])
        deadline = time.monotonic() + 300
        while offset.get().last_sequence < last and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        drained = offset.get().last_sequence == last
        counted = sum(Meter.objects.filter(account=account).values_list("record_count", flat=True))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    print(f"stream pipeline (collector -> filter -> meter, PostgreSQL, 1 worker): {total} records in "
          f"{args.batches} batches, drained={drained}, counted={counted}, {elapsed:.2f} s, "
          f"{total / elapsed:,.0f} records/s")
    print(machine_note())
    from django.db.models import ProtectedError

    from metering.models import MeterType

    stream_services.stream_delete(stream=stream)
    solution.delete()
    Meter.objects.filter(account=account).delete()
    try:
        MeterType.objects.filter(account=account).delete()
        account.delete()
    except ProtectedError:
        print(f"(the bench account {account.pk} is left behind: its ledger rows protect it)")


if __name__ == "__main__":
    main()

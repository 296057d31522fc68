"""Meters reset per second by the flush-and-reset service, with one worker and with two.

    DATABASE_URL=postgres://… .venv/bin/python bench/reset.py [--meters 100000] [--batch-size 500]

PostgreSQL only (the claim uses SKIP LOCKED). The database is migrated, then for each run
``--meters`` due meters of one bench account are inserted (one statement, generate_series), and 1
or 2 worker processes (``bench/reset.py worker``) each run ``meters_flush_all_due`` until nothing
is due, exactly as the ``metering.flush_due_meters`` task does. Printed: wall time from the start
of the workers to the last one finishing, meters per second, the peak RSS of each worker, and a
check that every meter got exactly one record.

Printed beside it, as the ceiling to compare against: the same SQL work with no Python and no
batching: one INSERT … SELECT of every meter's record and one UPDATE resetting every meter, in a
transaction that is rolled back. Compare the ratio, not the absolute figures: the machine is
shared. The bench account and its rows are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from accounts.models import Account  # noqa: E402
from metering import flush  # noqa: E402
from metering.models import Meter, MeteredRecord, MeterType  # noqa: E402

BENCH_ACCOUNT = "bench-reset"


def run_worker(batch_size: int) -> None:
    started = time.perf_counter()
    total = 0
    more = True
    while more:  # bounded by the due meters: every batch moves them out of the due set
        flushed, more = flush.meters_flush_all_due(batch_size=batch_size, max_batches=1_000)
        total += flushed
    print(
        json.dumps(
            {
                "flushed": total,
                "seconds": time.perf_counter() - started,
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def clean() -> None:
    account = Account.objects.filter(name=BENCH_ACCOUNT).first()
    if account is None:
        return
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM metering_meteredrecord WHERE account_id = %s", [account.pk])
        cursor.execute("DELETE FROM metering_meter WHERE account_id = %s", [account.pk])
    MeterType.objects.filter(account=account).delete()
    account.delete()


def prepare(meters: int) -> MeterType:
    """A monthly SUM type and ``meters`` meters whose period ended a minute ago, with usage."""
    clean()
    account = Account.objects.create(name=BENCH_ACCOUNT)
    meter_type = MeterType.objects.create(
        account=account,
        name="Bench calls",
        unit="calls",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Europe/Stockholm",
        active_from="2020-01-01T00:00:00Z",
        api_name="bench-calls",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO metering_meter (id, account_id, meter_type_id, meter_key, user_id, custom_fields, capacity, "
            "thresholds, delete_on_reset, value, groups, group_breakdowns, carry_first, carry_last, record_count, "
            "last_ingested_at, period_start, period_end, created_at, updated_at) "
            "SELECT gen_random_uuid(), %s, %s, 'bench-key', 'user' || i || '@example.com', "
            "jsonb_build_object('plan', 'gold', 'seat', i), NULL, '[]', false, (i %% 1000) + 0.5, "
            "jsonb_build_array(jsonb_build_object('category', 'eu', 'value', i %% 1000)), '[]', "
            "jsonb_build_object('host', 'a'), jsonb_build_object('host', 'b'), 3, now() - interval '2 minutes', "
            "now() - interval '31 days', now() - interval '1 minute', now() - interval '31 days', now() "
            "FROM generate_series(1, %s) AS i",
            [account.pk, meter_type.pk, meters],
        )
        cursor.execute("ANALYZE metering_meter")
        cursor.execute("ANALYZE metering_meteredrecord")
    return meter_type


def ceiling(meter_type: MeterType) -> float:
    """The same SQL for every meter at once, no Python, rolled back."""
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO metering_meteredrecord (id, account_id, meter_id, source_meter_id, user_id, meter_type_id, "
            "meter_type_name, timezone, meter_key, value, unit, period_start, period_end, groups, carry_first, "
            "carry_last, custom_fields, meter_metadata, execution_ref, created_at, updated_at) "
            "SELECT gen_random_uuid(), m.account_id, m.id, m.id, m.user_id, m.meter_type_id, t.name, t.timezone, "
            "m.meter_key, m.value, t.unit, m.period_start, m.period_end, m.groups, m.carry_first, m.carry_last, "
            "m.custom_fields, jsonb_build_object('recordCount', m.record_count), '', now(), now() "
            "FROM metering_meter m JOIN metering_metertype t ON t.id = m.meter_type_id WHERE m.meter_type_id = %s "
            "ON CONFLICT (meter_id, period_start, execution_ref) DO NOTHING",
            [meter_type.pk],
        )
        cursor.execute(
            "UPDATE metering_meter SET value = 0, groups = '[]', group_breakdowns = '[]', carry_first = '{}', "
            "carry_last = '{}', record_count = 0, period_start = period_end, "
            "period_end = period_end + interval '1 month', updated_at = now() WHERE meter_type_id = %s",
            [meter_type.pk],
        )
        elapsed = time.perf_counter() - started
        transaction.set_rollback(True)
    return elapsed


def run(workers: int, meters: int, batch_size: int) -> dict:
    meter_type = prepare(meters)
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "worker", "--batch-size", str(batch_size)],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        for _ in range(workers)
    ]
    results = [json.loads(process.communicate(timeout=600)[0]) for process in processes]
    elapsed = time.perf_counter() - started
    records = MeteredRecord.objects.filter(meter_type_id=meter_type.pk)
    exactly_once = (
        records.count() == meters
        and records.values("source_meter_id").distinct().count() == meters
        and not Meter.objects.filter(meter_type=meter_type, record_count__gt=0).exists()
    )
    return {"workers": workers, "seconds": elapsed, "per_worker": results, "exactly_once": exactly_once}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "worker"])
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        print("bench/reset.py needs DATABASE_URL=postgres://…", file=sys.stderr)
        return 2
    if args.mode == "worker":
        run_worker(args.batch_size)
        return 0

    call_command("migrate", verbosity=0)
    try:
        ceiling_seconds = ceiling(prepare(args.meters))
        print(
            f"ceiling: the same SQL as two set-wide statements, no Python: {ceiling_seconds:.2f} s "
            f"({args.meters / ceiling_seconds:,.0f} meters/s)"
        )
        for workers in (1, 2):
            result = run(workers, args.meters, args.batch_size)
            rss = ", ".join(f"{worker['max_rss_mb']:.0f} MB" for worker in result["per_worker"])
            split = " + ".join(f"{worker['flushed']:,}" for worker in result["per_worker"])
            print(
                f"{workers} worker(s): {args.meters:,} meters reset in {result['seconds']:.2f} s "
                f"({args.meters / result['seconds']:,.0f} meters/s; {result['seconds'] / ceiling_seconds:.1f}x "
                f"the ceiling), batches of {args.batch_size}, split {split}, peak RSS per worker {rss}, "
                f"exactly once: {result['exactly_once']}"
            )
    finally:
        clean()
    return 0


if __name__ == "__main__":
    sys.exit(main())

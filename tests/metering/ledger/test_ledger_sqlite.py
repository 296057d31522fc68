"""The embedded default (SQLite, no servers) runs the same ledger service through its portable path.

The suite's database is PostgreSQL, so this runs a fresh process with no database settings at all,
exactly as ``make run`` does, migrates an empty SQLite file and drives ``usage_apply`` there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import json
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    import django
    import time_machine

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from accounts.services import account_get_or_create
    from metering import corrections, services
    from metering.compat import amberflo
    from metering.ledger import MeterOptions, UsageInput, usage_apply
    from metering.models import DataCorrection, Meter, ThresholdEvent, UsageRecord, UsageRollup

    start = datetime(2027, 1, 1, tzinfo=UTC)
    now = datetime(2027, 1, 10, 12, tzinfo=UTC)
    account = account_get_or_create(name="embedded")
    with time_machine.travel(start, tick=False):
        calls = services.meter_type_create(account_id=account.pk, name="Calls", unit="r", aggregation="SUM",
                                           reset_cron="0 0 1 * *", timezone="Etc/UTC", thresholds=[{"value": 5}],
                                           dimensions=["region"])
        services.meter_create(account_id=account.pk, meter_type_id=calls.pk, meter_key="k", user_id="alice")
        peak = amberflo.meter_definition_create(account_id=account.pk, meter_api_name="peak", display_name="Peak",
                                                kind="MAX_IN_PERIOD")
    with time_machine.travel(now, tick=False):
        batch = [
            UsageInput(user_id="alice", value="2.5", meter_type_id=calls.pk, idempotency_key="a",
                       dimensions={"region": "eu"}, fields={"region": "eu", "plan": "p1"}),
            UsageInput(user_id="alice", value=3, meter_type_id=calls.pk, idempotency_key="b",
                       timestamp=now - timedelta(hours=2), dimensions={"region": "us"}),
            UsageInput(user_id="alice", value=3, meter_type_id=calls.pk, idempotency_key="b"),
            UsageInput(user_id=None, value=1, meter_type_id=calls.pk, idempotency_key="bad"),
            UsageInput(user_id="bob", value=7, meter_api_name="peak", idempotency_key="p1"),
            UsageInput(user_id="bob", value=4, meter_api_name="peak", idempotency_key="p2"),
        ]
        first = usage_apply(account_id=account.pk, records=batch, source="api",
                            options=MeterOptions(carry_last=("plan",)))
        again = usage_apply(account_id=account.pk, records=batch, source="api")
        correction = DataCorrection.objects.get()
        corrections.data_correction_update(correction=correction, record={**correction.record, "userId": "alice"})
        fixed = corrections.data_correction_reprocess(correction=correction)
    alice = Meter.objects.get(user_id="alice")
    bob = Meter.objects.get(user_id="bob")
    print(json.dumps({
        "vendor": connection.vendor,
        "first": [first.accepted, first.duplicates, first.corrections],
        "again": [again.accepted, again.duplicates, again.corrections],
        "alice": [str(alice.value.normalize()), alice.record_count, alice.group_breakdowns, alice.carry_last],
        "bob": [str(bob.value.normalize()), bob.meter_key, bob.period_start.isoformat()],
        "fixed": fixed.status,
        "ledger": UsageRecord.objects.count(),
        "rollups": sorted([r.user_id, r.hour.isoformat(), str(r.sum.normalize()), r.count, str(r.max.normalize())]
                          for r in UsageRollup.objects.all()),
        "thresholds": list(ThresholdEvent.objects.values_list("value", flat=True).order_by("value")),
    }, default=lambda v: str(v.normalize()) if isinstance(v, Decimal) else str(v)))
""")


def test_the_ledger_on_the_embedded_sqlite_default(tmp_path: Path):
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")
    }
    environment.update(VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])

    assert answer == {
        "vendor": "sqlite",
        "first": [4, 1, 1],
        "again": [0, 6, 0],  # the refused record's key holds its correction: a duplicate too
        # The refused record, corrected and reprocessed, counts once more into alice's meter.
        "alice": [
            "6.5",
            3,
            [
                {"fields": {"region": "eu"}, "value": 2.5, "recordCount": 1},
                {"fields": {"region": "us"}, "value": 3, "recordCount": 1},
                {"fields": {"region": None}, "value": 1, "recordCount": 1},
            ],
            {"plan": "p1"},
        ],
        "bob": ["7", "default", "2027-01-01T00:00:00+00:00"],
        "fixed": "REPROCESSED",
        "ledger": 5,
        "rollups": [
            ["alice", "2027-01-10T10:00:00+00:00", "3", 1, "3"],
            ["alice", "2027-01-10T12:00:00+00:00", "3.5", 2, "2.5"],
            ["bob", "2027-01-10T12:00:00+00:00", "11", 2, "7"],
        ],
        "thresholds": ["5.5"],
    }

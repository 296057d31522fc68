"""The collectors' intake on the embedded default (SQLite): the records of a batch are counted there
too. The suite's database is PostgreSQL, so this runs a fresh process with no database settings,
as ``make run`` does, on an empty SQLite file."""

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

    import django
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from accounts.services import account_get_or_create
    from collection import services
    from console.selectors import collectors_with_intake

    now = datetime(2027, 1, 10, 12, 7, 30, tzinfo=UTC)
    account = account_get_or_create(name="embedded")
    collector = services.collector_create(account_id=account.pk, name="gateway")
    services.collector_provision(collector_id=collector.pk)
    for payload, ago in (({"a": 1}, 0), ([{"a": 1}, {"a": 2}, 3], 0), ("{}\\n{}\\n{}\\n", 1), ("", 1), ({"x": 0}, 20)):
        services.collected_batch_append(account_id=account.pk, collector_id=collector.pk, payload=json.dumps(payload),
                                        received_at=now - timedelta(minutes=ago))
    intake = collectors_with_intake(account.pk, minutes=15, now=now)[0]
    print(json.dumps({"vendor": connection.vendor, "batches": intake.batches[-2:], "records": intake.records[-2:],
                      "total": sum(intake.batches)}))
""")


def test_intake_on_the_embedded_sqlite_default(tmp_path: Path):
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
        timeout=180,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])

    # 12:06: three NDJSON lines and an empty string (no record); 12:07: one object and a 3-item array.
    assert answer == {"vendor": "sqlite", "batches": [2, 2], "records": [3, 4], "total": 4}

"""A real Celery worker (PostgreSQL, Redis broker) killed with SIGKILL in the middle of a reset, then
started again: every meter is still flushed and reset exactly once."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum

from config.celery import app
from metering.models import Meter, MeteredRecord
from tests.metering.factories import make_meter_type
from tests.metering.flush.helpers import bulk_meters

ROOT = Path(__file__).resolve().parents[3]
METERS = 600
BATCH_SIZE = 20


def month_start(instant: datetime) -> datetime:
    return instant.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


# The worker runs on the real clock: the meters' period ended at the start of this month.
PERIOD_END = month_start(datetime.now(UTC))
PERIOD_START = month_start(PERIOD_END - timedelta(days=1))
NEXT_PERIOD_END = month_start(PERIOD_END + timedelta(days=32))


def test_database_url() -> str:
    """pytest-django's test database, for a process started outside pytest."""
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


def start_worker(log_path: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "METERING_FLUSH_BATCH_SIZE": str(BATCH_SIZE),
        # Each batch keeps its transaction open this long (tests/support/paused_flush_worker.py):
        # the kill lands inside one.
        "FLUSH_BATCH_PAUSE_SECONDS": "0.2",
        "VAR_DIR": str(log_path.parent),
    }
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.support.paused_flush_worker",
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "--loglevel=WARNING",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def open_flush_transactions() -> int:
    """Sessions of the test database sitting inside a transaction (the worker's paused batch)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def workers(tmp_path):
    app.control.purge()
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        process = start_worker(tmp_path / "worker.log")
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
    app.control.purge()


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_reset_and_restarted_resets_every_meter_exactly_once(account, workers, tmp_path):
    monthly = make_meter_type(account, reset_cron="0 0 1 * *", timezone="Etc/UTC")
    usage = [Decimal(index % 13) + Decimal("0.5") for index in range(METERS)]
    bulk_meters(monthly, METERS, period_start=PERIOD_START, period_end=PERIOD_END, values=usage)

    first = workers()
    app.send_task("metering.flush_due_meters")  # what beat sends every minute
    # Kill it inside a batch's open transaction, a few batches in.
    wait_for(
        lambda: MeteredRecord.objects.count() >= 3 * BATCH_SIZE and open_flush_transactions() > 0,
        timeout=40,
        what="the reset to be under way",
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    wait_for(lambda: open_flush_transactions() == 0, timeout=10, what="PostgreSQL to roll the batch back")

    # Only whole batches survived; the one in flight left nothing behind.
    written = MeteredRecord.objects.count()
    assert 3 * BATCH_SIZE <= written < METERS
    assert written % BATCH_SIZE == 0
    assert Meter.objects.filter(period_start=PERIOD_END).count() == written  # reset ⇔ recorded
    assert Meter.objects.filter(period_start=PERIOD_START, value__gt=0).count() == METERS - written

    second = workers()
    app.send_task("metering.flush_due_meters")  # the next minute's sweep
    wait_for(
        lambda: not Meter.objects.filter(period_end__lte=PERIOD_END).exists(),
        timeout=40,
        what="the restarted worker to finish",
    )
    assert second.poll() is None, (tmp_path / "worker.log").read_text()

    assert MeteredRecord.objects.count() == METERS
    assert (
        not MeteredRecord.objects.values("source_meter_id").annotate(n=Count("id")).filter(n__gt=1).exists()
    )
    assert MeteredRecord.objects.aggregate(total=Sum("value"))["total"] == sum(usage)
    assert set(Meter.objects.values_list("period_start", "period_end", "value")) == {
        (PERIOD_END, NEXT_PERIOD_END, Decimal(0))
    }

"""Two workers resetting the same 10,000 meters at once: every period is flushed exactly once."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Count, Sum

from metering import flush
from metering.models import Meter, MeteredRecord
from tests.metering.factories import make_meter_type
from tests.metering.flush.helpers import bulk_meters

PERIOD_START = datetime(2027, 1, 1, tzinfo=UTC)
PERIOD_END = datetime(2027, 2, 1, tzinfo=UTC)
NOW = PERIOD_END + timedelta(seconds=5)
METERS = 10_000


def worker(results: list, index: int, start: threading.Barrier) -> None:
    """One worker: its own database connection, batches until nothing is left for it."""
    flushed = 0
    try:
        start.wait(timeout=10)
        for _ in range(METERS):  # bounded; ends long before
            count = flush.meters_flush_due(now=NOW, batch_size=500)
            if count == 0:
                break
            flushed += count
        results[index] = flushed
    except Exception as error:  # any failure is handed to the test, which fails on it
        results[index] = error
    finally:
        connection.close()


def run_two_workers() -> list[int]:
    results: list = [None, None]
    start = threading.Barrier(2)
    threads = [threading.Thread(target=worker, args=(results, index, start)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert all(isinstance(result, int) for result in results), results
    return results


@pytest.mark.django_db(transaction=True)
def test_two_workers_reset_10000_meters_exactly_once_and_a_rerun_changes_nothing(account):
    monthly = make_meter_type(account, reset_cron="0 0 1 * *", timezone="Etc/UTC")
    usage = [Decimal(index % 97) + Decimal("0.25") for index in range(METERS)]
    meters = bulk_meters(monthly, METERS, period_start=PERIOD_START, period_end=PERIOD_END, values=usage)
    doomed = {meter.pk for meter in meters[::100]}  # 100 of them are deleted after their record
    Meter.objects.filter(pk__in=doomed).update(delete_on_reset=True)

    per_worker = run_two_workers()

    assert sum(per_worker) == METERS
    assert all(count > 0 for count in per_worker), per_worker  # both really worked, side by side
    assert MeteredRecord.objects.count() == METERS
    assert MeteredRecord.objects.aggregate(total=Sum("value"))["total"] == sum(usage)
    per_meter = MeteredRecord.objects.values("source_meter_id").annotate(n=Count("id")).filter(n__gt=1)
    assert list(per_meter) == []
    assert set(MeteredRecord.objects.values_list("source_meter_id", flat=True)) == {
        meter.pk for meter in meters
    }
    assert set(MeteredRecord.objects.values_list("period_start", "period_end")) == {
        (PERIOD_START, PERIOD_END)
    }
    assert Meter.objects.count() == METERS - len(doomed)
    assert not Meter.objects.filter(pk__in=doomed).exists()
    assert set(Meter.objects.values_list("period_start", "period_end", "value", "record_count")) == {
        (PERIOD_END, datetime(2027, 3, 1, tzinfo=UTC), Decimal(0), 0)
    }

    snapshot = sorted(Meter.objects.values_list("pk", "period_start", "period_end", "value", "updated_at"))
    assert run_two_workers() == [0, 0]
    assert MeteredRecord.objects.count() == METERS
    assert (
        sorted(Meter.objects.values_list("pk", "period_start", "period_end", "value", "updated_at"))
        == snapshot
    )

"""The ledger's monthly partitions on PostgreSQL (metering/partitions.py, migration 0004).

The test database is migrated, so its ledger is the partitioned table with the partitions made at
migrate time (the real current month and those ahead). These tests work in 2030-2031, months no
migrate-time partition covers, and every DDL they run is rolled back with their transaction.
"""

from __future__ import annotations

import io
import re
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.utils.timezone import now as utc_now
from django_celery_beat.models import PeriodicTask

from metering import partitions, tasks
from metering.compat import amberflo
from metering.compat.usage_queries import UsageQuery, usage_query
from metering.ledger import UsageInput, usage_apply
from metering.models import UsageRecord
from metering.partitions import DEFAULT_PARTITION, LEDGER, month_start

pytestmark = pytest.mark.django_db

T = datetime(2031, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def acceptance_window_of_35_days(settings):
    """The retention scenarios here take records at most 35 days back (USAGE_ACCEPTANCE_DAYS), so
    every month before that may be detached."""
    settings.USAGE_ACCEPTANCE_DAYS = 35


def p(year: int, month: int) -> str:
    return f"{LEDGER}_p{year:04d}_{month:02d}"


def home_of(key: str) -> str:
    """The table a ledger row is stored in."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {LEDGER} WHERE idempotency_key = %s", [key])
        return cursor.fetchone()[0]


def rows_in(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        return cursor.fetchone()[0]


def table_state(name: str) -> str:
    """'attached', 'detached' (a table of its own) or 'absent'."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relispartition FROM pg_class c WHERE c.oid = to_regclass(%s)", [name])
        row = cursor.fetchone()
    return "absent" if row is None else ("attached" if row[0] else "detached")


def definition(account, at: datetime, **extra):
    """A SUM meter definition (meters made on first usage), active from ``at``."""
    with time_machine.travel(at, tick=False):
        return amberflo.meter_definition_create(
            account_id=account.pk,
            meter_api_name="calls",
            display_name="Calls",
            kind="SUM_OF_ALL_USAGE",
            **extra,
        )


def record(account, at: datetime, key: str, value: int = 1, region: str = "eu", now: datetime | None = None):
    with time_machine.travel(now or at, tick=False):
        result = usage_apply(
            account_id=account.pk,
            source="api",
            records=[
                UsageInput(
                    user_id="ann",
                    value=value,
                    timestamp=at,
                    meter_api_name="calls",
                    idempotency_key=key,
                    dimensions={"region": region},
                )
            ],
        )
    assert result.accepted == 1, result.results


def assert_partitioned_ledger() -> None:
    """The ledger as migration 0004 leaves it: range-partitioned by month on timestamp, primary key
    (id, timestamp), the btree and BRIN indexes on every partition, DEFAULT, and partitions made
    for the current month and the ones ahead."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT partstrat, pg_get_partkeydef(partrelid) FROM pg_partitioned_table "
            "WHERE partrelid = to_regclass(%s)",
            [LEDGER],
        )
        assert cursor.fetchone() == ("r", 'RANGE ("timestamp")')
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass(%s) "
            "AND contype = 'p'",
            [LEDGER],
        )
        assert cursor.fetchone()[0] == 'PRIMARY KEY (id, "timestamp")'
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname", [LEDGER]
        )
        indexes = dict(cursor.fetchall())
        # Every partition carries the ledger's indexes (ATTACH builds them).
        cursor.execute(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s) AND (SELECT count(*) FROM pg_index x "
            "WHERE x.indrelid = c.oid) <> 3",
            [LEDGER],
        )
        assert cursor.fetchone()[0] == 0
    assert set(indexes) == {
        "metering_usagerecord_pkey",
        "metering_usage_customer_time",
        "metering_usage_timestamp_brin",
    }
    assert 'USING brin ("timestamp")' in indexes["metering_usage_timestamp_brin"]
    assert '(account_id, meter_type_id, user_id, "timestamp")' in indexes["metering_usage_customer_time"]
    # Made at migrate time: the current month and the ones ahead (at least the next, even when the
    # test database was made the month before).
    attached = partitions.ledger_partitions()
    current = month_start(utc_now())
    assert attached[DEFAULT_PARTITION] is None
    assert {current, partitions.add_months(current, 1)} <= set(attached.values())


def test_the_migrated_ledger_is_partitioned_by_month_with_default_and_its_indexes():
    assert_partitioned_ledger()


def test_records_through_the_ledger_land_in_their_months_partition(account):
    definition(account, datetime(2031, 2, 1, tzinfo=UTC))
    report = partitions.ledger_partitions_ensure(
        since=datetime(2031, 2, 1, tzinfo=UTC), months_ahead=1, now=T
    )
    assert report.created == [p(2031, 2), p(2031, 3), p(2031, 4)]
    assert report.moved_rows == 0

    record(account, datetime(2031, 2, 20, 8, tzinfo=UTC), "feb", now=T)
    record(account, datetime(2031, 3, 1, 0, tzinfo=UTC), "march-first-instant", now=T)
    record(account, datetime(2031, 2, 28, 23, 59, 59, 999999, tzinfo=UTC), "feb-last-instant", now=T)
    record(account, T, "march", now=T)

    assert home_of("feb") == p(2031, 2)
    assert home_of("feb-last-instant") == p(2031, 2)
    assert home_of("march-first-instant") == p(2031, 3)
    assert home_of("march") == p(2031, 3)
    assert rows_in(DEFAULT_PARTITION) == 0
    assert UsageRecord.objects.filter(account=account).count() == 4


def test_a_record_without_its_months_partition_lands_in_default_and_moves_when_the_partition_is_made(account):
    definition(account, datetime(2031, 3, 1, tzinfo=UTC))
    record(account, datetime(2031, 3, 2, tzinfo=UTC), "early", now=T)
    record(account, T, "late", value=4, now=T)
    assert home_of("early") == home_of("late") == DEFAULT_PARTITION
    ids = set(UsageRecord.objects.filter(account=account).values_list("id", flat=True))

    # A run for an earlier month still makes a partition for every month waiting in DEFAULT.
    report = partitions.ledger_partitions_ensure(months_ahead=0, now=datetime(2030, 12, 10, tzinfo=UTC))

    assert report.created == [p(2030, 12), p(2031, 3)]
    assert report.moved_rows == 2
    assert home_of("early") == home_of("late") == p(2031, 3)
    assert rows_in(DEFAULT_PARTITION) == 0
    assert set(UsageRecord.objects.filter(account=account).values_list("id", flat=True)) == ids
    record(account, T + timedelta(hours=1), "after", now=T + timedelta(hours=1))
    assert home_of("after") == p(2031, 3)


def test_partitions_ahead_are_created_once(account):
    first = partitions.ledger_partitions_ensure(months_ahead=2, now=T)
    attached = partitions.ledger_partitions()
    second = partitions.ledger_partitions_ensure(months_ahead=2, now=T)

    assert first.created == [p(2031, 3), p(2031, 4), p(2031, 5)]
    assert second.created == []
    assert second.skipped == []
    assert partitions.ledger_partitions() == attached
    # Across a year's end.
    assert partitions.ledger_partitions_ensure(
        months_ahead=1, now=datetime(2031, 12, 31, 23, tzinfo=UTC)
    ).created == [p(2031, 12), p(2032, 1)]


def ingest_six_months(account) -> None:
    """One record of value n on the 10th of each month from October 2030 (n = 1) to March 2031 (n = 6),
    each sent that day, after that day's partition run (as the daily task would have made them)."""
    definition(account, datetime(2030, 10, 1, tzinfo=UTC), dimensions=["region"])
    for number, month in enumerate(
        [(2030, 10), (2030, 11), (2030, 12), (2031, 1), (2031, 2), (2031, 3)], start=1
    ):
        at = datetime(*month, 10, 12, tzinfo=UTC)
        partitions.ledger_partitions_ensure(months_ahead=1, now=at)
        record(account, at, f"m{number}", value=number)
        assert home_of(f"m{number}") == p(*month)


def monthly(account, **extra) -> list[float]:
    with time_machine.travel(datetime(2031, 3, 15, tzinfo=UTC), tick=False):
        answer = usage_query(
            account_id=account.pk,
            query=UsageQuery(
                meter_api_name="calls",
                start=datetime(2030, 10, 1, tzinfo=UTC),
                end=datetime(2031, 4, 1, tzinfo=UTC),
                aggregation="SUM",
                interval="MONTH",
                **extra,
            ),
        )
    [series] = answer["clientMeters"]["calls"]
    return [next(iter(bucket.values())) for bucket in series["records"]]


def test_retention_detaches_exactly_the_months_before_it_and_usage_queries_still_answer(account):
    ingest_six_months(account)
    before = partitions.ledger_partitions()
    now = datetime(2031, 3, 15, tzinfo=UTC)

    report = partitions.ledger_partitions_expire(retention_months=2, drop=False, now=now)

    cutoff = datetime(2031, 1, 1, tzinfo=UTC)  # March kept, with the two months before it
    old = {name for name, month in before.items() if month is not None and month < cutoff}
    assert {p(2030, 10), p(2030, 11), p(2030, 12)} <= old
    assert set(report.detached) == old
    assert report.dropped == []
    after = partitions.ledger_partitions()
    assert set(after) == set(before) - old
    assert {p(2031, 1), p(2031, 2), p(2031, 3), p(2031, 4), DEFAULT_PARTITION} <= set(after)
    # Detached, not deleted: each old month is a table of its own, with its rows.
    assert table_state(p(2030, 10)) == "detached"
    assert rows_in(p(2030, 10)) == 1
    # The ledger holds the kept months only; the rollups still answer for every month.
    assert sorted(UsageRecord.objects.filter(account=account).values_list("value", flat=True)) == [4, 5, 6]
    assert monthly(account) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert monthly(account, customers=["ann"]) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    # A dimension group-by reads the raw ledger: the detached months are no longer in it.
    assert monthly(account, group_by=["region"]) == [0, 0, 0, 4.0, 5.0, 6.0]
    # A second run has nothing left to detach.
    assert partitions.ledger_partitions_expire(retention_months=2, now=now).detached == []


def test_retention_can_drop_the_old_months(account):
    ingest_six_months(account)

    report = partitions.ledger_partitions_expire(
        retention_months=3, drop=True, now=datetime(2031, 3, 15, tzinfo=UTC)
    )

    assert {p(2030, 10), p(2030, 11)} <= set(report.dropped)
    assert report.dropped == report.detached
    assert table_state(p(2030, 10)) == table_state(p(2030, 11)) == "absent"
    assert table_state(p(2030, 12)) == "attached"
    assert monthly(account) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_retention_off_keeps_every_month(account, settings):
    settings.LEDGER_RETENTION_MONTHS = None
    ingest_six_months(account)
    before = partitions.ledger_partitions()

    report = partitions.ledger_partitions_expire(now=datetime(2031, 3, 15, tzinfo=UTC))

    assert report.detached == []
    assert partitions.ledger_partitions() == before


def test_retention_never_detaches_a_month_that_can_still_take_records(settings):
    settings.IDEMPOTENCY_WINDOW_DAYS = 35
    # On 3 March a record of 27 January is still accepted: January stays, whatever the retention.
    assert partitions.retention_cutoff(retention_months=1, now=datetime(2031, 3, 3, tzinfo=UTC)) == datetime(
        2031, 1, 1, tzinfo=UTC
    )
    assert partitions.retention_cutoff(retention_months=1, now=datetime(2031, 3, 20, tzinfo=UTC)) == datetime(
        2031, 2, 1, tzinfo=UTC
    )
    assert partitions.retention_cutoff(
        retention_months=12, now=datetime(2031, 3, 20, tzinfo=UTC)
    ) == datetime(2030, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        partitions.retention_cutoff(retention_months=0, now=datetime(2031, 3, 20, tzinfo=UTC))


def test_a_detached_month_is_not_made_again(account):
    ingest_six_months(account)
    partitions.ledger_partitions_expire(retention_months=2, drop=False, now=datetime(2031, 3, 15, tzinfo=UTC))

    report = partitions.ledger_partitions_ensure(
        since=datetime(2030, 12, 1, tzinfo=UTC), months_ahead=0, now=datetime(2031, 3, 15, tzinfo=UTC)
    )

    assert report.created == []
    assert report.skipped == [(p(2030, 12), "a table of that name exists and is not attached")]
    assert table_state(p(2030, 12)) == "detached"


def test_the_daily_task_is_scheduled_and_a_second_run_changes_nothing(account, settings):
    settings.LEDGER_PARTITION_MONTHS_AHEAD = 2
    settings.LEDGER_RETENTION_MONTHS = 3
    settings.LEDGER_RETENTION_DROP = False
    task = PeriodicTask.objects.get(name="metering: ledger partitions")
    assert (task.task, task.enabled, task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == (
        "metering.ledger_partitions_maintain",
        True,
        "17",
        "3",
        "UTC",
    )
    ingest_six_months(account)
    attached_before = partitions.ledger_partitions()

    with time_machine.travel(datetime(2031, 3, 15, 3, 17, tzinfo=UTC), tick=False):
        changed = tasks.ledger_partitions_maintain()
        again = tasks.ledger_partitions_maintain()

    attached = partitions.ledger_partitions()
    made = set(attached) - set(attached_before)
    gone = set(attached_before) - set(attached)
    assert made == {p(2031, 5)}
    assert {p(2030, 10), p(2030, 11)} <= gone
    assert all(month >= datetime(2030, 12, 1, tzinfo=UTC) for month in attached.values() if month is not None)
    assert changed == len(made) + len(gone)
    assert again == 0


def test_the_command_runs_both_with_progress(account):
    ingest_six_months(account)
    out, err = io.StringIO(), io.StringIO()

    with time_machine.travel(datetime(2031, 3, 15, tzinfo=UTC), tick=False):
        call_command(
            "ledger_partitions",
            "--months-ahead",
            "2",
            "--retention-months",
            "2",
            "--drop",
            stdout=out,
            stderr=err,
        )

    lines = out.getvalue().splitlines()
    assert f"created {p(2031, 5)}" in lines
    assert "1 partition(s) created, 0 row(s) moved out of DEFAULT." in lines
    assert f"dropped {p(2030, 10)} (older than 2031-01)" in lines
    assert re.search(
        r"^\d+ partition\(s\) dropped \(retention 2 month\(s\)\)\.$", out.getvalue(), re.MULTILINE
    )
    assert lines[-1] == "Attached: 5 monthly partition(s), 2031-01 to 2031-05, and DEFAULT."
    assert err.getvalue() == ""
    assert table_state(p(2030, 10)) == "absent"


def test_the_partitions_ahead_gauge(client, settings):
    settings.METRICS_TOKEN = "scrape-token"
    with time_machine.travel(T, tick=False):
        partitions.ledger_partitions_ensure(months_ahead=2, now=T)
        body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").content.decode()
        assert "\nmetering_ledger_partitions_ahead_months 2.0\n" in body
    with time_machine.travel(datetime(2031, 7, 1, tzinfo=UTC), tick=False):
        body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").content.decode()
        assert "\nmetering_ledger_partitions_ahead_months -1.0\n" in body


# --- the conversion of migration 0004 ---------------------------------------------------------------


def relkind() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [LEDGER])
        return cursor.fetchone()[0]


def test_migration_converts_a_non_empty_ledger_keeping_rows_ids_and_indexes(account):
    partitions.ledger_table_unpartition()
    assert relkind() == "r"
    definition(account, datetime(2031, 2, 1, tzinfo=UTC), dimensions=["region"])
    record(account, datetime(2031, 2, 20, tzinfo=UTC), "feb", value=2, now=T)
    record(account, T, "march", value=3, now=T)
    with connection.cursor() as cursor:  # a row from years ago, as an old ledger may hold
        cursor.execute(
            f"INSERT INTO {LEDGER} (account_id, meter_type_id, meter_id, user_id, value, timestamp, dimensions, "
            "source, source_ref, idempotency_key, created_at) SELECT account_id, meter_type_id, meter_id, user_id, "
            "7, '2025-06-15T00:00:00Z', dimensions, source, source_ref, 'old', created_at FROM "
            f"{LEDGER} WHERE idempotency_key = 'feb'"
        )
    before = dict(UsageRecord.objects.filter(account=account).values_list("idempotency_key", "id"))

    moved = partitions.ledger_table_partition()

    assert relkind() == "p"
    assert moved == UsageRecord.objects.count()
    assert dict(UsageRecord.objects.filter(account=account).values_list("idempotency_key", "id")) == before
    assert (home_of("old"), home_of("feb"), home_of("march")) == (p(2025, 6), p(2031, 2), p(2031, 3))
    attached = partitions.ledger_partitions()
    # Every month from the oldest row's to the newest's, and those ahead of today (the real clock).
    months = [month for month in attached.values() if month is not None]
    assert months[0] == datetime(2025, 6, 1, tzinfo=UTC)
    assert all(partitions.add_months(a, 1) == b for a, b in zip(months, months[1:], strict=False))
    assert_partitioned_ledger()
    # The identity sequence continues after the copied ids.
    record(account, T + timedelta(minutes=5), "next", now=T + timedelta(minutes=5))
    assert UsageRecord.objects.get(idempotency_key="next").id > max(before.values())
    assert home_of("next") == p(2031, 3)
    # And back (the migration's reverse): one plain table with the same rows.
    partitions.ledger_table_unpartition()
    assert relkind() == "r"
    assert UsageRecord.objects.filter(account=account).count() == 4


def test_migration_converts_an_empty_ledger(account):
    partitions.ledger_table_unpartition()
    UsageRecord.objects.all().delete()

    assert partitions.ledger_table_partition() == 0

    assert relkind() == "p"
    assert rows_in(DEFAULT_PARTITION) == 0
    assert_partitioned_ledger()
    with time_machine.travel(utc_now(), tick=False):
        definition(account, utc_now() - timedelta(minutes=1))
        record(account, utc_now(), "first")
    assert home_of("first") == partitions.partition_name(month_start(utc_now()))
    # Converting again is a no-op.
    assert partitions.ledger_table_partition() == 0


@pytest.mark.django_db(transaction=True)
def test_a_month_whose_lock_is_not_available_is_skipped_and_made_by_the_next_run():
    # Another session reads DEFAULT in an open transaction: the partition run cannot lock it.
    settings_dict = connection.settings_dict
    other = psycopg.connect(
        host=settings_dict["HOST"],
        port=settings_dict["PORT"] or 5432,
        user=settings_dict["USER"],
        dbname=settings_dict["NAME"],
        password=settings_dict["PASSWORD"] or None,
    )
    try:
        other.execute(f"SELECT count(*) FROM {DEFAULT_PARTITION}")
        started = time.monotonic()
        report = partitions.ledger_partitions_ensure(months_ahead=0, now=T)
        assert time.monotonic() - started < 15
        assert report.created == []
        assert report.skipped == [(p(2031, 3), f"lock not available within {partitions.LOCK_TIMEOUT}")]
        assert table_state(p(2031, 3)) == "absent"
        other.rollback()

        assert partitions.ledger_partitions_ensure(months_ahead=0, now=T).created == [p(2031, 3)]
    finally:
        other.close()
        with connection.cursor() as cursor:  # this test commits its DDL: leave the ledger as it was
            cursor.execute(f"DROP TABLE IF EXISTS {p(2031, 3)}")

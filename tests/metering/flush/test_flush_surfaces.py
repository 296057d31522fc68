"""Where flushes show: the sweep task and its beat entry, ``GET /meters/{id}/records``, the admin."""

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis
import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django_celery_beat.models import PeriodicTask

from accounts import services as account_services
from config.celery import app
from metering import flush, tasks
from metering.models import Meter, MeteredRecord
from tests.conftest import client_for
from tests.metering.factories import assert_error, make_meter, make_meter_type
from tests.metering.flush.helpers import bulk_meters

pytestmark = pytest.mark.django_db

CREATED = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def daily_history(account, values: list[Decimal | None], aggregation: str = "SUM") -> Meter:
    """A daily meter (Europe/Stockholm) flushed once per value: usage set, then the day ends."""
    with time_machine.travel(CREATED, tick=False) as traveller:
        meter_type = make_meter_type(
            account,
            name=f"Daily {aggregation}",
            aggregation=aggregation,
            reset_cron="0 0 * * *",
            timezone="Europe/Stockholm",
            capacity=None,
            thresholds=[],
        )
        meter = make_meter(meter_type)
        for value in values:
            Meter.objects.filter(pk=meter.pk).update(value=value, record_count=0 if value is None else 2)
            meter.refresh_from_db()
            traveller.move_to(meter.period_end)
            assert flush.meters_flush_due() == 1
    meter.refresh_from_db()
    return meter


# --- the task and its beat entry ------------------------------------------------------------------


def test_the_migration_registers_the_every_minute_utc_sweep_for_operators():
    sweep = PeriodicTask.objects.select_related("crontab").get(name="metering: reset sweep")
    assert (sweep.task, sweep.enabled, sweep.interval_id) == ("metering.flush_due_meters", True, None)
    crontab = sweep.crontab
    assert (
        crontab.minute,
        crontab.hour,
        crontab.day_of_month,
        crontab.month_of_year,
        crontab.day_of_week,
        str(crontab.timezone),
    ) == ("*", "*", "*", "*", "*", "UTC")


def test_the_sweep_task_flushes_everything_due_and_a_second_run_is_a_no_op(account):
    monthly = make_meter_type(account)
    now = datetime.now(UTC)
    bulk_meters(monthly, 7, period_start=now - 2 * DAY, period_end=now - DAY, values=[Decimal(2)] * 7)
    assert tasks.flush_due_meters() == 7
    assert tasks.flush_due_meters() == 0
    assert MeteredRecord.objects.count() == 7


@pytest.fixture
def broker():
    """The test Redis broker's default queue, emptied before and after."""
    app.control.purge()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    yield client
    app.control.purge()
    client.close()


def test_a_sweep_that_runs_out_of_budget_enqueues_itself_to_continue(account, settings, broker):
    settings.METERING_FLUSH_BATCH_SIZE = 2
    settings.METERING_FLUSH_MAX_BATCHES = 2
    monthly = make_meter_type(account)
    now = datetime.now(UTC)
    bulk_meters(monthly, 5, period_start=now - 2 * DAY, period_end=now - DAY)

    assert tasks.flush_due_meters() == 4
    queued = [json.loads(message)["headers"]["task"] for message in broker.lrange("celery", 0, -1)]
    assert queued == ["metering.flush_due_meters"]

    app.control.purge()
    assert tasks.flush_due_meters() == 1  # the last one: done, nothing enqueued
    assert broker.llen("celery") == 0


# --- GET /meters/{id}/records ---------------------------------------------------------------------


def test_records_answer_newest_first_with_limit_and_skip(account):
    meter = daily_history(account, [Decimal(3), Decimal("4.5"), Decimal(6)])
    api = client_for(account)
    newest_first = api.get(f"/meters/{meter.pk}/records").json()["records"]
    assert [(record["periodEnd"], record["value"]) for record in newest_first] == [
        ("2027-01-12T23:00:00.000Z", 6),
        ("2027-01-11T23:00:00.000Z", 4.5),
        ("2027-01-10T23:00:00.000Z", 3),
    ]
    assert set(newest_first[0]) == {
        "carryFirst",
        "carryLast",
        "createdAt",
        "customFields",
        "groups",
        "id",
        "meterId",
        "meterKey",
        "meterMetaData",
        "meterTypeId",
        "meterTypeName",
        "periodEnd",
        "periodStart",
        "timezone",
        "unit",
        "updatedAt",
        "userId",
        "value",
    }
    middle = api.get(f"/meters/{meter.pk}/records?limit=1&skip=1").json()["records"]
    assert [record["value"] for record in middle] == [4.5]
    oldest = api.get(f"/meters/{meter.pk}/records?sortOrder=ASC&limit=1").json()["records"]
    assert [record["value"] for record in oldest] == [3]
    assert_error(api.get(f"/meters/{meter.pk}/records?limit=101"), 400, "VALIDATION_ERROR", "limit")


def test_another_accounts_meter_records_are_404(account, other_account):
    meter = daily_history(account, [Decimal(3)])
    assert_error(client_for(other_account).get(f"/meters/{meter.pk}/records"), 404, "METER_NOT_FOUND")


# --- the admin --------------------------------------------------------------------------------------


@pytest.fixture
def staff(client, account):
    user = get_user_model().objects.create_user(username="ann", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="metering"))
    account_services.account_user_link(user=user, account=account)
    client.force_login(user)
    return client


def test_the_meter_page_shows_its_history_as_a_table_and_a_chart(staff, account):
    meter = daily_history(account, [Decimal(10), Decimal(0), Decimal(5)])
    page = staff.get(f"/admin/metering/meter/{meter.pk}/change/").content.decode()

    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", page)
    assert rows == [  # newest first, in the type's timezone
        ("2027-01-12 00:00 CET", "2027-01-13 00:00 CET", "5", "2"),
        ("2027-01-11 00:00 CET", "2027-01-12 00:00 CET", "0", "2"),
        ("2027-01-10 13:00 CET", "2027-01-11 00:00 CET", "10", "2"),
    ]
    chart = re.search(r'<svg [^>]*class="[^"]*metered-records-chart".*?</svg>', page, re.S).group(0)
    bars = re.findall(
        r'<rect class="bar" data-label="([^"]*)" data-value="([^"]*)" x="[\d.]+" y="([\d.]+)" '
        r'width="[\d.]+" height="([\d.]+)"',
        chart,
    )
    # Oldest on the left; heights in proportion to the values (10 reaches the axis's top tick).
    assert [(label, value) for label, value, _, _ in bars] == [
        ("2027-01-10 13:00", "10"),
        ("2027-01-11 00:00", "0"),
        ("2027-01-12 00:00", "5"),
    ]
    heights = [float(height) for _, _, _, height in bars]
    assert heights[1] == 0 and heights[0] == 2 * heights[2]
    assert "<title>2027-01-12 00:00: 5 requests</title>" in chart
    assert f'href="/admin/metering/meteredrecord/?source_meter_id={meter.pk}">All 3 metered records' in page

    listed = staff.get(f"/admin/metering/meteredrecord/?source_meter_id={meter.pk}").context["cl"].result_list
    assert sorted(record.value for record in listed) == [Decimal(0), Decimal(5), Decimal(10)]


def test_empty_max_periods_are_gaps_in_the_chart(staff, account):
    meter = daily_history(account, [Decimal(8), None], aggregation="MAX")
    page = staff.get(f"/admin/metering/meter/{meter.pk}/change/").content.decode()
    chart = re.search(r'<svg [^>]*class="[^"]*metered-records-chart".*?</svg>', page, re.S).group(0)
    assert len(re.findall(r'<rect class="bar"', chart)) == 1
    assert "<td>–</td>" in page


def test_a_meter_without_flushes_says_so(staff, account):
    with time_machine.travel(CREATED, tick=False):
        meter = make_meter(make_meter_type(account))
    assert "No period flushed yet." in staff.get(f"/admin/metering/meter/{meter.pk}/change/").content.decode()

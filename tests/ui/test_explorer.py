"""The usage explorer in a browser: from a meter to its customer's usage, and a CSV that is /usage."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils.timezone import now as utc_now
from playwright.sync_api import expect

from accounts import services as account_services
from metering import services as metering_services
from metering.ledger import UsageInput, usage_apply
from metering.models import MeterType
from tests.ui.browser import overflowing, screenshot

pytestmark = pytest.mark.django_db(transaction=True)

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def given_usage(account) -> tuple[MeterType, datetime]:
    """API calls in Stockholm: ann and bob over the last three days, at minutes off the hour, and
    today's local midnight. Today's record lies halfway between midnight and now, so it is never in
    the future, whatever the time of day."""
    now = utc_now().astimezone(STOCKHOLM)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    calls = metering_services.meter_type_create(
        account_id=account.pk,
        name="API calls",
        unit="requests",
        aggregation="SUM",
        reset_cron="0 0 * * *",
        timezone="Europe/Stockholm",
        capacity=Decimal(1000),
    )
    MeterType.objects.filter(pk=calls.pk).update(active_from=today - timedelta(days=5))
    for user in ("ann@acme.example", "bob@acme.example"):
        metering_services.meter_create(
            account_id=account.pk, meter_type_id=calls.pk, meter_key="gateway", user_id=user
        )
    records = [
        UsageInput(
            user_id=user,
            value=value,
            timestamp=today - timedelta(days=days, hours=-hour, minutes=-minute),
            meter_type_id=calls.pk,
        )
        for user, days, hour, minute, value in (
            ("ann@acme.example", 2, 9, 10, 120),
            ("ann@acme.example", 2, 10, 40, 80),
            ("ann@acme.example", 1, 11, 5, 300),
            ("bob@acme.example", 2, 10, 20, 7),
            ("bob@acme.example", 1, 23, 55, 45),
        )
    ] + [
        UsageInput(
            user_id="ann@acme.example", value=12, timestamp=today + (now - today) / 2, meter_type_id=calls.pk
        )
    ]
    assert usage_apply(account_id=account.pk, source="api", records=records).accepted == len(records)
    return calls, today


def test_a_meter_leads_to_its_customers_usage_and_the_csv_is_what_usage_answers(operator, http_api):
    page, account = operator.page, operator.account
    calls, today = given_usage(account)
    access, secret = account_services.application_access_create(account=account, name="ci", scopes=["all"])
    http_api.log_in(access.client_id, secret)
    ann = calls.meters.get(user_id="ann@acme.example")

    page.goto(f"/admin/metering/meter/{ann.pk}/change/")
    page.click("#explore-customer-usage")
    expect(page.locator("h1")).to_have_text("Usage explorer")
    expect(page.locator("#id_customers")).to_have_value("ann@acme.example")
    # The last 7 Stockholm days start at 23:00 UTC, so /usage buckets them in 8 UTC days, or in 7
    # while Stockholm's today has begun and UTC's has not.
    utc_days = (
        utc_now().astimezone(UTC).date() - (today - timedelta(days=6)).astimezone(UTC).date()
    ).days + 1
    expect(page.locator("#explorer-table tbody tr")).to_have_count(utc_days)
    expect(page.locator(".explorer-combined")).to_have_text("512")
    assert overflowing(page) == []

    # Unaligned edges, in the type's time zone: from 10:30 two days ago to 23:59 yesterday, per hour:
    # ann's 120 at 10:10 and bob's 7 at 10:20 are before it; ann's 12 today is after it.
    two_days_ago = today.date() - timedelta(days=2)
    start = datetime.combine(two_days_ago, datetime.min.time()).replace(hour=10, minute=30)
    end = start + timedelta(days=1, hours=13, minutes=29)
    page.fill("#id_customers", "")
    page.select_option("#id_range", "custom")
    page.fill("#id_start", start.strftime("%Y-%m-%dT%H:%M:%S"))
    page.fill("#id_end", end.strftime("%Y-%m-%dT%H:%M:%S"))
    page.select_option("#id_step", "HOUR")
    page.click("#explorer-form input[type=submit]")
    expect(page.locator("#explorer-range")).to_contain_text("Europe/Stockholm")
    top = page.locator(".explorer-top-customers tbody tr")
    assert top.evaluate_all("rows => rows.map(row => row.innerText.split('\\t'))") == [
        ["ann@acme.example", "380 requests"],
        ["bob@acme.example", "45 requests"],
    ]
    expect(page.locator(".explorer-combined")).to_have_text("425")
    assert overflowing(page) == []
    screenshot(page, "usage-explorer", full_page=True)

    with page.expect_download() as download:
        page.click("#explorer-csv")
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))

    answer = http_api.call(
        "POST",
        "/usage",
        {
            "meterApiName": calls.api_name,
            "startTimeInSeconds": int(start.replace(tzinfo=STOCKHOLM).timestamp()),
            "endTimeInSeconds": int(end.replace(tzinfo=STOCKHOLM).timestamp()),
            "aggregation": "SUM",
            "timeGroupingInterval": "HOUR",
        },
    )
    assert answer.status == 200, answer.body
    expected = [
        (seconds, value)
        for record in answer.body["clientMeters"][calls.api_name][0]["records"]
        for seconds, value in record.items()
    ]
    assert [(row["bucketStartInSeconds"], float(row["value"])) for row in rows] == expected
    assert {row["meterApiName"] for row in rows} == {calls.api_name}
    assert sum(value for _, value in expected) > 0

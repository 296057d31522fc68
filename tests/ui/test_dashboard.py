"""The dashboard in a real browser follows what the REST API changes."""

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from accounts import services as account_services
from metering import services as metering_services
from metering.ledger import UsageInput, usage_apply
from metering.models import Meter, ThresholdEvent
from tests.ui.browser import screenshot
from tests.ui.givens import (
    ANN_DAILY_CALLS,
    flush_daily_history,
    given_collector,
    given_data_corrections,
    given_failed_threshold_webhook,
    given_intake,
    given_stream,
    given_stream_runs_with_errors,
    set_value,
)

pytestmark = pytest.mark.django_db(transaction=True)


def chart(page, meter_type: str):
    return page.locator(
        "#panel-usage figure.console-chart", has=page.locator(f"figcaption >> text={meter_type}")
    )


def bar(page, meter_type: str, day_label: str):
    return chart(page, meter_type).locator(f"rect.bar[data-label='{day_label}']")


def test_changes_made_through_the_api_show_on_the_dashboard(operator, http_api):
    page, account = operator.page, operator.account
    access, secret = account_services.application_access_create(account=account, name="ci", scopes=["all"])
    http_api.log_in(access.client_id, secret)

    calls = http_api.call(
        "POST",
        "/meter-types",
        {
            "name": "API calls",
            "unit": "requests",
            "aggregation": {"type": "SUM"},
            "capacity": 2000,
            "resetSchedule": {"cron": "0 0 * * *"},
            "timezone": "Europe/Stockholm",
            "thresholds": [{"name": "warning", "capacityPercentage": 80}],
        },
    )
    storage = http_api.call(
        "POST",
        "/meter-types",
        {
            "name": "Storage",
            "unit": "GB",
            "aggregation": {"type": "MAX"},
            "capacity": 500,
            "resetSchedule": {"cron": "0 0 1 * *"},
            "timezone": "Etc/UTC",
        },
    )
    assert (calls.status, storage.status) == (201, 201), (calls.body, storage.body)
    meters = {}
    for type_id, user in (
        (calls.body["id"], "ann@acme.example"),
        (calls.body["id"], "bob@acme.example"),
        (storage.body["id"], "ann@acme.example"),
    ):
        answer = http_api.call(
            "POST", "/meters", {"meterTypeId": type_id, "meterKey": "gateway", "userId": user}
        )
        assert answer.status == 201, answer.body
        meters[(type_id, user)] = Meter.objects.get(pk=answer.body["id"])
    ann = meters[(calls.body["id"], "ann@acme.example")]
    # Usage as the ledger and the flush leave it (built in other branches).
    set_value(ann, 850)
    flush_daily_history(ann, ANN_DAILY_CALLS)
    set_value(meters[(calls.body["id"], "bob@acme.example")], 310)
    set_value(meters[(storage.body["id"], "ann@acme.example")], 120)

    page.goto("/admin/")
    types = page.locator("#panel-meter_types tr[data-meter-type]")
    expect(types).to_have_count(2)
    assert types.evaluate_all(
        "rows => rows.map(row => [row.dataset.meterType, "
        "row.querySelector('.console-meter-count').textContent])"
    ) == [["API calls", "2"], ["Storage", "1"]]
    expect(page.locator("#panel-near_capacity")).to_contain_text(
        "No meter is at 80 % of its capacity or more."
    )
    # Today in the type's own zone: the last bar of its chart (Storage, in UTC, may be a day behind).
    today = chart(page, "API calls").locator("rect.bar").last.get_attribute("data-label")
    assert re.fullmatch(r"\d\d-\d\d", today)
    expect(bar(page, "API calls", today)).to_have_attribute("data-value", "1160")  # 850 + 310 so far today
    expect(
        page.locator("#panel-usage figure", has=page.locator("text=API calls")).locator("rect.bar")
    ).to_have_count(len(ANN_DAILY_CALLS) + 1)

    # The API lowers ann's capacity: 850 of 1000 is 85 %.
    patched = http_api.call("PATCH", f"/meters/{ann.pk}", {"capacity": 1000})
    assert (patched.status, patched.body["capacity"]) == (200, 1000)
    created = http_api.call(
        "POST",
        "/meter-types",
        {
            "name": "Data transfer",
            "unit": "GB",
            "aggregation": {"type": "SUM"},
            "resetSchedule": {"cron": "0 0 1 * *"},
            "timezone": "Etc/UTC",
        },
    )
    assert created.status == 201
    ann.refresh_from_db()
    given_failed_threshold_webhook(account, ann)
    given_stream(account)
    # 12 minutes of a 15-minute window: a loaded machine may take a minute or two to render the page.
    given_intake(account, given_collector(account, "api-gateway"), minutes=12)
    given_collector(account, "batch-uploads")
    given_stream_runs_with_errors(account)
    given_data_corrections(account, Meter.objects.get(pk=ann.pk).meter_type)

    page.reload()
    near = page.locator("#panel-near_capacity tr[data-user-id]")
    expect(near).to_have_count(1)
    expect(near).to_contain_text("ann@acme.example")
    expect(near).to_contain_text("850 / 1000 requests")
    expect(near).to_contain_text("85.0 %")
    expect(
        page.locator("#panel-meter_types tr[data-meter-type='Data transfer'] .console-meter-count")
    ).to_have_text("0")
    expect(page.locator("#panel-threshold_notifications tbody tr")).to_contain_text(
        "warning (80 % of capacity)"
    )
    expect(page.locator("#panel-failed_deliveries tbody tr")).to_contain_text("threshold.crossed")
    expect(page.locator("#console-stream-count")).to_have_text("2")
    gateway = page.locator("#panel-collectors tr[data-collector='api-gateway']")
    expect(gateway.locator(".console-batches-total")).to_have_text("13")  # one a minute, this one included
    expect(
        page.locator("#panel-collectors tr[data-collector='batch-uploads'] .console-records-rate")
    ).to_have_text("0")
    expect(
        page.locator("#console-intake-chart g.series[data-series='api-gateway'] circle.point")
    ).to_have_count(15)  # a point per minute of the window
    expect(page.locator("#panel-stream_runs tr[data-status='FAILED']")).to_contain_text(
        "node export: : Unknown node type 'retiredExport'."
    )
    expect(page.locator("#console-correction-count")).to_have_text("3")
    assert page.locator("#panel-data_corrections tr[data-reason]").evaluate_all(
        "rows => rows.map(row => [row.dataset.reason, row.querySelector('.console-correction-reason-count')"
        ".textContent])"
    ) == [["NO_MATCHING_METER", "2"], ["MISSING_USER_ID", "1"]]
    screenshot(page, "dashboard", element=page.locator("#console-dashboard"))

    page.click("#panel-near_capacity .console-more a")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list")).to_contain_text("85.0 %")
    screenshot(page, "meters-near-capacity")


def test_the_threshold_panel_lists_exactly_the_threshold_events(operator):
    """Usage through the ledger crosses six thresholds (three customers, three thresholds each at 50 %,
    80 % and 95 requests of 100); the panel shows those six, as the Threshold events list does."""
    page, account = operator.page, operator.account
    calls = metering_services.meter_type_create(
        account_id=account.pk,
        name="API calls",
        unit="requests",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
        capacity=Decimal(100),
        thresholds=[
            {"name": "half", "capacityPercentage": 50},
            {"name": "warning", "capacityPercentage": 80},
            {"name": "hard", "value": 95},
        ],
    )
    usage = {"ann@acme.example": 100, "bob@acme.example": 60, "cy@acme.example": 85}
    for user in usage:
        metering_services.meter_create(
            account_id=account.pk, meter_type_id=calls.pk, meter_key="gw", user_id=user
        )
    result = usage_apply(
        account_id=account.pk,
        source="api",
        records=[
            UsageInput(user_id=user, value=value, meter_type_id=calls.pk) for user, value in usage.items()
        ],
    )
    assert result.accepted == 3
    events = list(ThresholdEvent.objects.filter(account=account).order_by("-crossed_at", "-id"))
    assert sorted((event.meter.user_id, event.name) for event in events) == [
        ("ann@acme.example", "half"),
        ("ann@acme.example", "hard"),
        ("ann@acme.example", "warning"),
        ("bob@acme.example", "half"),
        ("cy@acme.example", "half"),
        ("cy@acme.example", "warning"),
    ]

    page.goto("/admin/")
    rows = page.locator("#panel-threshold_notifications tr[data-threshold-event]")
    expect(rows).to_have_count(len(events))
    assert rows.evaluate_all("rows => rows.map(row => row.dataset.thresholdEvent)") == [
        str(event.pk) for event in events
    ]
    shown = sorted(
        (
            row.locator("td").nth(1).inner_text().split("\n")[0],
            row.locator("td").nth(2).inner_text().split("\n")[0],
        )
        for row in rows.all()
    )
    assert shown == sorted(
        (
            event.meter.user_id,
            {"half": "half (50 % of capacity)", "warning": "warning (80 % of capacity)", "hard": "hard (95)"}[
                event.name
            ],
        )
        for event in events
    )
    expect(page.locator("#threshold-crossings-total")).to_contain_text("All 6 threshold events")
    page.locator("#panel-threshold_notifications").scroll_into_view_if_needed()
    screenshot(page, "dashboard-threshold-panel", element=page.locator("#panel-threshold_notifications"))

    page.click("#threshold-crossings-total a")
    expect(page.locator("#result_list tbody tr")).to_have_count(len(events))

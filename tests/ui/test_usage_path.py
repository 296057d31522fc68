"""The operator's path, continued in a real browser: usage sent with the API shows on the dashboard
and the meter; a refused record is fixed and reprocessed in the browser and counted; an Application
Access and an API key are revoked in the browser and the API refuses them; two versions of a stream
are compared and sample records previewed. Each page is saved under docs/screenshots/."""

import json
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils.timezone import now as utc_now
from playwright.sync_api import expect

from accounts import services as account_services
from metering import services as metering_services
from metering.models import DataCorrection, Meter
from streams import services as stream_services
from streams.models import InspectRecord, Stream, StreamRun
from tests.ui.browser import screenshot
from tests.ui.givens import given_collector, metering_stream_config

pytestmark = pytest.mark.django_db(transaction=True)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
SETUP = {"type": "user", "id": "setup"}


def api_calls_meter(account):
    """The "API calls" type (counted by the stream's standard guiding rule) and c-1's meter of it."""
    meter_type = metering_services.meter_type_create(
        account_id=account.pk,
        name="API calls",
        api_name="api-calls",
        category="standard",
        unit="requests",
        aggregation="SUM",
        reset_cron="0 0 * * *",
        timezone="Europe/Stockholm",
        capacity=Decimal(1000),
    )
    return metering_services.meter_create(
        account_id=account.pk, meter_type_id=meter_type.pk, meter_key="api-calls", user_id="c-1"
    )


def event(request_id: str, **overrides) -> dict:
    return {
        "requestId": request_id,
        "status": 200,
        "internal": False,
        "path": "/v1/orders",
        "region": "eu",
        "customer": {"id": "c-1"},
    } | overrides


def today_bar(page):
    chart = page.locator(
        "#panel-usage figure.console-chart", has=page.locator("figcaption >> text=API calls")
    )
    return chart, chart.locator(f"rect.bar[data-label='{utc_now().astimezone(STOCKHOLM):%m-%d}']")


def test_usage_sent_with_the_api_shows_on_the_dashboard_and_the_meter(operator, http_api):
    page, account = operator.page, operator.account
    meter = api_calls_meter(account)
    collector = given_collector(account, "api-gateway")
    solution = stream_services.solution_create(account=account, name="Production")
    stream_services.stream_import(
        account=account, solution_id=solution.pk, actor=SETUP, stream_config=metering_stream_config(collector)
    )
    access, secret = account_services.application_access_create(
        account=account, name="gateway", scopes=["all"]
    )
    http_api.log_in(access.client_id, secret)

    page.goto("/admin/")
    chart, bar = today_bar(page)
    expect(chart).to_contain_text("no usage recorded")
    expect(bar).to_have_count(0)
    expect(
        page.locator("#panel-collectors tr[data-collector='api-gateway'] .console-batches-total")
    ).to_have_text("0")
    page.goto(f"/admin/metering/meter/{meter.pk}/change/")
    expect(page.locator(".field-value_against_capacity")).to_contain_text("0 / 1000")

    # The gateway sends five calls: three billable, one internal (filtered out), one retry (deduplicated).
    answer = http_api.call(
        "POST",
        f"/online-collection/collectors/{collector.pk}/data",
        {
            "data": [
                event("r1"),
                event("r2"),
                event("r3", path="/v1/invoices"),
                event("r4", internal=True),
                event("r1"),
            ]
        },
    )
    assert answer.status == 200, answer.body
    assert set(answer.body) == {"ingestionId"}

    page.goto("/admin/")
    chart, bar = today_bar(page)
    expect(bar).to_have_attribute("data-value", "3")
    expect(chart.locator(".console-usage-summary")).to_have_text("total 3 requests")
    gateway = page.locator("#panel-collectors tr[data-collector='api-gateway']")
    expect(gateway.locator(".console-batches-total")).to_have_text("1")
    expect(page.locator("#panel-stream_runs")).to_contain_text("No stream run failed or rejected records.")
    page.locator("#panel-usage").scroll_into_view_if_needed()
    screenshot(page, "dashboard-after-usage")

    page.click("#panel-usage figcaption >> text=API calls")  # the meter type's page lists its meters
    expect(page.locator("#type-meters tr[data-user-id='c-1']")).to_contain_text("3 / 1000")
    page.click("#type-meters >> text=c-1")
    expect(page.locator(".field-value_against_capacity")).to_contain_text("3 / 1000")
    expect(page.locator(".field-record_count")).to_contain_text("3")
    screenshot(page, "meter-after-usage")
    assert Meter.objects.get(pk=meter.pk).value == 3


def test_fix_a_data_correction_in_the_browser_and_see_it_counted(operator, http_api):
    page, account = operator.page, operator.account
    meter = api_calls_meter(account)
    access, secret = account_services.application_access_create(
        account=account, name="billing", scopes=["all"]
    )
    http_api.log_in(access.client_id, secret)
    sent_at = int(utc_now().timestamp() * 1000)
    # c-9 has no meter: the ledger keeps the record in data correction instead of counting it.
    answer = http_api.call(
        "POST",
        "/ingest",
        [
            {
                "customerId": "c-9",
                "meterApiName": "api-calls",
                "meterValue": 5,
                "meterTimeInMillis": sent_at,
                "uniqueId": "evt-1",
            },
            {
                "customerId": "c-1",
                "meterApiName": "api-calls",
                "meterValue": 2,
                "meterTimeInMillis": sent_at,
                "uniqueId": "evt-2",
            },
        ],
    )
    assert answer.status == 200, answer.body
    meter.refresh_from_db()
    assert meter.value == 2

    page.goto("/admin/")
    expect(page.locator("#console-correction-count")).to_have_text("1")
    page.click("#panel-data_corrections tr[data-reason='NO_MATCHING_METER'] a")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(page.locator("#changelist-filter li.selected", has_text="No matching meter")).to_have_count(1)
    screenshot(page, "data-corrections")

    rows.first.locator("th a, td a").first.click()
    record = page.locator("#id_record")
    stored = json.loads(record.input_value())
    assert (stored["customerId"], stored["meterValue"]) == ("c-9", 5)
    record.fill(json.dumps(stored | {"customerId": "c-1"}, indent=2))
    screenshot(page, "data-correction-change")
    page.click("#save-and-reprocess")

    expect(page.locator("ul.messagelist")).to_contain_text("Reprocessed: Counted.")
    expect(page.locator(".field-status")).to_contain_text("Reprocessed")
    expect(page.locator("#save-and-reprocess")).to_have_count(0)
    correction = DataCorrection.objects.get(account=account)
    assert (correction.status, correction.record["customerId"]) == ("REPROCESSED", "c-1")

    page.goto(f"/admin/metering/meter/{meter.pk}/change/")
    expect(page.locator(".field-value_against_capacity")).to_contain_text("7 / 1000")  # 2 + the fixed 5
    page.goto("/admin/")
    expect(page.locator("#panel-data_corrections")).to_contain_text("No usage record waits for a correction.")
    # Sent again by its sender, the record is a duplicate: it was counted once.
    again = http_api.call(
        "POST",
        "/ingest",
        {
            "customerId": "c-1",
            "meterApiName": "api-calls",
            "meterValue": 5,
            "meterTimeInMillis": sent_at,
            "uniqueId": "evt-1",
        },
    )
    assert again.status == 200
    assert Meter.objects.get(pk=meter.pk).value == 7


def test_revoke_an_application_access_and_an_api_key_in_the_browser_and_the_api_refuses_them(
    operator, http_api
):
    page, account = operator.page, operator.account
    access, secret = account_services.application_access_create(
        account=account, name="billing", scopes=["all"]
    )
    http_api.log_in(access.client_id, secret)
    assert http_api.call("GET", "/meter-types").status == 200
    key, raw_key = account_services.api_key_create(account=account, name="ingest")
    assert http_api.call("GET", "/meter-definition", headers={"X-API-KEY": raw_key}).status == 200

    page.goto("/admin/accounts/applicationaccess/")
    page.click("#result_list >> text=billing")
    expect(page.locator("#access-tokens tr.access-token")).to_have_count(1)
    expect(page.locator(".field-last_used_at .readonly")).not_to_have_text("-")
    page.click("#revoke-credential")
    expect(page.locator("#content-main")).to_contain_text("its 1 token are deleted")
    screenshot(page, "application-access-revoke")
    page.click("#confirm-revoke")

    expect(page.locator("ul.messagelist")).to_contain_text("“billing” is revoked")
    expect(page.locator("#credential-revoked")).to_have_text("Revoked")
    expect(page.locator("#access-tokens")).to_have_text("No token: none issued, or revoked.")
    screenshot(page, "application-access-revoked")
    refused = http_api.call("GET", "/meter-types")
    assert (refused.status, refused.body["code"]) == (401, "INVALID_TOKEN")
    token = http_api.call(
        "POST",
        "/oauth/token",
        {"client_id": access.client_id, "client_secret": secret, "grant_type": "client_credentials"},
    )
    assert token.status == 401

    page.goto("/admin/accounts/apikey/")
    page.click("#result_list >> text=ingest")
    expect(page.locator(".field-prefix")).to_contain_text(key.prefix)
    page.click("#revoke-credential")
    page.click("#confirm-revoke")
    expect(page.locator("#credential-revoked")).to_have_text("Revoked")
    refused = http_api.call("GET", "/meter-definition", headers={"X-API-KEY": raw_key})
    assert (refused.status, refused.body["code"]) == (401, "INVALID_API_KEY")


def test_compare_two_versions_of_a_stream_and_preview_sample_records(operator):
    page, account = operator.page, operator.account
    api_calls_meter(account)
    collector = given_collector(account, "api-gateway")
    solution = stream_services.solution_create(account=account, name="Production")
    stream = stream_services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor=SETUP,
        stream_config=metering_stream_config(collector, tag="v1"),
    ).stream
    # v2, imported in the browser: only successful calls, an audit node instead of the peek.
    changed = metering_stream_config(collector, tag="v2")
    changed["nodes"][1]["config"]["conditions"][0]["value"] = 400
    changed["nodes"] = [node for node in changed["nodes"] if node["id"] != "peek"]
    changed["nodes"].append(
        {"id": "audit", "name": "Audit trail", "type": "inspect", "config": {"keepLast": 20}}
    )
    changed["edges"] = [edge for edge in changed["edges"] if edge["target"] != "peek"]
    changed["edges"].append({"source": "meter", "target": "audit"})
    page.goto("/admin/streams/stream/import/")
    page.select_option("#id_solution", label="Production")
    page.fill("#id_config_text", json.dumps(changed, indent=2))
    page.select_option("#id_on_name_conflict", "overwrite")
    page.check("#id_allow_node_deletion")
    page.click("input[name=_import]")
    expect(page.locator("ul.messagelist")).to_contain_text("tagged v2")

    page.click("#compare-versions")
    expect(page.locator("#diff-summary")).to_contain_text(
        "From v1 (cas 1) to v2 (cas 2): 1 node added, 1 removed, 1 changed; 1 edge added, 1 removed."
    )
    nodes = page.locator("#diff-nodes tr.diff-node")
    assert nodes.evaluate_all("rows => rows.map(row => [row.dataset.nodeId, row.dataset.status])") == [
        ["only-billable", "changed"],
        ["audit", "added"],
        ["peek", "removed"],
    ]
    expect(nodes.first.locator("li[data-path='config.conditions[0].value']")).to_contain_text("500 → 400")
    expect(page.locator("#diff-lines .diff-removed").first).to_be_visible()
    screenshot(page, "stream-compare", full_page=True)
    page.select_option("#id_before", label=page.locator("#id_before option", has_text="v2").inner_text())
    page.select_option("#id_after", label=page.locator("#id_after option", has_text="latest").inner_text())
    page.click("#stream-compare-form input[type=submit]")
    expect(page.locator("#diff-summary")).to_have_text("No difference between v2 (cas 2) and latest (cas 2).")

    page.goto(f"/admin/streams/stream/{stream.pk}/change/")
    page.click("#preview-stream")
    page.fill(
        "#id_records",
        json.dumps(
            [
                event("r1"),
                event("r2", status=503),
                event("r3", customer={"id": "c-2", "plan": "pro"}),
                event("r1"),
                "not a record",
            ],
            indent=2,
        ),
    )
    page.click("input[name=_preview]")
    expect(page.locator("#preview-counts")).to_contain_text("Latest configuration: 5 records in")
    counts = page.locator(".preview-node").evaluate_all(
        "nodes => nodes.map(node => [node.dataset.nodeId, node.querySelector('.count-in').textContent, "
        "node.querySelector('.count-out').textContent, node.querySelector('.count-rejected').textContent])"
    )
    assert counts == [
        ["collector", "5", "4", "1"],
        ["only-billable", "4", "3", "0"],
        ["shape", "3", "3", "0"],
        ["dedup", "3", "2", "0"],
        ["meter", "2", "2", "0"],
        ["audit", "2", "2", "0"],
    ]
    expect(page.locator(".preview-node[data-node-id='collector'] .preview-reason")).to_have_text(
        "a record must be a JSON object"
    )
    screenshot(page, "stream-preview", full_page=True)
    # A preview saves nothing: no run, no inspected record, no usage.
    assert (StreamRun.objects.count(), InspectRecord.objects.count()) == (0, 0)
    assert Meter.objects.get(user_id="c-1").value == 0
    assert Stream.objects.get(pk=stream.pk).cas == 2

"""The operator's path in a real browser: log in, meter types and meters, an Application Access whose
secret is shown once, a stream import with its graph, the parameters tree. Each page is saved as a
screenshot under docs/screenshots/ (see docs/console.md)."""

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from accounts import services as account_services
from accounts.models import ApplicationAccess
from metering.models import DataCorrection, Meter, MeterType
from parameters import services as parameter_services
from streams.models import StreamRun
from tests.ui.browser import overflowing, screenshot
from tests.ui.conftest import log_in, make_staff
from tests.ui.givens import given_operator_data

pytestmark = pytest.mark.django_db(transaction=True)

STREAM_EXAMPLES = Path(__file__).resolve().parent.parent / "streams" / "examples"
MONTHLY_IN_STOCKHOLM = re.compile(r"^\d{4}-\d{2}-01 00:00 CES?T \(\d{4}-\d{2}-\d{2} 2[23]:00 UTC\)$")


def test_log_in_create_a_meter_type_with_its_next_resets_and_a_meter(browser_page, account):
    page = browser_page
    make_staff(account, "ann")
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/$"))
    screenshot(page, "login")
    log_in(page, "ann")
    expect(page.locator("#console-account-name")).to_have_text("acme")

    page.goto("/admin/metering/metertype/add/")
    page.fill("#id_name", "API calls")
    page.fill("#id_unit", "requests")
    page.select_option("#id_aggregation", "SUM")
    page.fill("#id_capacity", "1000")
    page.fill("#id_thresholds-0-name", "warning")  # thresholds as rows: name, kind, level
    page.select_option("#id_thresholds-0-kind", "capacityPercentage")
    page.fill("#id_thresholds-0-level", "80")
    page.fill("#id_timezone", "Europe/Stockholm")
    page.fill("#id_reset_cron", "0 0 1 * *")
    expect(page.locator("#next-resets li")).to_have_count(5)  # the live preview, before saving
    page.locator("#id_reset_cron").scroll_into_view_if_needed()
    screenshot(page, "meter-type-add")
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")

    meter_type = MeterType.objects.get(account=account, name="API calls")
    assert (meter_type.reset_cron, meter_type.timezone, meter_type.capacity, meter_type.thresholds) == (
        "0 0 1 * *",
        "Europe/Stockholm",
        1000,
        [{"name": "warning", "capacityPercentage": 80}],
    )
    page.click("text=API calls")
    resets = page.locator("#next-resets li")
    expect(resets).to_have_count(5)  # rendered by the server on the saved type's page
    assert all(MONTHLY_IN_STOCKHOLM.match(text) for text in resets.all_inner_texts())
    page.locator("#next-resets").scroll_into_view_if_needed()
    screenshot(page, "meter-type-change")

    page.goto("/admin/metering/meter/add/")
    page.select_option("#id_meter_type", label="API calls")
    page.fill("#id_meter_key", "api-gateway")
    page.fill("#id_user_id", "ann@example.com")
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    meter = Meter.objects.get(account=account, user_id="ann@example.com")
    assert (meter.meter_type_id, meter.capacity, meter.value) == (meter_type.pk, 1000, 0)
    page.click("text=ann@example.com")
    expect(page.locator(".field-value_against_capacity")).to_contain_text("0 / 1000")
    screenshot(page, "meter-change")

    page.goto("/admin/")
    row = page.locator("#panel-meter_types tr[data-meter-type='API calls']")
    expect(row.locator(".console-meter-count")).to_have_text("1")


def test_an_application_access_shows_its_secret_once_and_never_again(operator, http_api):
    page = operator.page
    page.goto("/admin/accounts/applicationaccess/add/")
    page.fill("#id_name", "billing")
    page.click("input[name=_save]")

    secret = page.locator("#client-secret").inner_text()
    client_id = page.locator("#client-id").inner_text()
    assert len(secret) >= 60
    assert overflowing(page) == []
    screenshot(page, "application-access-secret")
    http_api.log_in(client_id, secret)  # the secret shown works at the token endpoint

    # A reload shows no secret and submits nothing: the page came from a redirect after the POST.
    sent = []
    page.on("request", lambda request: sent.append(request.method))
    page.reload()
    expect(page.locator("#secret-gone")).to_be_visible()
    expect(page.locator("#client-secret")).to_have_count(0)
    assert secret not in page.content()
    assert sent and set(sent) == {"GET"}  # the page and its static files; no POST again
    assert ApplicationAccess.objects.filter(account=operator.account, name="billing").count() == 1
    screenshot(page, "application-access-secret-reloaded")

    page.goto("/admin/accounts/applicationaccess/")
    page.click("text=billing")
    expect(page.locator("#id_name")).to_have_value("billing")
    expect(page.locator("#client-secret")).to_have_count(0)
    assert secret not in page.content()
    screenshot(page, "application-access-change")
    page.reload()
    assert secret not in page.content()

    # Rotate secret, beside Revoke: a new secret once; the old one gets no more tokens.
    page.click("#rotate-secret")
    page.click("#confirm-rotate")
    rotated = page.locator("#client-secret").inner_text()
    assert rotated != secret and len(rotated) >= 60
    page.reload()
    expect(page.locator("#client-secret")).to_have_count(0)
    http_api.log_in(client_id, rotated)
    refused = http_api.call(
        "POST",
        "/oauth/token",
        {"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials"},
    )
    assert refused.status == 401


def test_import_a_stream_and_see_its_graph(operator):
    page = operator.page
    page.goto("/admin/streams/solution/add/")
    page.fill("#id_name", "Production")
    page.click("input[name=_save]")

    page.goto("/admin/streams/stream/")
    page.click("#import-stream")
    config = json.loads((STREAM_EXAMPLES / "api-calls-metering.json").read_text())
    page.select_option("#id_solution", label="Production")
    page.fill("#id_config_text", json.dumps(config, indent=2))
    screenshot(page, "stream-import")
    page.click("input[name=_import]")

    expect(page.locator("ul.messagelist")).to_contain_text("Stream 'API calls metering'")
    nodes = page.locator("svg.stream-graph g.node")
    expect(nodes).to_have_count(len(config["nodes"]))
    assert nodes.evaluate_all("nodes => nodes.map(node => node.dataset.nodeId)") == [
        node["id"] for node in config["nodes"]
    ]
    expect(page.locator("svg.stream-graph path.edge")).to_have_count(len(config["edges"]))
    expect(page.locator("svg.stream-graph g.node[data-node-id='meter'] text").nth(1)).to_have_text("meter")
    page.locator("svg.stream-graph").scroll_into_view_if_needed()
    screenshot(page, "stream-graph")


def test_parameters_tree_masks_the_sensitive_value(operator):
    page = operator.page
    parameter_services.parameter_create(
        account=operator.account,
        name="billing/endpoint",
        type="standard",
        value="https://billing.example.com/usage",
        description="Where usage goes",
    )
    parameter_services.parameter_create(
        account=operator.account, name="region", type="standard", value="eu-north-1"
    )
    page.goto("/admin/parameters/parameter/add/")
    page.fill("#id_name", "billing/credentials/api-key")
    page.select_option("#id_type", "sensitive")
    page.fill("#id_new_value", "sk-live-do-not-show-1234")
    page.fill("#id_description", "The billing platform's key")
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")

    tree = page.locator("span.parameter-tree")
    assert tree.all_inner_texts() == ["billing/credentials/api-key", "billing/endpoint", "region"]
    assert tree.evaluate_all("spans => spans.map(span => span.dataset.depth)") == ["2", "1", "0"]
    sensitive_row = page.locator("tr", has=page.locator("text=api-key"))
    expect(sensitive_row.locator(".field-shown_value")).to_have_text("********")
    assert "sk-live-do-not-show-1234" not in page.content()
    screenshot(page, "parameters-tree")

    page.click("text=api-key")
    expect(page.locator(".field-current_value")).to_contain_text("********")
    assert "sk-live-do-not-show-1234" not in page.content()


def test_another_accounts_staff_see_none_of_it(browser_page, account, other_account):
    """Gil, staff of globex, sees nothing of acme on any page, and acme's pages answer him "not found"."""
    acme = given_operator_data(account)
    make_staff(other_account, "gil")
    page = browser_page
    log_in(page, "gil")

    expect(page.locator("#console-account-name")).to_have_text("globex")
    body = page.locator("#console-dashboard").inner_text()
    for name in ("API calls", "Storage", "ann@acme.example", "API calls metering", "Production"):
        assert name not in body
    expect(page.locator("#panel-meter_types")).to_contain_text("No meter types yet.")
    expect(page.locator("#console-stream-count")).to_have_text("0")
    expect(page.locator("#panel-collectors")).to_contain_text("No collectors yet.")
    expect(page.locator("#panel-stream_runs")).to_contain_text("No stream run failed or rejected records.")
    expect(page.locator("#panel-data_corrections")).to_contain_text("No usage record waits for a correction.")
    for name in ("api-gateway", "Usage export", "export/url"):
        assert name not in page.locator("#console-dashboard").inner_text()
    screenshot(page, "dashboard-other-account")

    for changelist in (
        "metering/metertype",
        "metering/meter",
        "metering/meteredrecord",
        "streams/stream",
        "streams/solution",
        "parameters/parameter",
        "accounts/applicationaccess",
        "accounts/apikey",
        "console/meternearcapacity",
        "notifications/notificationevent",
        "notifications/delivery",
        "metering/datacorrection",
        "metering/usagerecord",
        "streams/streamrun",
        "collection/collector",
        "collection/collectedbatch",
    ):
        page.goto(f"/admin/{changelist}/")
        expect(page.locator("#changelist-form .paginator, p.paginator").first).to_contain_text("0 ")
        assert page.locator("#result_list tbody tr").count() == 0, changelist
    correction = DataCorrection.objects.filter(account=account).first()
    run = StreamRun.objects.get(stream=acme.failing_stream)
    access, _ = account_services.application_access_create(
        account=account, name="acme-billing", scopes=["all"]
    )
    for foreign in (
        f"metering/metertype/{acme.meter_type.pk}/change/",
        f"metering/meter/{acme.near_meter.pk}/change/",
        f"metering/datacorrection/{correction.pk}/change/",
        f"streams/streamrun/{run.pk}/change/",
        f"collection/collector/{acme.collector.pk}/change/",
        f"accounts/applicationaccess/{access.pk}/change/",
    ):
        page.goto(f"/admin/{foreign}")
        expect(page.locator("ul.messagelist")).to_contain_text("doesn’t exist")
    stream = acme.failing_stream
    for foreign in (
        f"streams/stream/{stream.pk}/compare/",
        f"streams/stream/{stream.pk}/preview/",
        f"streams/stream/{stream.pk}/export/",
        f"accounts/applicationaccess/{access.pk}/revoke/",
    ):
        assert page.goto(f"/admin/{foreign}").status == 404, foreign
    # Nor can a form of hers be posted to act on them.
    assert page.request.post(f"/admin/accounts/applicationaccess/{access.pk}/revoke/").status in (403, 404)
    access.refresh_from_db()
    assert access.is_active

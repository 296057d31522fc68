"""The admin index as the dashboard: scoped to one account, panels by permission, a panel registry."""

import copy
import re
import socket
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured

from accounts import services as account_services
from console import panels
from streams import services as stream_services
from tests.console.conftest import ingest, make_meter, make_type, set_value, staff_of
from tests.streams.conftest import ACTOR, example

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def panel_ids(page: str) -> list[str]:
    return re.findall(r'<section class="module console-panel[^"]*" id="panel-([a-z_]+)"', page)


def panel(page: str, key: str) -> str:
    match = re.search(rf'id="panel-{key}">(.*?)</section>', page, re.S)
    assert match, f"no panel {key}"
    return match.group(1)


@pytest.fixture
def acme_data(account):
    calls = make_type(
        account, name="Acme calls", capacity=Decimal(1000), since=datetime(2027, 1, 1, tzinfo=UTC)
    )
    make_type(account, name="Acme storage", unit="GB", aggregation="MAX", capacity=None)
    near = make_meter(calls, "ann@acme.example")
    joe = make_meter(calls, "joe@acme.example")
    ingest(
        calls,
        (near.user_id, datetime(2027, 1, 8, 5, tzinfo=UTC), 40),
        (near.user_id, datetime(2027, 1, 10, 9, tzinfo=UTC), 900),
        (joe.user_id, NOW, 100),
    )
    set_value(near, 900)
    set_value(joe, 100)
    solution = stream_services.solution_create(account=account, name="Production")
    stream_services.stream_import(
        account=account,
        solution_id=str(solution.pk),
        stream_config=example("api-calls-metering"),
        actor=ACTOR,
    )
    return calls


@pytest.fixture
def globex_data(other_account):
    calls = make_type(other_account, name="Globex calls", capacity=Decimal(10))
    set_value(make_meter(calls, "bob@globex.example"), 10)
    solution = stream_services.solution_create(account=other_account, name="Globex solution")
    stream_services.stream_import(
        account=other_account,
        solution_id=str(solution.pk),
        stream_config=example("daily-storage-batch"),
        actor=ACTOR,
    )
    return calls


def test_staff_see_their_accounts_panels_and_nothing_of_another_account(
    staff_client, acme_data, globex_data, other_account
):
    page = staff_client.get("/admin/").content.decode()

    assert 'id="console-account-name">acme<' in page
    assert panel_ids(page) == [
        "usage",
        "meter_types",
        "near_capacity",
        "threshold_notifications",
        "failed_deliveries",
        "collectors",
        "streams",
        "data_corrections",
        "stream_health",
        "stream_runs",
    ]
    types = panel(page, "meter_types")
    assert re.findall(r'data-meter-type="([^"]+)"', types) == ["Acme calls", "Acme storage"]
    assert re.findall(r'class="console-meter-count"[^>]*>(\d+)<', types) == ["2", "0"]
    near = panel(page, "near_capacity")
    assert re.findall(r'data-user-id="([^"]+)"', near) == ["ann@acme.example"]
    assert "900 / 1000 requests" in near and "90.0 %" in near
    usage = panel(page, "usage")
    # Today's bar holds today's records (900 + 100); 8 January that day's record.
    assert re.findall(r'data-label="01-10" data-value="([^"]+)"', usage) == ["1000"]
    assert re.findall(r'data-label="01-08" data-value="([^"]+)"', usage) == ["40"]
    assert "total 1040 requests" in usage and "no usage recorded" in usage
    assert 'id="console-stream-count">1<' in panel(page, "streams")
    for foreign in ("Globex", "globex", "bob@globex.example", str(globex_data.pk), str(other_account.pk)):
        assert foreign not in page
    assert 'id="console-account-form"' not in page  # no account selector for staff

    # Staff cannot pick another account.
    assert "Globex calls" not in staff_client.get(f"/admin/?account={other_account.pk}").content.decode()


def test_superusers_pick_the_account_default_their_own_else_the_first(
    client, account, other_account, acme_data, globex_data
):
    root = get_user_model().objects.create_superuser(username="root", password=None)
    client.force_login(root)

    first = client.get("/admin/").content.decode()  # not linked: the first account by name (acme)
    assert 'id="console-account-name">acme<' in first
    assert re.findall(r'<option value="([^"]+)"( selected)?>([^<]+)</option>', first) == [
        (str(account.pk), " selected", "acme"),
        (str(other_account.pk), "", "globex"),
    ]

    picked = client.get(f"/admin/?account={other_account.pk}").content.decode()
    assert 'id="console-account-name">globex<' in picked
    assert "Globex calls" in picked and "Acme calls" not in picked

    account_services.account_user_link(user=root, account=other_account)
    assert 'id="console-account-name">globex<' in client.get("/admin/").content.decode()
    assert 'id="console-account-name">globex<' in client.get("/admin/?account=not-a-uuid").content.decode()


def test_staff_without_an_account_see_no_panels(client):
    user = get_user_model().objects.create_user(username="lost", is_staff=True)
    client.force_login(user)
    page = client.get("/admin/").content.decode()
    assert 'id="console-no-account"' in page
    assert panel_ids(page) == []


def test_panels_follow_the_users_permissions(client, account, acme_data):
    client.force_login(staff_of(account, "meters-only", apps=("metering",)))
    page = client.get("/admin/").content.decode()
    assert panel_ids(page) == ["usage", "meter_types", "near_capacity", "data_corrections"]


def test_user_text_is_escaped(staff_client, account):
    calls = make_type(account, name="Calls", unit="<b>req</b>", capacity=Decimal(1))
    set_value(make_meter(calls, user_id='<script>alert("x")</script>'), 1)
    page = staff_client.get("/admin/").content.decode()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in panel(page, "near_capacity")
    assert "<b>req</b>" not in page


def test_empty_account_panels_say_so(staff_client):
    page = staff_client.get("/admin/").content.decode()
    assert "No meter types yet." in panel(page, "usage")
    assert "No meter is at 80 % of its capacity or more." in panel(page, "near_capacity")
    assert "No threshold crossed yet." in panel(page, "threshold_notifications")
    assert "No failed webhook deliveries." in panel(page, "failed_deliveries")
    assert 'id="console-stream-count">0<' in panel(page, "streams")
    assert "No collectors yet." in panel(page, "collectors")
    assert "No usage record waits for a correction." in panel(page, "data_corrections")
    assert "No stream run failed or rejected records." in panel(page, "stream_runs")


def test_the_dashboards_queries_do_not_grow_with_the_data(
    staff_client, account, django_assert_max_num_queries
):
    for index in range(6):
        meter_type = make_type(account, name=f"Type {index}")
        for user in range(4):
            set_value(make_meter(meter_type, f"user{user}"), 900)
    with django_assert_max_num_queries(30):
        response = staff_client.get("/admin/")
    assert response.status_code == 200
    assert len(re.findall(r'data-user-id="', panel(response.content.decode(), "near_capacity"))) == 10


def test_a_registered_panel_appears_in_its_order_and_keys_are_unique(staff_client, settings):
    templates = copy.deepcopy(settings.TEMPLATES)
    templates[0]["DIRS"].append(Path(__file__).parent / "templates")
    settings.TEMPLATES = templates

    @panels.register_panel(key="probe", title="Probe", template="console/tests/probe.html", order=25)
    def probe(request):
        return {"answer": request.account.name}

    try:
        page = staff_client.get("/admin/").content.decode()
        assert panel_ids(page)[:3] == ["usage", "meter_types", "probe"]
        assert "Probe says acme" in panel(page, "probe")
        with pytest.raises(ImproperlyConfigured, match="'probe' is registered already"):
            panels.register_panel(key="probe", title="Again", template="x.html")(probe)
    finally:
        panels.unregister_panel("probe")
    assert "probe" not in panel_ids(staff_client.get("/admin/").content.decode())


def test_at_most_twelve_usage_charts_those_with_usage_first(staff_client, account):
    for index in range(13):
        make_type(account, name=f"Type {index:02d}")
    zulu = make_type(account, name="Zulu")
    make_meter(zulu, "ann")
    ingest(zulu, ("ann", NOW, 5))

    usage = panel(staff_client.get("/admin/").content.decode(), "usage")

    captions = re.findall(r'<figcaption><a href="[^"]+">([^<]+)</a>', usage)
    assert captions == ["Zulu"] + [f"Type {index:02d}" for index in range(11)]
    assert "2 more meter types not drawn" in usage and "all 14 meter types" in usage


def test_every_link_in_the_panels_opens_for_the_staff_user(staff_client, account, acme_data, settings):
    from notifications import services as notification_services
    from notifications.models import EventType

    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    with socket.socket() as probe:  # a port nothing listens on: the one attempt fails
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    notification_services.notification_endpoint_create(
        account=account, url=f"http://127.0.0.1:{port}/hook", event_types=[EventType.THRESHOLD_CROSSED]
    )
    meter = acme_data.meters.get(user_id="ann@acme.example")
    event = notification_services.notification_publish(
        account_id=account.pk,
        event_type=EventType.THRESHOLD_CROSSED,
        payload={"meterId": str(meter.pk), "value": 900},
    )
    notification_services.delivery_attempt(delivery_id=event.deliveries.get().pk)
    page = staff_client.get("/admin/").content.decode()
    links = set(re.findall(r'href="(/admin/[^"]+)"', "".join(panel(page, key) for key in panel_ids(page))))

    assert len(links) >= 12
    for link in sorted(links):
        response = staff_client.get(link.replace("&amp;", "&"))
        # A changelist given a filter it does not know redirects to ?e=1: every filter link must be known.
        assert response.status_code == 200, link
    meters_of_type = staff_client.get(
        f"/admin/metering/meter/?meter_type__id__exact={acme_data.pk}"
    ).content.decode()
    assert "ann@acme.example" in meters_of_type and "joe@acme.example" in meters_of_type


def test_the_threshold_panel_lists_the_threshold_events(staff_client, account):
    """Crossings recorded without any notification endpoint still show, one row per threshold event."""
    from metering.models import ThresholdEvent

    calls = make_type(
        account,
        since=datetime(2027, 1, 1, tzinfo=UTC),
        thresholds=[{"name": "warning", "capacityPercentage": 80}, {"value": 950}],
    )
    for user in ("ann@acme.example", "bob@acme.example", "cy@acme.example"):
        make_meter(calls, user)
    ingest(
        calls,
        ("ann@acme.example", NOW, 960),
        ("bob@acme.example", NOW, 850),
        ("cy@acme.example", NOW, 10),
    )
    events = ThresholdEvent.objects.filter(account=account)
    assert events.count() == 3  # ann crossed both, bob the first, cy none

    page = panel(staff_client.get("/admin/").content.decode(), "threshold_notifications")

    rows = re.findall(r'<tr data-threshold-event="([^"]+)">', page)
    assert sorted(rows) == sorted(str(event.pk) for event in events)
    assert page.count("not sent: no endpoint subscribed") == 3
    assert page.count("warning (80 % of capacity)") == 2 and page.count(">950<") >= 1
    assert "All 3 threshold events" in page


def test_the_usage_panel_offers_the_last_24_hours_per_hour_and_ranges_of_days(staff_client, acme_data):
    # Today (10 January, 12:00 UTC): 900 at 09:00 and 100 at 12:00; 40 on the 8th.
    page = panel(staff_client.get("/admin/?usage=24h").content.decode(), "usage")
    assert re.findall(r'data-usage-window="([^"]+)"', page) == ["24h", "7d", "30d", "90d"]
    assert '<strong data-usage-window="24h">24 hours</strong>' in page
    calls = page.split("<figure")[1]
    bars = dict(re.findall(r'data-label="([^"]+)" data-value="([^"]+)"', calls))
    assert bars == {"09:00": "900", "12:00": "100"}  # hours without records draw no bar
    assert re.findall(r'data-label="(\d\d:00)"', calls)[-1] == "12:00"  # this hour, last
    assert "total 1000 requests" in calls

    week = panel(staff_client.get("/admin/?usage=7d").content.decode(), "usage")
    assert dict(re.findall(r'data-label="([^"]+)" data-value="([^"]+)"', week.split("<figure")[1])) == {
        "01-08": "40",
        "01-10": "1000",
    }
    # An unknown choice is the default window (CONSOLE_USAGE_DAYS).
    default = panel(staff_client.get("/admin/?usage=forever").content.decode(), "usage")
    assert '<strong data-usage-window="30d">30 days</strong>' in default

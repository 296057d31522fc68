"""The usage explorer: the API's /usage numbers for an operator's choices, as a page and as CSV."""

import csv
import io
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from console.explorer import resolve_range
from metering.compat.usage_queries import UsageQuery, usage_query
from tests.console.conftest import ingest, make_meter, make_type, staff_of

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 1, 10, 12, 30, 15, tzinfo=UTC)
STOCKHOLM = ZoneInfo("Europe/Stockholm")


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def calls(account):
    meter_type = make_type(account, since=datetime(2027, 1, 1, tzinfo=UTC), timezone="Europe/Stockholm")
    for user in ("ann@acme.example", "bob@acme.example"):
        make_meter(meter_type, user_id=user)
    ingest(
        meter_type,
        ("ann@acme.example", datetime(2027, 1, 9, 10, 15, tzinfo=UTC), 100),
        ("ann@acme.example", datetime(2027, 1, 9, 23, 30, tzinfo=UTC), 40),
        ("bob@acme.example", datetime(2027, 1, 10, 9, 5, tzinfo=UTC), 7),
        ("bob@acme.example", datetime(2027, 1, 8, 1, 0, tzinfo=UTC), 3),
    )
    return meter_type


def rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_presets_are_days_and_months_of_the_types_time_zone():
    assert resolve_range("7d", zone=STOCKHOLM, now=NOW) == (
        datetime(2027, 1, 3, 23, 0, tzinfo=UTC),
        datetime(2027, 1, 10, 12, 30, 16, tzinfo=UTC),
    )
    assert resolve_range("yesterday", zone=STOCKHOLM, now=NOW) == (
        datetime(2027, 1, 8, 23, 0, tzinfo=UTC),
        datetime(2027, 1, 9, 23, 0, tzinfo=UTC),
    )
    assert resolve_range("last-month", zone=STOCKHOLM, now=NOW) == (
        datetime(2026, 11, 30, 23, 0, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 0, tzinfo=UTC),
    )
    # Across the spring DST change a local midnight is 22:00 UTC.
    assert resolve_range(
        "custom", zone=STOCKHOLM, now=NOW, start=datetime(2027, 3, 28, 0, 0), end=datetime(2027, 3, 29, 0, 0)
    ) == (datetime(2027, 3, 27, 23, 0, tzinfo=UTC), datetime(2027, 3, 28, 22, 0, tzinfo=UTC))


def test_the_csv_is_what_usage_answers_for_the_same_choices(client, account, calls):
    client.force_login(staff_of(account, "ann"))
    response = client.get(
        "/admin/usage/",
        {
            "meter_types": [str(calls.pk)],
            "range": "custom",
            "start": "2027-01-08T00:00:00",
            "end": "2027-01-10T12:00:00",
            "step": "DAY",
            "customers": "",
            "format": "csv",
        },
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    answer = usage_query(
        account_id=account.pk,
        query=UsageQuery(
            meter_api_name=calls.api_name,
            start=datetime(2027, 1, 7, 23, 0, tzinfo=UTC),
            end=datetime(2027, 1, 10, 11, 0, tzinfo=UTC),
            aggregation="SUM",
            interval="DAY",
        ),
    )
    expected = [
        (str(int(seconds)), value)
        for record in answer["clientMeters"][calls.api_name][0]["records"]
        for seconds, value in record.items()
    ]
    assert [(row["bucketStartInSeconds"], float(row["value"])) for row in rows(response)] == expected
    assert [row["value"] for row in rows(response)] == ["0", "3", "140", "7"]  # UTC days from 01-07


def test_a_customer_filter_and_the_top_customers(client, account, calls):
    client.force_login(staff_of(account, "ann"))
    page = client.get(
        "/admin/usage/", {"meter_types": [str(calls.pk)], "range": "7d", "step": "DAY", "customers": ""}
    ).content.decode()
    top = page.split('class="console-table explorer-top-customers"')[1].split("</table>")[0]
    assert top.index("ann@acme.example") < top.index("bob@acme.example")
    assert ">140 requests<" in top and ">10 requests<" in top
    only_bob = client.get(
        "/admin/usage/",
        {
            "meter_types": [str(calls.pk)],
            "range": "7d",
            "step": "DAY",
            "customers": "bob@acme.example",
            "format": "csv",
        },
    )
    assert sum(float(row["value"]) for row in rows(only_bob)) == 10


def test_a_meter_page_link_opens_its_customer_over_time(client, account, calls):
    client.force_login(staff_of(account, "ann"))
    page = client.get("/admin/usage/", {"meter_type": str(calls.pk), "customer": "bob@acme.example"})
    assert page.status_code == 200
    assert 'value="bob@acme.example"' in page.content.decode()
    assert page.context["exploration"].customers == ["bob@acme.example"]


def test_another_accounts_meter_type_is_not_a_choice(client, account, other_account, calls):
    theirs = make_type(other_account, name="Their calls")
    client.force_login(staff_of(account, "ann"))
    response = client.get("/admin/usage/", {"meter_types": [str(theirs.pk)], "range": "7d", "step": "DAY"})
    assert response.status_code == 200
    assert response.context["exploration"] is None
    assert "meter_types" in response.context["form"].errors
    assert "Their calls" not in response.content.decode()


def test_too_many_buckets_is_said_on_the_form(client, account, calls, settings):
    settings.USAGE_QUERY_MAX_BUCKETS = 10
    client.force_login(staff_of(account, "ann"))
    response = client.get("/admin/usage/", {"meter_types": [str(calls.pk)], "range": "30d", "step": "HOUR"})
    assert response.context["exploration"] is None
    assert "more than 10 hour buckets" in str(response.context["form"].errors["step"])


def test_without_permission_to_view_meter_types_it_is_refused(client, account):
    client.force_login(staff_of(account, "ann", apps=("streams",)))
    assert client.get("/admin/usage/").status_code == 403


def test_navigation_links_the_explorer_and_the_api_docs_and_hides_the_oauth_toolkits_pages(client, account):
    client.force_login(staff_of(account, "ann"))
    page = client.get("/admin/").content.decode()
    assert '<a href="/admin/usage/" id="nav-usage-explorer">Usage explorer</a>' in page
    assert '<a href="/docs/">API docs</a>' in page
    assert 'rel="icon" href="/static/console/favicon.svg"' in page
    assert "/admin/oauth2_provider/" not in page
    assert client.get("/favicon.ico")["Location"] == "/static/console/favicon.svg"
    assert client.get("/admin/oauth2_provider/application/").status_code == 404

"""Console › Meters near capacity: a read-only list, scoped, searchable, filterable, paginated."""

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from tests.console.conftest import make_meter, make_type, set_value, staff_of

pytestmark = pytest.mark.django_db

URL = "/admin/console/meternearcapacity/"


def rows(page: str) -> list[str]:
    """The user ids listed, in order."""
    return re.findall(
        r'<td class="field-meter"><a href="/admin/metering/meter/[^"]+/change/">([^<]+)</a>', page
    )


@pytest.fixture
def meters(account, other_account):
    calls = make_type(account, name="Calls", capacity=Decimal(100))
    storage = make_type(account, name="Storage", unit="GB", capacity=Decimal(10))
    for user, value in (("calls-85", 85), ("calls-120", 120), ("calls-50", 50)):
        set_value(make_meter(calls, user), value)
    for user, value in (("storage-80", 8), ("storage-100", 10)):
        set_value(make_meter(storage, user), value)
    set_value(make_meter(make_type(other_account, name="Theirs", capacity=Decimal(1)), "theirs-900"), 9)
    return calls, storage


def test_lists_the_accounts_meters_near_capacity_fullest_first(staff_client, meters):
    page = staff_client.get(URL).content.decode()
    assert rows(page) == ["calls-120", "storage-100", "calls-85", "storage-80"]
    assert "theirs-900" not in page and "Theirs" not in page  # not even in the meter type filter
    assert "120 / 100 requests" in page and "120.0 %" in page


def test_search_filters_and_column_ordering(staff_client, meters):
    calls, _ = meters
    assert rows(staff_client.get(URL, {"q": "storage"}).content.decode()) == ["storage-100", "storage-80"]
    assert rows(staff_client.get(URL, {"level": "over"}).content.decode()) == ["calls-120", "storage-100"]
    assert rows(staff_client.get(URL, {"level": "near"}).content.decode()) == ["calls-85", "storage-80"]
    assert rows(staff_client.get(URL, {"meter_type__id__exact": str(calls.pk)}).content.decode()) == [
        "calls-120",
        "calls-85",
    ]
    # Column 0 is the user id: ascending.
    assert rows(staff_client.get(URL, {"o": "0"}).content.decode()) == [
        "calls-120",
        "calls-85",
        "storage-100",
        "storage-80",
    ]


def test_fifty_rows_a_page(staff_client, account):
    calls = make_type(account, name="Calls", capacity=Decimal(100))
    for index in range(51):
        set_value(make_meter(calls, f"user{index:02d}"), 100 - index % 20)
    first = staff_client.get(URL).content.decode()
    assert len(rows(first)) == 50
    assert "51 meters near capacity" in first
    assert len(rows(staff_client.get(URL, {"p": "2"}).content.decode())) == 1


def test_read_only_and_following_the_meters_permissions(client, account, meters):
    client.force_login(staff_of(account, "viewer", apps=("metering",)))
    assert client.get(URL).status_code == 200
    assert client.get(URL + "add/").status_code == 403
    index = client.get("/admin/").content.decode()
    assert 'href="/admin/console/meternearcapacity/"' in index

    client.force_login(staff_of(account, "notifications-only", apps=("notifications",)))
    assert client.get(URL).status_code == 403
    assert 'href="/admin/console/meternearcapacity/"' not in client.get("/admin/").content.decode()


def test_superusers_see_every_account_and_filter_by_account(client, account, other_account, meters):
    client.force_login(get_user_model().objects.create_superuser(username="root", password=None))
    assert rows(client.get(URL).content.decode()) == [
        "theirs-900",
        "calls-120",
        "storage-100",
        "calls-85",
        "storage-80",
    ]
    assert rows(client.get(URL, {"account__id__exact": str(other_account.pk)}).content.decode()) == [
        "theirs-900"
    ]

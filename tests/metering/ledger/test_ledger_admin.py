"""The operator screens of the ledger: usage records, threshold events, filtering rules."""

from __future__ import annotations

from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from accounts import services as account_services
from metering.models import MeterEventFilteringRule, ThresholdEvent
from tests.metering.ledger.conftest import NOW, apply, make_meter, make_type, usage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def staff(client, account):
    user = get_user_model().objects.create_user(username="ann", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="metering"))
    account_services.account_user_link(user=user, account=account)
    client.force_login(user)
    return client


def rows(response) -> list:
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_usage_records_and_threshold_events_are_listed_read_only_per_account(staff, account, other_account):
    mine = make_meter(
        make_type(account, thresholds=[{"name": "one", "value": 1}]), user_id="ann@acme.example"
    )
    theirs = make_meter(make_type(other_account), user_id="bob@globex.example")
    apply(account, [usage(mine.meter_type, user="ann@acme.example", value=2, key="mine")])
    apply(other_account, [usage(theirs.meter_type, user="bob@globex.example", key="theirs")])

    page = staff.get("/admin/metering/usagerecord/")
    assert [r.idempotency_key for r in rows(page)] == ["mine"]
    assert "API calls" in page.content.decode()
    assert [
        r.idempotency_key for r in rows(staff.get("/admin/metering/usagerecord/?q=ann@acme.example"))
    ] == ["mine"]
    assert rows(staff.get("/admin/metering/usagerecord/?q=bob@globex.example")) == []
    record = rows(page)[0]
    assert staff.get(f"/admin/metering/usagerecord/{record.pk}/change/").status_code == 200
    assert staff.get("/admin/metering/usagerecord/add/").status_code == 403
    events = rows(staff.get("/admin/metering/thresholdevent/"))
    assert [(e.name, e.value) for e in events] == [("one", Decimal(2))]
    assert ThresholdEvent.objects.count() == 1


def test_filtering_rules_are_made_and_removed_through_the_service(staff, account):
    meter_type = make_type(account)
    response = staff.post(
        "/admin/metering/metereventfilteringrule/add/",
        {
            "meter_type": str(meter_type.pk),
            "dimension_name": "region",
            "dimension_values": '["eu"]',
            "action": "EXCLUDE",
        },
    )

    assert response.status_code == 302
    rule = MeterEventFilteringRule.objects.get()
    assert (rule.account_id, rule.dimension_values, rule.action) == (account.pk, ["eu"], "EXCLUDE")
    assert rows(staff.get("/admin/metering/metereventfilteringrule/?action__exact=EXCLUDE")) == [rule]
    staff.post(f"/admin/metering/metereventfilteringrule/{rule.pk}/delete/", {"post": "yes"})
    assert not MeterEventFilteringRule.objects.exists()


def test_a_filtering_rules_values_are_edited_as_rows_not_json(staff, account):
    meter_type = make_type(account)
    add_page = staff.get("/admin/metering/metereventfilteringrule/add/").content.decode()
    assert 'aria-label="value 1"' in add_page and "<textarea" not in add_page
    response = staff.post(
        "/admin/metering/metereventfilteringrule/add/",
        {
            "meter_type": str(meter_type.pk),
            "dimension_name": "region",
            "dimension_values-count": "3",
            "dimension_values-0": "eu-north-1",
            "dimension_values-1": "",
            "dimension_values-2": " us-east-1 ",
            "action": "INCLUDE",
        },
    )

    assert response.status_code == 302
    rule = MeterEventFilteringRule.objects.get()
    assert rule.dimension_values == ["eu-north-1", "us-east-1"]
    page = staff.get(f"/admin/metering/metereventfilteringrule/{rule.pk}/change/").content.decode()
    assert 'name="dimension_values-0" id="id_dimension_values-0" value="eu-north-1"' in page
    assert 'name="dimension_values-1" id="id_dimension_values-1" value="us-east-1"' in page

    # The same validator as the API's: two equal values are refused on the form.
    response = staff.post(
        f"/admin/metering/metereventfilteringrule/{rule.pk}/change/",
        {
            "meter_type": str(meter_type.pk),
            "dimension_name": "region",
            "dimension_values-count": "2",
            "dimension_values-0": "eu",
            "dimension_values-1": "eu",
            "action": "INCLUDE",
        },
    )
    assert response.status_code == 200 and "must be distinct" in response.content.decode()
    assert MeterEventFilteringRule.objects.get().dimension_values == ["eu-north-1", "us-east-1"]

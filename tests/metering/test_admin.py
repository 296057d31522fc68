"""The operator UI: tenancy, writes through the services, the reset preview, the value bar."""

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from accounts import services as account_services
from metering.models import Meter, MeteredRecord, MeterType
from tests.metering.factories import make_meter, make_meter_type

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def staff(client, account):
    """A logged-in staff user of ``account`` with every metering permission."""
    user = get_user_model().objects.create_user(username="ann", is_staff=True)  # no password: nothing to hash
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="metering"))
    account_services.account_user_link(user=user, account=account)
    client.force_login(user)
    return client


def meter_type_form(**overrides):
    form = {
        "name": "Pages printed",
        "description": "",
        "category": "DEFAULT",
        "unit": "pages",
        "aggregation": "INCREMENT",
        "capacity": "500",
        "thresholds": "[]",
        "reset_cron": "0 0 1 * *",
        "timezone": "Europe/Stockholm",
        "active_from_0": "",
        "active_from_1": "",
        "active_to_0": "",
        "active_to_1": "",
        "external_ref": "",
        "api_name": "",
        "status": "ACTIVE",
        "dimensions": "[]",
    }
    form.update(overrides)
    return form


def test_staff_see_only_their_accounts_meter_types_and_meters(staff, account, other_account):
    mine = make_meter_type(account, name="Acme calls")
    theirs = make_meter_type(other_account, name="Globex calls")
    make_meter(mine, user_id="ann@acme.example")
    foreign_meter = make_meter(theirs, user_id="bob@globex.example")

    types_page = staff.get("/admin/metering/metertype/").content.decode()
    assert "Acme calls" in types_page
    assert "Globex calls" not in types_page
    meters_page = staff.get("/admin/metering/meter/").content.decode()
    assert "ann@acme.example" in meters_page
    assert "bob@globex.example" not in meters_page
    assert "Globex calls" not in meters_page  # not even in the meter type filter
    assert staff.get(f"/admin/metering/metertype/{theirs.pk}/change/").status_code == 302
    assert staff.get(f"/admin/metering/meter/{foreign_meter.pk}/change/").status_code == 302


def test_meter_type_list_has_filters_search_and_meter_counts(staff, account):
    calls = make_meter_type(account, name="API calls", category="Calls")
    make_meter_type(account, name="Storage", category="Storage", aggregation="MAX")
    make_meter(calls, user_id="a")
    make_meter(calls, user_id="b")

    def listed(query):
        return [row.name for row in staff.get(f"/admin/metering/metertype/{query}").context["cl"].result_list]

    assert listed("?aggregation__exact=MAX") == ["Storage"]
    assert listed("?category=Calls") == ["API calls"]
    assert listed("?q=stor") == ["Storage"]
    page = staff.get("/admin/metering/metertype/?q=API").content.decode()
    assert '<td class="field-meter_count">2</td>' in page


def test_the_change_page_shows_the_next_five_resets_in_the_types_timezone(staff, account):
    meter_type = make_meter_type(account, reset_cron="0 0 1 * *", timezone="Europe/Stockholm")
    page = staff.get(f"/admin/metering/metertype/{meter_type.pk}/change/").content.decode()
    assert (
        '<ul id="next-resets">'
        "<li>2027-02-01 00:00 CET (2027-01-31 23:00 UTC)</li>"
        "<li>2027-03-01 00:00 CET (2027-02-28 23:00 UTC)</li>"
        "<li>2027-04-01 00:00 CEST (2027-03-31 22:00 UTC)</li>"
        "<li>2027-05-01 00:00 CEST (2027-04-30 22:00 UTC)</li>"
        "<li>2027-06-01 00:00 CEST (2027-05-31 22:00 UTC)</li></ul>"
    ) in page


def test_capacity_shows_as_a_plain_number_on_the_form(staff, account):
    meter_type = make_meter_type(account, capacity=Decimal("1000"))
    page = staff.get(f"/admin/metering/metertype/{meter_type.pk}/change/").content.decode()
    assert 'name="capacity" value="1000"' in page


def test_a_superusers_new_meter_type_defaults_to_their_account_and_may_choose_another(
    client, account, other_account
):
    root = get_user_model().objects.create_superuser(username="root", password=None)
    account_services.account_user_link(user=root, account=account)
    client.force_login(root)
    assert (
        client.get("/admin/metering/metertype/add/").context["adminform"].form.initial["account"]
        == account.pk
    )
    response = client.post("/admin/metering/metertype/add/", meter_type_form(account=other_account.pk))
    assert response.status_code == 302
    assert MeterType.objects.get(name="Pages printed").account == other_account


def test_the_schedule_preview_answers_as_the_schedule_is_typed(staff):
    preview = staff.get(
        "/admin/metering/metertype/schedule-preview/", {"cron": "0 * * * *", "timezone": "America/New_York"}
    ).json()
    assert preview["fires"][:2] == [
        {"local": "2027-01-10 08:00 EST", "utc": "2027-01-10 13:00"},
        {"local": "2027-01-10 09:00 EST", "utc": "2027-01-10 14:00"},
    ]
    assert len(preview["fires"]) == 5
    invalid = staff.get(
        "/admin/metering/metertype/schedule-preview/", {"cron": "0 0 30 2 *", "timezone": "Etc/UTC"}
    )
    assert invalid.json() == {"error": "'0 0 30 2 *' never fires."}


def test_adding_a_meter_type_goes_through_the_service(staff, account):
    response = staff.post("/admin/metering/metertype/add/", meter_type_form())
    assert response.status_code == 302
    created = MeterType.objects.get(name="Pages printed")
    assert (created.account, created.api_name, created.active_from, created.capacity) == (
        account,
        "pages-printed",
        NOW,
        Decimal(500),
    )


@pytest.mark.parametrize(
    "overrides,field,message",
    [
        ({"reset_cron": "0 0 30 2 *"}, "reset_cron", "never fires"),
        ({"timezone": "Mars/Olympus"}, "timezone", "is not an IANA timezone name"),
        ({"thresholds": '[{"capacityPercentage": 50}]', "capacity": ""}, "thresholds", "need a capacity"),
        ({"active_to_0": "2026-01-01", "active_to_1": "00:00:00"}, "active_to", "cannot be in the past"),
        ({"name": "Acme calls"}, "name", "is taken"),
    ],
)
def test_admin_form_shows_the_services_rules(staff, account, overrides, field, message):
    make_meter_type(account, name="Acme calls")
    response = staff.post("/admin/metering/metertype/add/", meter_type_form(**overrides))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field])
    assert MeterType.objects.count() == 1


def test_the_aggregation_is_read_only_once_the_type_exists(staff, account):
    meter_type = make_meter_type(account, name="Pages printed", aggregation="SUM")
    form = meter_type_form(aggregation="MAX", description="changed")
    response = staff.post(f"/admin/metering/metertype/{meter_type.pk}/change/", form)
    assert response.status_code == 302
    meter_type.refresh_from_db()
    assert (meter_type.aggregation, meter_type.description) == ("SUM", "changed")


def test_archive_action_goes_through_the_service(staff, account):
    meter_type = make_meter_type(account)
    staff.post("/admin/metering/metertype/", {"action": "archive", "_selected_action": [meter_type.pk]})
    meter_type.refresh_from_db()
    assert meter_type.status == "ARCHIVED"


def test_a_meter_type_with_meters_is_not_deleted_from_the_admin(staff, account):
    meter_type = make_meter_type(account)
    make_meter(meter_type)
    staff.post(f"/admin/metering/metertype/{meter_type.pk}/delete/", {"post": "yes"})
    assert MeterType.objects.filter(pk=meter_type.pk).exists()


def test_meters_show_value_against_capacity_and_the_period_in_the_types_timezone(staff, account):
    meter_type = make_meter_type(account, capacity=200, timezone="America/New_York", reset_cron="0 0 * * *")
    meter = make_meter(meter_type, user_id="ann@acme.example")
    Meter.objects.filter(pk=meter.pk).update(value=Decimal(150))

    page = staff.get("/admin/metering/meter/").content.decode()
    # The console's capacity bar (the same colours on every page): 75 % full, below the near level.
    assert (
        '<span class="console-bar console-ok" title="75.0 %"><span style="width: 75%"></span></span> '
        '<span class="console-value">150 / 200 requests</span> '
        '<strong class="console-percent console-ok">75.0 %</strong>'
    ) in page
    assert "2027-01-10 07:00 EST → 2027-01-11 00:00 EST" in page
    assert "ann@acme.example" in staff.get("/admin/metering/meter/?q=ann@").content.decode()
    assert "ann@acme.example" not in staff.get("/admin/metering/meter/?q=bob").content.decode()


def test_adding_and_changing_a_meter_goes_through_the_services(staff, account):
    meter_type = make_meter_type(account, capacity=300)
    response = staff.post(
        "/admin/metering/meter/add/",
        {
            "meter_type": meter_type.pk,
            "meter_key": "printer-7",
            "user_id": "floor-3",
            "custom_fields": '{"b": 1}',
        },
    )
    assert response.status_code == 302
    meter = Meter.objects.get()
    assert (meter.account, meter.capacity, meter.period_end) == (
        account,
        Decimal(300),
        datetime(2027, 2, 1, tzinfo=UTC),
    )

    duplicate = staff.post(
        "/admin/metering/meter/add/",
        {
            "meter_type": meter_type.pk,
            "meter_key": "printer-7",
            "user_id": "floor-3",
            "custom_fields": "{}",
        },
    )
    assert duplicate.status_code == 200
    assert Meter.objects.count() == 1

    staff.post(
        f"/admin/metering/meter/{meter.pk}/change/",
        {
            "custom_fields": "{}",
            "capacity": "50",
            "thresholds": '[{"value": 40}]',
            "delete_on_reset": "on",
        },
    )
    meter.refresh_from_db()
    assert (meter.capacity, meter.thresholds, meter.delete_on_reset) == (Decimal(50), [{"value": 40}], True)


def test_metered_records_are_read_only(staff, account):
    meter = make_meter(make_meter_type(account))
    record = MeteredRecord.objects.create(
        account=account,
        meter=meter,
        source_meter_id=meter.pk,
        user_id=meter.user_id,
        meter_type_id=meter.meter_type_id,
        meter_type_name="API calls",
        timezone="Etc/UTC",
        meter_key=meter.meter_key,
        value=Decimal(9),
        unit="requests",
        period_start=datetime(2026, 12, 1, tzinfo=UTC),
        period_end=datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert meter.user_id in staff.get("/admin/metering/meteredrecord/").content.decode()
    assert staff.get("/admin/metering/meteredrecord/add/").status_code == 403
    assert (
        staff.post(f"/admin/metering/meteredrecord/{record.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert MeteredRecord.objects.filter(pk=record.pk).exists()


def test_a_meter_types_page_lists_its_meters_and_a_meters_page_its_threshold_events(
    staff, account, other_account
):
    from metering.ledger import UsageInput, usage_apply

    meter_type = make_meter_type(account)
    ann, bob = (
        make_meter(meter_type, user_id="ann@acme.example"),
        make_meter(meter_type, user_id="bob@acme.example"),
    )
    make_meter(make_meter_type(other_account, name="Globex calls"), user_id="eve@globex.example")
    result = usage_apply(
        account_id=account.pk,
        source="api",
        records=[
            UsageInput(
                user_id="ann@acme.example", value=850, meter_type_id=meter_type.pk, idempotency_key="a"
            ),
            UsageInput(
                user_id="bob@acme.example", value=10, meter_type_id=meter_type.pk, idempotency_key="b"
            ),
        ],
    )
    assert result.accepted == 2

    type_page = staff.get(f"/admin/metering/metertype/{meter_type.pk}/change/").content.decode()
    rows = type_page[type_page.index('<table id="type-meters">') :]
    assert rows.index('data-user-id="ann@acme.example"') < rows.index('data-user-id="bob@acme.example"')
    assert f'<a href="/admin/metering/meter/{ann.pk}/change/">ann@acme.example</a>' in rows
    assert "850 / 1000" in rows and "eve@globex.example" not in type_page
    assert f'?meter_type__id__exact={meter_type.pk}">All 2 meters of this type</a>' in rows

    meter_page = staff.get(f"/admin/metering/meter/{ann.pk}/change/").content.decode()
    events = meter_page[meter_page.index('<table id="threshold-events">') :]
    assert "<td>warning</td><td>800</td><td>850</td>" in events
    assert (
        "No threshold crossed yet." in staff.get(f"/admin/metering/meter/{bob.pk}/change/").content.decode()
    )
    listed = staff.get(f"/admin/metering/thresholdevent/?meter__id__exact={ann.pk}")
    assert [event.meter_id for event in listed.context["cl"].result_list] == [ann.pk]


def test_a_meter_types_page_charts_its_usage_per_local_day_from_the_rollups(staff, account, frozen):
    from metering.ledger import UsageInput, usage_apply

    frozen.move_to(datetime(2027, 1, 1, tzinfo=UTC))
    meter_type = make_meter_type(account, timezone="Europe/Stockholm")
    make_meter(meter_type, user_id="ann")
    frozen.move_to(NOW)
    usage_apply(
        account_id=account.pk,
        source="api",
        records=[
            UsageInput(user_id="ann", value=5, timestamp="2027-01-10T12:00:00Z", meter_type_id=meter_type.pk),
            UsageInput(
                user_id="ann", value=3, timestamp="2027-01-09T23:30:00Z", meter_type_id=meter_type.pk
            ),  # 00:30 CET
            UsageInput(
                user_id="ann", value=4, timestamp="2027-01-09T22:30:00Z", meter_type_id=meter_type.pk
            ),  # 23:30 CET
        ],
    )

    page = staff.get(f"/admin/metering/metertype/{meter_type.pk}/change/").content.decode()

    # The dashboard's chart (console.charts) over the dashboard's query, for this type only.
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart bar-chart meter-type-usage-chart"' in page
    assert page.count('<rect class="bar" ') == 30  # a bar per day, zero days included
    assert '<rect class="bar" data-label="2027-01-10" data-value="8"' in page
    assert "<title>2027-01-10: 8 requests</title>" in page
    assert "<title>2027-01-09: 4 requests</title>" in page
    assert "<title>2027-01-08: 0 requests</title>" in page


def test_a_meter_type_without_usage_says_so(staff, account):
    meter_type = make_meter_type(account)
    page = staff.get(f"/admin/metering/metertype/{meter_type.pk}/change/").content.decode()
    assert '<p id="type-usage">No usage in the last 30 days.</p>' in page


def test_data_corrections_triage_counts_search_inside_records_and_fix_hints(staff, account):
    from metering.ledger import UsageInput, usage_apply
    from metering.models import DataCorrection

    meter_type = make_meter_type(account)
    result = usage_apply(
        account_id=account.pk,
        source="api",
        records=[
            UsageInput(user_id=None, value=3, meter_type_id=meter_type.pk, idempotency_key="u-1"),
            UsageInput(
                user_id="dora@acme.example", value=5, meter_type_id=meter_type.pk, idempotency_key="u-2"
            ),
            UsageInput(
                user_id="ed@acme.example", value=8, meter_type_id=meter_type.pk, idempotency_key="u-3"
            ),
        ],
    )
    assert result.corrections == 3

    listed = staff.get("/admin/metering/datacorrection/")
    page = listed.content.decode()
    assert listed.context["cl"].list_per_page == 25
    assert "No matching meter (or meter type) (2)" in page and "No userId (1)" in page  # counts per reason
    # Counts per meter type and customer too, another type of the account listed with none.
    make_meter_type(account, name="Storage")
    page = staff.get("/admin/metering/datacorrection/").content.decode()
    assert f"{meter_type.name} (3)" in page and "Storage (0)" in page
    assert "dora@acme.example (1)" in page and "ed@acme.example (1)" in page and "no customer (1)" in page
    by_customer = staff.get("/admin/metering/datacorrection/", {"customer": "ed@acme.example"})
    assert [correction.idempotency_key for correction in by_customer.context["cl"].result_list] == ["u-3"]
    no_customer = staff.get("/admin/metering/datacorrection/", {"customer": "-"})
    assert [correction.idempotency_key for correction in no_customer.context["cl"].result_list] == ["u-1"]
    by_type = staff.get("/admin/metering/datacorrection/", {"meter_type": str(meter_type.pk)})
    assert len(by_type.context["cl"].result_list) == 3

    found = staff.get("/admin/metering/datacorrection/", {"q": "dora@acme"}).context["cl"].result_list
    assert [correction.idempotency_key for correction in found] == ["u-2"]

    dora = DataCorrection.objects.get(idempotency_key="u-2")
    change = staff.get(f"/admin/metering/datacorrection/{dora.pk}/change/").content.decode()
    assert "Create the customer&#x27;s meter for this meter type" in change
    assert "a reprocess alone fixes it once that is done" in change


def test_the_time_zone_is_a_searchable_choice_and_the_empty_add_form_shows_no_error(staff):
    page = staff.get("/admin/metering/metertype/add/").content.decode()
    assert 'list="iana-timezones"' in page
    assert '<option value="Europe/Stockholm">' in page
    assert "errorlist" not in page and "errornote" not in page


def test_thresholds_are_edited_as_rows_and_stored_as_the_api_stores_them(staff, account):
    form = meter_type_form(name="Rows", capacity="1000")
    del form["thresholds"]
    form |= {
        "thresholds-0-name": "warning",
        "thresholds-0-kind": "capacityPercentage",
        "thresholds-0-level": "80",
        "thresholds-1-name": "",
        "thresholds-1-kind": "value",
        "thresholds-1-level": "950.5",
        "thresholds-2-name": "left out: no level",
        "thresholds-2-kind": "value",
        "thresholds-2-level": "",
    }
    response = staff.post("/admin/metering/metertype/add/", form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    meter_type = MeterType.objects.get(account=account, name="Rows")
    assert meter_type.thresholds == [{"name": "warning", "capacityPercentage": 80}, {"value": 950.5}]

    page = staff.get(f"/admin/metering/metertype/{meter_type.pk}/change/").content.decode()
    assert 'name="thresholds-0-name" id="id_thresholds-0-name" value="warning"' in page
    assert '<option value="value" selected>absolute value</option>' in page
    assert 'id="id_thresholds-1-level" value="950.5"' in page
    assert 'name="thresholds-4-level"' in page  # five rows, the empty ones to fill


def test_a_threshold_row_the_validator_refuses_is_a_form_error_and_keeps_what_was_typed(staff, account):
    form = meter_type_form(name="Rows", capacity="")
    del form["thresholds"]
    form |= {
        "thresholds-0-name": "warning",
        "thresholds-0-kind": "capacityPercentage",
        "thresholds-0-level": "80",
    }
    response = staff.post("/admin/metering/metertype/add/", form)
    assert response.status_code == 200
    assert "need a capacity" in " ".join(response.context["adminform"].form.errors["thresholds"])
    assert 'id="id_thresholds-0-level" value="80"' in response.content.decode()
    assert not MeterType.objects.filter(name="Rows").exists()


def test_dimensions_are_edited_one_name_per_box(staff, account):
    form = meter_type_form(name="Rows")
    del form["dimensions"]
    form |= {"dimensions-count": "4", "dimensions-0": "region", "dimensions-1": "", "dimensions-2": " plan "}
    response = staff.post("/admin/metering/metertype/add/", form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    meter_type = MeterType.objects.get(account=account, name="Rows")
    assert meter_type.dimensions == ["region", "plan"]

    page = staff.get(f"/admin/metering/metertype/{meter_type.pk}/change/").content.decode()
    assert 'name="dimensions-0" id="id_dimensions-0" value="region"' in page
    assert 'name="dimensions-1" id="id_dimensions-1" value="plan"' in page
    assert 'name="dimensions-count" value="5"' in page  # the two and three empty boxes

    form = meter_type_form(name="Rows")
    del form["dimensions"]
    form |= {"dimensions-count": "2", "dimensions-0": "region", "dimensions-1": "region"}
    response = staff.post(f"/admin/metering/metertype/{meter_type.pk}/change/", form)
    assert "Dimensions must be distinct." in " ".join(response.context["adminform"].form.errors["dimensions"])


def test_custom_fields_are_rows_that_keep_each_values_json_type(staff, account):
    meter = make_meter(make_meter_type(account))
    Meter.objects.filter(pk=meter.pk).update(
        custom_fields={"plan": "pro", "seats": 5, "trial": False, "tags": ["eu", "beta"]}
    )
    page = staff.get(f"/admin/metering/meter/{meter.pk}/change/").content.decode()
    rows = re.findall(
        r'id="id_custom_fields-\d+-key" value="([^"]*)".*?<option value="(\w+)" selected>.*?'
        r'id="id_custom_fields-\d+-value" value="([^"]*)"',
        page,
        re.S,
    )
    assert sorted(rows) == [
        ("", "text", ""),
        ("", "text", ""),
        ("", "text", ""),  # three empty rows to fill
        ("plan", "text", "pro"),
        ("seats", "number", "5"),
        ("tags", "json", "[&quot;eu&quot;, &quot;beta&quot;]"),
        ("trial", "boolean", "false"),
    ]

    # Saved as shown, one value changed and one row added: every other value keeps its type.
    rows = {
        "custom_fields-count": "7",
        **{
            f"custom_fields-{i}-{part}": v
            for i, (k, kind, value) in enumerate(
                [
                    ("plan", "text", "enterprise"),
                    ("seats", "number", "5"),
                    ("trial", "boolean", "false"),
                    ("tags", "json", '["eu", "beta"]'),
                    ("region", "text", "eu-north-1"),
                    ("", "text", "left out"),
                ]
            )
            for part, v in (("key", k), ("kind", kind), ("value", value))
        },
    }
    response = staff.post(
        f"/admin/metering/meter/{meter.pk}/change/",
        {"capacity": "1000", "thresholds": "[]", **rows},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    meter.refresh_from_db()
    assert meter.custom_fields == {
        "plan": "enterprise",
        "seats": 5,
        "trial": False,
        "tags": ["eu", "beta"],
        "region": "eu-north-1",
    }


def test_an_operator_moves_active_from_back_in_the_admin_and_reprocesses_the_early_records(staff, account):
    """Issue 21: records from before a type's activeFrom wait in data correction; the operator
    moves activeFrom back on the change page, then reprocesses them from the corrections list."""
    from metering.models import DataCorrection, UsageRecord
    from tests.conftest import client_for

    meter_type = make_meter_type(account, name="Pages printed", aggregation="SUM", active_from=NOW)
    make_meter(meter_type, user_id="ann")
    early = datetime(2027, 1, 8, 9, 30, tzinfo=UTC)
    event = {
        "meterApiName": meter_type.api_name,
        "customerId": "ann",
        "meterValue": 4,
        "meterTimeInMillis": int(early.timestamp() * 1000),
        "uniqueId": "early-1",
    }
    assert client_for(account).post("/ingest", [event], format="json").status_code == 200
    correction = DataCorrection.objects.get()
    assert correction.reason == "OUTSIDE_ACTIVE_WINDOW"

    form = meter_type_form(
        aggregation="SUM", capacity="1000", active_from_0="2027-01-01", active_from_1="00:00:00"
    )
    response = staff.post(f"/admin/metering/metertype/{meter_type.pk}/change/", form)
    assert response.status_code == 302
    meter_type.refresh_from_db()
    assert meter_type.active_from == datetime(2027, 1, 1, tzinfo=UTC)

    staff.post(
        "/admin/metering/datacorrection/", {"action": "reprocess", "_selected_action": [correction.pk]}
    )
    correction.refresh_from_db()
    assert (correction.status, correction.message) == ("REPROCESSED", "Counted.")
    assert list(UsageRecord.objects.values_list("user_id", "value", "timestamp")) == [
        ("ann", Decimal(4), early)
    ]


def test_a_meters_groups_and_breakdowns_show_as_rows_with_trimmed_values(staff, account):
    meter = make_meter(make_meter_type(account, capacity=1000), user_id="ann@acme.example")
    Meter.objects.filter(pk=meter.pk).update(
        groups=[{"key": "premium", "value": 283.5, "recordCount": 3}],
        group_breakdowns=[{"fields": {"region": "eu"}, "value": 400, "recordCount": 2}],
    )

    page = staff.get(f"/admin/metering/meter/{meter.pk}/change/").content.decode()

    assert "<tr><td>premium</td><td>283.5</td><td>3</td></tr>" in page
    assert "<tr><td>region = eu</td><td>400</td><td>2</td></tr>" in page
    assert "recordCount" not in page

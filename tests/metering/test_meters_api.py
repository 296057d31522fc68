"""``/meters`` and ``/meters/{id}/records``: seed 000's fields, seed 003's inheritance, 404s and 409s."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from metering.models import Meter, MeteredRecord
from tests.conftest import client_for
from tests.metering.factories import assert_error, make_meter, make_meter_type

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
KEY = "a1f8797b-c827-4483-b6cf-6d3d3baa18a7"


@pytest.fixture(autouse=True)
def frozen():
    """Every test runs at NOW (set up first, so tokens are issued in the frozen time too)."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def meter_type(account):
    return make_meter_type(
        account,
        name="Usage based API counter",
        external_ref="878752b4-4ddf",
        thresholds=[{"name": "warning", "capacityPercentage": 80}, {"value": 950}],
    )


def create(api, **body):
    return api.post("/meters", body, format="json")


# --- create -----------------------------------------------------------------------------------


def test_create_answers_seed_000s_fields_with_inherited_properties(api, meter_type):
    response = create(
        api,
        meterTypeId=str(meter_type.pk),
        meterKey=KEY,
        userId="user0@example.com",
        customFields={"plan": "gold", "building": 7},
    )

    assert response.status_code == 201
    meter = Meter.objects.get()
    assert response.json() == {
        "capacity": 1000,
        "carryFirst": {},
        "carryLast": {},
        "createdAt": "2027-01-10T12:00:00.000Z",
        "customFields": {"plan": "gold", "building": 7},
        "deleteOnReset": False,
        "groupBreakdowns": [],
        "groups": [],
        "id": str(meter.pk),
        "meterKey": KEY,
        "meterMetaData": {"recordCount": 0, "lastIngestedAt": None},
        "meterTypeId": str(meter_type.pk),
        "meterTypeName": "Usage based API counter",
        "periodEnd": "2027-02-01T00:00:00.000Z",
        "periodStart": "2027-01-10T12:00:00.000Z",
        "thresholds": [{"name": "warning", "capacityPercentage": 80}, {"value": 950}],
        "timezone": "Etc/UTC",
        "unit": "requests",
        "updatedAt": "2027-01-10T12:00:00.000Z",
        "userId": "user0@example.com",
        "value": 0,
    }
    assert api.get(f"/meters/{meter.pk}").json() == response.json()


def test_create_by_the_meter_types_external_ref(api, meter_type):
    response = create(api, externalRef="878752b4-4ddf", meterKey=KEY, userId="user0@example.com")
    assert response.status_code == 201
    assert response.json()["meterTypeId"] == str(meter_type.pk)


@pytest.mark.parametrize("aggregation,value", [("SUM", 0), ("INCREMENT", 0), ("MAX", None), ("MIN", None)])
def test_starting_value_follows_the_aggregation(api, account, aggregation, value):
    meter_type = make_meter_type(account, aggregation=aggregation)
    assert create(api, meterTypeId=str(meter_type.pk), meterKey="k", userId="u").json()["value"] == value


def test_period_end_is_the_next_reset_in_the_types_timezone_across_spring_forward(account, frozen):
    frozen.move_to(datetime(2026, 3, 29, 0, 50, tzinfo=UTC))  # 01:50 CET in Stockholm
    client = client_for(account, name="dst")
    meter_type = make_meter_type(account, name="Hourly", reset_cron="0 * * * *", timezone="Europe/Stockholm")
    body = create(client, meterTypeId=str(meter_type.pk), meterKey="k", userId="u").json()
    # 02:00 does not exist that night: the period ends at 03:00 CEST.
    assert (body["periodStart"], body["periodEnd"]) == (
        "2026-03-29T00:50:00.000Z",
        "2026-03-29T01:00:00.000Z",
    )


def test_meter_type_is_given_by_id_or_external_ref_not_both_nor_neither(api, meter_type):
    assert_error(create(api, meterKey="k", userId="u"), 400, "VALIDATION_ERROR", "meterTypeId")
    assert_error(
        create(api, meterTypeId=str(meter_type.pk), externalRef="878752b4-4ddf", meterKey="k", userId="u"),
        400,
        "VALIDATION_ERROR",
        "externalRef",
    )
    assert Meter.objects.count() == 0


def test_unknown_and_other_accounts_meter_types_are_404(api, other_account):
    foreign = make_meter_type(other_account, external_ref="globex-ref")
    for reference in (
        {"meterTypeId": "8a76066d-ff29-417c-a18e-abde22e44310"},
        {"meterTypeId": "not-a-uuid"},
        {"meterTypeId": str(foreign.pk)},
        {"externalRef": "globex-ref"},
        {"externalRef": "nope"},
    ):
        response = create(api, meterKey="k", userId="u", **reference)
        assert_error(response, 404, "METER_TYPE_NOT_FOUND", next(iter(reference)))
    assert Meter.objects.count() == 0


@pytest.mark.parametrize(
    "field,body",
    [
        ("meterKey", {"meterKey": "k" * 37}),
        ("meterKey", {"meterKey": ""}),
        ("meterKey", {"meterKey": None}),
        ("userId", {"userId": "u" * 321}),
        ("userId", {"userId": ""}),
        ("meterTypeId", {"meterTypeId": "x" * 37}),
        ("externalRef", {"externalRef": "x" * 101}),
        ("customFields", {"customFields": ["a", "b"]}),
        ("customFields", {"customFields": "plan=gold"}),
        ("value", {"value": 10}),
        ("capacity", {"capacity": 10}),
        ("accountId", {"accountId": "x"}),
    ],
)
def test_field_limits(api, meter_type, field, body):
    request = {"meterTypeId": str(meter_type.pk), "meterKey": "k", "userId": "u", **body}
    assert_error(create(api, **request), 400, "VALIDATION_ERROR", field)
    assert Meter.objects.count() == 0


@pytest.mark.parametrize("missing", ["meterKey", "userId"])
def test_required_fields(api, meter_type, missing):
    request = {"meterTypeId": str(meter_type.pk), "meterKey": "k", "userId": "u"}
    del request[missing]
    assert_error(create(api, **request), 400, "VALIDATION_ERROR", missing)


def test_longest_meter_key_and_user_id_are_accepted(api, meter_type):
    response = create(api, meterTypeId=str(meter_type.pk), meterKey="k" * 36, userId="u" * 320)
    assert response.status_code == 201


def test_one_meter_per_type_key_and_user(api, account, meter_type):
    first = create(api, meterTypeId=str(meter_type.pk), meterKey=KEY, userId="user0@example.com")
    assert first.status_code == 201
    assert_error(
        create(api, externalRef="878752b4-4ddf", meterKey=KEY, userId="user0@example.com"),
        409,
        "METER_EXISTS",
    )
    other_type = make_meter_type(account, name="Other")
    assert (
        create(api, meterTypeId=str(other_type.pk), meterKey=KEY, userId="user0@example.com").status_code
        == 201
    )
    assert (
        create(api, meterTypeId=str(meter_type.pk), meterKey=KEY, userId="user1@example.com").status_code
        == 201
    )
    assert Meter.objects.count() == 3


# --- update -----------------------------------------------------------------------------------


def test_patch_changes_capacity_custom_fields_delete_on_reset_and_thresholds(api, meter_type, frozen):
    meter = make_meter(meter_type)
    frozen.shift(5)
    response = api.patch(
        f"/meters/{meter.pk}",
        {
            "capacity": 250,
            "customFields": {"plan": "silver"},
            "deleteOnReset": True,
            "thresholds": [{"name": "half", "capacityPercentage": 50}],
        },
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert {
        key: body[key]
        for key in (
            "capacity",
            "customFields",
            "deleteOnReset",
            "thresholds",
            "updatedAt",
            "meterKey",
            "userId",
        )
    } == {
        "capacity": 250,
        "customFields": {"plan": "silver"},
        "deleteOnReset": True,
        "thresholds": [{"name": "half", "capacityPercentage": 50}],
        "updatedAt": "2027-01-10T12:00:05.000Z",
        "meterKey": KEY,
        "userId": "user0@example.com",
    }


@pytest.mark.parametrize(
    "field,value",
    [
        ("userId", "someone-else"),
        ("meterKey", "other"),
        ("meterTypeId", "8a76066d-ff29-417c-a18e-abde22e44310"),
        ("value", 99),
        ("periodEnd", "2030-01-01T00:00:00Z"),
    ],
)
def test_patch_ignores_the_read_only_fields_the_api_answers(api, meter_type, field, value):
    """Read-modify-write: a body as read carries identity and state; they are ignored, never stored."""
    meter = make_meter(meter_type)
    response = api.patch(f"/meters/{meter.pk}", {field: value, "capacity": 7}, format="json")
    assert response.status_code == 200, response.content
    fresh = Meter.objects.get(pk=meter.pk)
    assert (fresh.user_id, fresh.meter_key, fresh.value, fresh.capacity) == (meter.user_id, KEY, 0, 7)
    assert (fresh.meter_type_id, fresh.period_end) == (meter.meter_type_id, meter.period_end)


def test_a_meter_read_and_sent_back_whole_is_accepted(api, meter_type):
    meter = make_meter(meter_type)
    read = api.get(f"/meters/{meter.pk}").json()
    response = api.patch(f"/meters/{meter.pk}", {**read, "capacity": 9}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {**read, "capacity": 9, "updatedAt": response.json()["updatedAt"]}
    assert_error(
        api.patch(f"/meters/{meter.pk}", {**read, "colour": "red"}, format="json"),
        400,
        "VALIDATION_ERROR",
        "colour",
    )


@pytest.mark.parametrize(
    "field,value",
    [
        ("capacity", -1),
        ("customFields", [1]),
        ("deleteOnReset", "sometimes"),
        ("thresholds", [{"value": 1}] * 6),
        ("thresholds", [{"percent": 5}]),
    ],
)
def test_patch_refuses_identity_state_and_bad_values(api, meter_type, field, value):
    meter = make_meter(meter_type)
    assert_error(
        api.patch(f"/meters/{meter.pk}", {field: value}, format="json"), 400, "VALIDATION_ERROR", field
    )
    fresh = Meter.objects.get(pk=meter.pk)
    assert (fresh.user_id, fresh.meter_key, fresh.value, fresh.capacity) == (meter.user_id, KEY, 0, 1000)


def test_percentage_thresholds_need_the_meter_to_have_a_capacity(api, account):
    meter = make_meter(make_meter_type(account, capacity=None, thresholds=[]))
    assert_error(
        api.patch(f"/meters/{meter.pk}", {"thresholds": [{"capacityPercentage": 90}]}, format="json"),
        400,
        "VALIDATION_ERROR",
        "thresholds",
    )
    body = api.patch(
        f"/meters/{meter.pk}", {"capacity": 10, "thresholds": [{"capacityPercentage": 90}]}, format="json"
    ).json()
    assert (body["capacity"], body["thresholds"]) == (10, [{"capacityPercentage": 90}])


def test_meter_type_edits_do_not_change_existing_meters(api, meter_type):
    meter = make_meter(meter_type)
    api.patch(
        f"/meter-types/{meter_type.pk}",
        {
            "capacity": 5,
            "thresholds": [{"value": 1}],
            "resetSchedule": {"cron": "0 * * * *"},
            "timezone": "Europe/Stockholm",
            "unit": "calls",
            "name": "Renamed",
        },
        format="json",
    )

    old = api.get(f"/meters/{meter.pk}").json()
    # Copied at creation: capacity and thresholds stay; the current period keeps its end.
    assert (old["capacity"], old["thresholds"], old["periodEnd"]) == (
        1000,
        [{"name": "warning", "capacityPercentage": 80}, {"value": 950}],
        "2027-02-01T00:00:00.000Z",
    )
    # Seed 003: unit and timezone are inherited at creation too (seed 000: a type's edit does not
    # change existing meters); the type's name is shown as it is now.
    assert (old["unit"], old["timezone"], old["meterTypeName"]) == ("requests", "Etc/UTC", "Renamed")
    new = create(api, meterTypeId=str(meter_type.pk), meterKey="k2", userId="u2").json()
    assert (new["unit"], new["timezone"]) == ("calls", "Europe/Stockholm")
    assert (new["capacity"], new["thresholds"], new["periodEnd"]) == (
        5,
        [{"value": 1}],
        "2027-01-10T13:00:00.000Z",
    )


# --- get, list, delete and tenancy ------------------------------------------------------------


def test_unknown_malformed_and_other_accounts_meters_are_404_and_unchanged(api, other_account):
    foreign = make_meter(make_meter_type(other_account))
    for path in (
        "/meters/8a76066d-ff29-417c-a18e-abde22e44310",
        "/meters/not-a-uuid",
        f"/meters/{foreign.pk}",
    ):
        assert_error(api.get(path), 404, "METER_NOT_FOUND")
        assert_error(api.get(f"{path}/records"), 404, "METER_NOT_FOUND")
        assert_error(api.patch(path, {"deleteOnReset": True}, format="json"), 404, "METER_NOT_FOUND")
        assert_error(api.delete(path), 404, "METER_NOT_FOUND")
    foreign.refresh_from_db()
    assert foreign.delete_on_reset is False


def test_list_shows_only_the_accounts_meters_and_filters(api, account, other_account, meter_type, frozen):
    storage = make_meter_type(account, name="Storage")
    expected = []
    for meter_type_used, key, user in (
        (meter_type, "k1", "ann"),
        (meter_type, "k2", "bob"),
        (storage, "k1", "bob"),
    ):
        expected.append(str(make_meter(meter_type_used, meter_key=key, user_id=user).pk))
        frozen.shift(1)
    make_meter(make_meter_type(other_account), meter_key="k1", user_id="bob")

    def ids(query=""):
        return [item["id"] for item in api.get(f"/meters{query}").json()["meters"]]

    assert ids() == expected
    assert ids("?userId=bob") == expected[1:]
    assert ids("?meterKey=k1") == [expected[0], expected[2]]
    assert ids(f"?meterTypeId={storage.pk}") == [expected[2]]
    assert ids(f"?meterTypeId={meter_type.pk}&userId=bob&meterKey=k2") == [expected[1]]
    assert ids("?userId=nobody") == []
    assert ids("?sortBy=userId&limit=1") == [expected[0]]
    assert ids("?sortBy=createdAt&sortOrder=DESC") == expected[::-1]
    assert ids("?limit=2&skip=2") == [expected[2]]
    assert_error(api.get("/meters?meterTypeId=not-a-uuid"), 400, "VALIDATION_ERROR", "meterTypeId")
    assert_error(api.get("/meters?limit=101"), 400, "VALIDATION_ERROR", "limit")


def test_delete_answers_the_deleted_count(api, meter_type):
    meter = make_meter(meter_type)
    response = api.delete(f"/meters/{meter.pk}")
    assert (response.status_code, response.json()) == (200, {"deletedCount": 1})
    assert_error(api.get(f"/meters/{meter.pk}"), 404, "METER_NOT_FOUND")


# --- flushed records --------------------------------------------------------------------------


def flushed(meter, start, end, value):
    """A metered record as the flush writes it (the flush itself is another issue's service)."""
    return MeteredRecord.objects.create(
        account_id=meter.account_id,
        meter=meter,
        source_meter_id=meter.pk,
        user_id=meter.user_id,
        meter_type_id=meter.meter_type_id,
        meter_type_name=meter.meter_type.name,
        timezone=meter.meter_type.timezone,
        meter_key=meter.meter_key,
        value=value,
        unit=meter.meter_type.unit,
        period_start=start,
        period_end=end,
        custom_fields=meter.custom_fields,
        meter_metadata={"recordCount": 3},
        groups=[{"category": "a"}],
    )


def test_records_are_empty_until_a_flush(api, meter_type):
    meter = make_meter(meter_type)
    assert api.get(f"/meters/{meter.pk}/records").json() == {"records": []}


def test_records_list_the_meters_flushed_periods(api, meter_type):
    meter = make_meter(meter_type, custom_fields={"plan": "gold"})
    other = make_meter(meter_type, user_id="someone-else")
    december = flushed(
        meter, datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), Decimal("12.5")
    )
    flushed(meter, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), Decimal(7))
    flushed(other, datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), Decimal(1))

    records = api.get(f"/meters/{meter.pk}/records").json()["records"]  # newest first
    assert [record["periodStart"] for record in records] == [
        "2026-12-01T00:00:00.000Z",
        "2026-11-01T00:00:00.000Z",
    ]
    assert records[0] == {
        "carryFirst": {},
        "carryLast": {},
        "createdAt": "2027-01-10T12:00:00.000Z",
        "customFields": {"plan": "gold"},
        "groups": [{"category": "a"}],
        "id": str(december.pk),
        "meterId": str(meter.pk),
        "meterKey": KEY,
        "meterMetaData": {"recordCount": 3},
        "meterTypeId": str(meter_type.pk),
        "meterTypeName": "Usage based API counter",
        "periodEnd": "2027-01-01T00:00:00.000Z",
        "periodStart": "2026-12-01T00:00:00.000Z",
        "timezone": "Etc/UTC",
        "unit": "requests",
        "updatedAt": "2027-01-10T12:00:00.000Z",
        "userId": "user0@example.com",
        "value": 12.5,
    }
    oldest_first = api.get(f"/meters/{meter.pk}/records?sortOrder=ASC&limit=1").json()["records"]
    assert [record["periodStart"] for record in oldest_first] == ["2026-11-01T00:00:00.000Z"]


def test_records_outlive_their_meter(api, meter_type):
    meter = make_meter(meter_type)
    record = flushed(meter, NOW - timedelta(days=31), NOW - timedelta(days=1), Decimal(3))
    api.delete(f"/meters/{meter.pk}")
    record.refresh_from_db()
    assert (record.meter_id, record.source_meter_id) == (None, meter.pk)


# --- scopes and rate limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path_kind,scope",
    [
        ("get", "list", "usage-metering:read:meters"),
        ("get", "item", "usage-metering:read:meters"),
        ("get", "records", "usage-metering:read:meters"),
        ("post", "list", "usage-metering:create:meters"),
        ("patch", "item", "usage-metering:update:meters"),
        ("delete", "item", "usage-metering:delete:meters"),
    ],
)
def test_each_action_needs_its_scope(account, meter_type, method, path_kind, scope):
    meter = make_meter(meter_type)
    path = {"list": "/meters", "item": f"/meters/{meter.pk}", "records": f"/meters/{meter.pk}/records"}[
        path_kind
    ]
    body = (
        {"meterTypeId": str(meter_type.pk), "meterKey": "k", "userId": "u"}
        if method == "post"
        else {"deleteOnReset": True}
    )
    all_meter_scopes = [
        "usage-metering:read:meters",
        "usage-metering:create:meters",
        "usage-metering:update:meters",
        "usage-metering:delete:meters",
        "usage-metering:read:meter_types",
    ]
    without = client_for(account, scopes=[s for s in all_meter_scopes if s != scope], name="without")
    assert_error(getattr(without, method)(path, body, format="json"), 403, "INSUFFICIENT_SCOPE")
    with_scope = client_for(account, scopes=[scope.removeprefix("usage-metering:")], name="seed-001")
    assert getattr(with_scope, method)(path, body, format="json").status_code == (
        201 if method == "post" else 200
    )


def test_meters_have_seed_000s_rate_limit_and_their_own_bucket(api, rate_limits, settings):
    assert settings.RATE_LIMITS["meters"] == (50, 1, 5)
    # The same burst with a refill too slow to matter within the test, so the count is exact.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "meters": (1, 3600, 5)}
    statuses = [api.get("/meters").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    assert api.get("/meter-types").status_code == 200  # another group, another bucket

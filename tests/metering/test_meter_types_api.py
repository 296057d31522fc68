"""``/meter-types``: every field and limit of seed 000, the 409s, scopes, tenancy and rate limits."""

from datetime import UTC, datetime

import pytest
import time_machine

from metering.models import MeterType
from tests.conftest import client_for
from tests.metering.factories import assert_error, make_meter, make_meter_type, meter_type_body

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    """Every test runs at NOW (set up first, so tokens are issued in the frozen time too)."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def create(api, **overrides):
    return api.post("/meter-types", meter_type_body(**overrides), format="json")


# --- create -----------------------------------------------------------------------------------


def test_create_answers_every_field_of_seed_000(api, account):
    response = create(api, activeFrom="2027-07-26T09:00:15.690+00:00", activeTo="2028-11-22T00:00:00.000Z")

    assert response.status_code == 201
    body = response.json()
    stored = MeterType.objects.get()
    assert body == {
        "accountId": str(account.pk),
        "activeFrom": "2027-07-26T09:00:15.690Z",
        "activeTo": "2028-11-22T00:00:00.000Z",
        "aggregation": {"type": "SUM"},
        "apiName": "usage-based-api-counter",
        "capacity": 1000,
        "category": "API Counts",
        "createdAt": "2027-01-10T12:00:00.000Z",
        "description": "Meter definition to count the number of API requests per customer",
        "dimensions": [],
        "externalRef": "878752b4-4ddf",
        "id": str(stored.pk),
        "name": "Usage based API counter",
        "numberOfMeters": 0,
        "resetSchedule": {"cron": "0 0 1 * *"},
        "status": "ACTIVE",
        "thresholds": [{"name": "warning", "capacityPercentage": 80}, {"value": 950}],
        "timezone": "Etc/UTC",
        "unit": "requests",
        "updatedAt": "2027-01-10T12:00:00.000Z",
    }
    assert api.get(f"/meter-types/{stored.pk}").json() == body


def test_create_with_only_the_required_fields_gets_the_defaults(api):
    body = {
        "aggregation": {"type": "INCREMENT"},
        "name": "Pages printed",
        "resetSchedule": {"cron": "0 0 * * *"},
        "timezone": "Europe/Stockholm",
        "unit": "pages",
    }
    response = api.post("/meter-types", body, format="json")

    assert response.status_code == 201
    created = response.json()
    assert created["category"] == "DEFAULT"
    assert created["activeFrom"] == "2027-01-10T12:00:00.000Z"
    assert created["activeTo"] is None
    assert created["capacity"] is None
    assert created["description"] == ""
    assert created["externalRef"] is None
    assert created["thresholds"] == []
    assert created["apiName"] == "pages-printed"


def test_the_compatible_api_fields_can_be_set(api):
    response = create(api, apiName="api-calls", status="ARCHIVED", dimensions=["region", "plan"])
    assert response.status_code == 201
    assert {key: response.json()[key] for key in ("apiName", "status", "dimensions")} == {
        "apiName": "api-calls",
        "status": "ARCHIVED",
        "dimensions": ["region", "plan"],
    }


def test_a_defaulted_api_name_that_is_taken_gets_a_suffix(api):
    create(api, name="API calls", externalRef=...)
    second = create(api, name="API calls.", externalRef=...)
    assert second.status_code == 201
    assert second.json()["apiName"] == "api-calls-2"


@pytest.mark.parametrize("name", ["a" * 80, "Usage (v2) - calls_per.day", "Använda minuter", "7"])
def test_valid_names(api, name):
    assert create(api, name=name).status_code == 201


@pytest.mark.parametrize(
    "field,overrides",
    [
        ("name", {"name": "a" * 81}),
        ("name", {"name": "calls/day"}),
        ("name", {"name": "calls!"}),
        ("name", {"name": "   "}),
        ("description", {"description": "d" * 201}),
        ("externalRef", {"externalRef": "e" * 101}),
        ("category", {"category": "c" * 51}),
        ("unit", {"unit": "u" * 51}),
        ("unit", {"unit": ""}),
        ("capacity", {"capacity": -1}),
        ("capacity", {"capacity": "lots"}),
        ("aggregation.type", {"aggregation": {"type": "AVERAGE"}}),
        ("aggregation.type", {"aggregation": {}}),
        ("aggregation.kind", {"aggregation": {"type": "SUM", "kind": "x"}}),
        ("resetSchedule.cron", {"resetSchedule": {"cron": "0 0 1 *"}}),
        ("resetSchedule.cron", {"resetSchedule": {"cron": "61 0 1 * *"}}),
        ("resetSchedule.cron", {"resetSchedule": {"cron": "0 0 30 2 *"}}),
        ("resetSchedule.cron", {"resetSchedule": {"cron": "@monthly"}}),
        ("timezone", {"timezone": "Mars/Olympus"}),
        ("timezone", {"timezone": "CEST"}),
        ("apiName", {"apiName": "api calls"}),
        ("status", {"status": "DELETED"}),
        ("dimensions", {"dimensions": ["region", "region"]}),
        ("dimensions", {"dimensions": "region"}),
        ("accountId", {"accountId": "4d6548c8-1793-498f-9306-9ec101cb9bf8"}),
        ("numberOfMeters", {"numberOfMeters": 3}),
        ("color", {"color": "red"}),
    ],
)
def test_field_limits(api, field, overrides):
    assert_error(create(api, **overrides), 400, "VALIDATION_ERROR", field)
    assert MeterType.objects.count() == 0


@pytest.mark.parametrize("missing", ["name", "unit", "aggregation", "resetSchedule", "timezone"])
def test_required_fields(api, missing):
    assert_error(create(api, **{missing: ...}), 400, "VALIDATION_ERROR", missing)


@pytest.mark.parametrize(
    "thresholds",
    [
        [{"value": 1}] * 6,
        [{"name": "x"}],
        [{"value": 10, "capacityPercentage": 50}],
        [{"value": -1}],
        [{"capacityPercentage": "80"}],
        [{"value": True}],
        [{"value": 1, "level": "high"}],
        [{"name": "", "value": 1}],
        [{"name": "n" * 81, "value": 1}],
        [{"name": "same", "value": 1}, {"name": "same", "value": 2}],
        ["80%"],
        {"value": 1},
    ],
)
def test_threshold_rules(api, thresholds):
    assert_error(create(api, thresholds=thresholds), 400, "VALIDATION_ERROR", "thresholds")


def test_five_thresholds_of_both_kinds_are_allowed(api):
    thresholds = [
        {"value": 100},
        {"name": "half", "capacityPercentage": 50},
        {"value": 0.5},
        {"capacityPercentage": 120},
        {"name": "all", "value": 1000},
    ]
    assert create(api, thresholds=thresholds).json()["thresholds"] == thresholds


def test_percentage_thresholds_need_a_capacity(api):
    body = assert_error(
        create(api, capacity=..., thresholds=[{"capacityPercentage": 80}]),
        400,
        "VALIDATION_ERROR",
        "thresholds",
    )
    assert body["message"] == "capacityPercentage thresholds need a capacity."
    assert create(api, capacity=..., thresholds=[{"value": 80}]).status_code == 201


def test_active_window_cannot_start_or_end_in_the_past(api):
    assert_error(create(api, activeFrom="2027-01-10T11:58:59.000Z"), 400, "VALIDATION_ERROR", "activeFrom")
    assert_error(create(api, activeTo="2027-01-09T00:00:00.000Z"), 400, "VALIDATION_ERROR", "activeTo")
    # A client's "now" arrives a little late: a minute of slack.
    assert create(api, activeFrom="2027-01-10T11:59:30.000Z").status_code == 201


def test_active_to_must_be_after_active_from(api):
    body = assert_error(
        create(api, activeFrom="2027-03-01T00:00:00Z", activeTo="2027-03-01T00:00:00Z"),
        400,
        "VALIDATION_ERROR",
        "activeTo",
    )
    assert body["message"] == "activeTo must be after activeFrom."
    assert_error(create(api, activeTo="2027-01-10T11:59:50Z"), 400, "VALIDATION_ERROR", "activeTo")


def test_timestamps_accept_an_offset(api):
    response = create(api, activeFrom="2027-03-01T01:00:00+01:00")
    assert response.json()["activeFrom"] == "2027-03-01T00:00:00.000Z"


def test_name_is_unique_in_the_account(api, other_api):
    assert create(api).status_code == 201
    assert_error(create(api, externalRef="other"), 409, "METER_TYPE_NAME_EXISTS", "name")
    assert create(other_api).status_code == 201  # another account may use the same name and externalRef


def test_external_ref_is_unique_in_the_account(api):
    create(api)
    assert_error(create(api, name="Another"), 409, "METER_TYPE_EXTERNAL_REF_EXISTS", "externalRef")
    assert create(api, name="Without ref", externalRef=...).status_code == 201
    assert create(api, name="Also without ref", externalRef=None).status_code == 201


def test_api_name_is_unique_in_the_account(api):
    create(api, apiName="calls")
    assert_error(
        create(api, name="Another", externalRef=..., apiName="calls"),
        409,
        "METER_TYPE_API_NAME_EXISTS",
        "apiName",
    )


# --- get, list --------------------------------------------------------------------------------


def test_unknown_malformed_and_other_accounts_ids_are_404(api, other_account):
    foreign = make_meter_type(other_account)
    for path in (
        "/meter-types/8a76066d-ff29-417c-a18e-abde22e44310",
        "/meter-types/not-a-uuid",
        f"/meter-types/{foreign.pk}",
    ):
        assert_error(api.get(path), 404, "METER_TYPE_NOT_FOUND")
        assert_error(api.patch(path, {"description": "mine now"}, format="json"), 404, "METER_TYPE_NOT_FOUND")
        assert_error(api.delete(path), 404, "METER_TYPE_NOT_FOUND")
    foreign.refresh_from_db()
    assert foreign.description == ""
    assert MeterType.objects.filter(pk=foreign.pk).exists()


def test_list_shows_only_the_accounts_meter_types_with_meter_counts(api, account, other_account):
    calls = make_meter_type(account, name="API calls")
    make_meter(calls, user_id="a")
    make_meter(calls, user_id="b")
    make_meter_type(account, name="Storage", unit="GB")
    make_meter_type(other_account, name="Globex calls")

    listed = api.get("/meter-types?sortBy=name").json()["meterTypes"]
    assert [(item["name"], item["numberOfMeters"]) for item in listed] == [("API calls", 2), ("Storage", 0)]


def test_list_filters_by_partial_name_case_insensitively(api, account):
    for name in ("API calls", "API errors", "Storage"):
        make_meter_type(account, name=name)
    names = [item["name"] for item in api.get("/meter-types?name=api&sortBy=name").json()["meterTypes"]]
    assert names == ["API calls", "API errors"]
    assert api.get("/meter-types?name=zzz").json() == {"meterTypes": []}


def test_list_sorts_and_pages(api, account, frozen):
    for name in ("b", "a", "d", "c"):
        make_meter_type(account, name=name)
        frozen.shift(1)
    page = api.get("/meter-types?sortBy=name&sortOrder=DESC&limit=2&skip=1").json()["meterTypes"]
    assert [item["name"] for item in page] == ["c", "b"]
    assert [item["name"] for item in api.get("/meter-types").json()["meterTypes"]] == ["b", "a", "d", "c"]
    assert_error(api.get("/meter-types?limit=101"), 400, "VALIDATION_ERROR", "limit")
    assert_error(api.get("/meter-types?sortBy=secret"), 400, "VALIDATION_ERROR", "sortBy")


def test_list_sorts_by_number_of_meters(api, account):
    busy = make_meter_type(account, name="busy")
    make_meter_type(account, name="idle")
    make_meter(busy)
    page = api.get("/meter-types?sortBy=numberOfMeters&sortOrder=DESC").json()["meterTypes"]
    assert [item["name"] for item in page] == ["busy", "idle"]


# --- update -----------------------------------------------------------------------------------


def test_patch_changes_the_given_fields_only(api, frozen):
    meter_type_id = create(api).json()["id"]
    frozen.shift(60)
    response = api.patch(
        f"/meter-types/{meter_type_id}",
        {
            "name": "API requests",
            "description": "new",
            "category": "Calls",
            "unit": "calls",
            "capacity": 2000.5,
            "thresholds": [{"value": 10}],
            "resetSchedule": {"cron": "0 * * * *"},
            "timezone": "Europe/Stockholm",
            "externalRef": "ext-2",
            "activeTo": "2028-01-01T00:00:00Z",
        },
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert {
        key: body[key]
        for key in (
            "name",
            "description",
            "category",
            "unit",
            "capacity",
            "thresholds",
            "resetSchedule",
            "timezone",
            "externalRef",
            "activeTo",
            "updatedAt",
            "createdAt",
            "aggregation",
            "apiName",
        )
    } == {
        "name": "API requests",
        "description": "new",
        "category": "Calls",
        "unit": "calls",
        "capacity": 2000.5,
        "thresholds": [{"value": 10}],
        "resetSchedule": {"cron": "0 * * * *"},
        "timezone": "Europe/Stockholm",
        "externalRef": "ext-2",
        "activeTo": "2028-01-01T00:00:00.000Z",
        "updatedAt": "2027-01-10T12:01:00.000Z",
        "createdAt": "2027-01-10T12:00:00.000Z",
        "aggregation": {"type": "SUM"},
        "apiName": "usage-based-api-counter",
    }


def test_patch_with_null_resets_category_and_removes_external_ref_and_active_to(api):
    meter_type_id = create(api, activeTo="2028-01-01T00:00:00Z").json()["id"]
    body = api.patch(
        f"/meter-types/{meter_type_id}",
        {"category": None, "externalRef": None, "activeTo": None},
        format="json",
    ).json()
    assert (body["category"], body["externalRef"], body["activeTo"]) == ("DEFAULT", None, None)


def test_aggregation_cannot_change(api):
    meter_type_id = create(api).json()["id"]
    body = assert_error(
        api.patch(f"/meter-types/{meter_type_id}", {"aggregation": {"type": "MAX"}}, format="json"),
        400,
        "AGGREGATION_IMMUTABLE",
        "aggregation.type",
    )
    assert body["message"] == "The aggregation of a meter type cannot be changed."
    assert MeterType.objects.get().aggregation == "SUM"
    # Sending the unchanged aggregation back is fine.
    assert (
        api.patch(
            f"/meter-types/{meter_type_id}", {"aggregation": {"type": "SUM"}}, format="json"
        ).status_code
        == 200
    )


def test_patch_keeps_names_and_external_refs_unique(api, account):
    create(api)
    other = create(api, name="Other", externalRef="other-ref").json()["id"]
    assert_error(
        api.patch(f"/meter-types/{other}", {"name": "Usage based API counter"}, format="json"),
        409,
        "METER_TYPE_NAME_EXISTS",
        "name",
    )
    assert_error(
        api.patch(f"/meter-types/{other}", {"externalRef": "878752b4-4ddf"}, format="json"),
        409,
        "METER_TYPE_EXTERNAL_REF_EXISTS",
        "externalRef",
    )
    assert MeterType.objects.get(pk=other).name == "Other"
    # Patching a type with its own name is not a conflict.
    assert api.patch(f"/meter-types/{other}", {"name": "Other"}, format="json").status_code == 200


@pytest.mark.parametrize(
    "field,value",
    [
        ("name", "n" * 81),
        ("description", "d" * 201),
        ("externalRef", "e" * 101),
        ("category", "c" * 51),
        ("unit", "u" * 51),
        ("capacity", -5),
        ("thresholds", [{"value": 1}] * 6),
        ("resetSchedule", {"cron": "every day"}),
        ("timezone", "Nowhere/City"),
        ("color", "x"),
    ],
)
def test_patch_field_limits(api, field, value):
    meter_type_id = create(api).json()["id"]
    response = api.patch(f"/meter-types/{meter_type_id}", {field: value}, format="json")
    assert response.status_code == 400
    assert response.json()["details"][0]["field"].split(".")[0] == field
    assert api.get(f"/meter-types/{meter_type_id}").json()["name"] == "Usage based API counter"


def test_patch_active_window_rules(api):
    meter_type_id = create(api, activeFrom="2027-02-01T00:00:00Z").json()["id"]
    path = f"/meter-types/{meter_type_id}"
    # Moved forward, activeFrom must not lie in the past (moving it back is an operator's backfill:
    # test_an_operator_may_move_active_from_back_but_not_forward_into_the_past).
    assert_error(
        api.patch(path, {"activeTo": "2027-01-15T00:00:00Z"}, format="json"),
        400,
        "VALIDATION_ERROR",
        "activeTo",
    )
    # activeFrom: null means from now.
    assert (
        api.patch(path, {"activeFrom": None}, format="json").json()["activeFrom"]
        == "2027-01-10T12:00:00.000Z"
    )


def test_an_active_from_now_in_the_past_may_be_sent_back_unchanged(api, frozen):
    created = create(api).json()
    frozen.shift(1800)  # half an hour later: activeFrom is now in the past
    response = api.patch(
        f"/meter-types/{created['id']}",
        {"activeFrom": created["activeFrom"], "description": "x"},
        format="json",
    )
    assert response.status_code == 200


def test_percentage_thresholds_need_a_capacity_on_patch(api):
    meter_type_id = create(api, capacity=..., thresholds=[]).json()["id"]
    assert_error(
        api.patch(
            f"/meter-types/{meter_type_id}", {"thresholds": [{"capacityPercentage": 50}]}, format="json"
        ),
        400,
        "VALIDATION_ERROR",
        "thresholds",
    )


# --- delete -----------------------------------------------------------------------------------


def test_delete_answers_the_deleted_count(api):
    meter_type_id = create(api).json()["id"]
    response = api.delete(f"/meter-types/{meter_type_id}")
    assert response.status_code == 200
    assert response.json() == {"deletedCount": 1}
    assert_error(api.get(f"/meter-types/{meter_type_id}"), 404, "METER_TYPE_NOT_FOUND")


def test_a_meter_type_with_meters_cannot_be_deleted(api, account):
    meter_type = make_meter_type(account)
    meter = make_meter(meter_type)
    assert_error(api.delete(f"/meter-types/{meter_type.pk}"), 409, "METER_TYPE_IN_USE")
    assert MeterType.objects.filter(pk=meter_type.pk).exists()
    assert api.delete(f"/meters/{meter.pk}").json() == {"deletedCount": 1}
    assert api.delete(f"/meter-types/{meter_type.pk}").json() == {"deletedCount": 1}


# --- scopes and rate limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path_kind,scope",
    [
        ("get", "list", "usage-metering:read:meter_types"),
        ("get", "item", "usage-metering:read:meter_types"),
        ("post", "list", "usage-metering:create:meter_types"),
        ("patch", "item", "usage-metering:update:meter_types"),
        ("delete", "item", "usage-metering:delete:meter_types"),
    ],
)
def test_each_action_needs_its_scope(account, method, path_kind, scope):
    meter_type = make_meter_type(account)
    path = "/meter-types" if path_kind == "list" else f"/meter-types/{meter_type.pk}"
    body = meter_type_body(name="Scoped", externalRef="scoped") if method == "post" else {"description": "x"}
    other_scopes = [
        s
        for s in (
            "usage-metering:read:meter_types",
            "usage-metering:create:meter_types",
            "usage-metering:update:meter_types",
            "usage-metering:delete:meter_types",
            "usage-metering:read:meters",
        )
        if s != scope
    ]
    refused = getattr(client_for(account, scopes=other_scopes, name="without"), method)(
        path, body, format="json"
    )
    assert_error(refused, 403, "INSUFFICIENT_SCOPE")
    allowed = getattr(client_for(account, scopes=[scope], name="with"), method)(path, body, format="json")
    assert allowed.status_code == (201 if method == "post" else 200)


def test_seed_001_scopes_and_account_header(account):
    client = client_for(account, scopes=["create:meter_types", "read:meter_types"])
    response = client.post(
        "/meter-types", meter_type_body(), format="json", HTTP_X_ACCOUNT_ID=str(account.pk)
    )
    assert response.status_code == 201
    assert client.get("/meter-types", HTTP_X_ACCOUNT_ID=str(account.pk)).status_code == 200


def test_meter_types_have_seed_000s_rate_limit(api, rate_limits, settings):
    assert settings.RATE_LIMITS["meter_types"] == (20, 1, 5)
    # The same burst with a refill too slow to matter within the test, so the count is exact.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "meter_types": (1, 3600, 5)}
    responses = [api.get("/meter-types") for _ in range(6)]
    assert [response.status_code for response in responses] == [200] * 5 + [429]
    assert_error(responses[-1], 429, "TOO_MANY_REQUESTS")
    assert int(responses[-1]["Retry-After"]) >= 1


def test_an_empty_external_ref_means_none_and_is_never_taken(api):
    assert create(api, name="First", externalRef="").json()["externalRef"] is None
    assert create(api, name="Second", externalRef="").status_code == 201


def test_a_meter_type_read_and_sent_back_whole_is_accepted(api, frozen):
    """Read-modify-write: the default activeFrom (now, with microseconds) and every read-only field
    the API answers come back in the body; they are accepted, the read-only ones ignored."""
    frozen.move_to(datetime(2027, 1, 10, 12, 0, 0, 123456, tzinfo=UTC))
    created = create(api).json()
    assert created["activeFrom"] == "2027-01-10T12:00:00.123Z"
    frozen.shift(1800)
    read = api.get(f"/meter-types/{created['id']}").json()
    response = api.patch(f"/meter-types/{created['id']}", {**read, "description": "edited"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {**read, "description": "edited", "updatedAt": response.json()["updatedAt"]}
    ignored = {
        "id": "8a76066d-ff29-417c-a18e-abde22e44310",
        "numberOfMeters": 5,
        "createdAt": "2001-01-01T00:00:00Z",
    }
    assert api.patch(f"/meter-types/{created['id']}", ignored, format="json").status_code == 200
    assert api.get(f"/meter-types/{created['id']}").json()["numberOfMeters"] == 0
    assert_error(
        api.patch(f"/meter-types/{created['id']}", {**read, "colour": "red"}, format="json"),
        400,
        "VALIDATION_ERROR",
        "colour",
    )


def test_an_operator_may_move_active_from_back_but_not_forward_into_the_past(api, frozen):
    created = create(api, activeFrom="2027-01-10T12:10:00Z").json()
    frozen.shift(1800)  # the type has started
    path = f"/meter-types/{created['id']}"
    moved = api.patch(path, {"activeFrom": "2026-06-01T00:00:00Z"}, format="json")
    assert moved.status_code == 200, moved.content
    assert moved.json()["activeFrom"] == "2026-06-01T00:00:00.000Z"
    assert_error(
        api.patch(path, {"activeFrom": "2027-01-10T12:20:00Z"}, format="json"),
        400,
        "VALIDATION_ERROR",
        "activeFrom",
    )


def test_a_time_without_an_offset_is_read_as_utc(api):
    response = create(api, activeFrom="2027-01-12T00:00:00", activeTo="2027-02-01T10:30:00.250")
    assert response.status_code == 201, response.content
    assert (response.json()["activeFrom"], response.json()["activeTo"]) == (
        "2027-01-12T00:00:00.000Z",
        "2027-02-01T10:30:00.250Z",
    )

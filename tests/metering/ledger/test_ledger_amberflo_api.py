"""Seed 002: /ingest, /meter-definition, /usage and /meter-event-filtering-rules, with X-API-KEY or a token."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from rest_framework.test import APIClient

from accounts import services as account_services
from metering.compat import amberflo
from metering.models import DataCorrection, Meter, MeterEventFilteringRule, MeterType, UsageRecord
from tests.conftest import client_for
from tests.metering.factories import assert_error
from tests.metering.ledger.conftest import NOW, START, make_meter, make_type

pytestmark = pytest.mark.django_db
MILLIS = int(NOW.timestamp() * 1000)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def key_client(account, scopes=("all",)) -> APIClient:
    _, raw = account_services.api_key_create(account=account, name=f"key-{len(scopes)}", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return client


@pytest.fixture
def amber(account) -> APIClient:
    return key_client(account)


def define(account, api_name="api-calls", kind=amberflo.SUM_OF_ALL_USAGE, **kwargs) -> MeterType:
    """A definition made at START, so events of the test's day are inside its active window."""
    with time_machine.travel(START, tick=False):
        return amberflo.meter_definition_create(
            account_id=account.pk,
            meter_api_name=api_name,
            display_name=kwargs.pop("display_name", api_name),
            kind=kind,
            **kwargs,
        )


def event(**overrides):
    body = {
        "meterApiName": "api-calls",
        "customerId": "customer-123456",
        "meterValue": 1,
        "meterTimeInMillis": MILLIS,
        "uniqueId": "evt-a1b2c3d4",
        "dimensions": {"region": "us-east-1"},
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not ...}


def ingest(client, body, **headers):
    return client.post("/ingest", json.dumps(body), content_type="application/json", **headers)


# --- /ingest --------------------------------------------------------------------------------------


def test_ingest_one_event_with_an_api_key_creates_the_customers_meter(account, amber):
    define(account)

    response = ingest(amber, event(meterValue=2.5))

    assert response.status_code == 200
    assert response.json() == "OK"
    assert (response["X-Ingest-Accepted"], response["X-Ingest-Duplicates"]) == ("1", "0")
    meter = Meter.objects.get(account=account)
    assert (meter.user_id, meter.meter_key, meter.value, meter.record_count) == (
        "customer-123456",
        "default",
        Decimal("2.5"),
        1,
    )
    record = UsageRecord.objects.get()
    assert (record.source, record.idempotency_key, record.timestamp, record.dimensions) == (
        "ingest",
        "ingest:api-calls:evt-a1b2c3d4",
        NOW,
        {"region": "us-east-1"},
    )


def test_ingest_with_a_bearer_token_works_too(account, api):
    define(account)
    assert ingest(api, event()).status_code == 200
    assert Meter.objects.get().value == Decimal(1)


def test_the_same_events_sent_three_times_over_http_count_once(account, amber):
    define(account)
    batch = [event(uniqueId="e1", meterValue=3), event(uniqueId="e2", meterValue=4)]

    answers = [ingest(amber, batch, HTTP_PREFER="return=representation") for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].json() == {
        "status": "OK",
        "accepted": 2,
        "duplicates": [],
        "excluded": [],
        "corrections": [],
    }
    assert answers[0]["Preference-Applied"] == "return=representation"
    for replay in answers[1:]:
        assert replay.json() == {
            "status": "OK",
            "accepted": 0,
            "excluded": [],
            "corrections": [],
            "duplicates": [
                {"index": 0, "meterApiName": "api-calls", "uniqueId": "e1", "keyReused": False},
                {"index": 1, "meterApiName": "api-calls", "uniqueId": "e2", "keyReused": False},
            ],
        }
        assert (replay["X-Ingest-Accepted"], replay["X-Ingest-Duplicates"]) == ("0", "2")
    assert Meter.objects.get().value == Decimal(7)
    assert UsageRecord.objects.count() == 2


def test_multi_meter_values_count_into_each_meter_and_dedup_per_meter(account, amber):
    define(account, "api-calls")
    define(account, "storage", kind=amberflo.MAX_IN_PERIOD)
    body = event(meterApiName=..., meterValue=..., values={"api-calls": 2, "storage": 40})

    ingest(amber, body)
    replay = ingest(amber, body)

    assert replay["X-Ingest-Duplicates"] == "2"
    values = dict(Meter.objects.values_list("meter_type__api_name", "value"))
    assert values == {"api-calls": Decimal(2), "storage": Decimal(40)}
    assert sorted(UsageRecord.objects.values_list("idempotency_key", flat=True)) == [
        "ingest:api-calls:evt-a1b2c3d4",
        "ingest:storage:evt-a1b2c3d4",
    ]


def test_events_that_cannot_be_counted_go_to_data_correction_and_are_reported(account, amber):
    define(account)
    archived = define(account, "old")
    archived.status = MeterType.Status.ARCHIVED
    archived.save()
    batch = [
        event(uniqueId="ok"),
        event(uniqueId="unknown", meterApiName="nope"),
        event(uniqueId="arch", meterApiName="old"),
        event(uniqueId="future", meterTimeInMillis=MILLIS + 3_600_000),
    ]

    response = ingest(amber, batch, HTTP_PREFER="return=representation")

    assert response.status_code == 200
    assert response["X-Ingest-Corrections"] == "3"
    corrections = {c["uniqueId"]: c for c in response.json()["corrections"]}
    assert {name: c["reason"] for name, c in corrections.items()} == {
        "unknown": "NO_MATCHING_METER",
        "arch": "ARCHIVED_METER_TYPE",
        "future": "FUTURE_TIMESTAMP",
    }
    stored = DataCorrection.objects.get(pk=corrections["arch"]["correctionId"])
    assert (stored.source, stored.status, stored.idempotency_key) == ("ingest", "OPEN", "ingest:old:arch")
    assert stored.record == {
        "meterApiName": "old",
        "customerId": "customer-123456",
        "meterValue": 1,
        "meterTimeInMillis": MILLIS,
        "uniqueId": "arch",
        "dimensions": {"region": "us-east-1"},
    }


def test_an_event_naming_another_accounts_meter_is_not_counted_there(account, other_account, amber):
    define(other_account)

    response = ingest(amber, event(), HTTP_PREFER="return=representation")

    assert response.json()["corrections"][0]["reason"] == "NO_MATCHING_METER"
    assert not Meter.objects.exists()


@pytest.mark.parametrize(
    "body,field",
    [
        (event(meterTimeInMillis=...), "meterTimeInMillis"),
        (event(meterTimeInMillis="now"), "meterTimeInMillis"),
        (event(customerId=""), "customerId"),
        (event(customerId=...), "customerId"),
        (event(meterValue="abc"), "meterValue"),
        (event(meterValue=1e300 * 10), "meterValue"),
        (event(meterValue=10**30), "meterValue"),
        (event(meterValue=...), "meterValue"),
        (event(meterApiName=...), "meterApiName"),
        (event(meterApiName=..., meterValue=...), "meterApiName"),
        (event(dimensions={"region": {"nested": 1}}), "dimensions"),
        ([event(), event(values={"x": "NaN"})], "[1].values.x"),
        ("just a string", ""),
    ],
)
def test_ingest_refuses_what_seed_002_does_not_allow_with_the_field(account, amber, body, field):
    define(account)
    raw = json.dumps(body).replace("Infinity", "1e400")
    response = amber.post("/ingest", raw, content_type="application/json")

    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"][0]["field"].startswith(field)
    assert not UsageRecord.objects.exists()


def test_ingest_refuses_malformed_json_and_too_many_events(account, amber, settings):
    settings.INGEST_MAX_EVENTS = 2
    assert_error(amber.post("/ingest", "{not json", content_type="application/json"), 400, "MALFORMED_JSON")
    assert_error(ingest(amber, [event(uniqueId=str(n)) for n in range(3)]), 400, "VALIDATION_ERROR")


def test_ingest_authentication_scopes_method_and_rate_limit(account, client, rate_limits, settings):
    define(account)
    assert_error(ingest(client, event()), 401, "UNAUTHORIZED")
    assert_error(ingest(client, event(), HTTP_X_API_KEY="mk_unknown"), 401, "INVALID_API_KEY")
    reader = key_client(account, scopes=["usage-metering:read:usage"])
    assert_error(ingest(reader, event()), 403, "INSUFFICIENT_SCOPE")
    writer = key_client(account, scopes=["usage-metering:ingest:usage"])
    response = writer.get("/ingest")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response["Allow"] == "POST"
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "ingest": (1, 60, 2)}
    assert [ingest(writer, event(uniqueId=str(n))).status_code for n in range(2)] == [200, 200]
    limited = ingest(writer, event(uniqueId="3"))
    assert_error(limited, 429, "TOO_MANY_REQUESTS")
    assert int(limited["Retry-After"]) > 0
    assert UsageRecord.objects.count() == 2


def test_ingest_body_over_the_limit_is_413(account, amber, settings):
    settings.API_MAX_BODY_BYTES = 512
    assert_error(ingest(amber, [event(uniqueId=str(n)) for n in range(10)]), 413, "REQUEST_TOO_LARGE")


# --- /meter-definition ----------------------------------------------------------------------------


def test_create_list_get_update_and_delete_a_meter_definition(account, amber):
    assert amber.get("/meter-definition").json() == []

    created = amber.post(
        "/meter-definition",
        {
            "meterApiName": "api-calls",
            "displayName": "API Calls",
            "type": "SUM_OF_ALL_USAGE",
            "dimensions": [],
        },
        format="json",
    )

    expected = {
        "meterApiName": "api-calls",
        "displayName": "API Calls",
        "label": "api-calls",
        "type": "SUM_OF_ALL_USAGE",
        "meterTimeInMillis": MILLIS,
        "dimensions": [],
    }
    assert (created.status_code, created.json()) == (200, expected)
    meter_type = MeterType.objects.get(account=account)
    assert (
        meter_type.aggregation,
        meter_type.auto_create_meters,
        meter_type.reset_cron,
        meter_type.timezone,
    ) == ("SUM", True, "0 0 1 * *", "Etc/UTC")
    assert amber.get("/meter-definition").json() == [expected]
    assert amber.get("/meter-definition/api-calls").json() == expected

    updated = amber.put(
        "/meter-definition",
        {**expected, "displayName": "API requests", "dimensions": ["region"]},
        format="json",
    )
    assert updated.json() == {**expected, "displayName": "API requests", "dimensions": ["region"]}

    assert amber.delete("/meter-definition/api-calls").json() == {"deletedCount": 1}
    assert not MeterType.objects.exists()


def test_definition_types_map_to_aggregations(account, amber):
    for name, kind in [("a", "SUM_OF_ALL_USAGE"), ("b", "MAX_IN_PERIOD"), ("c", "UNIQUE_CUSTOMERS_COUNT")]:
        amber.post(
            "/meter-definition", {"meterApiName": name, "displayName": name, "type": kind}, format="json"
        )
    make_type(account, name="Logins", api_name="logins", aggregation="INCREMENT")
    make_type(account, name="Lowest", api_name="lowest", aggregation="MIN")

    stored = {t.api_name: (t.aggregation, t.counts_unique_customers) for t in MeterType.objects.all()}
    assert stored == {
        "a": ("SUM", False),
        "b": ("MAX", False),
        "c": ("INCREMENT", True),
        "logins": ("INCREMENT", False),
        "lowest": ("MIN", False),
    }
    shown = {d["meterApiName"]: d["type"] for d in amber.get("/meter-definition").json()}
    assert shown == {
        "a": "SUM_OF_ALL_USAGE",
        "b": "MAX_IN_PERIOD",
        "c": "UNIQUE_CUSTOMERS_COUNT",
        "logins": "COUNT_OF_EVENTS",
        "lowest": "MIN_IN_PERIOD",
    }


def test_meter_definition_errors(account, other_account, amber):
    define(account)
    define(other_account, "theirs")
    body = {"meterApiName": "api-calls", "displayName": "Other", "type": "SUM_OF_ALL_USAGE"}

    assert_error(amber.post("/meter-definition", body, format="json"), 409, "METER_TYPE_API_NAME_EXISTS")
    assert_error(
        amber.post("/meter-definition", {**body, "meterApiName": "x", "type": "AVERAGE"}, format="json"),
        400,
        "VALIDATION_ERROR",
        "type",
    )
    assert_error(
        amber.post("/meter-definition", {**body, "meterApiName": "x", "accountId": "1"}, format="json"),
        400,
        "VALIDATION_ERROR",
        "accountId",
    )
    assert_error(
        amber.post("/meter-definition", {**body, "meterApiName": "has space"}, format="json"),
        400,
        "VALIDATION_ERROR",
        "meterApiName",
    )
    assert_error(
        amber.put("/meter-definition", {**body, "type": "MAX_IN_PERIOD"}, format="json"),
        400,
        "AGGREGATION_IMMUTABLE",
        "type",
    )
    assert_error(
        amber.put("/meter-definition", {**body, "meterApiName": "theirs"}, format="json"),
        404,
        "METER_DEFINITION_NOT_FOUND",
    )
    assert_error(amber.get("/meter-definition/theirs"), 404, "METER_DEFINITION_NOT_FOUND")
    assert_error(amber.delete("/meter-definition/theirs"), 404, "METER_DEFINITION_NOT_FOUND")
    assert MeterType.objects.filter(account=other_account).count() == 1
    used = MeterType.objects.get(account=account, api_name="api-calls")
    make_meter(used)
    assert amber.delete("/meter-definition/api-calls").json() == {"deletedCount": 1}  # archived (issue 21)
    used.refresh_from_db()
    assert used.status == MeterType.Status.ARCHIVED


def test_meter_definition_scopes(account):
    reader = key_client(account, scopes=["usage-metering:read:meter_types"])
    assert reader.get("/meter-definition").status_code == 200
    body = {"meterApiName": "x", "displayName": "x", "type": "SUM_OF_ALL_USAGE"}
    assert_error(reader.post("/meter-definition", body, format="json"), 403, "INSUFFICIENT_SCOPE")
    assert_error(reader.put("/meter-definition", body, format="json"), 403, "INSUFFICIENT_SCOPE")
    assert_error(reader.delete("/meter-definition/x"), 403, "INSUFFICIENT_SCOPE")
    assert_error(APIClient().get("/meter-definition"), 401, "UNAUTHORIZED")


# --- /usage ---------------------------------------------------------------------------------------


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


@pytest.fixture
def usage_data(account, amber):
    """api-calls: alice and bob over three days, in two regions."""
    define(account)
    day = datetime(2027, 1, 8, tzinfo=UTC)
    events = [
        ("alice", 5, day + timedelta(hours=1), "eu"),
        ("alice", 7, day + timedelta(hours=1, minutes=30), "us"),
        ("bob", 2, day + timedelta(hours=5), "eu"),
        ("alice", 1, day + timedelta(days=1, hours=2), "eu"),
        ("bob", 10, day + timedelta(days=2, hours=3), "us"),
    ]
    body = [
        event(
            customerId=c,
            meterValue=v,
            meterTimeInMillis=int(t.timestamp() * 1000),
            uniqueId=f"u{n}",
            dimensions={"region": r},
        )
        for n, (c, v, t, r) in enumerate(events)
    ]
    assert ingest(amber, body)["X-Ingest-Accepted"] == "5"
    return day


def query(client, **overrides):
    body = {
        "meterApiName": "api-calls",
        "startTimeInSeconds": _seconds(datetime(2027, 1, 8, tzinfo=UTC)),
        "endTimeInSeconds": _seconds(datetime(2027, 1, 11, tzinfo=UTC)),
        "aggregation": "SUM",
        "timeGroupingInterval": "DAY",
    }
    body.update(overrides)
    return client.post("/usage", body, format="json")


def days(*values):
    return [{str(_seconds(datetime(2027, 1, 8 + n, tzinfo=UTC))): value} for n, value in enumerate(values)]


def test_usage_by_day_grouped_by_customer(usage_data, amber):
    response = query(amber, groupBy=["customerId"])

    assert response.status_code == 200
    assert response.json() == {
        "clientMeters": {
            "api-calls": [
                {"groupInfo": {"customerId": "alice"}, "records": days(12.0, 1.0, 0)},
                {"groupInfo": {"customerId": "bob"}, "records": days(2.0, 0, 10.0)},
            ]
        }
    }


@pytest.mark.parametrize(
    "aggregation,values", [("SUM", (14.0, 1.0, 10.0)), ("MAX", (7.0, 1.0, 10.0)), ("COUNT", (3, 1, 1))]
)
def test_usage_aggregations_without_grouping(usage_data, amber, aggregation, values):
    response = query(amber, aggregation=aggregation)
    assert response.json() == {"clientMeters": {"api-calls": [{"groupInfo": {}, "records": days(*values)}]}}


def test_usage_by_hour_week_and_month(usage_data, amber):
    start = datetime(2027, 1, 8, 1, tzinfo=UTC)
    hourly = query(
        amber,
        startTimeInSeconds=_seconds(start),
        endTimeInSeconds=_seconds(start + timedelta(hours=3)),
        timeGroupingInterval="HOUR",
    ).json()["clientMeters"]["api-calls"][0]["records"]
    assert hourly == [
        {str(_seconds(start)): 12.0},
        {str(_seconds(start + timedelta(hours=1))): 0},
        {str(_seconds(start + timedelta(hours=2))): 0},
    ]
    weekly = query(amber, timeGroupingInterval="WEEK").json()["clientMeters"]["api-calls"][0]["records"]
    # 2027-01-08 is a Friday: its ISO week starts on Monday 2027-01-04 and holds the whole range.
    assert weekly == [{str(_seconds(datetime(2027, 1, 4, tzinfo=UTC))): 25.0}]
    monthly = query(
        amber, timeGroupingInterval="MONTH", endTimeInSeconds=_seconds(datetime(2027, 2, 2, tzinfo=UTC))
    ).json()["clientMeters"]["api-calls"]
    assert monthly[0]["records"] == [
        {str(_seconds(datetime(2027, 1, 1, tzinfo=UTC))): 25.0},
        {str(_seconds(datetime(2027, 2, 1, tzinfo=UTC))): 0},
    ]


def test_usage_customer_filter_and_dimension_grouping_and_filter(usage_data, amber):
    only_bob = query(amber, customerFilter=["bob"]).json()["clientMeters"]["api-calls"]
    assert only_bob == [{"groupInfo": {}, "records": days(2.0, 0, 10.0)}]

    by_region = query(amber, groupBy=["region"]).json()["clientMeters"]["api-calls"]
    assert by_region == [
        {"groupInfo": {"region": "eu"}, "records": days(7.0, 1.0, 0)},
        {"groupInfo": {"region": "us"}, "records": days(7.0, 0, 10.0)},
    ]

    eu_by_customer = query(amber, groupBy=["customerId"], filter={"region": ["eu"]}).json()["clientMeters"][
        "api-calls"
    ]
    assert eu_by_customer == [
        {"groupInfo": {"customerId": "alice"}, "records": days(5.0, 1.0, 0)},
        {"groupInfo": {"customerId": "bob"}, "records": days(2.0, 0, 0)},
    ]


def test_unique_customers_count_answers_distinct_customers_per_bucket(account, amber):
    define(account, "active-users", kind=amberflo.UNIQUE_CUSTOMERS_COUNT)
    day = datetime(2027, 1, 8, tzinfo=UTC)
    events = [
        ("alice", day),
        ("alice", day + timedelta(hours=2)),
        ("bob", day + timedelta(hours=3)),
        ("bob", day + timedelta(days=1)),
    ]
    ingest(
        amber,
        [
            event(
                meterApiName="active-users",
                customerId=c,
                uniqueId=str(n),
                meterTimeInMillis=int(t.timestamp() * 1000),
            )
            for n, (c, t) in enumerate(events)
        ],
    )

    response = query(amber, meterApiName="active-users")

    assert response.json()["clientMeters"]["active-users"] == [{"groupInfo": {}, "records": days(2, 1, 0)}]


def test_usage_with_nothing_grouped_and_no_usage_answers_zeros(account, amber):
    define(account)
    assert query(amber).json() == {
        "clientMeters": {"api-calls": [{"groupInfo": {}, "records": days(0, 0, 0)}]}
    }
    assert query(amber, groupBy=["customerId"]).json() == {"clientMeters": {"api-calls": []}}


def test_usage_errors_scopes_and_tenancy(account, other_account, amber, settings):
    define(account)
    define(other_account, "theirs")
    assert_error(
        query(amber, endTimeInSeconds=_seconds(datetime(2027, 1, 7, tzinfo=UTC))),
        400,
        "VALIDATION_ERROR",
        "endTimeInSeconds",
    )
    assert_error(query(amber, aggregation="AVG"), 400, "VALIDATION_ERROR", "aggregation")
    assert_error(query(amber, timeGroupingInterval="YEAR"), 400, "VALIDATION_ERROR", "timeGroupingInterval")
    assert_error(query(amber, unknown=1), 400, "VALIDATION_ERROR", "unknown")
    assert_error(query(amber, meterApiName="theirs"), 404, "METER_DEFINITION_NOT_FOUND")
    settings.USAGE_QUERY_MAX_BUCKETS = 2
    assert_error(query(amber), 400, "VALIDATION_ERROR", "timeGroupingInterval")
    ingest_only = key_client(account, scopes=["usage-metering:ingest:usage"])
    assert_error(query(ingest_only), 403, "INSUFFICIENT_SCOPE")


# --- /meter-event-filtering-rules -----------------------------------------------------------------


def rule(client, **overrides):
    body = {
        "meterApiName": "api-calls",
        "dimensionName": "region",
        "dimensionValues": ["us-east-1", "eu-west-1"],
        "action": "INCLUDE",
    }
    body.update(overrides)
    return client.post("/meter-event-filtering-rules", body, format="json")


def test_filtering_rules_are_created_listed_updated_and_applied_at_ingestion(account, amber):
    define(account)
    created = rule(amber)
    rule_id = created.json()["ruleId"]
    assert (created.status_code, created.json()) == (
        200,
        {
            "meterApiName": "api-calls",
            "ruleId": rule_id,
            "dimensionName": "region",
            "dimensionValues": ["us-east-1", "eu-west-1"],
            "action": "INCLUDE",
        },
    )
    assert amber.get("/meter-event-filtering-rules?meterApiName=api-calls").json() == [created.json()]

    batch = [
        event(uniqueId="in", dimensions={"region": "eu-west-1"}),
        event(uniqueId="out", dimensions={"region": "ap"}),
        event(uniqueId="none", dimensions=...),
    ]
    answer = ingest(amber, batch, HTTP_PREFER="return=representation")
    assert answer.json()["accepted"] == 1
    assert [item["uniqueId"] for item in answer.json()["excluded"]] == ["out", "none"]
    assert answer["X-Ingest-Excluded"] == "2"

    # The same dimension again updates the rule; EXCLUDE drops the listed values.
    updated = rule(amber, action="EXCLUDE", dimensionValues=["ap"])
    assert updated.json()["ruleId"] == rule_id
    answer = ingest(
        amber, [event(uniqueId="ap", dimensions={"region": "ap"}), event(uniqueId="free", dimensions=...)]
    )
    assert (answer["X-Ingest-Accepted"], answer["X-Ingest-Excluded"]) == ("1", "1")
    assert sorted(UsageRecord.objects.values_list("idempotency_key", flat=True)) == [
        "ingest:api-calls:free",
        "ingest:api-calls:in",
    ]
    by_id = rule(amber, ruleId=rule_id, dimensionName="tier", dimensionValues=["premium"], action="INCLUDE")
    assert by_id.json()["dimensionName"] == "tier"
    assert MeterEventFilteringRule.objects.count() == 1


def test_filtering_rule_errors(account, other_account, amber):
    define(account)
    define(other_account, "theirs")
    assert_error(amber.get("/meter-event-filtering-rules"), 400, "VALIDATION_ERROR", "meterApiName")
    assert_error(
        amber.get("/meter-event-filtering-rules?meterApiName=theirs"), 404, "METER_DEFINITION_NOT_FOUND"
    )
    assert_error(rule(amber, meterApiName="theirs"), 404, "METER_DEFINITION_NOT_FOUND")
    assert_error(rule(amber, action="MAYBE"), 400, "VALIDATION_ERROR", "action")
    assert_error(rule(amber, dimensionValues=[]), 400, "VALIDATION_ERROR", "dimensionValues")
    # An unknown UUID creates the rule under that id (test_amberflo_leniency); another form is a 400.
    assert_error(rule(amber, ruleId="not-a-uuid"), 400, "VALIDATION_ERROR", "ruleId")
    reader = key_client(account, scopes=["usage-metering:read:meter_types"])
    assert reader.get("/meter-event-filtering-rules?meterApiName=api-calls").json() == []
    assert_error(rule(reader), 403, "INSUFFICIENT_SCOPE")
    theirs = rule(client_for(other_account, name="o"), meterApiName="theirs").json()["ruleId"]
    assert_error(rule(amber, ruleId=theirs), 404, "FILTERING_RULE_NOT_FOUND")
    assert not MeterEventFilteringRule.objects.filter(account=account).exists()

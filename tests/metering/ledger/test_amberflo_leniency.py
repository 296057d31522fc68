"""What the real Amberflo service accepts is accepted (issue 21): the SDK's trailing slashes, a
definition's label and null dimensions, a filtering rule under a client-chosen ruleId."""

import time
import uuid

import pytest

from metering.models import DataCorrection, MeterEventFilteringRule, UsageRecord
from tests.metering.factories import assert_error
from tests.metering.ledger.test_ledger_amberflo_api import key_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def amber(account):
    return key_client(account)


DEFINITION = {"meterApiName": "api-calls", "displayName": "API calls", "type": "SUM_OF_ALL_USAGE"}


def test_every_compatible_path_answers_with_and_without_a_trailing_slash(amber):
    assert amber.post("/meter-definition/", DEFINITION, format="json").status_code == 200
    assert amber.get("/meter-definition/api-calls/").json()["meterApiName"] == "api-calls"
    assert [d["meterApiName"] for d in amber.get("/meter-definition/").json()] == ["api-calls"]
    rules = "/meter-event-filtering-rules{}?meterApiName=api-calls"
    assert amber.get(rules.format("/")).json() == amber.get(rules.format("")).json()
    body = {
        "meterApiName": "api-calls",
        "aggregation": "SUM",
        "timeGroupingInterval": "DAY",
        "startTimeInSeconds": 1_800_000_000,
        "endTimeInSeconds": 1_800_086_400,
    }
    assert (
        amber.post("/usage/", body, format="json").status_code
        == amber.post("/usage", body, format="json").status_code
    )
    schema_paths = set(amber.get("/openapi.json").json()["paths"])
    assert "/usage" in schema_paths and "/usage/" not in schema_paths


def test_a_definition_with_a_label_and_null_dimensions_is_accepted(amber):
    response = amber.post(
        "/meter-definition", {**DEFINITION, "label": "API calls", "dimensions": None}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["dimensions"] == []
    updated = amber.put(
        "/meter-definition", {**response.json(), "dimensions": None, "label": ""}, format="json"
    )
    assert updated.status_code == 200, updated.content


def test_a_filtering_rule_is_created_under_a_client_chosen_id(amber, other_account):
    amber.post("/meter-definition", DEFINITION, format="json")
    chosen = str(uuid.uuid4())
    rule = {
        "meterApiName": "api-calls",
        "ruleId": chosen,
        "dimensionName": "region",
        "dimensionValues": ["eu"],
        "action": "INCLUDE",
    }
    created = amber.post("/meter-event-filtering-rules", rule, format="json")
    assert created.status_code == 200, created.content
    assert created.json()["ruleId"] == chosen
    assert str(MeterEventFilteringRule.objects.get().pk) == chosen
    assert_error(
        amber.post("/meter-event-filtering-rules", {**rule, "ruleId": "rule-1"}, format="json"),
        400,
        "VALIDATION_ERROR",
        "ruleId",
    )


def test_a_definition_counts_events_from_before_its_creation(amber):
    """Amberflo has no active window: an event an hour older than its definition counts."""
    created = amber.post("/meter-definition", DEFINITION, format="json").json()
    earlier = created["meterTimeInMillis"] - 3_600_000
    event = {"meterApiName": "api-calls", "customerId": "c1", "meterValue": 5, "meterTimeInMillis": earlier}
    assert amber.post("/ingest", event, format="json").status_code == 200
    assert not DataCorrection.objects.exists()
    assert UsageRecord.objects.get().value == 5


def _ingest_gzip(client, body: bytes, path="/ingest/", encoding="gzip"):
    return client.generic("POST", path, body, content_type="application/json", HTTP_CONTENT_ENCODING=encoding)


def test_ingest_takes_the_sdks_gzip_body_at_its_trailing_slash(amber, settings):
    import gzip
    import json

    amber.post("/meter-definition", DEFINITION, format="json")
    event = {
        "meterApiName": "api-calls",
        "customerId": "c1",
        "meterValue": 3,
        "meterTimeInMillis": int(time.time() * 1000) - 3_600_000,
    }
    compressed = gzip.compress(json.dumps([event]).encode())

    assert _ingest_gzip(amber, compressed).status_code == 200
    assert _ingest_gzip(amber, compressed, path="/ingest").status_code == 200
    assert UsageRecord.objects.count() == 2  # no uniqueId: two events

    assert_error(_ingest_gzip(amber, b"not gzip"), 400, "MALFORMED_BODY")
    assert_error(_ingest_gzip(amber, compressed[:-4]), 400, "MALFORMED_BODY")
    assert_error(_ingest_gzip(amber, compressed, encoding="br"), 415, "UNSUPPORTED_CONTENT_ENCODING")
    settings.API_MAX_BODY_BYTES = 4096
    bomb = gzip.compress(b"[" + b" " * 10_000 + b"]")  # small compressed, over the limit expanded
    assert len(bomb) < 4096
    assert_error(_ingest_gzip(amber, bomb), 413, "REQUEST_TOO_LARGE")
    assert UsageRecord.objects.count() == 2


def test_usage_takes_the_sdks_nested_time_range_and_refuses_both_forms(amber):
    amber.post("/meter-definition", DEFINITION, format="json")
    flat = {
        "meterApiName": "api-calls",
        "aggregation": "SUM",
        "timeGroupingInterval": "DAY",
        "startTimeInSeconds": 1_800_000_000,
        "endTimeInSeconds": 1_800_086_400,
    }
    nested = {
        **{k: v for k, v in flat.items() if not k.endswith("InSeconds")},
        "timeRange": {"startTimeInSeconds": 1_800_000_000, "endTimeInSeconds": 1_800_086_400},
    }
    assert (
        amber.post("/usage/", nested, format="json").json()
        == amber.post("/usage", flat, format="json").json()
    )
    assert_error(
        amber.post("/usage", {**nested, "startTimeInSeconds": 1}, format="json"), 400, "VALIDATION_ERROR"
    )
    no_range = {k: v for k, v in nested.items() if k != "timeRange"}
    assert_error(amber.post("/usage", no_range, format="json"), 400, "VALIDATION_ERROR")
    assert_error(
        amber.post("/usage", {**nested, "take": {"limit": 0}}, format="json"), 400, "VALIDATION_ERROR"
    )


def test_usage_batch_answers_a_list_of_reports_in_order(amber):
    amber.post("/meter-definition", DEFINITION, format="json")
    query = {
        "meterApiName": "api-calls",
        "aggregation": "SUM",
        "timeGroupingInterval": "DAY",
        "timeRange": {"startTimeInSeconds": 1_800_000_000, "endTimeInSeconds": 1_800_086_400},
    }
    single = amber.post("/usage", query, format="json").json()
    hourly = {**query, "timeGroupingInterval": "HOUR"}
    response = amber.post("/usage/batch", [query, hourly], format="json")
    assert response.status_code == 200
    assert response.json()[0] == single
    assert len(response.json()[1]["clientMeters"]["api-calls"][0]["records"]) == 24
    assert_error(amber.post("/usage/batch", query, format="json"), 400, "VALIDATION_ERROR")
    assert_error(amber.post("/usage/batch", [], format="json"), 400, "VALIDATION_ERROR")
    assert_error(
        amber.post("/usage/batch", [query, {**query, "aggregation": "X"}], format="json"),
        400,
        "VALIDATION_ERROR",
    )
    missing = amber.post("/usage/batch", [{**query, "meterApiName": "nope"}], format="json")
    assert missing.status_code == 404

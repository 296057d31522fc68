"""Seed 002 (Amberflo Metering API): every request sample and path example replayed as printed,
with an account API key in ``X-API-KEY``, checking the documented statuses and response fields
(issue 21).

The clock is set just after the samples' own moment (``meterTimeInMillis`` 1718153645993,
2024-06-12T00:54:05.993Z), so the ingest sample is counted and the usage sample sees it. Nothing
is substituted: the samples name no ids. Where the answer knowingly differs from the sample's
(usage buckets are calendar UTC days keyed by their start, not by the range's start), the test
says so and docs/compatibility.md records it.
"""

from __future__ import annotations

import json

import pytest
import time_machine
from rest_framework.test import APIClient

from accounts import services as account_services
from tests.metering.factories import assert_error

pytestmark = pytest.mark.django_db

SAMPLE_MOMENT = "2024-06-12T01:00:00Z"

INGEST_SAMPLE = {
    "meterApiName": "api-calls",
    "customerId": "customer-123456",
    "meterValue": 1,
    "meterTimeInMillis": 1718153645993,
    "uniqueId": "evt-a1b2c3d4",
    "dimensions": {"region": "us-east-1", "tier": "premium"},
}
CREATE_DEFINITION_SAMPLE = {
    "meterApiName": "api-calls",
    "displayName": "API Calls",
    "type": "SUM_OF_ALL_USAGE",
    "dimensions": [],
}
USAGE_SAMPLE = {
    "meterApiName": "api-calls",
    "startTimeInSeconds": 1718100000,
    "endTimeInSeconds": 1718186400,
    "aggregation": "SUM",
    "timeGroupingInterval": "DAY",
    "groupBy": ["customerId"],
}
DEFINITION_FIELDS = {"meterApiName", "displayName", "label", "type", "meterTimeInMillis", "dimensions"}


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(SAMPLE_MOMENT, tick=False):
        yield


@pytest.fixture
def amber(account) -> APIClient:
    _, raw = account_services.api_key_create(account=account, name="seed-002", scopes=["all"])
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return client


def test_definition_samples_create_get_list_and_delete(amber):
    created = amber.post("/meter-definition", CREATE_DEFINITION_SAMPLE, format="json")
    assert created.status_code == 200, created.content
    body = created.json()
    assert set(body) >= DEFINITION_FIELDS
    assert (body["meterApiName"], body["displayName"], body["label"], body["type"]) == (
        "api-calls",
        "API Calls",
        "api-calls",
        "SUM_OF_ALL_USAGE",
    )
    assert body["meterTimeInMillis"] == 1718154000000  # created now
    fetched = amber.get("/meter-definition/api-calls")
    assert fetched.status_code == 200
    assert fetched.json() == body
    listed = amber.get("/meter-definition")
    assert listed.status_code == 200
    assert listed.json() == [body]
    rules = amber.get("/meter-event-filtering-rules?meterApiName=api-calls")
    assert rules.status_code == 200
    assert rules.json() == []

    assert amber.delete("/meter-definition/api-calls").status_code == 200
    assert_error(amber.get("/meter-definition/api-calls"), 404, "METER_DEFINITION_NOT_FOUND")
    assert amber.delete("/meter-definition/api-calls").status_code == 404


def test_ingest_and_usage_samples(amber):
    amber.post("/meter-definition", CREATE_DEFINITION_SAMPLE, format="json")

    ingested = amber.post("/ingest", json.dumps(INGEST_SAMPLE), content_type="application/json")
    assert ingested.status_code == 200, ingested.content
    assert ingested.json() == "OK"
    replayed = amber.post("/ingest", json.dumps(INGEST_SAMPLE), content_type="application/json")
    assert replayed.json() == "OK"  # the same uniqueId: counted once

    usage = amber.post("/usage", USAGE_SAMPLE, format="json")
    assert usage.status_code == 200, usage.content
    # The sample answers {"1718100000": 42.0} for its meter's own history. Here: the one event, in
    # the calendar days the range touches (2024-06-11 and 2024-06-12 UTC), each keyed by its start.
    assert usage.json() == {
        "clientMeters": {
            "api-calls": [
                {
                    "groupInfo": {"customerId": "customer-123456"},
                    "records": [{"1718064000": 0}, {"1718150400": 1.0}],
                }
            ]
        }
    }


def test_errors_answer_the_seeds_error_response(amber):
    unauthenticated = APIClient().post("/ingest", json.dumps(INGEST_SAMPLE), content_type="application/json")
    assert unauthenticated.status_code == 401
    assert set(unauthenticated.json()) >= {"message", "code", "details"}
    assert_error(amber.get("/meter-definition/api-calls"), 404, "METER_DEFINITION_NOT_FOUND")
    bad = amber.post(
        "/ingest", json.dumps({**INGEST_SAMPLE, "meterTimeInMillis": None}), content_type="application/json"
    )
    assert bad.status_code == 400

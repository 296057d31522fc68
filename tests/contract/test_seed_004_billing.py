"""Seed 004 (a billing platform's meter endpoints): the seed prints no request samples, only each
operation's fields; every documented request is replayed with exactly those fields (the seed's
own example meter name ``api_calls``, its ``x-api-idempotency-key`` header), checking the
documented statuses and response fields (issue 21). The meter's id in paths is the fixture's own.
"""

from __future__ import annotations

import json

import pytest
import time_machine
from rest_framework.test import APIClient

from tests.conftest import client_for
from tests.metering.factories import assert_error
from tests.metering.ledger.conftest import NOW, make_meter, make_type

pytestmark = pytest.mark.django_db

REPORT = {
    "value": 3,
    "customerId": "cus_1",
    "meterName": "api_calls",
    "timestamp": "2027-01-10T11:00:00Z",
    "metadata": {"region": "eu", "retries": 2, "cached": False},
}


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def reporter(account) -> APIClient:
    """A client with the seed's one scope, meter-report."""
    return client_for(account, scopes=["meter-report"], name="billing")


@pytest.fixture
def api_calls(account):
    meter_type = make_type(account, name="API calls", api_name="api_calls")
    make_meter(meter_type, user_id="cus_1")
    return meter_type


def report(client, body, key="report-1"):
    headers = {"HTTP_X_API_IDEMPOTENCY_KEY": key} if key else {}
    return client.post("/billing/meters/usage", json.dumps(body), content_type="application/json", **headers)


def test_report_usage_queued_then_duplicate(reporter, api_calls):
    queued = report(reporter, REPORT)
    assert queued.status_code == 202, queued.content
    assert queued.json()["status"] == "queued"
    assert queued.json()["requestId"]
    duplicate = report(reporter, REPORT)
    assert duplicate.status_code == 200, duplicate.content
    assert duplicate.json()["status"] == "duplicate"
    assert duplicate.json()["idempotencyKey"] == "report-1"
    by_id = report(
        reporter,
        {**{k: v for k, v in REPORT.items() if k != "meterName"}, "meterId": str(api_calls.pk)},
        "report-2",
    )
    assert by_id.status_code == 202, by_id.content


def test_report_usage_needs_the_idempotency_key(reporter, api_calls):
    assert_error(report(reporter, REPORT, key=None), 400, "IDEMPOTENCY_KEY_REQUIRED")


def test_subscription_lookups_by_id_and_by_name(reporter, api_calls):
    by_id = reporter.get(f"/billing/meters/{api_calls.pk}/subscriptions")
    assert by_id.status_code == 200, by_id.content
    assert by_id.json() == {"meterId": str(api_calls.pk), "meterName": "api_calls", "subscriptions": []}
    by_name = reporter.get("/billing/meters/subscriptions?meterName=api_calls")
    assert by_name.status_code == 200
    assert by_name.json() == by_id.json()
    assert_error(reporter.get("/billing/meters/subscriptions"), 400, "METER_IDENTIFIER_REQUIRED")
    assert_error(reporter.get("/billing/meters/subscriptions?meterName=nope"), 404, "METER_NOT_FOUND")

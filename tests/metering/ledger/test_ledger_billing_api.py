"""Seed 004: report usage with an idempotency key (the subscription lookups: tests/billing)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from rest_framework.test import APIClient

from metering.models import DataCorrection, Meter, MeterType, UsageRecord
from tests.conftest import client_for
from tests.metering.factories import assert_error
from tests.metering.ledger.conftest import NOW, make_meter, make_type

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def reporter(account) -> APIClient:
    return client_for(account, scopes=["meter-report"], name="billing")


@pytest.fixture
def api_calls(account):
    meter_type = make_type(account, name="API calls", api_name="api_calls")
    make_meter(meter_type, user_id="cus_1")
    return meter_type


def report(client, body=None, key="key-1", header="HTTP_IDEMPOTENCY_KEY", **overrides):
    body = body if body is not None else {"value": 3, "customerId": "cus_1", "meterName": "api_calls"}
    body = {**body, **overrides}
    headers = {header: key} if key is not None else {}
    return client.post("/billing/meters/usage", json.dumps(body), content_type="application/json", **headers)


def test_first_report_is_queued_and_a_replay_is_a_duplicate(account, reporter, api_calls):
    first = report(reporter)
    replay = report(reporter)

    assert first.status_code == 202
    request_id = first.json()["requestId"]
    assert first.json() == {"status": "queued", "requestId": request_id}
    assert (replay.status_code, replay.json()) == (200, {"status": "duplicate", "idempotencyKey": "key-1"})
    record = UsageRecord.objects.get()
    assert (record.source, record.source_ref, record.idempotency_key, record.value, record.timestamp) == (
        "report",
        request_id,
        "report:key-1",
        Decimal(3),
        NOW,
    )
    assert Meter.objects.get().value == Decimal(3)


def test_the_x_api_idempotency_key_header_works_and_keys_are_shared_between_both_headers(reporter, api_calls):
    assert report(reporter, header="HTTP_X_API_IDEMPOTENCY_KEY").status_code == 202
    assert report(reporter, header="HTTP_IDEMPOTENCY_KEY").status_code == 200


def test_the_same_key_with_another_body_is_409(reporter, api_calls):
    report(reporter)
    assert_error(report(reporter, value=4), 409, "IDEMPOTENCY_KEY_REUSED")
    assert Meter.objects.get().value == Decimal(3)


def test_a_replay_without_a_timestamp_is_still_a_duplicate_later(reporter, api_calls, frozen):
    report(reporter)
    frozen.shift(timedelta(minutes=5))
    assert report(reporter).status_code == 200


def test_a_timestamp_without_an_offset_is_utc(reporter, api_calls):
    body = {"value": 3, "customerId": "cus_1", "meterName": "api_calls", "timestamp": "2027-01-10T10:00:00"}
    assert report(reporter, body).status_code == 202
    assert UsageRecord.objects.get().timestamp == NOW - timedelta(hours=2)


def test_report_by_meter_id_with_timestamp_and_metadata(reporter, api_calls):
    at = NOW - timedelta(hours=2)
    response = report(
        reporter,
        {
            "value": 1.5,
            "customerId": "cus_1",
            "meterId": str(api_calls.pk),
            "timestamp": "2027-01-10T10:00:00.000Z",
            "metadata": {"plan": "gold", "seats": 3, "trial": False},
        },
    )

    assert response.status_code == 202
    record = UsageRecord.objects.get()
    assert (record.timestamp, record.value, record.dimensions) == (
        at,
        Decimal("1.5"),
        {"plan": "gold", "seats": 3, "trial": False},
    )


def test_usage_that_cannot_be_counted_is_queued_into_data_correction(reporter, api_calls):
    response = report(reporter, customerId="cus_without_meter")

    assert response.status_code == 202
    correction = DataCorrection.objects.get()
    assert (correction.reason, correction.source, correction.source_ref, correction.idempotency_key) == (
        "NO_MATCHING_METER",
        "report",
        response.json()["requestId"],
        "report:key-1",
    )
    assert correction.record == {"value": 3, "customerId": "cus_without_meter", "meterName": "api_calls"}


@pytest.mark.parametrize(
    "key,header_code",
    [(None, "IDEMPOTENCY_KEY_REQUIRED"), ("  ", "IDEMPOTENCY_KEY_REQUIRED"), ("k" * 256, "VALIDATION_ERROR")],
)
def test_the_idempotency_key_is_required(reporter, api_calls, key, header_code):
    assert_error(report(reporter, key=key), 400, header_code)
    assert not UsageRecord.objects.exists()


@pytest.mark.parametrize(
    "body,status,code,field",
    [
        ({"value": 3, "customerId": "cus_1"}, 400, "METER_IDENTIFIER_REQUIRED", "meterId"),
        ({"value": 3, "customerId": "cus_1", "meterName": "nope"}, 404, "METER_NOT_FOUND", "meterName"),
        (
            {"value": 3, "customerId": "cus_1", "meterId": str(uuid.uuid4())},
            404,
            "METER_NOT_FOUND",
            "meterId",
        ),
        ({"value": 3, "customerId": "cus_1", "meterId": "not-a-uuid"}, 404, "METER_NOT_FOUND", "meterId"),
        ({"customerId": "cus_1", "meterName": "api_calls"}, 400, "VALIDATION_ERROR", "value"),
        ({"value": "x", "customerId": "cus_1", "meterName": "api_calls"}, 400, "VALIDATION_ERROR", "value"),
        ({"value": 1e30, "customerId": "cus_1", "meterName": "api_calls"}, 400, "VALIDATION_ERROR", "value"),
        ({"value": 3, "meterName": "api_calls"}, 400, "VALIDATION_ERROR", "customerId"),
        (
            {"value": 3, "customerId": "cus_1", "meterName": "api_calls", "metadata": {"a": {"b": 1}}},
            400,
            "VALIDATION_ERROR",
            "metadata",
        ),
        (
            {"value": 3, "customerId": "cus_1", "meterName": "api_calls", "metadata": {"a": [1]}},
            400,
            "VALIDATION_ERROR",
            "metadata",
        ),
        (
            {"value": 3, "customerId": "cus_1", "meterName": "api_calls", "timestamp": "yesterday"},
            400,
            "VALIDATION_ERROR",
            "timestamp",
        ),
    ],
)
def test_report_usage_errors(reporter, api_calls, body, status, code, field):
    assert_error(report(reporter, body), status, code, field)
    assert not UsageRecord.objects.exists() and not DataCorrection.objects.exists()


def test_an_archived_meter_is_refused(reporter, api_calls):
    MeterType.objects.filter(pk=api_calls.pk).update(status=MeterType.Status.ARCHIVED)
    assert_error(report(reporter), 400, "METER_ARCHIVED", "meterName")


def test_meter_name_falls_back_to_the_display_name_and_tenancy(account, other_account, reporter, api_calls):
    assert report(reporter, meterName="API calls").status_code == 202
    theirs = make_type(other_account, name="Theirs", api_name="theirs")
    by_id = {"value": 3, "customerId": "cus_1", "meterId": str(theirs.pk)}
    assert_error(report(reporter, by_id, key="k2"), 404, "METER_NOT_FOUND")


def test_report_scope_and_authentication(account, api_calls):
    other_scope = client_for(account, scopes=["usage-metering:ingest:usage"], name="ingest-only")
    assert_error(report(other_scope), 403, "INSUFFICIENT_SCOPE")
    assert_error(report(APIClient()), 401, "UNAUTHORIZED")
    assert_error(
        client_for(account, scopes=["meter-report"], name="r2").get("/billing/meters/usage"),
        405,
        "METHOD_NOT_ALLOWED",
    )


def test_report_rate_limit(reporter, api_calls, rate_limits, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "billing": (1, 60, 1)}
    assert report(reporter).status_code == 202
    assert_error(report(reporter, key="k2"), 429, "TOO_MANY_REQUESTS")


def test_a_meter_archived_while_its_lookup_is_cached_still_counts_nothing(reporter, api_calls):
    assert report(reporter).status_code == 202  # the meter is now in the per-process lookup cache
    MeterType.objects.filter(pk=api_calls.pk).update(status=MeterType.Status.ARCHIVED)

    response = report(reporter, key="key-2")

    assert response.status_code == 202
    assert DataCorrection.objects.get().reason == "ARCHIVED_METER_TYPE"
    assert Meter.objects.get().value == Decimal(3)


@pytest.mark.parametrize(
    "overrides",
    [
        {"customerId": "nobody"},  # no meter for the customer
        {"timestamp": (NOW - timedelta(days=40)).isoformat()},  # too old
        {"timestamp": (NOW + timedelta(hours=1)).isoformat()},  # in the future
    ],
)
def test_a_report_sent_to_data_correction_holds_its_key_replays_are_duplicate_and_another_body_409(
    account, reporter, api_calls, overrides
):
    first = report(reporter, **overrides)
    replay = report(reporter, **overrides)
    other = report(reporter, **{**overrides, "value": 99})

    assert first.status_code == 202 and DataCorrection.objects.count() == 1
    assert (replay.status_code, replay.json()) == (200, {"status": "duplicate", "idempotencyKey": "key-1"})
    assert_error(other, 409, "IDEMPOTENCY_KEY_REUSED")
    assert DataCorrection.objects.count() == 1 and UsageRecord.objects.count() == 0


def test_a_key_accepted_before_its_meter_was_archived_replays_as_duplicate_not_meter_archived(
    account, reporter, api_calls
):
    assert report(reporter).status_code == 202
    MeterType.objects.filter(pk=api_calls.pk).update(status=MeterType.Status.ARCHIVED)
    from metering.compat import billing

    billing._meter_cache.clear()

    replay = report(reporter)

    assert (replay.status_code, replay.json()["status"]) == (200, "duplicate")
    assert_error(report(reporter, value=99), 409, "IDEMPOTENCY_KEY_REUSED")
    assert_error(report(reporter, key="new-key"), 400, "METER_ARCHIVED")

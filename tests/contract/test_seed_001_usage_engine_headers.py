"""Seed 001 (Usage Engine, older revision): every request sample replayed as printed, with the
revision's ``X-Account-Id`` / ``X-Application-Id`` headers and its unprefixed scopes (issue 21).

Substitutions as in test_seed_000_usage_engine.py: the token request's credentials and the ids in
paths and headers are the fixtures' own, the clock is the samples' date, and the folded
``aggregation`` / ``resetSchedule`` of the create sample are filled from the seed's schema after
the printed form's documented 400.
"""

from __future__ import annotations

import pytest
import time_machine
from rest_framework.test import APIClient

from accounts import services as account_services
from tests.conftest import make_access
from tests.metering.factories import assert_error

pytestmark = pytest.mark.django_db

SAMPLE_DATE = "2023-07-26T09:00:15.690+00:00"
UNPREFIXED = [
    "create:meter_types",
    "create:meters",
    "delete:meter_types",
    "delete:meters",
    "read:meter_types",
    "read:meters",
    "update:meter_types",
    "update:meters",  # not in the token response sample, but seed 001's update-meter operation requires it
]  # fmt: skip  (the token response sample's scope)

TOKEN_SAMPLE = {
    "client_id": "u4grtTy18E2DYANsv0G174aSxR3EeOiA",
    "client_secret": "U6qN9NTgis3MLeleRXtLgIxtRE-qhpZcPJ_5eoNtNQYcodiY9q0Abs3afgpbX3M6",
    "grant_type": "client_credentials",
}
CREATE_METER_TYPE_SAMPLE = {
    "activeFrom": "2023-07-26T09:00:15.690+00:00",
    "activeTo": "2024-11-22T00:00:00.000+00:00",
    "aggregation": {},
    "category": "API Counts",
    "description": "Meter definition to count the number of API requests per customer",
    "externalRef": "878752b4-4ddf",
    "name": "Usage based API counter",
    "resetSchedule": {},
    "timezone": "Etc/UTC",
    "unit": "requests",
}
UPDATE_METER_TYPE_SAMPLE = {
    "activeFrom": "2023-07-26T09:00:15.690+00:00",
    "activeTo": "2024-11-22T00:00:00.000+00:00",
    "category": "API Counts",
    "description": "Meter definition to count the number of API requests per customer",
    "externalRef": "878752b4-4ddf",
    "name": "Usage based API counter",
    "resetSchedule": {},
    "timezone": "Etc/UTC",
    "unit": "requests",
}
CREATE_METER_SAMPLE = {
    "meterKey": "a1f8797b-c827-4483-b6cf-6d3d3baa18a7",
    "meterTypeId": "645ed240-02b5-400c-9a3c-21857e8f2ac4",
    "userId": "user0@example.com",
}
UPDATE_METER_SAMPLE = {"deleteOnReset": True}
FILLED = {"aggregation": {"type": "SUM"}, "resetSchedule": {"cron": "0 0 1 * *"}}


@pytest.fixture
def seed_001(account) -> APIClient:
    """A client as seed 001 shows one: a token of the unprefixed scopes, and the revision's headers
    naming its account and application (ids substituted: the fixtures' own)."""
    access, secret = make_access(account, name="seed-001", scopes=UNPREFIXED)
    token = APIClient().post(
        "/oauth/token",
        {**TOKEN_SAMPLE, "client_id": access.client_id, "client_secret": secret},
        format="json",
    )
    assert token.status_code == 200, token.content
    assert token.json()["scope"] == " ".join(UNPREFIXED)
    assert token.json()["expires_in"] == 3600
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {token.json()['access_token']}",
        HTTP_X_ACCOUNT_ID=str(account.pk),
        HTTP_X_APPLICATION_ID=str(access.client_id),
    )
    client.access = access
    client.token = token.json()["access_token"]
    return client


def test_meter_type_and_meter_samples_with_the_revisions_headers(seed_001):
    with time_machine.travel(SAMPLE_DATE, tick=False):
        assert_error(
            seed_001.post("/meter-types", CREATE_METER_TYPE_SAMPLE, format="json"), 400, "VALIDATION_ERROR"
        )
        created = seed_001.post("/meter-types", {**CREATE_METER_TYPE_SAMPLE, **FILLED}, format="json")
        assert created.status_code == 201, created.content
        meter_type = created.json()
        assert meter_type["activeFrom"] == "2023-07-26T09:00:15.690Z"
        assert meter_type["numberOfMeters"] == 0

        updated = seed_001.patch(f"/meter-types/{meter_type['id']}", UPDATE_METER_TYPE_SAMPLE, format="json")
        assert updated.status_code == 200, updated.content
        assert updated.json()["resetSchedule"] == {"cron": "0 0 1 * *"}

        # meterTypeId substituted with the type made above.
        meter = seed_001.post(
            "/meters", {**CREATE_METER_SAMPLE, "meterTypeId": meter_type["id"]}, format="json"
        )
        assert meter.status_code == 201, meter.content
        assert meter.json()["periodStart"] == "2023-07-26T09:00:15.690Z"
        assert meter.json()["periodEnd"] == "2023-08-01T00:00:00.000Z"
        assert (meter.json()["userId"], meter.json()["deleteOnReset"]) == ("user0@example.com", False)

        changed = seed_001.patch(f"/meters/{meter.json()['id']}", UPDATE_METER_SAMPLE, format="json")
        assert changed.status_code == 200, changed.content
        assert changed.json()["deleteOnReset"] is True


def test_the_headers_compare_as_uuids_and_must_match_the_token(seed_001, account, other_account):
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {seed_001.token}"}
    client = APIClient()
    listed = client.get("/meter-types", HTTP_X_ACCOUNT_ID=str(account.pk).upper(), **bearer)
    assert listed.status_code == 200, listed.content
    assert listed.json() == {"meterTypes": []}
    mismatch = client.get("/meter-types", HTTP_X_ACCOUNT_ID=str(other_account.pk), **bearer)
    assert_error(mismatch, 403, "ACCOUNT_MISMATCH")
    other_access, _ = account_services.application_access_create(
        account=account, name="another", scopes=["all"]
    )
    wrong_application = client.get(
        "/meter-types", HTTP_X_APPLICATION_ID=str(other_access.client_id), **bearer
    )
    assert wrong_application.status_code == 403, wrong_application.content

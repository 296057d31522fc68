"""Seed 000 (Usage Engine, newest): every request sample, replayed as printed, with the statuses and
response fields the seed documents (issue 21).

The samples are copied verbatim. Three kinds of substitution, each said where it happens: ids in
paths and the token request's credentials are the ones made in the fixtures (the seed's belong to
its own account); the clock is set to the sample's own date where its times only make sense then
(a meter type active from 2023-07-26 to 2024-11-22 is created on 2023-07-26); and where the
printed sample collapses a required nested object to ``{}`` or ``[]`` (the seed's renderer folds
them), the replay sends it as printed and the documented answer for that (400 naming the field),
then the same sample with the object filled from the seed's own schema (docs/compatibility.md).
"""

from __future__ import annotations

import pytest
import time_machine
from rest_framework.test import APIClient

from tests.collection.conftest import make_collector
from tests.conftest import make_access
from tests.metering.factories import assert_error
from tests.streams.conftest import minimal_config

pytestmark = pytest.mark.django_db

# The meter type samples' own moment (their activeFrom and the response's createdAt).
SAMPLE_DATE = "2023-07-26T09:00:15.690+00:00"

TOKEN_SAMPLE = {
    "client_id": "u4grtTy18E2DYANsv0G174aSxR3EeOiA",
    "client_secret": "U6qN9NTgis3MLeleRXtLgIxtRE-qhpZcPJ_5eoNtNQYcodiY9q0Abs3afgpbX3M6",
    "grant_type": "client_credentials",
}
CREATE_METER_TYPE_SAMPLE = {
    "activeFrom": "2023-07-26T09:00:15.690+00:00",
    "activeTo": "2024-11-22T00:00:00.000+00:00",
    "aggregation": {},
    "capacity": 1000,
    "category": "API Counts",
    "description": "Meter definition to count the number of API requests per customer",
    "externalRef": "878752b4-4ddf",
    "name": "Usage based API counter",
    "resetSchedule": {},
    "thresholds": [],
    "timezone": "Etc/UTC",
    "unit": "requests",
}
UPDATE_METER_TYPE_SAMPLE = {
    "activeFrom": "2023-07-26T09:00:15.690+00:00",
    "activeTo": "2024-11-22T00:00:00.000+00:00",
    "capacity": 1000,
    "category": "API Counts",
    "description": "Meter definition to count the number of API requests per customer",
    "externalRef": "878752b4-4ddf",
    "name": "Usage based API counter",
    "resetSchedule": {},
    "thresholds": [],
    "timezone": "Etc/UTC",
    "unit": "requests",
}
CREATE_METER_SAMPLE = {
    "customFields": {},
    "meterKey": "a1f8797b-c827-4483-b6cf-6d3d3baa18a7",
    "meterTypeId": "645ed240-02b5-400c-9a3c-21857e8f2ac4",
    "userId": "user0@example.com",
}
UPDATE_METER_SAMPLE = {"capacity": 1000, "customFields": {}, "deleteOnReset": True, "thresholds": []}
COLLECTOR_SAMPLE = {"name": "Collector Name"}
SEND_DATA_SAMPLE = {"data": {}}
IMPORT_SAMPLE = {
    "allowNodeDeletion": True,
    "onNameConflict": "overwrite",
    "solutionId": "73253be8-0c7c-4670-9631-5a29fe59b4d2",
    "streamConfig": {},
}
CREATE_PARAMETER_SAMPLE = {
    "description": "API key for third-party payment gateway",
    "name": "credentials/payment-gateway/api-key",
    "type": "standard",
    "value": "sk_val_51H8KJ8eXAMPLEKEY1234567890",
}
DELETE_PARAMETERS_SAMPLE = {"parameters": []}
UPDATE_PARAMETER_SAMPLE = {
    "description": "Updated API gateway key for external integrations",
    "value": "sk_val_1He58KJ81XAMPLEKEY78956210",
}

# The seed's schema for what the printed samples fold (its own field descriptions).
AGGREGATION = {"type": "SUM"}
RESET_SCHEDULE = {"cron": "0 0 1 * *"}

METER_TYPE_FIELDS = {
    "accountId", "activeFrom", "activeTo", "aggregation", "capacity", "category", "createdAt",
    "description", "externalRef", "id", "name", "numberOfMeters", "resetSchedule", "thresholds",
    "timezone", "unit", "updatedAt",
}  # fmt: skip
METER_FIELDS = {
    "capacity", "carryFirst", "carryLast", "createdAt", "customFields", "deleteOnReset",
    "groupBreakdowns", "groups", "id", "meterKey", "meterMetaData", "meterTypeId", "meterTypeName",
    "periodEnd", "periodStart", "thresholds", "timezone", "unit", "updatedAt", "userId", "value",
}  # fmt: skip


def test_token_sample_with_the_accounts_own_credentials(account):
    access, secret = make_access(account, scopes=["usage-metering:read:meter_types"])
    # The sample's client_id and client_secret are the seed's own: ours substituted, the rest as printed.
    body = {**TOKEN_SAMPLE, "client_id": access.client_id, "client_secret": secret}
    response = APIClient().post("/oauth/token", body, format="json")
    assert response.status_code == 200, response.content
    assert set(response.json()) == {"access_token", "expires_in", "scope", "token_type"}
    assert response.json()["expires_in"] == 3600
    assert response.json()["token_type"] == "Bearer"
    assert response.json()["scope"] == "usage-metering:read:meter_types"
    # The sample's own credentials belong to no client here: 401, as the seed's errors say.
    assert APIClient().post("/oauth/token", TOKEN_SAMPLE, format="json").status_code == 401


def test_meter_type_samples_create_and_update_on_their_date(api):
    with time_machine.travel(SAMPLE_DATE, tick=False):
        as_printed = api.post("/meter-types", CREATE_METER_TYPE_SAMPLE, format="json")
        assert_error(as_printed, 400, "VALIDATION_ERROR", "aggregation.type")
        filled = {**CREATE_METER_TYPE_SAMPLE, "aggregation": AGGREGATION, "resetSchedule": RESET_SCHEDULE}
        created = api.post("/meter-types", filled, format="json")
        assert created.status_code == 201, created.content
        body = created.json()
        assert set(body) >= METER_TYPE_FIELDS
        assert body["activeFrom"] == "2023-07-26T09:00:15.690Z"
        assert body["activeTo"] == "2024-11-22T00:00:00.000Z"
        assert body["createdAt"] == "2023-07-26T09:00:15.690Z"
        assert body["numberOfMeters"] == 0
        assert (body["name"], body["unit"], body["capacity"]) == ("Usage based API counter", "requests", 1000)

        # The update sample passes as printed: an empty resetSchedule changes nothing.
        updated = api.patch(f"/meter-types/{body['id']}", UPDATE_METER_TYPE_SAMPLE, format="json")
        assert updated.status_code == 200, updated.content
        assert set(updated.json()) >= METER_TYPE_FIELDS
        assert updated.json()["thresholds"] == []
        assert updated.json()["resetSchedule"] == RESET_SCHEDULE


def test_meter_samples_create_and_update(api):
    with time_machine.travel("2023-07-01T00:00:00Z", tick=False):
        meter_type = api.post(
            "/meter-types",
            {**CREATE_METER_TYPE_SAMPLE, "activeFrom": "2023-07-01T00:00:00.000+00:00",
             "aggregation": AGGREGATION, "resetSchedule": RESET_SCHEDULE},
            format="json",
        ).json()  # fmt: skip
        # meterTypeId: the seed's id substituted with the type made above.
        created = api.post("/meters", {**CREATE_METER_SAMPLE, "meterTypeId": meter_type["id"]}, format="json")
        assert created.status_code == 201, created.content
        body = created.json()
        assert set(body) >= METER_FIELDS
        assert body["periodStart"] == "2023-07-01T00:00:00.000Z"
        assert body["periodEnd"] == "2023-08-01T00:00:00.000Z"
        assert (body["capacity"], body["unit"], body["timezone"]) == (1000, "requests", "Etc/UTC")
        assert body["meterTypeName"] == "Usage based API counter"
        assert body["value"] == 0
        unknown_type = api.post("/meters", CREATE_METER_SAMPLE, format="json")
        assert_error(unknown_type, 404, "METER_TYPE_NOT_FOUND")

        updated = api.patch(f"/meters/{body['id']}", UPDATE_METER_SAMPLE, format="json")
        assert updated.status_code == 200, updated.content
        assert updated.json()["deleteOnReset"] is True
        assert set(updated.json()) >= METER_FIELDS


def test_collector_samples_create_and_update(api):
    created = api.post("/online-collection/collectors", COLLECTOR_SAMPLE, format="json")
    assert created.status_code == 201, created.content
    assert set(created.json()) >= {"createdAt", "id", "name", "status", "updatedAt"}
    assert created.json()["name"] == "Collector Name"
    assert created.json()["status"] == "CREATING"
    updated = api.patch(
        f"/online-collection/collectors/{created.json()['id']}", COLLECTOR_SAMPLE, format="json"
    )
    assert updated.status_code == 200, updated.content
    assert updated.json()["name"] == "Collector Name"


def test_send_data_sample(api, account):
    collector = make_collector(account)  # ACTIVE; its id substituted in the path
    response = api.post(f"/online-collection/collectors/{collector.pk}/data", SEND_DATA_SAMPLE, format="json")
    assert response.status_code in (200, 201, 202), response.content
    assert set(response.json()) == {"ingestionId"}


def test_stream_import_sample(api, account):
    as_printed = api.post("/streams/import", IMPORT_SAMPLE, format="json")
    assert_error(as_printed, 400, "VALIDATION_ERROR")
    collector = make_collector(account)
    config = minimal_config()
    config["nodes"][0]["config"]["collectorId"] = str(collector.pk)
    # The seed's solutionId is one this account does not have yet: the import makes it.
    response = api.post("/streams/import", {**IMPORT_SAMPLE, "streamConfig": config}, format="json")
    assert response.status_code in (200, 201), response.content
    assert set(response.json()) >= {"importAction", "stream", "tag"}
    assert response.json()["importAction"] == "created"


def test_parameter_samples_create_update_and_delete(api):
    created = api.post("/parameters", CREATE_PARAMETER_SAMPLE, format="json")
    assert created.status_code == 201, created.content
    assert created.json() == {"name": "credentials/payment-gateway/api-key"}
    updated = api.patch(
        "/parameters/credentials/payment-gateway/api-key", UPDATE_PARAMETER_SAMPLE, format="json"
    )
    assert updated.status_code == 200, updated.content
    assert updated.json() == {"name": "credentials/payment-gateway/api-key"}
    assert_error(api.delete("/parameters", DELETE_PARAMETERS_SAMPLE, format="json"), 400, "VALIDATION_ERROR")
    deleted = api.delete(
        "/parameters", {"parameters": ["credentials/payment-gateway/api-key"]}, format="json"
    )
    assert deleted.status_code == 200, deleted.content
    assert deleted.json()["deletedCount"] == 1
    assert set(deleted.json()) == {"deletedCount", "deletedParameters", "invalidParameters"}

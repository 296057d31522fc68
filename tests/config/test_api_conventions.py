"""The conventions every endpoint shares: error body, scopes, tenancy, headers, pagination, limits."""

import json
import logging
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient

from tests.conftest import client_for, issue_token, make_access

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.support.urls")]


def assert_error_body(response, status, code=None):
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert isinstance(body["details"], list)
    if code:
        assert body["code"] == code
    return body


def test_a_token_opens_what_its_scopes_allow_and_nothing_else(account):
    client = client_for(account, scopes=["usage-metering:read:meter_types"])
    assert client.get("/probe").status_code == 200
    body = assert_error_body(client.post("/probe", {}, format="json"), 403, "INSUFFICIENT_SCOPE")
    assert "usage-metering:create:meter_types" in body["message"]


def test_seed_001_unprefixed_scopes_work_too(account):
    client = client_for(account, scopes=["read:meter_types"])
    assert client.get("/probe").status_code == 200


def test_missing_token_is_401_with_www_authenticate(client):
    response = client.get("/probe")
    assert_error_body(response, 401, "UNAUTHORIZED")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_unknown_token_is_401(client):
    response = client.get("/probe", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert_error_body(response, 401, "INVALID_TOKEN")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_is_401(account):
    access, secret = make_access(account)
    raw = issue_token(access, secret)
    AccessToken.objects.update(expires=timezone.now() - timedelta(seconds=1))
    response = APIClient().get("/probe", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert_error_body(response, 401, "INVALID_TOKEN")
    assert "WWW-Authenticate" in response


def test_tenancy_another_accounts_id_is_404(account, other_account):
    mine = client_for(account)
    theirs = client_for(other_account, name="theirs")
    assert mine.get(f"/probe/{theirs.access.pk}").status_code == 404
    assert_error_body(mine.get(f"/probe/{theirs.access.pk}"), 404)
    assert mine.get(f"/probe/{mine.access.pk}").json()["name"] == "tests"
    assert [a["name"] for a in mine.get("/probe").json()["accesses"]] == ["tests"]


def test_malformed_id_is_404(api):
    assert_error_body(api.get("/probe/not-a-uuid"), 404)


def test_x_account_id_must_match_the_token(api, account, other_account):
    assert api.get("/probe", HTTP_X_ACCOUNT_ID=str(account.pk)).status_code == 200
    assert_error_body(api.get("/probe", HTTP_X_ACCOUNT_ID=str(other_account.pk)), 403, "ACCOUNT_MISMATCH")


def test_x_application_id_must_match_the_token(api):
    assert api.get("/probe", HTTP_X_APPLICATION_ID=str(api.access.pk)).status_code == 200
    assert api.get("/probe", HTTP_X_APPLICATION_ID=api.access.client_id).status_code == 200
    assert_error_body(api.get("/probe", HTTP_X_APPLICATION_ID="someone-else"), 403, "APPLICATION_MISMATCH")


@pytest.mark.parametrize(
    "query,field",
    [
        ("limit=101", "limit"),
        ("limit=0", "limit"),
        ("skip=-1", "skip"),
        ("limit=abc", "limit"),
        ("sortBy=secret", "sortBy"),
        ("sortOrder=UP", "sortOrder"),
    ],
)
def test_pagination_and_sort_validation(api, query, field):
    body = assert_error_body(api.get(f"/probe?{query}"), 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == field


def test_limit_skip_and_sort(account):
    client = client_for(account, name="b")
    make_access(account, name="a")
    make_access(account, name="c")
    names = [
        a["name"] for a in client.get("/probe?sortBy=name&sortOrder=DESC&limit=2&skip=0").json()["accesses"]
    ]
    assert names == ["c", "b"]
    assert [a["name"] for a in client.get("/probe?sortBy=name&skip=2").json()["accesses"]] == ["c"]


def test_unknown_url_is_json_404(client):
    assert_error_body(client.get("/no/such/thing"), 404, "NOT_FOUND")


def test_method_not_allowed_is_json_405(api, account):
    assert_error_body(api.delete("/probe"), 405, "METHOD_NOT_ALLOWED")


def test_malformed_json_is_400(api):
    response = api.post("/probe", "{not json", content_type="application/json")
    assert_error_body(response, 400, "MALFORMED_JSON")


def test_oversized_body_is_json_413(api, settings):
    settings.API_MAX_BODY_BYTES = 1024
    response = api.post("/probe", json.dumps({"x": "a" * 2000}), content_type="application/json")
    assert_error_body(response, 413, "REQUEST_TOO_LARGE")


def test_oversized_body_default_limit_is_one_mib(api):
    response = api.post("/probe", json.dumps({"x": "a" * (1024 * 1024)}), content_type="application/json")
    assert_error_body(response, 413)


def test_database_unreachable_is_503_json(api, monkeypatch):
    from accounts import selectors

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(selectors, "principal_for_token_checksum", down)
    response = api.get("/probe")
    assert_error_body(response, 503, "SERVICE_UNAVAILABLE")
    assert int(response["Retry-After"]) > 0


def test_unhandled_error_is_json_500(api, monkeypatch, caplog):
    from tests.support import urls

    def boom(self, request, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(urls.ProbeViewSet, "list", boom)
    with caplog.at_level(logging.ERROR):
        response = api.get("/probe")
    assert_error_body(response, 500, "INTERNAL_ERROR")


def test_health_and_readiness(client, db):
    assert client.get("/healthz").json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_openapi_schema_and_docs_page(client, db):
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    assert "/oauth/token" in schema.json()["paths"]
    assert client.get("/docs/").status_code == 200


def test_timestamp_field_reads_a_time_without_offset_as_utc_and_answers_milliseconds_z():
    from rest_framework import serializers as drf

    from config.api.serializers import TimestampField

    field = TimestampField()
    # The seeds' times are UTC: no offset means UTC, never the server's zone.
    assert (
        field.to_representation(field.to_internal_value("2026-07-01T00:00:00")) == "2026-07-01T00:00:00.000Z"
    )
    with pytest.raises(drf.ValidationError):
        field.to_internal_value("2026-07-01 noon")
    parsed = field.to_internal_value("2026-07-01T02:00:00+02:00")
    assert field.to_representation(parsed) == "2026-07-01T00:00:00.000Z"


@pytest.mark.parametrize(
    "body,code",
    [
        ('{"x": NaN}', "MALFORMED_JSON"),
        ('{"x": Infinity}', "MALFORMED_JSON"),
        ('{"x": -Infinity}', "MALFORMED_JSON"),
        ('{"x": 1e999}', "MALFORMED_JSON"),
        ("[" * 50 + "]" * 50, "JSON_TOO_DEEP"),
        ("[" * 100000 + "]" * 100000, "JSON_TOO_DEEP"),
    ],
)
def test_hostile_json_is_rejected_with_400(api, body, code):
    response = api.post("/probe", body, content_type="application/json")
    assert_error_body(response, 400, code)


def test_decode_json_accepts_ordinary_input():
    from config.api.parsers import decode_json

    assert decode_json(b'{"a": [1, 2.5, {"b": null}]}') == {"a": [1, 2.5, {"b": None}]}

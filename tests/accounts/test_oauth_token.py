import json
from urllib.parse import urlencode

import pytest
from django.db import connection

from accounts import services
from tests.conftest import make_access

pytestmark = pytest.mark.django_db


def token_request(client, body, as_json=True):
    if as_json:
        return client.post("/oauth/token", json.dumps(body), content_type="application/json")
    return client.post("/oauth/token", urlencode(body), content_type="application/x-www-form-urlencoded")


def test_json_body_returns_bearer_token_with_all_held_scopes(client, account):
    access, secret = make_access(account, scopes=["usage-metering:read:meters", "read:meter_types"])
    response = token_request(
        client,
        {
            "client_id": access.client_id,
            "client_secret": secret,
            "grant_type": "client_credentials",
            "audience": "http://testserver/",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "scope", "token_type"}
    assert body["expires_in"] == 3600
    assert body["token_type"] == "Bearer"
    assert body["scope"].split() == ["read:meter_types", "usage-metering:read:meters"]


def test_form_body_is_accepted(client, account):
    access, secret = make_access(account)
    response = token_request(
        client,
        {"client_id": access.client_id, "client_secret": secret, "grant_type": "client_credentials"},
        as_json=False,
    )
    assert response.status_code == 200


def test_wrong_secret_is_401_json(client, account):
    access, _ = make_access(account)
    response = token_request(
        client, {"client_id": access.client_id, "client_secret": "nope", "grant_type": "client_credentials"}
    )
    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_CLIENT"


def test_unknown_client_is_401(client, db):
    response = token_request(
        client, {"client_id": "x", "client_secret": "y", "grant_type": "client_credentials"}
    )
    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_CLIENT"


def test_wrong_grant_type_is_400(client, account):
    access, secret = make_access(account)
    response = token_request(
        client, {"client_id": access.client_id, "client_secret": secret, "grant_type": "password"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "UNSUPPORTED_GRANT_TYPE"


def test_missing_field_is_400_with_details(client, db):
    response = token_request(client, {"client_id": "x", "grant_type": "client_credentials"})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "INVALID_REQUEST"
    assert body["details"] == [{"field": "client_secret", "message": "This field is required."}]


def test_a_scope_the_access_does_not_hold_is_refused(client, account):
    access, secret = make_access(account, scopes=["usage-metering:read:meters"])
    response = token_request(
        client,
        {
            "client_id": access.client_id,
            "client_secret": secret,
            "grant_type": "client_credentials",
            "scope": "usage-metering:create:meters",
        },
    )
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_SCOPE"


def test_a_subset_of_held_scopes_can_be_requested(client, account):
    access, secret = make_access(
        account, scopes=["usage-metering:read:meters", "usage-metering:create:meters"]
    )
    response = token_request(
        client,
        {
            "client_id": access.client_id,
            "client_secret": secret,
            "grant_type": "client_credentials",
            "scope": "read:meters",
        },
    )
    assert response.status_code == 200
    assert response.json()["scope"] == "read:meters"


def test_revoked_access_cannot_get_tokens(client, account):
    access, secret = make_access(account)
    services.application_access_revoke(access=access)
    response = token_request(
        client, {"client_id": access.client_id, "client_secret": secret, "grant_type": "client_credentials"}
    )
    assert response.status_code == 401


def test_no_refresh_token_is_issued(client, account):
    access, secret = make_access(account)
    token_request(
        client, {"client_id": access.client_id, "client_secret": secret, "grant_type": "client_credentials"}
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM oauth2_provider_refreshtoken")
        assert cursor.fetchone()[0] == 0

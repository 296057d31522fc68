"""A standard OAuth 2.0 client library (authlib) fetches tokens from a live server with both
client_secret_basic (its default) and client_secret_post, then calls the API (issue 21)."""

import pytest
from authlib.integrations.requests_client import OAuth2Session

from tests.conftest import make_access

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_fetches_a_token_and_calls_the_api(live_server, account, monkeypatch, method):
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # the live server speaks plain HTTP
    access, secret = make_access(account, scopes=["usage-metering:read:meter_types"])
    session = OAuth2Session(access.client_id, secret, token_endpoint_auth_method=method)
    sent = []
    session.hooks["response"].append(lambda response, **_: sent.append(response.request))
    token = session.fetch_token(f"{live_server.url}/oauth/token", grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "usage-metering:read:meter_types"
    assert token["expires_in"] == 3600
    token_request = sent[0]
    if method == "client_secret_basic":
        assert token_request.headers["Authorization"].startswith("Basic ")
        assert "client_secret" not in (token_request.body or "")
    else:
        assert "Authorization" not in token_request.headers
        assert "client_secret=" in token_request.body
    response = session.get(f"{live_server.url}/meter-types")
    assert response.status_code == 200
    assert response.json() == {"meterTypes": []}

"""The OpenAPI document (issue 21): generated without a warning, a summary on every operation, seed
001's identity headers wherever authentication reads them, each operation's accepted scopes as its
security requirements, the client-credentials flow for /docs/, and the seeds' request samples as
examples.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import resolve, reverse
from drf_spectacular.drainage import GENERATOR_STATS
from rest_framework.test import APIClient, APIRequestFactory

from accounts import services as account_services
from accounts.authentication import BearerOrApiKeyAuthentication
from accounts.scopes import ALL_SCOPES
from config.api.permissions import required_scopes_for
from config.api.principal import make_principal, normalize_scope
from config.hot_routes import HOT_PATHS
from tests.conftest import client_for, issue_token, make_access
from tests.contract import test_seed_000_usage_engine as seed_000
from tests.contract import test_seed_001_usage_engine_headers as seed_001
from tests.contract import test_seed_002_amberflo as seed_002
from tests.metering.factories import assert_error

METHODS = {"get", "post", "put", "patch", "delete"}
# Every scope an Application Access can hold: seed 000's names and seed 001's unprefixed ones.
GRANTABLE = sorted({*ALL_SCOPES, *(normalize_scope(scope) for scope in ALL_SCOPES)})
IDENTITY_HEADERS = {"X-Account-Id", "X-Application-Id"}


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict:
    """The document as /openapi.json serves it (generated once for the module)."""
    with django_db_blocker.unblock():
        response = Client().get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if method in METHODS:
                yield method, path, operation


def test_the_schema_generates_without_a_warning_or_an_error(tmp_path):
    GENERATOR_STATS.reset()
    # --fail-on-warn raises SchemaGenerationError on any warning or error; --validate checks the
    # document against the OpenAPI 3 meta-schema.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert not GENERATOR_STATS
    assert (tmp_path / "schema.yaml").stat().st_size > 0


def test_every_operation_has_a_summary(schema):
    missing = [
        f"{method.upper()} {path}"
        for method, path, operation in operations(schema)
        if not operation.get("summary")
    ]
    assert missing == []
    assert len(list(operations(schema))) >= 57


def test_every_authenticated_operation_declares_seed_001s_headers(schema):
    authenticated = 0
    for method, path, operation in operations(schema):
        headers = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "header"}
        if not operation.get("security"):
            assert not IDENTITY_HEADERS & set(headers), (method, path)  # the token endpoint reads neither
            continue
        authenticated += 1
        for name in IDENTITY_HEADERS:
            assert name in headers, (method, path, name)
            assert headers[name].get("required", False) is False  # optional, as seed 001 shows them
            assert headers[name]["schema"] == {"type": "string"}
    assert authenticated == len(list(operations(schema))) - 1  # all but POST /oauth/token


def test_the_compatible_dialects_read_the_identity_headers_they_declare(account, other_account):
    """Amberflo and billing endpoints (X-API-KEY or a token) check both headers like the rest."""
    _, key = account_services.api_key_create(account=account, name="dialect", scopes=["all"])
    amber = APIClient()
    amber.credentials(HTTP_X_API_KEY=key)
    assert amber.get("/meter-definition", HTTP_X_ACCOUNT_ID=str(account.pk)).status_code == 200
    assert_error(
        amber.get("/meter-definition", HTTP_X_ACCOUNT_ID=str(other_account.pk)), 403, "ACCOUNT_MISMATCH"
    )
    # A key belongs to no application: any X-Application-Id is refused.
    assert_error(
        amber.get("/meter-definition", HTTP_X_APPLICATION_ID=str(account.pk)), 403, "APPLICATION_MISMATCH"
    )
    token = client_for(account, name="billing")
    right = token.get(
        "/billing/meters/subscriptions", {"meterName": "none"}, HTTP_X_APPLICATION_ID=str(token.access.pk)
    )
    assert right.status_code != 403
    wrong = token.get(
        "/billing/meters/subscriptions", {"meterName": "none"}, HTTP_X_ACCOUNT_ID=str(other_account.pk)
    )
    assert_error(wrong, 403, "ACCOUNT_MISMATCH")
    hot = token.post(
        "/ingest", "[]", content_type="application/json", HTTP_X_ACCOUNT_ID=str(other_account.pk)
    )
    assert_error(hot, 403, "ACCOUNT_MISMATCH")


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", path)


def _required_scopes(method: str, path: str) -> tuple[str, ...]:
    """What the running service checks for this operation: a hot route's own scopes, or what
    ``required_scopes_for`` answers for the view the URL resolves to."""
    match = resolve(_concrete(path))
    routes = {HOT_PATHS.views[route.name]: route for route in HOT_PATHS.routes}
    if match.func in routes:
        return routes[match.func].scopes
    callback = match.func
    view = callback.cls(**callback.initkwargs)
    actions = getattr(callback, "actions", None)
    if actions is not None:
        view.action_map = actions
        view.action = actions.get(method)
    view.request = APIRequestFactory().generic(method.upper(), _concrete(path))
    return required_scopes_for(view, view.request)


def _takes_api_key(path: str) -> bool:
    match = resolve(_concrete(path))
    routes = {HOT_PATHS.views[route.name]: route for route in HOT_PATHS.routes}
    if match.func in routes:
        return routes[match.func].allow_api_key
    return any(issubclass(cls, BearerOrApiKeyAuthentication) for cls in match.func.cls.authentication_classes)


def test_security_requirements_are_the_scopes_each_operation_accepts(schema):
    assert set(schema["components"]["securitySchemes"]) == {"OAuth2", "ApiKey"}
    for method, path, operation in operations(schema):
        requirements = operation.get("security")
        if path == "/oauth/token":
            assert not requirements
            continue
        required = _required_scopes(method, path)
        accepted = {scope for scope in GRANTABLE if make_principal(
            account_id=None, client_key="c", scopes=[scope]).has_any_scope(required)}  # fmt: skip
        # Any one scope is enough: one requirement per scope (OpenAPI ORs requirements).
        oauth = [requirement["OAuth2"] for requirement in requirements if "OAuth2" in requirement]
        assert all(len(scopes) == 1 for scopes in oauth), (method, path, oauth)
        assert {scopes[0] for scopes in oauth} == accepted, (method, path)
        assert len(oauth) == len(accepted)
        assert ({"ApiKey": []} in requirements) is _takes_api_key(path), (method, path)
        assert all(set(requirement) in ({"OAuth2"}, {"ApiKey"}) for requirement in requirements)


def test_a_token_holding_one_listed_scope_passes_and_one_without_is_refused(schema, account):
    """Behaviour, not only the document: on every GET without path parameters, a token of any one
    documented scope gets past the scope check and a token of every other scope is 403."""
    checked = 0
    for method, path, operation in operations(schema):
        if method != "get" or "{" in path or not operation.get("security"):
            continue
        listed = sorted({r["OAuth2"][0] for r in operation["security"] if "OAuth2" in r})
        for index, scope in enumerate(listed):
            access, secret = make_access(account, name=f"{path}-{index}", scopes=[scope])
            response = APIClient().get(path, HTTP_AUTHORIZATION=f"Bearer {issue_token(access, secret)}")
            assert response.status_code != 403, (path, scope, response.content)
        others = [scope for scope in GRANTABLE if scope not in listed]
        access, secret = make_access(account, name=f"{path}-others", scopes=others)
        response = APIClient().get(path, HTTP_AUTHORIZATION=f"Bearer {issue_token(access, secret)}")
        assert_error(response, 403, "INSUFFICIENT_SCOPE")
        checked += 1
    assert checked >= 9


def test_docs_offer_the_client_credentials_flow_of_the_token_endpoint(schema, account):
    flow = schema["components"]["securitySchemes"]["OAuth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == reverse("oauth-token") == "/oauth/token"
    assert set(flow["scopes"]) == set(GRANTABLE)
    # What Swagger UI's Authorize sends: a form body, the client in HTTP Basic, the scopes ticked.
    access, secret = make_access(account, name="swagger", scopes=["all"])
    basic = base64.b64encode(f"{access.client_id}:{secret}".encode()).decode()
    response = APIClient().post(
        flow["tokenUrl"],
        "grant_type=client_credentials&scope=read%3Ameter_types",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    assert response.status_code == 200, response.content
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "read:meter_types"
    # The token works as the scheme says: a bearer token holding the ticked scope.
    assert (
        APIClient().get("/meter-types", HTTP_AUTHORIZATION=f"Bearer {token['access_token']}").status_code
        == 200
    )
    page = Client().get("/docs/")
    assert page.status_code == 200
    assert '"persistAuthorization": true' in page.content.decode()


# The samples as the contract tests replay them (each copied there from its seed).
EXPECTED_EXAMPLES = {
    ("post", "/oauth/token"): {"seed000": seed_000.TOKEN_SAMPLE},
    ("post", "/meter-types"): {
        "seed000": seed_000.CREATE_METER_TYPE_SAMPLE,
        "seed001": seed_001.CREATE_METER_TYPE_SAMPLE,
    },
    ("patch", "/meter-types/{id}"): {
        "seed000": seed_000.UPDATE_METER_TYPE_SAMPLE,
        "seed001": seed_001.UPDATE_METER_TYPE_SAMPLE,
    },
    ("post", "/meters"): {"seed000": seed_000.CREATE_METER_SAMPLE, "seed001": seed_001.CREATE_METER_SAMPLE},
    ("patch", "/meters/{id}"): {
        "seed000": seed_000.UPDATE_METER_SAMPLE,
        "seed001": seed_001.UPDATE_METER_SAMPLE,
    },
    ("post", "/online-collection/collectors"): {"seed000": seed_000.COLLECTOR_SAMPLE},
    ("patch", "/online-collection/collectors/{id}"): {"seed000": seed_000.COLLECTOR_SAMPLE},
    ("post", "/online-collection/collectors/{id}/data"): {"seed000": seed_000.SEND_DATA_SAMPLE},
    ("post", "/streams/import"): {"seed000": seed_000.IMPORT_SAMPLE},
    ("post", "/parameters"): {"seed000": seed_000.CREATE_PARAMETER_SAMPLE},
    ("delete", "/parameters"): {"seed000": seed_000.DELETE_PARAMETERS_SAMPLE},
    ("patch", "/parameters/{name}"): {"seed000": seed_000.UPDATE_PARAMETER_SAMPLE},
    ("post", "/ingest"): {"seed002": seed_002.INGEST_SAMPLE},
    ("post", "/meter-definition"): {"seed002": seed_002.CREATE_DEFINITION_SAMPLE},
    ("post", "/usage"): {"seed002": seed_002.USAGE_SAMPLE},
}


def test_the_seeds_request_samples_are_the_operations_examples(schema):
    found = {}
    for method, path, operation in operations(schema):
        examples = (
            operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("examples")
        )
        if examples:
            found[(method, path)] = examples
    assert set(found) == set(EXPECTED_EXAMPLES)
    for key, expected in EXPECTED_EXAMPLES.items():
        assert set(found[key]) == set(expected), key
        for name, sample in expected.items():
            # Verbatim: the same fields in the seed's order, the same values.
            assert json.dumps(found[key][name]["value"]) == json.dumps(sample), (key, name)
            assert found[key][name]["summary"] == f"Seed {name[4:]}'s request sample"
    folded = found[("post", "/meter-types")]["seed000"]
    assert "aggregation" in folded["description"] and "resetSchedule" in folded["description"]

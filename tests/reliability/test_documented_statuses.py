"""Every operation of the schema answers the shared conventions' statuses, and documents each of them.

Schemathesis only sees the statuses its random requests happen to provoke. These are provoked on
purpose, on every operation the schema lists (so new endpoints are covered): no credentials (401),
a token without the scope (403), an id nobody has (404), a body over the limit (413), a body no
parser takes (415, or a 400 MALFORMED_JSON from a view that reads every body as JSON), an empty
rate-limit bucket (429, with Retry-After). Each answer must be the JSON
error body, and its status must be among the operation's documented responses.
"""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from tests.conftest import client_for
from tests.reliability.resources import FACTORIES, resource_url

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
UNUSED_ID = "0f0e0d0c-0b0a-4908-8706-050403020100"


# A body each operation takes (by the path's last segment), so that the unknown id is what gets refused.
PATH_BODIES = {"preview": {"records": [{"a": 1}]}, "{id}": {"description": "x"}}
BODY_OF = {
    "/data-corrections/{id}": {"record": {"userId": "x"}},
    "/online-collection/collectors/{id}": {"name": "x"},
    "/online-collection/collectors/{id}/data": {"data": {"a": 1}},
}
# Headers an operation requires before it reads its body.
HEADERS = {"/billing/meters/usage": {"Idempotency-Key": "documented-statuses"}}


def _operations():
    schema = Client().get("/openapi.json").json()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                url = path
                for parameter in operation.get("parameters", []):
                    if parameter["in"] == "path":
                        url = url.replace("{" + parameter["name"] + "}", UNUSED_ID)
                yield method, path, url, operation


def _assert_documented(response, operation, method: str, path: str, status: int) -> None:
    assert response.status_code == status, (method, path, response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), (method, path)
    assert set(response.json()) == {"code", "message", "details"}, (method, path)
    assert str(status) in operation["responses"], (
        f"{method.upper()} {path} answers {status} but does not document it"
    )


def _secured(operation) -> bool:
    return any(requirement for requirement in operation.get("security") or [])


def test_every_secured_operation_documents_401_and_403(account):
    anonymous = Client()
    # Two tokens with one scope each, used by no operation in common: one of them lacks the scope.
    narrow = [
        client_for(account, scopes=["meter-report"], name="billing-only"),
        client_for(account, scopes=["aggregation:read:sessions"], name="sessions-only"),
    ]
    checked = 0
    for method, path, url, operation in _operations():
        if not _secured(operation):
            continue
        _assert_documented(anonymous.generic(method.upper(), url), operation, method, path, 401)
        statuses = [getattr(client, method)(url).status_code for client in narrow]
        assert 403 in statuses, (method, path, statuses)
        refused = narrow[statuses.index(403)]
        _assert_documented(getattr(refused, method)(url), operation, method, path, 403)
        checked += 1
    assert checked >= 25


def test_every_operation_with_an_id_in_its_path_documents_404(api):
    checked = 0
    for method, path, url, operation in _operations():
        if url == path:
            continue
        body = BODY_OF.get(path) or PATH_BODIES.get(path.rsplit("/", 1)[-1], {"description": "x"})
        response = (
            getattr(api, method)(url, body, format="json")
            if method in ("post", "patch")
            else getattr(api, method)(url, {"fieldValues": "x"} if "lookup" in path else None)
        )
        _assert_documented(response, operation, method, path, 404)
        checked += 1
    assert checked >= 16


def test_every_operation_documents_413_for_a_body_over_the_limit(api, settings):
    settings.API_MAX_BODY_BYTES = 64
    for method, path, url, operation in _operations():
        response = api.generic(
            method.upper(), url, b'{"padding": "' + b"x" * 100 + b'"}', content_type="application/json"
        )
        _assert_documented(response, operation, method, path, 413)


def test_every_operation_with_a_body_documents_415_for_a_content_type_it_does_not_parse(api):
    checked = 0
    for method, path, _url, operation in _operations():
        if "requestBody" not in operation:
            continue
        # The account's own resource (the tenancy sweep's factories), so the body is what gets refused.
        url = resource_url(path, FACTORIES[path](api.account)) if path in FACTORIES else path
        response = api.generic(
            method.upper(), url, "name=value", content_type="text/plain", headers=HEADERS.get(path, {})
        )
        # DRF views answer 415; a hot-path view that reads every body as JSON may answer 400 instead.
        refused = 400 if response.status_code == 400 and response.json()["code"] == "MALFORMED_JSON" else 415
        _assert_documented(response, operation, method, path, refused)
        checked += 1
    assert checked >= 12


def test_every_operation_documents_429_with_retry_after(api, rate_limits, settings):
    settings.RATE_LIMITS = {group: (1, 3600, 1) for group in settings.RATE_LIMITS}
    for method, path, url, operation in _operations():
        client = (
            client_for(api.account, name=f"limited-{uuid.uuid4().hex[:8]}")
            if _secured(operation)
            else Client()
        )
        statuses = []
        for _attempt in range(3):
            response = client.generic(method.upper(), url, b"{}", content_type="application/json")
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
        assert statuses[-1] == 429, (method, path, statuses)
        _assert_documented(response, operation, method, path, 429)
        assert int(response["Retry-After"]) >= 1
        assert "Retry-After" in operation["responses"]["429"]["headers"]

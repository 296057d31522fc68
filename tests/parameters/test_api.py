"""The global parameters API: shapes per seed 000, scopes, tenancy, error codes, rate limits."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from parameters import services
from parameters.models import Parameter
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

SEED_PARAMETER = {
    "description": "API key for third-party payment gateway",
    "name": "credentials/payment-gateway/api-key",
    "type": "standard",
    "value": "sk_val_51H8KJ8eXAMPLEKEY1234567890",
}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    return body


def test_create_answers_201_with_the_name(api, account):
    response = api.post("/parameters", SEED_PARAMETER, format="json")
    assert response.status_code == 201
    assert response.json() == {"name": "credentials/payment-gateway/api-key"}
    assert response["Location"] == "/parameters/credentials/payment-gateway/api-key"
    stored = Parameter.objects.get(account=account)
    assert (stored.name, stored.type, stored.value, stored.description) == (
        SEED_PARAMETER["name"],
        "standard",
        SEED_PARAMETER["value"],
        SEED_PARAMETER["description"],
    )


def test_get_answers_the_seed_shape_for_a_standard_parameter(api):
    api.post("/parameters", SEED_PARAMETER, format="json")
    response = api.get("/parameters/credentials/payment-gateway/api-key")
    assert response.status_code == 200
    body = response.json()
    updated_at = Parameter.objects.get().updated_at
    assert body == {
        "description": "API key for third-party payment gateway",
        "name": "credentials/payment-gateway/api-key",
        "type": "standard",
        "updatedAt": updated_at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{updated_at.microsecond // 1000:03d}Z",
        "value": "sk_val_51H8KJ8eXAMPLEKEY1234567890",
    }


def test_a_sensitive_value_is_never_returned(api):
    secret = "sk_live_do-not-return-me"
    created = api.post(
        "/parameters", {"name": "vault/api-key", "type": "sensitive", "value": secret}, format="json"
    )
    assert created.status_code == 201
    detail = api.get("/parameters/vault/api-key")
    listed = api.get("/parameters")
    patched = api.patch("/parameters/vault/api-key", {"value": secret + "-2"}, format="json")
    for response in (created, detail, listed, patched):
        assert secret not in response.content.decode()
    assert set(detail.json()) == {"description", "name", "type", "updatedAt"}
    assert detail.json()["type"] == "sensitive"
    assert listed.json()["parameters"][0]["name"] == "vault/api-key"
    assert "value" not in listed.json()["parameters"][0]


def test_create_validation_errors_name_the_field(api):
    cases = [
        ({"type": "standard", "value": "v"}, "name", "This field is required."),
        ({"name": "a//b", "type": "standard", "value": "v"}, "name", None),
        (
            {"name": "/".join("x" * 11), "type": "standard", "value": "v"},
            "name",
            "name may have at most 10 levels (separated by /).",
        ),
        (
            {"name": "n", "type": "Standard", "value": "v"},
            "type",
            'type must be "standard" or "sensitive" (case-sensitive).',
        ),
        ({"name": "n", "type": "standard", "value": ""}, "value", "value must be 1 to 8192 characters long."),
        ({"name": "n", "type": "standard", "value": 12}, "value", "Must be a string."),
        (
            {"name": "n", "type": "standard", "value": "x" * 8193},
            "value",
            "value must be 1 to 8192 characters long.",
        ),
        (
            {"name": "n", "type": "standard", "value": "v", "description": "d" * 1025},
            "description",
            "description may be at most 1024 characters long.",
        ),
        ({"name": "n", "type": "standard", "value": "v", "accountId": "x"}, "accountId", "Unknown field."),
    ]
    for payload, field, message in cases:
        body = assert_error(api.post("/parameters", payload, format="json"), 400, "VALIDATION_ERROR")
        assert [detail["field"] for detail in body["details"]] == [field], payload
        if message is not None:
            assert body["details"][0]["message"] == message
    assert Parameter.objects.count() == 0


def test_a_validation_error_never_echoes_a_sensitive_value(api):
    secret = "s3cr3t-" + "x" * 8192
    response = api.post("/parameters", {"name": "n", "type": "sensitive", "value": secret}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR")
    assert "s3cr3t" not in response.content.decode()


def test_malformed_json_is_400(api):
    response = api.generic("POST", "/parameters", "{not json", content_type="application/json")
    assert_error(response, 400, "MALFORMED_JSON")


def test_duplicate_and_limit_are_409(api, account):
    assert api.post("/parameters", SEED_PARAMETER, format="json").status_code == 201
    assert_error(api.post("/parameters", SEED_PARAMETER, format="json"), 409, "PARAMETER_ALREADY_EXISTS")
    for index in range(99):
        services.parameter_create(account=account, name=f"p{index}", type="standard", value="v")
    body = assert_error(
        api.post("/parameters", {"name": "p-extra", "type": "standard", "value": "v"}, format="json"),
        409,
        "PARAMETER_LIMIT_REACHED",
    )
    assert "100" in body["message"]
    assert Parameter.objects.filter(account=account).count() == 100


def test_unknown_name_is_404(api):
    assert_error(api.get("/parameters/missing/name"), 404, "PARAMETER_NOT_FOUND")
    assert_error(api.patch("/parameters/missing", {"value": "v"}, format="json"), 404, "PARAMETER_NOT_FOUND")


def test_list_sorts_filters_and_paginates(api, account):
    for name, description in [("b/beta", "2"), ("a/alpha", "3"), ("c/gamma", "1"), ("a/alphabet", "4")]:
        services.parameter_create(
            account=account, name=name, type="standard", value="v", description=description
        )

    def names(query=""):
        response = api.get(f"/parameters{query}")
        assert response.status_code == 200, response.content
        assert list(response.json()) == ["parameters"]
        return [item["name"] for item in response.json()["parameters"]]

    assert names() == ["a/alpha", "a/alphabet", "b/beta", "c/gamma"]
    assert names("?sortOrder=DESC") == ["c/gamma", "b/beta", "a/alphabet", "a/alpha"]
    assert names("?sortBy=description") == ["c/gamma", "b/beta", "a/alpha", "a/alphabet"]
    assert names("?name=ALPHA") == ["a/alpha", "a/alphabet"]
    assert names("?name=a/alphabet") == ["a/alphabet"]
    assert names("?limit=2&skip=1") == ["a/alphabet", "b/beta"]
    parameter = Parameter.objects.get(name="b/beta")
    services.parameter_update(parameter=parameter, description="touched")
    assert names("?sortBy=updatedAt&sortOrder=DESC")[0] == "b/beta"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?limit=101", "limit"),
        ("?limit=0", "limit"),
        ("?skip=-1", "skip"),
        ("?sortBy=type", "sortBy"),
        ("?sortOrder=UP", "sortOrder"),
    ],
)
def test_list_rejects_bad_query_parameters(api, query, field):
    body = assert_error(api.get(f"/parameters{query}"), 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == field


def test_patch_updates_description_value_or_both(api, account):
    api.post("/parameters", SEED_PARAMETER, format="json")
    url = "/parameters/credentials/payment-gateway/api-key"
    response = api.patch(
        url,
        {
            "description": "Updated API gateway key for external integrations",
            "value": "sk_val_1He58KJ81XAMPLEKEY78956210",
        },
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == {"name": "credentials/payment-gateway/api-key"}
    assert api.get(url).json()["value"] == "sk_val_1He58KJ81XAMPLEKEY78956210"
    assert api.patch(url, {"description": ""}, format="json").status_code == 200
    assert api.get(url).json()["description"] == ""


def test_patch_rules(api):
    api.post("/parameters", {"name": "p", "type": "standard", "value": "v"}, format="json")
    body = assert_error(api.patch("/parameters/p", {}, format="json"), 400, "VALIDATION_ERROR")
    assert body["message"] == "At least one field (description or value) must be provided."
    assert_error(
        api.patch("/parameters/p", {"type": "sensitive", "value": "x"}, format="json"),
        400,
        "PARAMETER_TYPE_IMMUTABLE",
    )
    assert_error(api.patch("/parameters/p", {"name": "q"}, format="json"), 400, "VALIDATION_ERROR")
    assert_error(api.patch("/parameters/p", {"value": ""}, format="json"), 400, "VALIDATION_ERROR")
    assert_error(
        api.patch("/parameters/p", {"description": "d" * 1025}, format="json"), 400, "VALIDATION_ERROR"
    )
    assert_error(api.patch("/parameters/p", ["value"], format="json"), 400, "VALIDATION_ERROR")
    assert api.get("/parameters/p").json()["value"] == "v"
    assert api.patch("/parameters/p", {"type": "standard", "value": "w"}, format="json").status_code == 200
    assert api.get("/parameters/p").json()["value"] == "w"


def test_delete_answers_deleted_and_invalid_names(api, account, other_account):
    for name in ("credentials/a", "credentials/b"):
        services.parameter_create(account=account, name=name, type="sensitive", value="s")
    services.parameter_create(account=other_account, name="theirs", type="standard", value="v")
    response = api.delete(
        "/parameters", {"parameters": ["credentials/a", "unknown", "theirs"]}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {
        "deletedCount": 1,
        "deletedParameters": ["credentials/a"],
        "invalidParameters": ["unknown", "theirs"],
    }
    assert list(Parameter.objects.order_by("name").values_list("name", flat=True)) == [
        "credentials/b",
        "theirs",
    ]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"parameters": []},
        {"parameters": "a"},
        {"parameters": [1]},
        {"parameters": ["a", "a"]},
        {"parameters": [f"n{i}" for i in range(101)]},
        {"parameters": ["a"], "force": True},
    ],
)
def test_delete_rejects_a_malformed_body(api, account, payload):
    services.parameter_create(account=account, name="a", type="standard", value="v")
    assert_error(api.delete("/parameters", payload, format="json"), 400, "VALIDATION_ERROR")
    assert Parameter.objects.count() == 1


def test_another_accounts_parameter_is_404_and_untouched(api, other_api, other_account):
    services.parameter_create(account=other_account, name="x/y", type="standard", value="theirs")
    assert_error(api.get("/parameters/x/y"), 404, "PARAMETER_NOT_FOUND")
    assert_error(api.patch("/parameters/x/y", {"value": "mine"}, format="json"), 404, "PARAMETER_NOT_FOUND")
    assert api.get("/parameters").json() == {"parameters": []}
    assert api.delete("/parameters", {"parameters": ["x/y"]}, format="json").json()["invalidParameters"] == [
        "x/y"
    ]
    assert other_api.get("/parameters/x/y").json()["value"] == "theirs"
    # Creating the same name in my account does not collide with theirs.
    assert (
        api.post(
            "/parameters", {"name": "x/y", "type": "standard", "value": "mine"}, format="json"
        ).status_code
        == 201
    )
    assert other_api.get("/parameters/x/y").json()["value"] == "theirs"


SCOPED_CALLS = [
    ("get", "/parameters", None, "global-parameters:read:parameters"),
    ("get", "/parameters/p", None, "global-parameters:read:parameters"),
    (
        "post",
        "/parameters",
        {"name": "q", "type": "standard", "value": "v"},
        "global-parameters:create:parameters",
    ),
    ("patch", "/parameters/p", {"value": "w"}, "global-parameters:update:parameters"),
    ("delete", "/parameters", {"parameters": ["p"]}, "global-parameters:delete:parameters"),
]


@pytest.mark.parametrize(("method", "url", "payload", "scope"), SCOPED_CALLS)
def test_each_endpoint_needs_its_scope(account, method, url, payload, scope):
    services.parameter_create(account=account, name="p", type="standard", value="v")
    others = [call[3] for call in SCOPED_CALLS if call[3] != scope]
    without = client_for(account, scopes=others + ["usage-metering:read:meters"], name="without")
    body = assert_error(getattr(without, method)(url, payload, format="json"), 403, "INSUFFICIENT_SCOPE")
    assert scope in body["message"]
    assert Parameter.objects.get(name="p").value == "v"
    with_scope = client_for(account, scopes=[scope], name="with")
    assert getattr(with_scope, method)(url, payload, format="json").status_code in (200, 201)


def test_unauthenticated_is_401(db):
    assert_error(APIClient().get("/parameters"), 401, "UNAUTHORIZED")


def test_methods_not_offered_are_405(api):
    assert_error(api.put("/parameters/p", {"value": "v"}, format="json"), 405, "METHOD_NOT_ALLOWED")
    assert_error(api.delete("/parameters/p"), 405, "METHOD_NOT_ALLOWED")
    assert_error(api.patch("/parameters", {}, format="json"), 405, "METHOD_NOT_ALLOWED")


def test_rate_limits_follow_the_seed(api, account, rate_limits):
    # parameters: 2/s, burst 4.
    statuses = [api.get("/parameters").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    limited = api.get("/parameters/p")
    assert_error(limited, 429, "TOO_MANY_REQUESTS")
    assert limited["Retry-After"] == "1"
    # parameters_delete: 1/s, burst 2, its own bucket.
    deletes = [api.delete("/parameters", {"parameters": ["x"]}, format="json").status_code for _ in range(3)]
    assert deletes == [200, 200, 429]


def test_openapi_documents_every_operation_and_status(client):
    schema = client.get("/openapi.json").json()
    collection = schema["paths"]["/parameters"]
    detail = schema["paths"]["/parameters/{name}"]
    assert set(collection) >= {"get", "post", "delete"}
    assert set(detail) >= {"get", "patch"}
    assert "put" not in detail and "delete" not in detail

    def statuses(operation):
        return set(operation["responses"])

    assert statuses(collection["get"]) == {"200", "400", "401", "403", "413", "429", "500", "503"}
    assert statuses(collection["post"]) == {
        "201",
        "400",
        "401",
        "403",
        "409",
        "413",
        "415",
        "429",
        "500",
        "503",
    }
    assert statuses(collection["delete"]) == {"200", "400", "401", "403", "413", "415", "429", "500", "503"}
    assert statuses(detail["get"]) == {"200", "401", "403", "404", "413", "429", "500", "503"}
    assert statuses(detail["patch"]) == {"200", "400", "401", "403", "404", "413", "415", "429", "500", "503"}
    assert "requestBody" in collection["delete"]
    assert {p["name"] for p in collection["get"]["parameters"] if p["in"] != "header"} == {
        "limit",
        "skip",
        "sortBy",
        "sortOrder",
        "name",
    }

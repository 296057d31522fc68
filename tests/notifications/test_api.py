"""/notification-endpoints: wiring, scopes, tenancy, validation codes, the secret shown once."""

import base64
import json

import pytest
from django.db import connection

from notifications import services
from notifications.models import Delivery, NotificationEndpoint
from tests.conftest import client_for
from tests.notifications.conftest import Answer

pytestmark = pytest.mark.django_db

PUBLIC = "https://93.184.215.14/hooks/usage"
READ = "usage-metering:read:notifications"
WRITE = "usage-metering:write:notifications"


def error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    return body


def create(api, **fields):
    body = {"url": PUBLIC, "eventTypes": ["threshold.crossed"], **fields}
    return api.post("/notification-endpoints", body, format="json")


def test_create_answers_201_with_the_secret_once(api, account, refuse_private):
    response = create(api, description="Billing alerts", eventTypes=["threshold.crossed", "meter.flushed"])
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {
        "id",
        "url",
        "description",
        "eventTypes",
        "isActive",
        "createdAt",
        "updatedAt",
        "secret",
    }
    assert (body["url"], body["description"], body["eventTypes"], body["isActive"]) == (
        PUBLIC,
        "Billing alerts",
        ["meter.flushed", "threshold.crossed"],
        True,
    )
    assert body["createdAt"].endswith("Z") and len(body["createdAt"]) == 24
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"), validate=True)) == 32

    endpoint = NotificationEndpoint.objects.get(pk=body["id"])
    assert endpoint.account_id == account.pk
    assert services.notification_endpoint_secret(endpoint=endpoint) == body["secret"]
    # Never again: not in the detail, not in the list.
    assert "secret" not in api.get(f"/notification-endpoints/{body['id']}").json()
    listed = api.get("/notification-endpoints").json()
    assert body["secret"] not in json.dumps(listed)


def test_event_types_default_to_all_of_them(api, refuse_private):
    response = api.post("/notification-endpoints", {"url": PUBLIC}, format="json")
    assert response.status_code == 201
    assert response.json()["eventTypes"] == ["meter.flushed", "threshold.crossed"]


def test_the_secret_is_encrypted_at_rest(api, refuse_private):
    secret = create(api).json()["secret"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM notifications_notificationendpoint")
        dump = repr(cursor.fetchall())
    assert secret not in dump
    assert secret.removeprefix("whsec_") not in dump
    assert PUBLIC in dump  # the dump is real


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "ftp://93.184.215.14/",
    ],
)
def test_a_private_or_non_http_url_is_400_target_not_allowed(api, url, refuse_private):
    body = error(create(api, url=url), 400, "TARGET_NOT_ALLOWED")
    assert body["details"][0]["field"] == "url"
    assert NotificationEndpoint.objects.count() == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"eventTypes": ["meter.exploded"]}, "eventTypes"),
        ({"eventTypes": []}, "eventTypes"),
        ({"url": ""}, "url"),
        ({"url": "https://93.184.215.14/" + "a" * 2048}, "url"),
        ({"description": "x" * 201}, "description"),
        ({"isActive": "maybe"}, "isActive"),
        ({"accountId": "00000000-0000-4000-8000-000000000000"}, "accountId"),
        ({"secret": "whsec_mine"}, "secret"),
    ],
)
def test_invalid_bodies_are_400_and_store_nothing(api, fields, field, refuse_private):
    body = error(create(api, **fields), 400, "VALIDATION_ERROR")
    assert field in [detail["field"] for detail in body["details"]]
    assert NotificationEndpoint.objects.count() == 0


def test_a_missing_url_is_400(api):
    body = error(
        api.post("/notification-endpoints", {"eventTypes": ["meter.flushed"]}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert body["details"][0]["field"] == "url"


def test_the_endpoint_limit_is_409(api, settings, refuse_private):
    settings.NOTIFICATION_ENDPOINTS_MAX_PER_ACCOUNT = 2
    assert create(api).status_code == 201
    assert create(api).status_code == 201
    error(create(api), 409, "NOTIFICATION_ENDPOINT_LIMIT_REACHED")
    assert NotificationEndpoint.objects.count() == 2


def test_list_is_wrapped_sorted_and_paginated(api, refuse_private):
    for n in range(3):
        create(api, url=f"https://93.184.215.14/{n}")
    body = api.get("/notification-endpoints?sortBy=url&sortOrder=DESC&limit=2").json()
    assert [item["url"] for item in body["notificationEndpoints"]] == [
        "https://93.184.215.14/2",
        "https://93.184.215.14/1",
    ]
    second = api.get("/notification-endpoints?sortBy=url&sortOrder=DESC&limit=2&skip=2").json()
    assert [item["url"] for item in second["notificationEndpoints"]] == ["https://93.184.215.14/0"]
    error(api.get("/notification-endpoints?limit=101"), 400, "VALIDATION_ERROR")
    error(api.get("/notification-endpoints?sortBy=secret"), 400, "VALIDATION_ERROR")


def test_patch_changes_only_what_is_sent_and_rechecks_the_url(api, refuse_private):
    endpoint_id = create(api, description="one").json()["id"]
    response = api.patch(
        f"/notification-endpoints/{endpoint_id}",
        {"isActive": False, "eventTypes": ["meter.flushed"]},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["url"], body["description"], body["eventTypes"], body["isActive"]) == (
        PUBLIC,
        "one",
        ["meter.flushed"],
        False,
    )
    assert "secret" not in body

    error(
        api.patch(f"/notification-endpoints/{endpoint_id}", {"url": "http://localhost/x"}, format="json"),
        400,
        "TARGET_NOT_ALLOWED",
    )
    error(
        api.patch(
            f"/notification-endpoints/{endpoint_id}", {"createdAt": "2020-01-01T00:00:00Z"}, format="json"
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert NotificationEndpoint.objects.get(pk=endpoint_id).url == PUBLIC


def test_put_is_405(api, refuse_private):
    endpoint_id = create(api).json()["id"]
    error(
        api.put(f"/notification-endpoints/{endpoint_id}", {"url": PUBLIC}, format="json"),
        405,
        "METHOD_NOT_ALLOWED",
    )


def test_delete_answers_204_and_removes_the_endpoint_with_its_deliveries(api, account, refuse_private):
    endpoint_id = create(api).json()["id"]
    services.notification_publish(account_id=account.pk, event_type="threshold.crossed", payload={"v": 1})
    assert Delivery.objects.count() == 1
    response = api.delete(f"/notification-endpoints/{endpoint_id}")
    assert response.status_code == 204
    assert (NotificationEndpoint.objects.count(), Delivery.objects.count()) == (0, 0)
    error(api.get(f"/notification-endpoints/{endpoint_id}"), 404, "NOTIFICATION_ENDPOINT_NOT_FOUND")


def test_deliveries_list_each_attempt_and_filter_by_status(api, account, receiver_factory, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 0
    settings.WEBHOOK_BACKOFF_MAX_SECONDS = 0
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    receiver = receiver_factory([Answer(500), Answer(200), Answer(500)])
    endpoint_id = api.post("/notification-endpoints", {"url": receiver.url}, format="json").json()["id"]
    first = services.notification_publish(
        account_id=account.pk, event_type="threshold.crossed", payload={"v": 1}
    )
    services.delivery_sweep_due()
    services.delivery_sweep_due()
    second = services.notification_publish(
        account_id=account.pk, event_type="meter.flushed", payload={"v": 2}
    )
    services.delivery_sweep_due()
    services.delivery_sweep_due()

    body = api.get(f"/notification-endpoints/{endpoint_id}/deliveries").json()
    assert [(d["event"]["id"], d["status"], d["attemptCount"]) for d in body["deliveries"]] == [
        (str(first.id), "SUCCEEDED", 2),
        (str(second.id), "FAILED", 2),
    ]
    delivered = body["deliveries"][0]
    assert delivered["event"] == {
        "id": str(first.id),
        "type": "threshold.crossed",
        "timestamp": delivered["event"]["timestamp"],
        "data": {"v": 1},
    }
    assert [(a["number"], a["statusCode"], a["error"]) for a in delivered["attempts"]] == [
        (1, 500, "HTTP 500"),
        (2, 200, ""),
    ]
    assert (delivered["maxAttempts"], delivered["lastStatusCode"], delivered["nextAttemptAt"]) == (
        2,
        200,
        None,
    )

    failed = api.get(f"/notification-endpoints/{endpoint_id}/deliveries?status=FAILED").json()
    assert [d["event"]["id"] for d in failed["deliveries"]] == [str(second.id)]
    error(api.get(f"/notification-endpoints/{endpoint_id}/deliveries?status=LOST"), 400, "VALIDATION_ERROR")


def test_scopes_read_and_write_are_required(account, refuse_private):
    reader = client_for(account, scopes=[READ], name="reader")
    writer = client_for(account, scopes=[WRITE], name="writer")
    nobody = client_for(account, scopes=["usage-metering:read:meters"], name="nobody")
    endpoint_id = create(writer).json()["id"]

    assert reader.get("/notification-endpoints").status_code == 200
    assert reader.get(f"/notification-endpoints/{endpoint_id}").status_code == 200
    assert reader.get(f"/notification-endpoints/{endpoint_id}/deliveries").status_code == 200
    error(create(reader), 403, "INSUFFICIENT_SCOPE")
    error(
        reader.patch(f"/notification-endpoints/{endpoint_id}", {"isActive": False}, format="json"),
        403,
        "INSUFFICIENT_SCOPE",
    )
    error(reader.delete(f"/notification-endpoints/{endpoint_id}"), 403, "INSUFFICIENT_SCOPE")
    error(writer.get("/notification-endpoints"), 403, "INSUFFICIENT_SCOPE")
    error(nobody.get("/notification-endpoints"), 403, "INSUFFICIENT_SCOPE")
    # Seed 001's unprefixed alias works too.
    assert (
        client_for(account, scopes=["read:notifications"], name="alias")
        .get("/notification-endpoints")
        .status_code
        == 200
    )
    assert NotificationEndpoint.objects.get(pk=endpoint_id).is_active is True


def test_no_token_is_401(client):
    error(client.get("/notification-endpoints"), 401, "UNAUTHORIZED")


def test_another_accounts_endpoint_is_404_and_unchanged(api, other_api, refuse_private):
    endpoint_id = create(api).json()["id"]
    for response in (
        other_api.get(f"/notification-endpoints/{endpoint_id}"),
        other_api.patch(f"/notification-endpoints/{endpoint_id}", {"isActive": False}, format="json"),
        other_api.delete(f"/notification-endpoints/{endpoint_id}"),
        other_api.get(f"/notification-endpoints/{endpoint_id}/deliveries"),
        other_api.get("/notification-endpoints/not-a-uuid"),
    ):
        error(response, 404, "NOTIFICATION_ENDPOINT_NOT_FOUND")
    assert other_api.get("/notification-endpoints").json() == {"notificationEndpoints": []}
    endpoint = NotificationEndpoint.objects.get(pk=endpoint_id)
    assert (endpoint.is_active, endpoint.url) == (True, PUBLIC)


def test_writes_are_rate_limited_in_the_config_group(api, rate_limits, settings, refuse_private):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "config": (1, 60, 2)}
    statuses = [api.get("/notification-endpoints").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    response = api.get("/notification-endpoints")
    error(response, 429, "TOO_MANY_REQUESTS")
    assert int(response["Retry-After"]) >= 1


def test_openapi_documents_every_operation_and_status(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    expected = {
        ("/notification-endpoints", "get"): {"200", "400", "401", "403", "413", "429", "500", "503"},
        ("/notification-endpoints", "post"): {
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
        },
        ("/notification-endpoints/{id}", "get"): {"200", "401", "403", "404", "413", "429", "500", "503"},
        ("/notification-endpoints/{id}", "patch"): {
            "200",
            "400",
            "401",
            "403",
            "404",
            "413",
            "415",
            "429",
            "500",
            "503",
        },
        ("/notification-endpoints/{id}", "delete"): {"204", "401", "403", "404", "413", "429", "500", "503"},
        ("/notification-endpoints/{id}/deliveries", "get"): {
            "200",
            "400",
            "401",
            "403",
            "404",
            "413",
            "429",
            "500",
            "503",
        },
    }
    for (path, method), statuses in expected.items():
        assert set(paths[path][method]["responses"]) == statuses, (path, method)
    assert "put" not in paths["/notification-endpoints/{id}"]
    created = paths["/notification-endpoints"]["post"]["responses"]["201"]["content"]["application/json"][
        "schema"
    ]
    assert created["$ref"].endswith("/NotificationEndpointCreated")
    assert "secret" in schema["components"]["schemas"]["NotificationEndpointCreated"]["properties"]
    assert "secret" not in schema["components"]["schemas"]["NotificationEndpoint"]["properties"]

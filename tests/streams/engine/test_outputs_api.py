"""GET /streams/{id}/deliveries and GET /streams/{id}/health: shape, filters, scopes, tenancy,
JSON errors, rate limit, OpenAPI."""

import pytest

from streams import services as stream_services
from streams.engine import deliveries
from streams.engine import services as engine_services
from streams.models import OutputDelivery
from tests.streams.conftest import ACTOR
from tests.streams.engine.conftest import chain

pytestmark = pytest.mark.django_db


@pytest.fixture
def forwarding(make_stream, receiver, private_targets_allowed, settings):
    """Three deliveries: the first delivered, the second a dead letter, the third waiting."""
    settings.STREAM_OUTPUT_MAX_ATTEMPTS = 1
    stream = make_stream(chain(("out", "httpForwarder", {"url": receiver.url})))
    for value in (1, 2, 3):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[{"n": value}] * value)
    deliveries.output_deliveries_send(stream_id=stream.pk, node_id="out", limit=1)
    receiver.status = 503
    deliveries.output_deliveries_send(stream_id=stream.pk, node_id="out", limit=1)
    return stream


def test_the_deliveries_of_a_stream_newest_first_with_filters(api, forwarding, receiver):
    body = api.get(f"/streams/{forwarding.pk}/deliveries").json()
    delivered, dead, waiting = OutputDelivery.objects.filter(stream=forwarding).order_by("id")
    assert body["total"] == 3
    assert [(d["deliveryId"], d["status"], d["recordCount"], d["attempts"]) for d in body["deliveries"]] == [
        (str(waiting.delivery_id), "PENDING", 3, 0),
        (str(dead.delivery_id), "DEAD", 2, 1),
        (str(delivered.delivery_id), "DELIVERED", 1, 1),
    ]
    assert body["deliveries"][1] == {
        "deliveryId": str(dead.delivery_id),
        "nodeId": "out",
        "runId": str(dead.run_id),
        "status": "DEAD",
        "recordCount": 2,
        "attempts": 1,
        "maxAttempts": 1,
        "createdAt": dead.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "lastAttemptAt": dead.last_attempt_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "nextAttemptAt": None,
        "deliveredAt": None,
        "lastStatusCode": 503,
        "lastError": f"POST {receiver.url}: the target answered HTTP 503",
    }
    dead_only = api.get(f"/streams/{forwarding.pk}/deliveries?status=DEAD").json()
    assert (dead_only["total"], [d["status"] for d in dead_only["deliveries"]]) == (1, ["DEAD"])
    page = api.get(f"/streams/{forwarding.pk}/deliveries?limit=1&skip=1").json()
    assert (page["total"], [d["status"] for d in page["deliveries"]]) == (3, ["DEAD"])
    assert api.get(f"/streams/{forwarding.pk}/deliveries?nodeId=other").json() == {
        "total": 0,
        "deliveries": [],
    }


def test_the_health_of_a_stream(api, forwarding, receiver):
    body = api.get(f"/streams/{forwarding.pk}/health").json()
    message = f"POST {receiver.url}: the target answered HTTP 503"
    assert body["state"] == "output failing"
    assert (body["lagBatches"], body["consecutiveFailures"], body["lastError"]) == (0, 0, message)
    assert [(e["source"], e["message"], e["count"]) for e in body["errors"]] == [("out", message, 1)]
    assert (body["outboxPending"], body["outboxDead"]) == (1, 1)


def test_another_accounts_or_an_unknown_stream_is_a_json_404(api, other_account, forwarding):
    solution = stream_services.solution_create(account=other_account, name="Theirs")
    theirs = stream_services.stream_import(
        account=other_account,
        solution_id=solution.pk,
        actor=ACTOR,
        stream_config=chain(("peek", "inspect", {})),
    ).stream
    for path in (
        f"/streams/{theirs.pk}",
        "/streams/not-a-uuid",
        "/streams/00000000-0000-4000-8000-000000000000",
    ):
        for endpoint in ("deliveries", "health"):
            response = api.get(f"{path}/{endpoint}")
            assert (response.status_code, response.json()["code"]) == (404, "STREAM_NOT_FOUND")


def test_bad_filters_are_400_with_the_field(api, forwarding):
    response = api.get(f"/streams/{forwarding.pk}/deliveries?status=LOST")
    assert response.status_code == 400
    assert response.json()["details"] == [
        {"field": "status", "message": "status must be one of: PENDING, DELIVERED, DEAD."}
    ]
    assert api.get(f"/streams/{forwarding.pk}/deliveries?limit=101").status_code == 400


def test_reading_needs_the_streams_read_scope(client_factory, account, forwarding):
    reader = client_factory(account, scopes=["stream-management:read:streams"])
    other = client_factory(account, scopes=["usage-metering:read:meters"], name="meters")
    assert reader.get(f"/streams/{forwarding.pk}/deliveries").status_code == 200
    for endpoint in ("deliveries", "health"):
        response = other.get(f"/streams/{forwarding.pk}/{endpoint}")
        assert (response.status_code, response.json()["code"]) == (403, "INSUFFICIENT_SCOPE")


def test_the_endpoints_are_rate_limited_in_the_streams_group(api, forwarding, rate_limits, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "streams": (20, 60, 5)}  # no refill racing the test
    statuses = [api.get(f"/streams/{forwarding.pk}/deliveries").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    limited = api.get(f"/streams/{forwarding.pk}/health")
    assert (limited.status_code, limited.json()["code"]) == (429, "TOO_MANY_REQUESTS")
    assert "Retry-After" in limited.headers


def test_the_endpoints_are_documented_in_openapi(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/streams/{id}/deliveries", "/streams/{id}/health"):
        assert {"200", "400", "401", "403", "404", "429"} <= set(paths[path]["get"]["responses"])

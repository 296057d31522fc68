"""Collector management API (seed 000, "Online collection management")."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid

import pytest
import time_machine
from django.db import connection

from collection import services
from collection.exceptions import CollectorLimitReached
from collection.models import Collector
from tests.collection.conftest import assert_error, make_collector
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

URL = "/online-collection/collectors"


def detail(collector_or_id) -> str:
    return f"{URL}/{getattr(collector_or_id, 'pk', collector_or_id)}"


# --- create ------------------------------------------------------------------------------------


@time_machine.travel(dt.datetime(2023, 7, 1, 0, 0, 0, 123456, tzinfo=dt.UTC), tick=False)
def test_create_answers_201_with_the_seed_shape_in_status_creating(api, account):
    response = api.post(URL, {"name": "Collector Name"}, format="json")

    assert response.status_code == 201
    body = response.json()
    collector = Collector.objects.get()
    assert body == {
        "createdAt": "2023-07-01T00:00:00.123Z",
        "id": str(collector.pk),
        "name": "Collector Name",
        "status": "CREATING",
        "updatedAt": "2023-07-01T00:00:00.123Z",
    }
    assert collector.account_id == account.pk


def test_create_enqueues_provisioning_after_commit_and_the_task_makes_it_active(
    api, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = api.post(URL, {"name": "provisioned"}, format="json")
    finally:
        app.conf.task_always_eager = False
    assert response.json()["status"] == "CREATING"
    assert len(callbacks) == 1
    assert api.get(detail(response.json()["id"])).json()["status"] == "ACTIVE"


@pytest.mark.parametrize("name", ["", "a" * 81, "bad/name", "semi;colon", "rocket 🚀", "star*"])
def test_create_refuses_invalid_names(api, name):
    body = assert_error(api.post(URL, {"name": name}, format="json"), 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "name"
    assert Collector.objects.count() == 0


@pytest.mark.parametrize("name", ["a", "a" * 80, "Usage (EU-west) v1.2_x", "Ünïcode naME 9"])
def test_create_accepts_the_seed_character_set(api, name):
    response = api.post(URL, {"name": name}, format="json")
    assert response.status_code == 201
    assert response.json()["name"] == name


def test_create_requires_a_name_and_refuses_unknown_fields(api):
    assert assert_error(api.post(URL, {}, format="json"), 400, "VALIDATION_ERROR")["details"] == [
        {"field": "name", "message": "This field is required."}
    ]
    body = assert_error(
        api.post(URL, {"name": "x", "status": "ACTIVE"}, format="json"), 400, "VALIDATION_ERROR"
    )
    assert body["details"] == [{"field": "status", "message": "Unknown field."}]


def test_create_with_malformed_json_is_400(api):
    assert_error(api.post(URL, "{nope", content_type="application/json"), 400, "MALFORMED_JSON")


def test_duplicate_name_in_the_account_is_409_and_another_account_may_use_it(api, other_api):
    assert api.post(URL, {"name": "dup"}, format="json").status_code == 201
    body = assert_error(api.post(URL, {"name": "dup"}, format="json"), 409, "COLLECTOR_NAME_EXISTS")
    assert body["details"] == [{"field": "name", "message": "Already used by another collector."}]
    assert other_api.post(URL, {"name": "dup"}, format="json").status_code == 201


def test_at_most_five_collectors_per_account(api, other_api):
    for index in range(5):
        assert api.post(URL, {"name": f"c{index}"}, format="json").status_code == 201
    assert_error(api.post(URL, {"name": "sixth"}, format="json"), 409, "COLLECTOR_LIMIT_REACHED")
    assert Collector.objects.filter(account=api.account).count() == 5
    assert other_api.post(URL, {"name": "c0"}, format="json").status_code == 201


def test_a_deleted_collector_frees_its_slot_and_its_name(api):
    ids = [api.post(URL, {"name": f"c{index}"}, format="json").json()["id"] for index in range(5)]
    assert api.delete(detail(ids[0])).json() == {"deletedCount": 1}
    response = api.post(URL, {"name": "c0"}, format="json")
    assert response.status_code == 201
    assert Collector.objects.filter(status=Collector.Status.DELETING).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_limit_holds_when_eight_requests_race(account):
    """Eight concurrent creations for one account: exactly five succeed (the account row is locked)."""
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def create(index: int) -> None:
        try:
            barrier.wait(timeout=5)
            services.collector_create(account_id=account.pk, name=f"race {index}")
            outcomes.append("created")
        except CollectorLimitReached:
            outcomes.append("limit")
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(outcomes) == ["created"] * 5 + ["limit"] * 3
    assert Collector.objects.filter(account=account).count() == 5


# --- get and list ------------------------------------------------------------------------------


def test_get_answers_the_collector(api, account):
    collector = make_collector(account, "mine")
    body = api.get(detail(collector)).json()
    assert body["id"] == str(collector.pk)
    assert body["name"] == "mine"
    assert body["status"] == "ACTIVE"


def test_get_unknown_malformed_or_deleted_is_404(api, account):
    assert_error(api.get(detail(uuid.uuid4())), 404, "COLLECTOR_NOT_FOUND")
    assert_error(api.get(detail("not-a-uuid")), 404, "COLLECTOR_NOT_FOUND")
    collector = make_collector(account)
    services.collector_delete(collector=collector)
    assert_error(api.get(detail(collector)), 404, "COLLECTOR_NOT_FOUND")


def test_list_wraps_in_collectors_sorts_and_pages(api, account):
    with time_machine.travel(dt.datetime(2024, 1, 1, tzinfo=dt.UTC), tick=False):
        make_collector(account, "bravo")
    with time_machine.travel(dt.datetime(2024, 1, 2, tzinfo=dt.UTC), tick=False):
        make_collector(account, "alpha", active=False)
    with time_machine.travel(dt.datetime(2024, 1, 3, tzinfo=dt.UTC), tick=False):
        make_collector(account, "charlie")

    def names(query: str) -> list[str]:
        response = api.get(f"{URL}{query}")
        assert response.status_code == 200
        assert list(response.json()) == ["collectors"]
        return [item["name"] for item in response.json()["collectors"]]

    assert names("") == ["bravo", "alpha", "charlie"]
    assert names("?sortBy=name") == ["alpha", "bravo", "charlie"]
    assert names("?sortBy=name&sortOrder=DESC") == ["charlie", "bravo", "alpha"]
    by_status = names("?sortBy=status")  # ACTIVE before CREATING; ties in id order
    assert (sorted(by_status[:2]), by_status[2]) == (["bravo", "charlie"], "alpha")
    assert names("?sortBy=createdAt&sortOrder=DESC&limit=2") == ["charlie", "alpha"]
    assert names("?sortBy=name&skip=1&limit=1") == ["bravo"]
    assert names("?sortBy=updatedAt&skip=5") == []


@pytest.mark.parametrize(
    "query,field",
    [
        ("limit=101", "limit"),
        ("limit=0", "limit"),
        ("skip=-1", "skip"),
        ("sortBy=id", "sortBy"),
        ("sortOrder=UP", "sortOrder"),
    ],
)
def test_list_validates_its_parameters(api, query, field):
    body = assert_error(api.get(f"{URL}?{query}"), 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == field


def test_list_shows_only_the_callers_live_collectors(api, account, other_account):
    make_collector(account, "mine")
    gone = make_collector(account, "gone")
    services.collector_delete(collector=gone)
    make_collector(other_account, "theirs")
    assert [item["name"] for item in api.get(URL).json()["collectors"]] == ["mine"]


# --- update ------------------------------------------------------------------------------------


def test_update_renames_and_keeps_id_and_status(api, account):
    collector = make_collector(account, "before")
    later = dt.datetime.now(dt.UTC).replace(microsecond=250000) + dt.timedelta(minutes=5)
    with time_machine.travel(later, tick=False):  # within the token's hour
        response = api.patch(detail(collector), {"name": "after"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["name"], body["status"]) == (str(collector.pk), "after", "ACTIVE")
    assert body["updatedAt"] == later.strftime("%Y-%m-%dT%H:%M:%S.250Z")
    collector.refresh_from_db()
    assert collector.name == "after"


def test_update_with_an_empty_body_is_400(api, account):
    collector = make_collector(account, "same")
    body = assert_error(api.patch(detail(collector), {}, format="json"), 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "name"
    assert_error(api.patch(detail(collector), "[]", content_type="application/json"), 400, "VALIDATION_ERROR")


def test_update_refuses_unknown_fields_invalid_and_taken_names(api, account):
    collector = make_collector(account, "one")
    make_collector(account, "two")
    assert_error(api.patch(detail(collector), {"status": "ACTIVE"}, format="json"), 400, "VALIDATION_ERROR")
    assert_error(api.patch(detail(collector), {"name": "x/y"}, format="json"), 400, "VALIDATION_ERROR")
    assert_error(api.patch(detail(collector), {"name": "two"}, format="json"), 409, "COLLECTOR_NAME_EXISTS")
    assert api.patch(detail(collector), {"name": "one"}, format="json").status_code == 200
    collector.refresh_from_db()
    assert collector.name == "one"


def test_put_is_not_allowed(api, account):
    collector = make_collector(account)
    assert_error(api.put(detail(collector), {"name": "x"}, format="json"), 405, "METHOD_NOT_ALLOWED")


# --- delete ------------------------------------------------------------------------------------


def test_delete_answers_deleted_count_and_the_collector_stops_taking_data(api, account):
    collector = make_collector(account)
    response = api.delete(detail(collector))
    assert response.status_code == 200
    assert response.json() == {"deletedCount": 1}
    collector.refresh_from_db()
    assert collector.status == Collector.Status.DELETING
    assert_error(api.delete(detail(collector)), 404, "COLLECTOR_NOT_FOUND")
    sent = api.post(f"{detail(collector)}/data", {"data": "x"}, format="json")
    assert_error(sent, 404, "COLLECTOR_NOT_FOUND")


# --- scopes, tenancy, rate limits --------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path,scope",
    [
        ("get", "list", "online-collection:read:collectors"),
        ("get", "detail", "online-collection:read:collectors"),
        ("post", "list", "online-collection:create:collectors"),
        ("patch", "detail", "online-collection:update:collectors"),
        ("delete", "detail", "online-collection:delete:collectors"),
    ],
)
def test_each_action_needs_its_scope(account, method, path, scope):
    collector = make_collector(account, "scoped")
    url = URL if path == "list" else detail(collector)
    others = [
        s
        for s in (
            "online-collection:read:collectors",
            "online-collection:create:collectors",
            "online-collection:update:collectors",
            "online-collection:delete:collectors",
            "online-collection:ingest:collectors",
        )
        if s != scope
    ]
    without = client_for(account, scopes=others, name="without")
    with_scope = client_for(account, scopes=[scope], name="with")
    body = {"name": "renamed"} if method in ("post", "patch") else None
    denied = getattr(without, method)(url, body, format="json")
    assert_error(denied, 403, "INSUFFICIENT_SCOPE")
    assert scope in denied.json()["message"]
    assert getattr(with_scope, method)(url, body, format="json").status_code in (200, 201)


def test_unauthenticated_is_401(client, db):
    response = client.get(URL)
    assert_error(response, 401, "UNAUTHORIZED")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_another_accounts_collector_is_404_and_unchanged(api, other_account):
    theirs = make_collector(other_account, "theirs")
    assert_error(api.get(detail(theirs)), 404, "COLLECTOR_NOT_FOUND")
    assert_error(api.patch(detail(theirs), {"name": "stolen"}, format="json"), 404, "COLLECTOR_NOT_FOUND")
    assert_error(api.delete(detail(theirs)), 404, "COLLECTOR_NOT_FOUND")
    theirs.refresh_from_db()
    assert (theirs.name, theirs.status) == ("theirs", Collector.Status.ACTIVE)


def test_writes_are_limited_to_one_per_second_burst_one(api, rate_limits):
    assert api.post(URL, {"name": "first"}, format="json").status_code == 201
    limited = api.post(URL, {"name": "second"}, format="json")
    assert_error(limited, 429, "TOO_MANY_REQUESTS")
    assert int(limited["Retry-After"]) >= 1
    assert Collector.objects.count() == 1


def test_reads_are_limited_to_five_per_minute_burst_five(api, account, rate_limits):
    collector = make_collector(account)
    statuses = [api.get(URL).status_code for _ in range(3)] + [
        api.get(detail(collector)).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 200, 200, 200, 429]
    assert int(api.get(URL)["Retry-After"]) >= 1


def test_openapi_documents_every_collector_operation_and_status(client, db):
    paths = json.loads(client.get("/openapi.json").content)["paths"]
    collection = paths["/online-collection/collectors"]
    item = paths["/online-collection/collectors/{id}"]
    data = paths["/online-collection/collectors/{id}/data"]
    assert set(collection) == {"get", "post"}
    assert set(item) == {"get", "patch", "delete"}
    assert set(data) == {"post"}
    assert set(collection["post"]["responses"]) == {
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
    assert set(item["patch"]["responses"]) == {
        "200",
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "415",
        "429",
        "500",
        "503",
    }
    assert set(data["post"]["responses"]) == {
        "200",
        "400",
        "401",
        "403",
        "404",
        "405",
        "409",
        "413",
        "415",
        "429",
        "500",
        "503",
    }
    assert data["post"]["operationId"] == "sendData"
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in data["post"]["parameters"])

"""POST /online-collection/collectors/{id}/data (seed 000, "Online collection ingestion")."""

from __future__ import annotations

import json
import time
import uuid

import psycopg
import pytest
from django.db import OperationalError, close_old_connections, connection

from collection import services
from collection.models import CollectedBatch, Collector
from tests.collection.conftest import assert_error, data_url, make_collector, send
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "raw,stored",
    [
        ('{"data": {"userId": "u1", "value": 3}}', '{"userId": "u1", "value": 3}'),
        ('{"data":[{"a":1},{"a":2}]}', '[{"a":1},{"a":2}]'),
        ('{"data": "a plain string"}', '"a plain string"'),
        ('{ "data" :  {"nested": {"x": [1, 2.5, null, true]}}  }', '{"nested": {"x": [1, 2.5, null, true]}}'),
        ('{"data": {"name": "\\u00e9t\\u00e9 \u00e9t\u00e9"}}', '{"name": "\\u00e9t\\u00e9 \u00e9t\u00e9"}'),
    ],
)
def test_data_is_stored_as_received_and_answers_its_ingestion_id(api, collector, account, raw, stored):
    response = send(api, collector, raw)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert list(body) == ["ingestionId"]
    batch = CollectedBatch.objects.get()
    assert body["ingestionId"] == str(batch.ingestion_id)
    assert batch.payload == stored
    assert batch.size_bytes == len(stored.encode("utf-8"))
    assert (batch.collector_id, batch.account_id, batch.idempotency_key) == (collector.pk, account.pk, None)
    assert json.loads(batch.payload) == json.loads(raw)["data"]


def test_each_request_is_its_own_batch_in_arrival_order(api, collector):
    ids = [send(api, collector, {"data": {"n": n}}).json()["ingestionId"] for n in range(5)]
    batches = list(CollectedBatch.objects.order_by("sequence"))
    assert [str(batch.ingestion_id) for batch in batches] == ids
    assert [json.loads(batch.payload) for batch in batches] == [{"n": n} for n in range(5)]


@pytest.mark.parametrize(
    "raw", ["{not json", '{"data": [1, 2,]}', '{"data": "x"', "", '{"data": "\x01"}', b'{"data": "\xff\xfe"}']
)
def test_malformed_json_is_400(api, collector, raw):
    assert_error(send(api, collector, raw), 400, "MALFORMED_JSON")
    assert CollectedBatch.objects.count() == 0


@pytest.mark.parametrize(
    "raw,field",
    [
        ("{}", "data"),
        ('{"datum": 1}', "datum"),
        ("[1, 2]", ""),
        ('"data"', ""),
        ('{"data": 1, "extra": true}', "extra"),
    ],
)
def test_missing_data_or_another_shape_is_400(api, collector, raw, field):
    body = assert_error(send(api, collector, raw), 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == field
    assert CollectedBatch.objects.count() == 0


@pytest.mark.parametrize("value", ["1", "2.5", "null", "true", "false"])
def test_data_must_be_a_string_an_object_or_an_array(api, collector, value):
    body = assert_error(send(api, collector, f'{{"data": {value}}}'), 400, "VALIDATION_ERROR")
    assert body["details"] == [{"field": "data", "message": "data must be a string, an object or an array."}]


def test_nesting_deeper_than_the_setting_is_400_and_up_to_it_is_fine(api, collector, settings):
    settings.COLLECTION_MAX_NESTING_DEPTH = 8
    assert send(api, collector, '{"data": %s}' % ("[" * 8 + "]" * 8)).status_code == 200
    # Brackets inside strings do not count; many siblings at a shallow depth are fine.
    assert (
        send(
            api, collector, {"data": {"text": "[[[[[[[[[[[[", "list": [[1], [2], [3], [4], [5], [6]]}}
        ).status_code
        == 200
    )
    body = assert_error(send(api, collector, '{"data": %s}' % ("[" * 9 + "]" * 9)), 400, "NESTING_TOO_DEEP")
    assert body["details"][0]["field"] == "data"
    too_deep_in_objects = {"data": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}}
    assert_error(send(api, collector, too_deep_in_objects), 400, "NESTING_TOO_DEEP")
    assert CollectedBatch.objects.count() == 2


def test_nesting_past_the_decoders_recursion_limit_is_400(api, collector):
    assert_error(send(api, collector, '{"data": %s}' % ("[" * 5000 + "]" * 5000)), 400, "NESTING_TOO_DEEP")


def test_body_over_one_mib_is_413_and_just_under_is_stored(api, collector):
    envelope = len('{"data": ""}')
    at_limit = '{"data": "%s"}' % ("x" * (1024 * 1024 - envelope))
    assert len(at_limit) == 1024 * 1024
    assert send(api, collector, at_limit).status_code == 200
    over = '{"data": "%s"}' % ("x" * (1024 * 1024 - envelope + 1))
    assert_error(send(api, collector, over), 413, "REQUEST_TOO_LARGE")
    assert CollectedBatch.objects.get().size_bytes == 1024 * 1024 - envelope + 2


def test_a_collector_that_is_not_active_yet_is_409(api, account):
    creating = make_collector(account, "new", active=False)
    body = assert_error(send(api, creating, {"data": "x"}), 409, "COLLECTOR_NOT_ACTIVE")
    assert "CREATING" in body["message"]
    services.collector_provision(collector_id=creating.pk)
    assert send(api, creating, {"data": "x"}).status_code == 200


def test_unknown_malformed_or_deleted_collector_is_404(api, collector):
    assert_error(send(api, uuid.uuid4(), {"data": "x"}), 404, "COLLECTOR_NOT_FOUND")
    assert_error(send(api, "not-a-uuid", {"data": "x"}), 404, "COLLECTOR_NOT_FOUND")
    services.collector_delete(collector=collector)
    assert_error(send(api, collector, {"data": "x"}), 404, "COLLECTOR_NOT_FOUND")
    assert CollectedBatch.objects.count() == 0


def test_another_accounts_collector_is_404_and_stores_nothing(other_api, collector):
    assert_error(send(other_api, collector, {"data": "x"}), 404, "COLLECTOR_NOT_FOUND")
    assert CollectedBatch.objects.count() == 0


def test_needs_the_ingest_scope(account, collector):
    reader = client_for(account, scopes=["online-collection:read:collectors"], name="reader")
    body = assert_error(send(reader, collector, {"data": "x"}), 403, "INSUFFICIENT_SCOPE")
    assert "online-collection:ingest:collectors" in body["message"]
    ingester = client_for(account, scopes=["online-collection:ingest:collectors"], name="ingester")
    assert send(ingester, collector, {"data": "x"}).status_code == 200


def test_missing_or_unknown_token_is_401(client, collector):
    response = send(client, collector, {"data": "x"})
    assert_error(response, 401, "UNAUTHORIZED")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert_error(
        send(client, collector, {"data": "x"}, HTTP_AUTHORIZATION="Bearer nope"), 401, "INVALID_TOKEN"
    )


def test_x_account_id_must_match(api, collector, other_account):
    assert_error(
        send(api, collector, {"data": "x"}, HTTP_X_ACCOUNT_ID=str(other_account.pk)), 403, "ACCOUNT_MISMATCH"
    )


def test_only_post_is_allowed(api, collector):
    response = api.get(data_url(collector))
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response["Allow"] == "POST"


def test_rate_limit_answers_429_with_retry_after(api, collector, rate_limits, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "send_data": (1, 60, 2)}
    statuses = [send(api, collector, {"data": "x"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = send(api, collector, {"data": "x"})
    assert_error(limited, 429, "TOO_MANY_REQUESTS")
    assert int(limited["Retry-After"]) >= 1
    assert limited["RateLimit-Limit"] == "2"
    assert CollectedBatch.objects.count() == 2


def test_send_data_allows_its_seed_rate_of_2000_per_second_burst_5(settings):
    assert settings.RATE_LIMITS["send_data"] == (2000, 1, 5)


# --- idempotency -------------------------------------------------------------------------------


def test_a_replay_with_the_same_key_returns_the_first_ingestion_id_and_stores_once(api, collector):
    first = send(api, collector, {"data": {"n": 1}}, HTTP_IDEMPOTENCY_KEY="key-1")
    again = send(api, collector, '{"data":{"n":1}}', HTTP_IDEMPOTENCY_KEY="key-1")  # same JSON, other spacing

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert "Idempotent-Replayed" not in first
    assert again["Idempotent-Replayed"] == "true"
    batch = CollectedBatch.objects.get()
    assert (str(batch.ingestion_id), batch.idempotency_key) == (first.json()["ingestionId"], "key-1")


def test_the_same_key_with_another_body_or_collector_is_409(api, collector, account):
    send(api, collector, {"data": {"n": 1}}, HTTP_IDEMPOTENCY_KEY="key-1")
    assert_error(
        send(api, collector, {"data": {"n": 2}}, HTTP_IDEMPOTENCY_KEY="key-1"), 409, "IDEMPOTENCY_KEY_REUSED"
    )
    second = make_collector(account, "second")
    assert_error(
        send(api, second, {"data": {"n": 1}}, HTTP_IDEMPOTENCY_KEY="key-1"), 409, "IDEMPOTENCY_KEY_REUSED"
    )
    assert CollectedBatch.objects.count() == 1


def test_keys_are_scoped_per_account(api, other_api, collector, other_account):
    theirs = make_collector(other_account, "theirs")
    mine = send(api, collector, {"data": "x"}, HTTP_IDEMPOTENCY_KEY="shared")
    their = send(other_api, theirs, {"data": "x"}, HTTP_IDEMPOTENCY_KEY="shared")
    assert mine.status_code == their.status_code == 200
    assert mine.json() != their.json()
    assert CollectedBatch.objects.count() == 2


def test_without_a_key_every_request_is_stored(api, collector):
    send(api, collector, {"data": "same"})
    send(api, collector, {"data": "same"})
    assert CollectedBatch.objects.count() == 2


def test_a_replay_is_answered_even_after_the_collector_stopped_taking_data(api, collector):
    first = send(api, collector, {"data": "x"}, HTTP_IDEMPOTENCY_KEY="k")
    services.collector_delete(collector=collector)
    assert send(api, collector, {"data": "x"}, HTTP_IDEMPOTENCY_KEY="k").json() == first.json()


@pytest.mark.parametrize("key", ["", "   ", "k" * 256])
def test_an_invalid_idempotency_key_is_400(api, collector, key):
    body = assert_error(
        send(api, collector, {"data": "x"}, HTTP_IDEMPOTENCY_KEY=key), 400, "INVALID_IDEMPOTENCY_KEY"
    )
    assert body["details"][0]["field"] == "Idempotency-Key"


# --- outages -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_database_down_is_503_json_with_retry_after(account):
    """A real outage: the connection's port points where nothing listens. The token is cached
    in-process, so only the batch insert meets the outage."""
    api = client_for(account)
    collector = make_collector(account)
    assert send(api, collector, {"data": "before"}).status_code == 200
    connection.close()
    port = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = "1"
    try:
        response = send(api, collector, {"data": "during"})
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert int(response["Retry-After"]) > 0
    assert [batch.payload for batch in CollectedBatch.objects.all()] == ['"before"']


def test_database_unreachable_for_auth_is_503(client, collector, monkeypatch):
    from accounts import selectors

    def database_down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(selectors, "principal_for_token_checksum", database_down)
    response = send(client, collector, {"data": "x"}, HTTP_AUTHORIZATION="Bearer some-token")
    assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert int(response["Retry-After"]) > 0


def test_redis_down_still_accepts_data_with_in_process_rate_limits(api, collector, rate_limits, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    from config.api.ratelimit import limiter

    limiter._redis = None
    try:
        assert send(api, collector, {"data": "x"}).status_code == 200
    finally:
        limiter._redis = None
        limiter._redis_down_until = 0
    assert CollectedBatch.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_died_answers_503_once_and_the_next_request_reconnects(account):
    """The database restarted under a persistent connection: the request on it fails with 503 (not
    500, nothing stored), the broken connection is dropped, and the next request is stored."""
    api = client_for(account)
    collector = make_collector(account)
    assert send(api, collector, {"data": "before"}).status_code == 200
    connection.ensure_connection()
    victim = connection.connection.info.backend_pid
    with psycopg.connect(psycopg_url(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [victim])

    response = send(api, collector, {"data": "lost"})
    assert_error(response, 503, "SERVICE_UNAVAILABLE")
    close_old_connections()  # what Django's handler does after every request (the test client skips it)
    assert send(api, collector, {"data": "after"}).status_code == 200
    assert [batch.payload for batch in CollectedBatch.objects.order_by("sequence")] == ['"before"', '"after"']


def psycopg_url() -> str:
    params = connection.get_connection_params()
    return (
        f"host={params.get('host') or '127.0.0.1'} port={params.get('port') or 5432} "
        f"dbname={params['dbname']} user={params.get('user') or 'postgres'}"
    )


@pytest.mark.django_db(transaction=True)
def test_the_autocommit_request_path_stores_replays_and_refuses_like_the_rest(account, other_account):
    """Outside a test transaction the insert takes the prepared-statement path the server uses."""
    api = client_for(account)
    collector = make_collector(account)
    creating = make_collector(account, "creating", active=False)
    theirs = make_collector(other_account, "theirs")

    first = send(api, collector, {"data": {"n": 1}}, HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 200
    assert send(api, collector, {"data": {"n": 1}}, HTTP_IDEMPOTENCY_KEY="k").json() == first.json()
    assert_error(
        send(api, collector, {"data": {"n": 2}}, HTTP_IDEMPOTENCY_KEY="k"), 409, "IDEMPOTENCY_KEY_REUSED"
    )
    assert_error(send(api, creating, {"data": "x"}), 409, "COLLECTOR_NOT_ACTIVE")
    assert_error(send(api, theirs, {"data": "x"}), 404, "COLLECTOR_NOT_FOUND")
    second = send(api, collector, {"data": "plain"})
    assert second.status_code == 200

    stored = list(
        CollectedBatch.objects.order_by("sequence").values_list(
            "ingestion_id", "payload", "size_bytes", "idempotency_key"
        )
    )
    assert [(str(i), p, s, k) for i, p, s, k in stored] == [
        (first.json()["ingestionId"], '{"n": 1}', 8, "k"),
        (second.json()["ingestionId"], '"plain"', 7, None),
    ]


# --- the in-process collector cache ------------------------------------------------------------


def test_a_collector_deleted_by_another_process_stops_taking_data_within_the_cache_time(
    api, collector, settings
):
    settings.COLLECTION_COLLECTOR_CACHE_SECONDS = 0.2
    assert send(api, collector, {"data": "cached"}).status_code == 200
    # Another web process deletes it: this process's cache does not hear of it...
    Collector.objects.filter(pk=collector.pk).update(status=Collector.Status.DELETING)
    assert send(api, collector, {"data": "within the cache time"}).status_code == 200
    time.sleep(0.25)
    # ...until the entry expires.
    assert_error(send(api, collector, {"data": "after"}), 404, "COLLECTOR_NOT_FOUND")


def test_deleting_in_this_process_takes_effect_at_once(api, collector):
    assert send(api, collector, {"data": "cached"}).status_code == 200
    services.collector_delete(collector=collector)
    assert_error(send(api, collector, {"data": "x"}), 404, "COLLECTOR_NOT_FOUND")


@pytest.mark.django_db(transaction=True)
def test_a_cached_collector_purged_meanwhile_is_404_through_the_foreign_key(account):
    api = client_for(account)
    collector = make_collector(account)
    assert send(api, collector, {"data": "cached"}).status_code == 200
    # Another process deleted and purged it; this process still has it cached as ACTIVE.
    Collector.objects.filter(pk=collector.pk).update(status=Collector.Status.DELETING)
    assert services.collector_purge(collector_id=collector.pk) is True
    assert_error(send(api, collector, {"data": "late"}), 404, "COLLECTOR_NOT_FOUND")
    assert CollectedBatch.objects.count() == 0
    assert_error(send(api, collector, {"data": "later"}), 404, "COLLECTOR_NOT_FOUND")

"""Send data under ASGI (config/hot/loop.py, collection/api/ingest_asgi.py): the event-loop fast path
answers as the Django view does, and hands every request it cannot settle from memory to it.

The fast path writes on its own asynchronous connections, so these tests commit
(``transaction=True``) and drive the ASGI application in process, as uvicorn would.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from collection.api import ingest_asgi
from collection.models import CollectedBatch
from collection.selectors import active_collectors
from config.api.ratelimit import limiter
from config.hot_routes import HOT_PATHS
from tests.collection.conftest import data_url, make_collector
from tests.conftest import issue_token, make_access
from tests.support.asgi import Recorder, call, in_one_loop, request

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def setup(account, settings):
    settings.RATE_LIMIT_ENABLED = True
    limiter.reset()
    active_collectors.clear()
    access, secret = make_access(account, scopes=["online-collection:ingest:collectors"])
    collector = make_collector(account)
    recorder = Recorder()
    app = HOT_PATHS.asgi(recorder, hot=recorder)
    token = {"authorization": f"Bearer {issue_token(access, secret)}"}
    # The first request settles nothing from memory yet: the view answers it and fills the caches.
    status, _, _ = call(app, data_url(collector), b'{"data": {"warm": true}}', token)
    assert status == 200 and recorder.paths == [data_url(collector)]
    recorder.paths.clear()
    yield app, recorder, collector, token
    active_collectors.clear()
    limiter.reset()


def test_a_settled_request_is_stored_on_the_event_loop_and_answers_its_ingestion_id(setup, account):
    app, recorder, collector, token = setup

    status, headers, body = call(app, data_url(collector), b'{"data": [{"userId": "u1", "value": 3}]}', token)

    assert status == 200 and recorder.paths == []  # the fast path answered
    assert headers["content-type"] == "application/json" and headers["x-content-type-options"] == "nosniff"
    batch = CollectedBatch.objects.get(ingestion_id=body["ingestionId"])
    assert (batch.collector_id, batch.account_id, batch.payload) == (
        collector.pk,
        account.pk,
        '[{"userId": "u1", "value": 3}]',
    )
    assert list(
        CollectedBatch.objects.filter(collector=collector)
        .order_by("sequence")
        .values_list("payload", flat=True)
    ) == ['{"warm": true}', '[{"userId": "u1", "value": 3}]']


@pytest.mark.parametrize(
    "raw,status,code",
    [
        (b"{not json", 400, "MALFORMED_JSON"),
        (b'{"datum": 1}', 400, "VALIDATION_ERROR"),
        (b'{"data": 1}', 400, "VALIDATION_ERROR"),
    ],
)
def test_a_bad_body_is_answered_on_the_event_loop_with_the_views_error(setup, raw, status, code):
    app, recorder, collector, token = setup

    answered, headers, body = call(app, data_url(collector), raw, token)

    assert (answered, body["code"]) == (status, code) and set(body) == {"code", "message", "details"}
    assert recorder.paths == []
    assert CollectedBatch.objects.filter(collector=collector).count() == 1  # the warm-up only


def test_the_rate_limit_holds_on_the_event_loop(setup, settings):
    app, recorder, collector, token = setup
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "send_data": (1, 60, 1)}
    limiter.reset()

    first = call(app, data_url(collector), b'{"data": 1.5}', token)[0]
    status, headers, body = call(app, data_url(collector), b'{"data": "2"}', token)

    assert first == 400  # not a string/object/array, but it took the only token
    assert (status, body["code"]) == (429, "TOO_MANY_REQUESTS") and int(headers["retry-after"]) >= 1
    assert recorder.paths == []


def test_a_token_without_the_scope_is_403_on_the_event_loop(setup, account):
    app, recorder, collector, _ = setup
    access, secret = make_access(account, name="reader", scopes=["online-collection:read:collectors"])
    token = {"authorization": f"Bearer {issue_token(access, secret)}"}
    assert call(app, data_url(collector), b'{"data": 1}', token)[0] == 403  # the view, filling the cache
    recorder.paths.clear()

    status, _, body = call(app, data_url(collector), b'{"data": {"a": 1}}', token)

    assert (status, body["code"]) == (403, "INSUFFICIENT_SCOPE") and recorder.paths == []


def test_a_collector_purged_after_it_was_cached_is_404_and_forgotten(setup, account):
    app, recorder, _, token = setup
    gone = uuid.uuid4()
    active_collectors.put(gone, account.pk)

    status, _, body = call(app, data_url(gone), b'{"data": {"a": 1}}', token)

    assert (status, body["code"]) == (404, "COLLECTOR_NOT_FOUND") and recorder.paths == []
    assert active_collectors.get(gone) is None


@pytest.mark.parametrize(
    "case",
    [
        "idempotency key",
        "unknown token",
        "another account's collector",
        "query string",
        "over the size limit",
    ],
)
def test_what_memory_cannot_settle_goes_to_the_view(setup, case, other_account, settings):
    app, recorder, collector, token = setup
    path, body, headers, query = data_url(collector), b'{"data": {"a": 1}}', dict(token), b""
    if case == "idempotency key":
        headers["idempotency-key"] = "k-1"
    elif case == "unknown token":
        headers["authorization"] = "Bearer nope"
    elif case == "another account's collector":
        path = data_url(make_collector(other_account, "Theirs"))
    elif case == "query string":
        query = b"x=1"
    else:
        settings.API_MAX_BODY_BYTES = 10

    status, _, answer = call(app, path, body, headers, query)

    assert recorder.paths == [path]
    expected = {
        "idempotency key": 200,
        "unknown token": 401,
        "another account's collector": 404,
        "query string": 200,
        "over the size limit": 413,
    }[case]
    assert status == expected, answer
    if case == "idempotency key":  # and the view's replay answers the first ingestion id
        assert call(app, path, body, headers)[2] == answer
        assert CollectedBatch.objects.filter(idempotency_key="k-1").count() == 1


def test_the_database_down_is_503_with_retry_after_on_the_event_loop(setup, monkeypatch):
    from django.db import connections

    app, recorder, collector, token = setup
    wrapper = type(connections["default"])
    params = wrapper.get_connection_params
    monkeypatch.setattr(
        wrapper,
        "get_connection_params",  # nothing listens on port 1
        lambda self: {**params(self), "port": 1, "connect_timeout": 1},
    )

    status, headers, body = call(app, data_url(collector), b'{"data": {"a": 1}}', token)

    assert status == 503, body
    assert body["code"] == "SERVICE_UNAVAILABLE" and recorder.paths == []
    assert int(headers["retry-after"]) >= 1
    assert CollectedBatch.objects.filter(collector=collector).count() == 1  # the warm-up only


def test_concurrent_requests_share_round_trips_and_each_is_stored_once(setup, account, settings):
    app, recorder, collector, token = setup
    settings.RATE_LIMITS = {
        **settings.RATE_LIMITS,
        "send_data": (10_000, 1, 100),
    }  # a burst of 24 is fine here
    second = make_collector(account, "Second")
    assert call(app, data_url(second), b'{"data": [0]}', token)[0] == 200  # the view, caching the collector
    recorder.paths.clear()
    targets = [collector if n % 2 else second for n in range(24)]

    async def many():
        answers = await asyncio.gather(
            *(
                request(app, data_url(target), b'{"data": {"n": %d}}' % n, token)
                for n, target in enumerate(targets)
            )
        )
        return answers, ingest_asgi._appends.group(), limiter._async_takes.group()

    ((answers, appends, takes),) = in_one_loop(many())

    assert [status for status, _, _ in answers] == [200] * 24 and recorder.paths == []
    ids = [body["ingestionId"] for _, _, body in answers]
    stored = {str(batch.ingestion_id): batch for batch in CollectedBatch.objects.filter(ingestion_id__in=ids)}
    assert len(set(ids)) == 24 and set(stored) == set(ids)
    for n, (target, ingestion_id) in enumerate(zip(targets, ids, strict=True)):
        assert (stored[ingestion_id].collector_id, json.loads(stored[ingestion_id].payload)) == (
            target.pk,
            {"n": n},
        )
    # They arrived together, so they went in fewer round trips than requests.
    assert appends.values == 24 and appends.groups < 24
    assert takes.values == 24 and takes.groups < 24


def test_a_purged_collector_in_a_group_fails_only_its_own_requests(setup, account, settings):
    app, recorder, collector, token = setup
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "send_data": (10_000, 1, 100)}
    gone = uuid.uuid4()
    active_collectors.put(gone, account.pk)
    targets = [collector.pk, gone, collector.pk, gone, collector.pk]

    answers = in_one_loop(*(request(app, data_url(target), b'{"data": [1]}', token) for target in targets))

    assert [status for status, _, _ in answers] == [200, 404, 200, 404, 200]
    assert CollectedBatch.objects.filter(collector=collector).count() == 1 + 3


def test_grouped_rate_limit_calls_take_tokens_one_by_one(setup, settings):
    app, recorder, collector, token = setup
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "send_data": (1, 3600, 5)}
    limiter.reset()

    answers = in_one_loop(*(request(app, data_url(collector), b'{"data": "x"}', token) for _ in range(12)))

    assert sorted(status for status, _, _ in answers) == [200] * 5 + [429] * 7
    assert CollectedBatch.objects.filter(collector=collector).count() == 1 + 5

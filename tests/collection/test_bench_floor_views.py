"""The send-data benchmark's floor views (bench/minimal_view.py) do the round trip they claim to
measure: a floor that skipped its work would make the benchmark's comparison meaningless."""

from __future__ import annotations

import json
import os

import redis
from django.test import RequestFactory

from bench import minimal_view
from collection.models import CollectedBatch
from config.hot.django import HOT_URLCONF, hot_path_pattern
from tests.collection.conftest import make_collector


def test_the_append_floor_stores_the_body_durably_in_the_collector(account):
    collector = make_collector(account)
    body = b'{"events": [1, 2, 3]}'
    request = RequestFactory().post("/", body, content_type="application/json")

    response = minimal_view.minimal_append(request, str(collector.pk))

    assert response.status_code == 200
    stored = CollectedBatch.objects.get(collector=collector)
    assert str(stored.ingestion_id) == json.loads(response.content)["ingestionId"]
    assert (
        stored.payload == body.decode() and stored.size_bytes == len(body) and stored.account_id == account.pk
    )


def test_the_rate_limit_floor_takes_a_token_from_the_redis_bucket(settings):
    key = f"rl:send_data:bench-floor-{os.getpid()}"
    store = redis.Redis.from_url(settings.REDIS_URL)
    store.delete(key)

    response = minimal_view.minimal_rate_limit(RequestFactory().post("/"))

    assert response.status_code == 200
    burst = settings.RATE_LIMITS["send_data"][2]
    assert float(store.hget(key, "t")) < burst  # a token was taken from the shared bucket


def test_the_hot_path_pattern_covers_exactly_the_bench_routes():
    pattern = hot_path_pattern("bench.hot_urls")
    for entry in minimal_view.urlpatterns:
        sample = "/" + str(entry.pattern).replace("<str:collector>", "abc")
        assert pattern.match(sample), sample
    for other in ("/bench/minimal/append", "/bench/minimal/other", "/bench/minimal/append/a/b"):
        assert not pattern.match(other), other
    assert HOT_URLCONF == "config.hot_urls"

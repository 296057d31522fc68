import json
import time

import pytest

from tests.conftest import client_for, make_access

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.support.urls")]


def test_eleventh_token_request_within_a_second_is_429_and_another_client_is_unaffected(client, account,
                                                                                        rate_limits):
    first, first_secret = make_access(account, name="first")
    second, second_secret = make_access(account, name="second")

    def ask(access, secret):
        return client.post("/oauth/token", json.dumps({"client_id": access.client_id, "client_secret": secret,
                                                       "grant_type": "client_credentials"}),
                           content_type="application/json")

    started = time.monotonic()
    statuses = [ask(first, first_secret).status_code for _ in range(11)]
    assert time.monotonic() - started < 1.0
    assert statuses[:5] == [200] * 5
    assert statuses[10] == 429
    limited = ask(first, first_secret)
    assert limited.status_code == 429
    assert limited.json()["code"] == "TOO_MANY_REQUESTS"
    assert int(limited["Retry-After"]) >= 1
    assert limited["RateLimit-Limit"] == "5"
    assert ask(second, second_secret).status_code == 200


def test_endpoint_group_bucket_refills_at_its_rate(account, rate_limits):
    client = client_for(account)
    statuses = [client.get("/probe").status_code for _ in range(8)]
    assert statuses.count(200) in (5, 6)  # burst 5, plus at most one refilled at 20/s
    assert statuses[-1] == 429
    time.sleep(0.3)  # 20/s refills at least 5 tokens
    assert client.get("/probe").status_code == 200


def test_redis_down_falls_back_to_in_process_buckets(account, rate_limits, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    from config.api.ratelimit import limiter

    limiter._redis = None
    client = client_for(account)
    started = time.monotonic()
    statuses = [client.get("/probe").status_code for _ in range(7)]
    assert time.monotonic() - started < 2.0
    assert statuses[:5] == [200] * 5
    assert 429 in statuses
    limiter._redis_down_until = 0

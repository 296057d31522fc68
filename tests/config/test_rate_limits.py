import json
import time

import pytest

from tests.conftest import client_for, make_access

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.support.urls")]


def test_eleventh_token_request_within_a_second_is_429_and_another_client_is_unaffected(
    client, account, rate_limits, settings
):
    first, first_secret = make_access(account, name="first")
    second, second_secret = make_access(account, name="second")

    def ask(access, secret):
        return client.post(
            "/oauth/token",
            json.dumps(
                {"client_id": access.client_id, "client_secret": secret, "grant_type": "client_credentials"}
            ),
            content_type="application/json",
        )

    # The seed's burst (5) with a refill too slow for a slow machine to earn a token between two
    # requests: the outcome depends on the bucket, not on how fast this process runs.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "token": (1, 60, 5)}
    statuses = [ask(first, first_secret).status_code for _ in range(11)]
    assert statuses[:5] == [200] * 5
    assert statuses[10] == 429
    limited = ask(first, first_secret)
    assert limited.status_code == 429
    assert limited.json()["code"] == "TOO_MANY_REQUESTS"
    assert int(limited["Retry-After"]) >= 1
    assert limited["RateLimit-Limit"] == "5"
    assert ask(second, second_secret).status_code == 200


def test_endpoint_group_bucket_allows_its_burst_then_refills_at_its_rate(account, rate_limits, settings):
    client = client_for(account)
    # A very slow refill first, so a pause of the test process cannot add tokens: exactly the burst.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "meter_types": (1, 60, 5)}
    statuses = [client.get("/probe").status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429, 429]
    # Then the seed's rate (20/s): a drained bucket serves again after a fraction of a second.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "meter_types": (20, 1, 5)}
    time.sleep(0.3)
    assert client.get("/probe").status_code == 200


def test_redis_down_falls_back_to_in_process_buckets(account, rate_limits, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    from config.api.ratelimit import limiter

    limiter._redis = None
    # The burst with a refill too slow to earn a token while the test runs: exactly five served.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "meter_types": (1, 60, 5)}
    client = client_for(account)
    started = time.monotonic()
    statuses = [client.get("/probe").status_code for _ in range(7)]
    assert time.monotonic() - started < 2.0
    assert statuses[:5] == [200] * 5
    assert 429 in statuses
    limiter._redis_down_until = 0

"""Redis stopped mid-test (issue 12, item 4a): the API keeps serving, never a 500.

A private redis-server on a free loopback port (never the shared one on 6379) backs the rate
limiter and the cache; it is killed with SIGKILL mid-test. Every later request is answered within
one second, with the documented in-process fallback buckets still limiting (429 with Retry-After).
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import subprocess
import time
from urllib.parse import urlparse

import pytest
import redis

from collection.models import CollectedBatch
from config.api.ratelimit import limiter
from metering import services as metering_services
from tests.collection.conftest import data_url, make_collector
from tests.conftest import issue_token, make_access

pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def private_redis():
    port = free_port()
    process = subprocess.Popen(
        [
            shutil.which("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.05)
    yield process, port, client
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def call(
    base_url: str, method: str, path: str, token: str, body: dict | None = None, key: str | None = None
) -> tuple[int, str | None, float]:
    parsed = urlparse(base_url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=5)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    started = time.monotonic()
    try:
        connection.request(method, path, json.dumps(body) if body is not None else None, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Retry-After"), time.monotonic() - started
    finally:
        connection.close()


def test_redis_killed_mid_test_keeps_serving_with_in_process_rate_limits(
    live_server, account, settings, rate_limits, private_redis
):
    process, port, client = private_redis
    url = f"redis://127.0.0.1:{port}/0"
    settings.REDIS_URL = url
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "meter_types": (1, 3600, 3)}
    limiter._redis = None
    limiter._redis_down_until = 0.0
    access, secret = make_access(account, name="redis-test")
    token = issue_token(access, secret)
    collector = make_collector(account)
    meter_type = metering_services.meter_type_create(
        account_id=account.pk,
        name="API calls",
        unit="requests",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
        api_name="api_calls",
    )
    meter = metering_services.meter_create(
        account_id=account.pk, meter_type_id=meter_type.pk, meter_key="default", user_id="cus_1"
    )
    try:
        # With Redis up, the buckets live in Redis.
        before = [call(live_server.url, "GET", "/meter-types?limit=1", token)[0] for _ in range(4)]
        assert before == [200, 200, 200, 429]
        assert client.dbsize() >= 1

        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

        answers = [call(live_server.url, "GET", "/meter-types?limit=1", token) for _ in range(4)]
        answers.append(
            call(live_server.url, "POST", data_url(collector), token, {"data": "x"}, key="after-kill")
        )
        answers.append(
            call(
                live_server.url,
                "POST",
                "/billing/meters/usage",
                token,
                {"value": 2, "customerId": "cus_1", "meterName": "api_calls"},
                key="report-1",
            )
        )
    finally:
        limiter._redis = None
        limiter._redis_down_until = 0.0

    assert [status for status, _, _ in answers] == [200, 200, 200, 429, 200, 202]
    assert int(answers[3][1]) >= 1  # the fallback bucket's 429 says when to retry
    assert max(elapsed for _, _, elapsed in answers) < 1.0, answers
    assert CollectedBatch.objects.filter(account_id=account.pk).count() == 1
    meter.refresh_from_db()
    assert meter.value == 2

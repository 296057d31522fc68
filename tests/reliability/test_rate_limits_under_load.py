"""Rate limits hold under concurrent load: 2,000 requests in at most 10 s from 20 threads."""

import http.client
import math
import threading
import time
from urllib.parse import urlparse

import pytest

from tests.conftest import issue_token, make_access

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 20
REQUESTS = 2000
DEADLINE_SECONDS = 10.0


def hammer(base_url: str, token: str, count: int, results: list, deadline: float) -> None:
    parsed = urlparse(base_url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=5)
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        connection.request("GET", "/meter-types?limit=1", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        response.read()
        results.append((response.status, response.getheader("Retry-After")))
    connection.close()


def test_accepted_never_exceed_burst_plus_rate_times_elapsed(live_server, account, rate_limits, settings):
    rate, per_seconds, burst = settings.RATE_LIMITS["meter_types"]
    access, secret = make_access(account, name="loaded")
    token = issue_token(access, secret)
    other_access, other_secret = make_access(account, name="bystander")
    other_token = issue_token(other_access, other_secret)

    results: list = []
    started = time.monotonic()
    deadline = started + DEADLINE_SECONDS
    threads = [
        threading.Thread(target=hammer, args=(live_server.url, token, REQUESTS // THREADS, results, deadline))
        for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    # While the first client is being limited, another client is unaffected.
    bystander: list = []
    hammer(live_server.url, other_token, 3, bystander, deadline)
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started

    accepted = sum(1 for status, _ in results if status == 200)
    limited = [retry_after for status, retry_after in results if status == 429]
    allowed_at_most = burst + math.ceil(rate / per_seconds * elapsed)
    assert len(results) >= 500, f"only {len(results)} requests completed in {elapsed:.1f}s"
    assert accepted + len(limited) == len(results), {status for status, _ in results}
    assert 0 < accepted <= allowed_at_most, (accepted, allowed_at_most, elapsed)
    assert all(retry_after is not None and int(retry_after) >= 1 for retry_after in limited)
    assert [status for status, _ in bystander] == [200, 200, 200]

"""Fixtures for the collection tests: collectors made through the services, as the API makes them."""

from __future__ import annotations

import gc
import json

import pytest

from collection import services
from collection.models import Collector
from collection.selectors import active_collectors


def make_collector(account, name="Collector Name", *, active=True) -> Collector:
    collector = services.collector_create(account_id=account.pk, name=name)
    if active:
        services.collector_provision(collector_id=collector.pk)
        collector.refresh_from_db()
    return collector


def data_url(collector_or_id) -> str:
    collector_id = getattr(collector_or_id, "pk", collector_or_id)
    return f"/online-collection/collectors/{collector_id}/data"


def send(client, collector_or_id, body, **headers):
    """POST a body (a dict is JSON-encoded, str/bytes are sent as they are) to send data."""
    raw = json.dumps(body) if isinstance(body, dict) else body
    return client.post(data_url(collector_or_id), raw, content_type="application/json", **headers)


@pytest.fixture(autouse=True, scope="package")
def _collect_garbage_after_the_package():
    """Leave no pending full garbage collection behind: a gen-2 pass landing in a later package's
    timing-sensitive test (tests/config/test_rate_limits.py counts tokens refilled within ~100 ms)
    stalled it for 100-250 ms on a busy machine."""
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def _fresh_collector_cache():
    active_collectors.clear()
    yield
    active_collectors.clear()


@pytest.fixture
def collector(account) -> Collector:
    """An ACTIVE collector of ``account``."""
    return make_collector(account)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    return body

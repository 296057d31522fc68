"""The WSGI application hands the hot endpoints to the lean handler (config/hot/django.py) and
everything else to the full stack; both answer the same API conventions."""

from __future__ import annotations

import io
import json

import pytest
from django.urls import URLPattern, get_resolver

from config import hot_urls
from config.hot.django import LeanWsgiHandler as HotPathHandler
from config.hot.django import hot_path_pattern
from config.wsgi import application
from tests.conftest import issue_token, make_access


def call(method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, dict[str, str], bytes]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        **{"HTTP_" + name.upper(): value for name, value in headers.items()},
    }
    answer: dict = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"] = int(status.split()[0])
        answer["headers"] = dict(response_headers)

    chunks = application(environ, start_response)
    try:
        content = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return answer["status"], answer["headers"], content


def test_the_pattern_matches_exactly_the_hot_routes():
    pattern = hot_path_pattern()
    samples = {
        "online-collection/collectors/<str:id>/data": "/online-collection/collectors/abc/data",
        "ingest": "/ingest",
        "ingest/": "/ingest/",  # the Amberflo SDK posts there (issue 21)
        "billing/meters/usage": "/billing/meters/usage",
    }
    routes = [str(entry.pattern) for entry in hot_urls.urlpatterns if isinstance(entry, URLPattern)]
    assert set(samples) <= set(routes)
    for route, sample in samples.items():
        assert pattern.match(sample), route
        # The main URLconf serves the same view there (the test client and reverse() use it).
        assert get_resolver().resolve(sample).func is get_resolver(hot_urls).resolve(sample).func
    for other in (
        "/ingest//",
        "/ingestion",
        "/online-collection/collectors/a/b/data",
        "/billing/meters/usage/x",
        "/online-collection/collectors",
        "/meter-types",
        "/admin/",
    ):
        assert not pattern.match(other), other


def test_the_lean_handler_runs_only_the_api_middleware():
    handler = HotPathHandler()
    handler.load_middleware()
    assert [type(m.__self__).__name__ for m in handler._exception_middleware] == ["ApiErrorMiddleware"]


@pytest.mark.django_db
def test_hot_paths_answer_the_api_conventions_through_the_lean_handler(account):
    # No credentials: the JSON error body, as on the full stack.
    status, headers, content = call("POST", "/ingest", b"{}")
    assert status == 401
    assert json.loads(content)["code"] in {"NOT_AUTHENTICATED", "UNAUTHORIZED"}
    assert headers["Content-Type"].startswith("application/json")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Length"] == str(len(content))
    # The browser-only middleware did not run on the hot path, and did on the full stack.
    assert "X-Frame-Options" not in headers
    assert call("GET", "/healthz")[1].get("X-Frame-Options") == "DENY"
    # A wrong method and an oversized body: JSON too.
    status, headers, content = call("GET", "/billing/meters/usage")
    assert (status, json.loads(content)["code"], headers["Allow"]) == (405, "METHOD_NOT_ALLOWED", "POST")
    status, _, content = call("POST", "/online-collection/collectors/x/data", b"x" * (1024 * 1024 + 1))
    assert (status, json.loads(content)["code"]) == (413, "REQUEST_TOO_LARGE")


@pytest.mark.django_db(transaction=True)
def test_send_data_through_the_lean_handler_stores_the_batch_and_is_counted_in_metrics(account, settings):
    from collection import services
    from collection.models import CollectedBatch, Collector

    access, secret = make_access(account, scopes=["online-collection:ingest:collectors"])
    token = issue_token(access, secret)
    collector = services.collector_create(account_id=account.pk, name="hot")
    Collector.objects.filter(pk=collector.pk).update(status=Collector.Status.ACTIVE)
    status, _, content = call(
        "POST",
        f"/online-collection/collectors/{collector.pk}/data",
        json.dumps({"data": {"a": 1}}).encode(),
        authorization=f"Bearer {token}",
    )
    assert status == 200
    stored = CollectedBatch.objects.get(ingestion_id=json.loads(content)["ingestionId"])
    assert json.loads(stored.payload) == {"a": 1}
    settings.METRICS_TOKEN = "scrape-token"
    metrics = call("GET", "/metrics", authorization="Bearer scrape-token")[2].decode()
    assert 'route="online-collection/collectors/<str:id>/data",status="200"' in metrics

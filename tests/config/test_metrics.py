import pytest

from collection import services as collection_services
from collection.models import ConsumerOffset
from config.metrics import register_gauge

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-scrape-token"


@pytest.fixture
def scrape(client, settings):
    settings.METRICS_TOKEN = TOKEN

    def get(**headers):
        return client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)

    return get


def test_metrics_expose_request_counts_and_registered_gauges(client, scrape):
    register_gauge("test_flush_lag_seconds", "lag", lambda: [({"queue": "celery"}, 4.5)])
    client.get("/healthz")
    body = scrape().content.decode()
    assert 'http_requests_total{method="GET",route="healthz",status="200"}' in body
    assert "http_request_duration_seconds_bucket" in body
    assert 'test_flush_lag_seconds{queue="celery"} 4.5' in body


def test_metrics_are_closed_by_default_from_any_address(client, settings):
    settings.METRICS_TOKEN = ""
    for address in ("127.0.0.1", "::1", "203.0.113.9"):
        response = client.get("/metrics", REMOTE_ADDR=address)
        assert response.status_code == 403
        assert response.json()["code"] == "METRICS_DISABLED"
    # No token configured: no header value opens it, the empty one included.
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_metrics_token_is_required_and_compared_exactly(client, scrape):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    for wrong in (f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", TOKEN, f"bearer {TOKEN}", "Bearer é"):
        assert client.get("/metrics", HTTP_AUTHORIZATION=wrong).status_code == 401, wrong
    assert scrape().status_code == 200


def test_the_token_is_compared_in_constant_time(client, scrape, monkeypatch):
    import hmac

    compared = []
    original = hmac.compare_digest

    def recording(a, b):
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    client.get("/metrics", HTTP_AUTHORIZATION="Bearer guess")
    assert compared == [(b"Bearer guess", f"Bearer {TOKEN}".encode())]


def test_stream_ids_are_shown_to_the_scraper_only(client, scrape, account):
    collector = collection_services.collector_create(account_id=account.pk, name="metered")
    stream_id = "3f1e0c4a-5a1b-4c55-9d1e-0d6a1b2c3d4e"
    ConsumerOffset.objects.create(collector=collector, consumer=f"stream:{stream_id}")
    assert f'consumer="stream:{stream_id}"' in scrape().content.decode()
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}):
        refused = client.get("/metrics", **headers)
        assert refused.status_code == 401
        assert stream_id not in refused.content.decode()


def test_queue_depth_gauge_reads_the_redis_broker(scrape, settings):
    import redis

    settings.CELERY_BROKER_URL = settings.REDIS_URL
    broker = redis.Redis.from_url(settings.REDIS_URL)
    broker.delete("celery")
    broker.rpush("celery", "a", "b")
    try:
        body = scrape().content.decode()
    finally:
        broker.delete("celery")
    assert 'celery_queue_depth{queue="celery"} 2.0' in body

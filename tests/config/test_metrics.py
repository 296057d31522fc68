import pytest

from config.metrics import register_gauge

pytestmark = pytest.mark.django_db


def test_metrics_expose_request_counts_and_registered_gauges(client, settings):
    register_gauge("test_flush_lag_seconds", "lag", lambda: [({"queue": "celery"}, 4.5)])
    client.get("/healthz")
    body = client.get("/metrics").content.decode()
    assert 'http_requests_total{method="GET",route="healthz",status="200"}' in body
    assert "http_request_duration_seconds_bucket" in body
    assert 'test_flush_lag_seconds{queue="celery"} 4.5' in body


def test_metrics_token_is_required_when_set(client, settings):
    settings.METRICS_TOKEN = "s3cret"
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_queue_depth_gauge_reads_the_redis_broker(client, settings):
    import redis

    settings.CELERY_BROKER_URL = settings.REDIS_URL
    broker = redis.Redis.from_url(settings.REDIS_URL)
    broker.delete("celery")
    broker.rpush("celery", "a", "b")
    try:
        body = client.get("/metrics").content.decode()
    finally:
        broker.delete("celery")
    assert 'celery_queue_depth{queue="celery"} 2.0' in body

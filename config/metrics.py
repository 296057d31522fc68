"""Prometheus metrics at ``GET /metrics``.

Request counts and latencies are recorded by ``MetricsMiddleware``; apps add their own counters
here and register scrape-time gauges (queue depth, flush lag, run lag, webhook failures) with
``register_gauge`` from their ``AppConfig.ready()`` so this module imports no app.

Several gunicorn workers: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by the
web and Celery worker processes (``make run`` does) and every scrape aggregates all of them —
the workers' counters included (``usage_records_total{source="stream"}``: streams meter there).

/metrics is closed unless ``METRICS_TOKEN`` is set: its series name every account's streams
(``collection_run_lag_seconds{consumer="stream:<id>"}``), so it answers only a scraper that sends
``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time); without the setting every
request is refused (403 ``METRICS_DISABLED``), loopback or not, since a proxy on the same host
makes every client look local.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from config.api.errors import error_response

logger = logging.getLogger(__name__)

REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
USAGE_RECORDS = Counter("usage_records_total", "Usage records by outcome", ["source", "outcome"])
WEBHOOK_ATTEMPTS = Counter("webhook_attempts_total", "Webhook delivery attempts", ["outcome"])

_gauges: dict[str, tuple[str, Callable[[], list[tuple[dict[str, str], float]]]]] = {}


def register_gauge(
    name: str, documentation: str, sample: Callable[[], list[tuple[dict[str, str], float]]]
) -> None:
    """``sample()`` returns ``[(labels, value), …]``; it runs on every scrape (keep it one query)."""
    _gauges[name] = (documentation, sample)


class _ScrapeTimeGauges:
    def collect(self):
        for name, (documentation, sample) in _gauges.items():
            try:
                samples = sample()
            except Exception:
                logger.warning("metrics: gauge %s failed", name, exc_info=True)
                continue
            label_names = sorted(samples[0][0]) if samples else []
            family = GaugeMetricFamily(name, documentation, labels=label_names)
            for labels, value in samples:
                family.add_metric([labels[key] for key in label_names], value)
            yield family


def metrics_view(request):
    token = getattr(settings, "METRICS_TOKEN", "")
    if not token:
        return error_response(
            403, "METRICS_DISABLED", "/metrics is closed: set METRICS_TOKEN and send it as a Bearer token."
        )
    sent = request.META.get("HTTP_AUTHORIZATION", "").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(sent, f"Bearer {token}".encode("utf-8", "surrogateescape")):
        return error_response(
            401,
            "UNAUTHORIZED",
            "A metrics token is required.",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    output = generate_latest(registry)
    gauges = CollectorRegistry()
    gauges.register(_ScrapeTimeGauges())
    output += generate_latest(gauges)
    return HttpResponse(output, content_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None and match.route else "unmatched"
        if route.startswith("admin/"):
            route = "admin"
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        LATENCY.labels(route).observe(time.perf_counter() - started)
        return response


def _celery_queue_depth() -> list[tuple[dict[str, str], float]]:
    """Messages waiting in the default Celery queue (Redis broker: the list length)."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")):
        return []
    import redis

    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return [({"queue": "celery"}, float(client.llen("celery")))]
    finally:
        client.close()


register_gauge("celery_queue_depth", "Tasks waiting in the broker queue", _celery_queue_depth)

"""End to end through a real Celery worker (Redis broker, PostgreSQL): commit → task → webhook."""

import time

import pytest
from django.db import transaction

from config.celery import app
from notifications import services
from notifications.models import Delivery
from tests.notifications.conftest import Answer, signature_is_valid
from tests.support.celery_worker import running_worker


@pytest.fixture
def worker(tmp_path):
    with running_worker(
        tmp_path,
        OUTBOUND_ALLOW_PRIVATE_TARGETS="1",
        WEBHOOK_BACKOFF_BASE_SECONDS="0",
        WEBHOOK_BACKOFF_MAX_SECONDS="0",
    ) as process:
        yield process


@pytest.mark.django_db(transaction=True)
def test_a_committed_publish_is_delivered_by_a_real_worker_and_retried_by_the_sweep_task(
    account, receiver_factory, allow_private, worker
):
    receiver = receiver_factory([Answer(503), Answer(200)])
    endpoint, secret = services.notification_endpoint_create(
        account=account, url=receiver.url, event_types=["threshold.crossed"]
    )
    with transaction.atomic():
        event = services.notification_publish(
            account_id=account.pk, event_type="threshold.crossed", payload={"value": 81}
        )

    deadline = time.monotonic() + 30
    while not receiver.requests and time.monotonic() < deadline:  # the on-commit task, run by the worker
        time.sleep(0.1)
    app.send_task("notifications.sweep_due_deliveries")  # what beat sends every 30 s
    while len(receiver.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)

    assert worker.poll() is None, worker.stderr.read().decode()
    assert [request.headers["webhook-id"] for request in receiver.requests] == [str(event.id)] * 2
    assert all(signature_is_valid(secret, request) for request in receiver.requests)
    delivery = Delivery.objects.get(event=event)
    for _ in range(50):  # the worker writes the outcome just after the receiver answers
        if delivery.status != "PENDING":
            break
        time.sleep(0.1)
        delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("SUCCEEDED", 2)
    assert list(delivery.attempts.values_list("number", "status_code")) == [(1, 503), (2, 200)]

"""Publishing into the outbox and delivering with retries, against a real local HTTP receiver."""

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from notifications import services, tasks
from notifications.models import Delivery, DeliveryAttempt, EventType, NotificationEndpoint, NotificationEvent
from tests.notifications.conftest import Answer, signature_is_valid

pytestmark = pytest.mark.django_db

THRESHOLD = {
    "meterId": "4f1c2b9e-0000-4000-8000-000000000001",
    "threshold": {"name": "80%", "value": 80},
    "value": 81.5,
}


def make_endpoint(account, url, event_types=(EventType.THRESHOLD_CROSSED, EventType.METER_FLUSHED)):
    return services.notification_endpoint_create(account=account, url=url, event_types=list(event_types))


def publish_one(account, event_type=EventType.THRESHOLD_CROSSED, payload=None):
    event = services.notification_publish(
        account_id=account.pk, event_type=event_type, payload=payload or THRESHOLD
    )
    return event, Delivery.objects.get(event=event)


def test_a_receiver_failing_three_times_gets_four_attempts_with_one_webhook_id_and_valid_signatures(
    account, receiver_factory, allow_private, fast_webhooks
):
    receiver = receiver_factory([Answer(500), Answer(500), Answer(503), Answer(200)])
    endpoint, secret = make_endpoint(account, receiver.url)
    event, delivery = publish_one(account)

    tasks.deliver(str(delivery.pk))  # the task enqueued on commit
    assert [tasks.sweep_due_deliveries() for _ in range(4)] == [1, 1, 1, 0]  # beat's retry sweep

    assert len(receiver.requests) == 4
    assert {request.headers["webhook-id"] for request in receiver.requests} == {str(event.id)}
    assert all(signature_is_valid(secret, request) for request in receiver.requests)
    assert all(request.headers["content-type"] == "application/json" for request in receiver.requests)
    assert all(request.path == "/hook" for request in receiver.requests)
    timestamps = [int(request.headers["webhook-timestamp"]) for request in receiver.requests]
    assert all(abs(stamp - time.time()) < 60 for stamp in timestamps)
    body = json.loads(receiver.requests[0].body)
    assert body == {"type": "threshold.crossed", "timestamp": body["timestamp"], "data": THRESHOLD}
    assert (
        body["timestamp"]
        == event.created_at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{event.created_at.microsecond // 1000:03d}Z"
    )
    assert len({request.body for request in receiver.requests}) == 1  # the same bytes every attempt

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code, delivery.last_error) == (
        "SUCCEEDED",
        4,
        200,
        "",
    )
    assert delivery.next_attempt_at is None
    attempts = list(delivery.attempts.values_list("number", "status_code", "error"))
    assert attempts == [(1, 500, "HTTP 500"), (2, 500, "HTTP 500"), (3, 503, "HTTP 503"), (4, 200, "")]
    assert all(attempt.duration_ms is not None for attempt in delivery.attempts.all())


def test_a_signature_made_with_another_secret_does_not_verify(
    account, receiver_factory, allow_private, fast_webhooks
):
    receiver = receiver_factory()
    make_endpoint(account, receiver.url)
    _, delivery = publish_one(account)
    services.delivery_attempt(delivery_id=delivery.pk)
    other_secret = services.notification_endpoint_create(
        account=account, url=receiver.url, event_types=["meter.flushed"]
    )[1]
    assert len(receiver.requests) == 1
    assert not signature_is_valid(other_secret, receiver.requests[0])


def test_a_receiver_always_failing_ends_failed_after_max_attempts_each_recorded(
    account, receiver_factory, allow_private, fast_webhooks
):
    fast_webhooks.WEBHOOK_MAX_ATTEMPTS = 5
    receiver = receiver_factory([Answer(500, body=b"boom")])
    make_endpoint(account, receiver.url)
    _, delivery = publish_one(account)

    for _ in range(10):  # bounded: more sweeps than attempts
        tasks.sweep_due_deliveries()

    delivery.refresh_from_db()
    assert len(receiver.requests) == 5
    assert (delivery.status, delivery.attempt_count, delivery.max_attempts) == ("FAILED", 5, 5)
    assert (delivery.last_status_code, delivery.last_error, delivery.next_attempt_at) == (
        500,
        "HTTP 500",
        None,
    )
    assert list(delivery.attempts.values_list("number", "status_code")) == [(n, 500) for n in range(1, 6)]
    assert services.delivery_attempt(delivery_id=delivery.pk) is None
    assert len(receiver.requests) == 5


def test_an_unreachable_endpoint_records_connection_errors_and_fails(
    account, receiver_factory, allow_private, fast_webhooks
):
    fast_webhooks.WEBHOOK_MAX_ATTEMPTS = 2
    receiver = receiver_factory()
    url = receiver.url
    receiver.stop()  # nothing listens on that port any more
    make_endpoint(account, url)
    _, delivery = publish_one(account)
    assert services.delivery_sweep_due() == 1
    assert services.delivery_sweep_due() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("FAILED", 2, None)
    assert delivery.last_error.startswith("Could not connect: ConnectionRefusedError")


def test_backoff_is_exponential_with_full_jitter_and_respects_retry_after(settings):
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 30
    settings.WEBHOOK_BACKOFF_MAX_SECONDS = 3600
    for attempt, ceiling in [(1, 30), (2, 60), (3, 120), (5, 480), (7, 1920), (8, 3600), (20, 3600)]:
        delays = [services.backoff_delay_seconds(attempt_number=attempt) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.5  # spread over the whole window, not a fixed step
        assert min(delays) < ceiling * 0.5
    assert services.backoff_delay_seconds(attempt_number=1, retry_after=300) >= 300
    assert services.backoff_delay_seconds(attempt_number=1, retry_after=99999) == 3600


def test_a_failed_attempt_schedules_the_next_within_the_backoff_window(
    account, receiver_factory, allow_private, settings
):
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 60
    settings.WEBHOOK_BACKOFF_MAX_SECONDS = 3600
    receiver = receiver_factory([Answer(502)])
    make_endpoint(account, receiver.url)
    _, delivery = publish_one(account)
    before = timezone.now()
    services.delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "PENDING"
    assert before <= delivery.next_attempt_at <= timezone.now() + timedelta(seconds=60)
    # Not due yet: neither the task nor the sweep sends again.
    assert services.delivery_attempt(delivery_id=delivery.pk) is None
    assert services.delivery_sweep_due() == 0
    assert len(receiver.requests) == 1


def test_retry_after_from_the_receiver_delays_the_next_attempt(
    account, receiver_factory, allow_private, fast_webhooks
):
    fast_webhooks.WEBHOOK_BACKOFF_MAX_SECONDS = 3600
    receiver = receiver_factory([Answer(429, headers=(("Retry-After", "120"),))])
    make_endpoint(account, receiver.url)
    _, delivery = publish_one(account)
    services.delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.next_attempt_at >= timezone.now() + timedelta(seconds=115)


def test_410_gone_fails_the_delivery_at_once_and_disables_the_endpoint(
    account, receiver_factory, allow_private, fast_webhooks
):
    receiver = receiver_factory([Answer(410)])
    endpoint, _ = make_endpoint(account, receiver.url)
    _, delivery = publish_one(account)
    services.delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    endpoint.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("FAILED", 1, 410)
    assert endpoint.is_active is False
    assert (
        services.notification_publish(
            account_id=account.pk, event_type="threshold.crossed", payload=THRESHOLD
        )
        is None
    )


def test_a_disabled_endpoint_fails_its_pending_delivery_without_a_request(
    account, receiver_factory, allow_private, fast_webhooks
):
    receiver = receiver_factory()
    endpoint, _ = make_endpoint(account, receiver.url)
    _, delivery = publish_one(account)
    services.notification_endpoint_update(endpoint=endpoint, is_active=False)
    assert services.delivery_sweep_due() == 0
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.last_error) == (
        "FAILED",
        0,
        "The endpoint is disabled.",
    )
    assert receiver.requests == []


def test_publish_creates_one_pending_delivery_per_subscribed_active_endpoint(
    account, other_account, allow_private
):
    thresholds, _ = make_endpoint(account, "http://127.0.0.1:9/a", [EventType.THRESHOLD_CROSSED])
    both, _ = make_endpoint(account, "http://127.0.0.1:9/b")
    flushes, _ = make_endpoint(account, "http://127.0.0.1:9/c", [EventType.METER_FLUSHED])
    inactive, _ = make_endpoint(account, "http://127.0.0.1:9/d")
    services.notification_endpoint_update(endpoint=inactive, is_active=False)
    make_endpoint(other_account, "http://127.0.0.1:9/e")

    event = services.notification_publish(
        account_id=account.pk, event_type="threshold.crossed", payload=THRESHOLD
    )

    deliveries = Delivery.objects.filter(event=event)
    assert {d.endpoint_id for d in deliveries} == {thresholds.pk, both.pk}
    assert {(d.status, d.attempt_count, d.max_attempts, d.account_id) for d in deliveries} == {
        ("PENDING", 0, 8, account.pk)
    }
    assert all(d.next_attempt_at <= timezone.now() for d in deliveries)
    assert (event.account_id, event.event_type, event.payload) == (account.pk, "threshold.crossed", THRESHOLD)


def test_publish_without_subscribers_writes_nothing(account, allow_private):
    make_endpoint(account, "http://127.0.0.1:9/a", [EventType.METER_FLUSHED])
    assert (
        services.notification_publish(
            account_id=account.pk, event_type="threshold.crossed", payload=THRESHOLD
        )
        is None
    )
    assert (NotificationEvent.objects.count(), Delivery.objects.count()) == (0, 0)


def test_publish_refuses_unknown_event_types_and_non_object_payloads(account):
    from config.api.errors import ApiError

    with pytest.raises(ApiError) as unknown:
        services.notification_publish(account_id=account.pk, event_type="meter.exploded", payload={})
    assert unknown.value.code == "UNKNOWN_EVENT_TYPE"
    with pytest.raises(ApiError) as not_object:
        services.notification_publish(account_id=account.pk, event_type="meter.flushed", payload=[1, 2])
    assert not_object.value.code == "VALIDATION_ERROR"


def test_publish_many_is_set_based(account, other_account, allow_private, django_assert_num_queries):
    make_endpoint(account, "http://127.0.0.1:9/a")
    make_endpoint(other_account, "http://127.0.0.1:9/b")
    batch = [
        services.Notification(account_id=owner.pk, event_type="meter.flushed", payload={"n": n})
        for n in range(50)
        for owner in (account, other_account)
    ]
    # endpoints, events, deliveries (+ the savepoint pair of the atomic block)
    with django_assert_num_queries(5):
        events = services.notification_publish_many(notifications=batch)
    assert len(events) == 100
    assert Delivery.objects.count() == 100


def test_a_manual_retry_gives_a_failed_delivery_a_fresh_series(
    account, receiver_factory, allow_private, fast_webhooks, django_capture_on_commit_callbacks
):
    fast_webhooks.WEBHOOK_MAX_ATTEMPTS = 2
    receiver = receiver_factory([Answer(500), Answer(500), Answer(200)])
    make_endpoint(account, receiver.url)
    _, delivery = publish_one(account)
    services.delivery_sweep_due()
    services.delivery_sweep_due()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("FAILED", 2)

    with django_capture_on_commit_callbacks() as callbacks:
        delivery = services.delivery_retry(delivery=delivery)
    assert len(callbacks) == 1  # the delivery task is enqueued once the retry commits
    assert (delivery.status, delivery.attempt_count, delivery.max_attempts) == ("PENDING", 2, 4)
    services.delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("SUCCEEDED", 3)
    assert list(delivery.attempts.values_list("number", "status_code")) == [(1, 500), (2, 500), (3, 200)]
    with pytest.raises(Exception) as not_failed:
        services.delivery_retry(delivery=delivery)
    assert not_failed.value.code == "DELIVERY_NOT_FAILED"


def test_an_attempt_whose_worker_died_is_recorded_and_the_next_attempt_follows_the_lease(
    account, receiver_factory, allow_private, fast_webhooks, time_machine
):
    receiver = receiver_factory()
    make_endpoint(account, receiver.url)
    _, delivery = publish_one(account)
    # The worker claims attempt 1 and dies before sending (SIGKILL between claim and request).
    claim = services._claim_next(Delivery.objects.filter(pk=delivery.pk))
    assert claim.number == 1
    assert services.delivery_sweep_due() == 0  # the lease keeps everyone else off

    time_machine.move_to(timezone.now() + timedelta(seconds=fast_webhooks.WEBHOOK_TIMEOUT_SECONDS + 61))
    assert services.delivery_sweep_due() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("SUCCEEDED", 2)
    assert list(delivery.attempts.values_list("number", "status_code", "error")) == [
        (1, None, DeliveryAttempt.NO_OUTCOME),
        (2, 200, ""),
    ]
    assert len(receiver.requests) == 1


def test_the_last_attempt_interrupted_fails_the_delivery_without_sending(
    account, receiver_factory, allow_private, fast_webhooks, time_machine
):
    fast_webhooks.WEBHOOK_MAX_ATTEMPTS = 1
    receiver = receiver_factory()
    make_endpoint(account, receiver.url)
    _, delivery = publish_one(account)
    services._claim_next(Delivery.objects.filter(pk=delivery.pk))
    time_machine.move_to(timezone.now() + timedelta(seconds=fast_webhooks.WEBHOOK_TIMEOUT_SECONDS + 61))
    assert services.delivery_sweep_due() == 0
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.last_error) == (
        "FAILED",
        1,
        DeliveryAttempt.LAST_INTERRUPTED,
    )
    assert receiver.requests == []


def test_an_endpoint_deleted_while_its_attempt_is_in_flight_ends_quietly(
    account, receiver_factory, allow_private, fast_webhooks
):
    receiver = receiver_factory()
    endpoint, _ = make_endpoint(account, receiver.url)
    _, delivery = publish_one(account)
    claim = services._claim_next(Delivery.objects.filter(pk=delivery.pk))
    outcome = services._send(claim)
    services.notification_endpoint_delete(endpoint=endpoint)
    assert services._complete(claim, outcome) is None
    assert (Delivery.objects.count(), DeliveryAttempt.objects.count(), len(receiver.requests)) == (0, 0, 1)


def test_the_sweep_is_bounded_by_its_batch_size(account, allow_private, fast_webhooks, receiver_factory):
    receiver = receiver_factory()
    make_endpoint(account, receiver.url)
    for n in range(5):
        services.notification_publish(account_id=account.pk, event_type="meter.flushed", payload={"n": n})
    assert services.delivery_sweep_due(limit=2) == 2
    assert services.delivery_sweep_due(limit=2) == 2
    assert services.delivery_sweep_due(limit=2) == 1
    assert services.delivery_sweep_due(limit=2) == 0
    assert sorted(json.loads(r.body)["data"]["n"] for r in receiver.requests) == [0, 1, 2, 3, 4]


def test_the_deliver_task_is_a_no_op_for_unknown_or_malformed_ids(db):
    assert tasks.deliver("not-a-uuid") is None
    assert tasks.deliver("00000000-0000-4000-8000-000000000000") is None


# --- Transactions and concurrency (real commits, several connections) -----------------------


@pytest.mark.django_db(transaction=True)
def test_publish_inside_a_transaction_that_rolls_back_creates_and_sends_nothing(
    account, receiver_factory, allow_private, fast_webhooks, celery_eager
):
    receiver = receiver_factory()
    make_endpoint(account, receiver.url)

    with pytest.raises(RuntimeError), transaction.atomic():
        services.notification_publish(
            account_id=account.pk, event_type="threshold.crossed", payload=THRESHOLD
        )
        assert Delivery.objects.count() == 1  # visible inside the caller's transaction
        raise RuntimeError("the meter update failed")

    assert (NotificationEvent.objects.count(), Delivery.objects.count(), DeliveryAttempt.objects.count()) == (
        0,
        0,
        0,
    )
    assert receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_publish_inside_a_committed_transaction_is_delivered_after_the_commit(
    account, receiver_factory, allow_private, fast_webhooks, celery_eager
):
    receiver = receiver_factory()
    make_endpoint(account, receiver.url)

    with transaction.atomic():
        event = services.notification_publish(
            account_id=account.pk, event_type="threshold.crossed", payload=THRESHOLD
        )
        assert receiver.requests == []  # nothing leaves before the caller's commit

    assert [request.headers["webhook-id"] for request in receiver.requests] == [str(event.id)]
    assert Delivery.objects.get(event=event).status == "SUCCEEDED"


def run_in_threads(count: int, work) -> list:
    """Run ``work(index)`` in ``count`` threads, each with its own database connection opened
    before a barrier, so they hit the claim at the same moment. Re-raises any thread's error."""
    from django.db import connection

    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list = []

    def run(index: int) -> None:
        try:
            Delivery.objects.exists()  # connect first: the race is on the claim, not on connecting
            barrier.wait(timeout=10)
            results[index] = work(index)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_delivery_runs_send_each_attempt_once(
    account, receiver_factory, allow_private, fast_webhooks
):
    receiver = receiver_factory([Answer(200, delay=0.05)])
    make_endpoint(account, receiver.url)
    for round_number in range(5):
        _, delivery = publish_one(account, payload={"round": round_number})
        results = run_in_threads(4, lambda index, pk=delivery.pk: services.delivery_attempt(delivery_id=pk))
        assert sorted(result is None for result in results) == [False, True, True, True]

    assert sorted(json.loads(r.body)["data"]["round"] for r in receiver.requests) == [0, 1, 2, 3, 4]
    assert set(Delivery.objects.values_list("status", "attempt_count")) == {("SUCCEEDED", 1)}
    assert DeliveryAttempt.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_take_disjoint_deliveries(account, receiver_factory, allow_private, fast_webhooks):
    receiver = receiver_factory([Answer(200, delay=0.05)])
    make_endpoint(account, receiver.url)
    for n in range(12):
        services.notification_publish(account_id=account.pk, event_type="meter.flushed", payload={"n": n})
    counts = run_in_threads(3, lambda index: services.delivery_sweep_due())

    assert sum(counts) == 12
    assert sorted(json.loads(r.body)["data"]["n"] for r in receiver.requests) == list(range(12))
    assert set(Delivery.objects.values_list("status", "attempt_count")) == {("SUCCEEDED", 1)}
    assert NotificationEndpoint.objects.count() == 1

"""The outputs' outbox: an httpForwarder queues its records in the run's transaction and a worker
sends them after the commit — in order, with a stable Delivery-Id, retries with backoff and
jitter, a dead letter after the last attempt, and "retry now"."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from metering.models import Meter
from metering.services import meter_create, meter_type_create
from parameters import services as parameter_services
from streams import tasks
from streams.engine import deliveries
from streams.engine import services as engine_services
from streams.models import OutputDelivery, StreamDedupKey, StreamRun
from tests.streams.engine.conftest import chain, execute

pytestmark = pytest.mark.django_db


def queued(stream, node_id="out"):
    return list(OutputDelivery.objects.filter(stream=stream, node_id=node_id).order_by("id"))


def send(stream, node_id="out", **options):
    return deliveries.output_deliveries_send(stream_id=stream.pk, node_id=node_id, **options)


def make_due(stream):
    """Skip the backoff of the stream's waiting deliveries (as time passing would)."""
    OutputDelivery.objects.filter(stream=stream, status="PENDING").update(next_attempt_at=timezone.now())


def test_a_run_queues_the_records_and_sends_nothing_itself(make_stream, receiver, private_targets_allowed):
    stream = make_stream(chain(("out", "httpForwarder", {"url": receiver.url})))
    run = engine_services.stream_run_execute(stream_id=stream.pk, records=[{"a": 1}, {"a": 2}])
    assert run.status == StreamRun.Status.SUCCEEDED
    assert run.node_counts["out"] == {"in": 2, "out": 2, "rejected": 0}
    assert receiver.requests == []
    (delivery,) = queued(stream)
    assert (delivery.status, delivery.record_count, delivery.attempts, delivery.run_id) == (
        "PENDING",
        2,
        0,
        run.pk,
    )
    assert delivery.body == '[{"a":1},{"a":2}]'


def test_a_run_that_rolls_back_leaves_no_delivery(make_stream, receiver):
    stream = make_stream(chain(("out", "httpForwarder", {"url": receiver.url})))
    with transaction.atomic():
        execute(stream, [{"a": 1}])
        assert len(queued(stream)) == 1
        transaction.set_rollback(True)
    assert queued(stream) == []


def test_sending_substitutes_parameters_and_names_the_delivery(
    make_stream, account, receiver, private_targets_allowed
):
    parameter_services.parameter_create(account=account, name="billing/path", type="standard", value="usage")
    parameter_services.parameter_create(
        account=account, name="billing/token", type="sensitive", value="s3cret"
    )
    stream = make_stream(
        chain(
            (
                "out",
                "httpForwarder",
                {
                    "url": receiver.url + "/{{param:billing/path}}?source=stream",
                    "headers": {"Authorization": "Bearer {{param:billing/token}}", "X-Batch": "1"},
                },
            )
        )
    )
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"a": 1}, {"a": 2}])
    result = send(stream)
    (delivery,) = queued(stream)
    assert (result.delivered, result.attempts, result.failed) == (2, 1, 0)
    assert [
        (
            r["method"],
            r["path"],
            r["headers"]["Authorization"],
            r["headers"]["X-Batch"],
            r["headers"]["Content-Type"],
            r["headers"]["Delivery-Id"],
            r["headers"]["Delivery-Attempt"],
        )
        for r in receiver.requests
    ] == [
        (
            "POST",
            "/usage?source=stream",
            "Bearer s3cret",
            "1",
            "application/json",
            str(delivery.delivery_id),
            "1",
        )
    ]
    assert receiver.bodies() == [[{"a": 1}, {"a": 2}]]
    assert (delivery.status, delivery.body, delivery.last_status_code, delivery.last_error) == (
        "DELIVERED",
        "",
        200,
        "",
    )
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None
    assert "s3cret" not in str(delivery.__dict__)
    assert send(stream).attempts == 0  # sending again is a no-op


def test_large_batches_go_500_per_request_in_order(make_stream, receiver, private_targets_allowed):
    stream = make_stream(chain(("out", "httpForwarder", {"url": receiver.url, "method": "PUT"})))
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"i": i} for i in range(1001)])
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"i": 1001}])
    assert [delivery.record_count for delivery in queued(stream)] == [500, 500, 1, 1]
    assert send(stream).delivered == 1002
    assert [(request["method"], len(request["body"])) for request in receiver.requests] == [
        ("PUT", 500),
        ("PUT", 500),
        ("PUT", 1),
        ("PUT", 1),
    ]
    assert [item["i"] for body in receiver.bodies() for item in body] == list(range(1002))
    assert [request["headers"]["Delivery-Id"] for request in receiver.requests] == [
        str(delivery.delivery_id) for delivery in queued(stream)
    ]


def test_a_target_down_never_stops_counting_and_gets_everything_when_back(
    account, make_stream, receiver, private_targets_allowed, settings
):
    settings.STREAM_OUTPUT_BACKOFF_BASE_SECONDS = 10
    meter_type = meter_type_create(
        account_id=account.pk,
        name="Calls",
        unit="call",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
        category="standard",
    )
    meter = meter_create(account_id=account.pk, meter_key="calls", user_id="u1", meter_type_id=meter_type.pk)
    stream = make_stream(
        {
            **chain(("meter", "meter", {"meterKey": "calls"})),
            "nodes": chain(("meter", "meter", {"meterKey": "calls"}))["nodes"]
            + [{"id": "out", "name": "Out", "type": "httpForwarder", "config": {"url": receiver.url}}],
            "edges": [{"source": "in", "target": "meter"}, {"source": "in", "target": "out"}],
        }
    )
    receiver.status = 503
    for value in (1, 2, 3):
        run = engine_services.stream_run_execute(
            stream_id=stream.pk, records=[{"userId": "u1", "value": value}]
        )
        assert run.status == StreamRun.Status.SUCCEEDED
    assert Meter.objects.get(pk=meter.pk).value == 6
    before = timezone.now()
    result = send(stream)
    assert (result.delivered, result.attempts, result.failed) == (0, 1, 1)  # the head blocks the rest
    head, second, third = queued(stream)
    assert (head.status, head.attempts, head.last_status_code) == ("PENDING", 1, 503)
    assert head.last_error == f"POST {receiver.url}: the target answered HTTP 503"
    # Backoff after attempt 1: between half and all of the base, so 5 to 10 s.
    assert before + timedelta(seconds=5) <= head.next_attempt_at <= timezone.now() + timedelta(seconds=10)
    assert result.retry_at == head.next_attempt_at
    assert (second.attempts, third.attempts) == (0, 0)
    assert send(stream).attempts == 0  # not due yet

    receiver.status = 200
    make_due(stream)
    assert send(stream).delivered == 3
    assert Meter.objects.get(pk=meter.pk).value == 6  # delivering re-ran nothing
    ids = [request["headers"]["Delivery-Id"] for request in receiver.requests]
    assert ids == [str(head.delivery_id)] * 2 + [str(second.delivery_id), str(third.delivery_id)]
    assert [request["headers"]["Delivery-Attempt"] for request in receiver.requests] == ["1", "2", "1", "1"]
    assert receiver.bodies()[1:] == [[{"userId": "u1", "value": value}] for value in (1, 2, 3)]


def test_a_refused_target_and_a_missing_parameter_are_failed_attempts_not_failed_runs(
    make_stream, receiver, settings
):
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = False
    stream = make_stream(
        chain(
            ("dedup", "deduplicate", {"keyFields": ["id"], "windowSeconds": 60}),
            ("out", "httpForwarder", {"url": receiver.url + "/hook"}),
        )
    )
    run = engine_services.stream_run_execute(stream_id=stream.pk, records=[{"id": 1}])
    assert run.status == StreamRun.Status.SUCCEEDED
    assert StreamDedupKey.objects.count() == 1
    send(stream)
    (delivery,) = queued(stream)
    assert delivery.last_error == (
        "POST " + receiver.url + "/hook: 127.0.0.1 is not a public address; "
        "webhook and forwarder targets must be public."
    )
    assert receiver.requests == []

    other = make_stream(chain(("out", "httpForwarder", {"url": "{{param:nowhere}}"}), name="Nowhere"))
    engine_services.stream_run_execute(stream_id=other.pk, records=[{"a": 1}])
    send(other)
    assert queued(other)[0].last_error == "global parameter 'nowhere': Parameter 'nowhere' not found."

    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    make_due(stream)
    assert send(stream).delivered == 1
    assert receiver.bodies() == [[{"id": 1}]]


def test_the_last_failed_attempt_makes_a_dead_letter_and_the_queue_goes_on(
    make_stream, receiver, private_targets_allowed, settings
):
    settings.STREAM_OUTPUT_MAX_ATTEMPTS = 2
    stream = make_stream(chain(("out", "httpForwarder", {"url": receiver.url})))
    for value in (1, 2):
        engine_services.stream_run_execute(stream_id=stream.pk, records=[{"n": value}])
    receiver.status = 500
    send(stream)
    make_due(stream)
    send(stream)  # the head's second and last attempt: dead; the next one is attempted (and fails)
    head, second = queued(stream)
    assert (head.status, head.attempts, head.next_attempt_at) == ("DEAD", 2, None)
    assert (second.status, second.attempts) == ("PENDING", 1)

    receiver.status = 200
    assert deliveries.output_deliveries_retry_now(delivery_ids=[head.pk, second.pk]) == 2
    head.refresh_from_db()
    assert (head.status, head.max_attempts) == ("PENDING", 4)
    assert send(stream).delivered == 2
    # The dead letter, retried, goes first again: order is kept for everything not yet delivered.
    assert receiver.bodies()[-2:] == [[{"n": 1}], [{"n": 2}]]
    assert {delivery.status for delivery in queued(stream)} == {"DELIVERED"}


def test_an_attempt_in_flight_is_not_taken_again_until_its_lease_lapses(
    make_stream, receiver, private_targets_allowed, settings
):
    settings.STREAM_OUTPUT_MAX_ATTEMPTS = 2
    stream = make_stream(chain(("out", "httpForwarder", {"url": receiver.url, "timeoutSeconds": 5})))
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"n": 1}])
    config = deliveries._forwarder_config(stream, "out")
    now = timezone.now()
    # A worker claims the head and dies before sending (or before recording the answer).
    claimed = deliveries._claim_head(stream, "out", config, now)
    assert claimed.claim is not None and claimed.claim.number == 1
    (delivery,) = queued(stream)
    lease = 5 + settings.STREAM_OUTPUT_LEASE_MARGIN_SECONDS
    assert (delivery.next_attempt_at - now).total_seconds() == lease
    assert delivery.last_error == OutputDelivery.IN_FLIGHT
    assert send(stream).attempts == 0
    assert deliveries.output_deliveries_retry_now(delivery_ids=[delivery.pk]) == 0  # in flight: left alone

    make_due(stream)  # the lease lapsed
    assert send(stream).delivered == 1
    assert [request["headers"]["Delivery-Attempt"] for request in receiver.requests] == ["2"]
    assert receiver.requests[0]["headers"]["Delivery-Id"] == str(delivery.delivery_id)
    # The dead worker's late answer changes nothing: the attempt it held is no longer the row's.
    deliveries._complete(claimed.claim, deliveries._Outcome(status_code=500, error="late"))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("DELIVERED", 2)


def test_attempts_used_up_by_dying_workers_make_a_dead_letter(make_stream, receiver, settings):
    settings.STREAM_OUTPUT_MAX_ATTEMPTS = 1
    stream = make_stream(chain(("out", "httpForwarder", {"url": receiver.url})))
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"n": 1}])
    deliveries._claim_head(stream, "out", deliveries._forwarder_config(stream, "out"), timezone.now())
    make_due(stream)
    assert send(stream).attempts == 0
    (delivery,) = queued(stream)
    assert (delivery.status, delivery.last_error) == ("DEAD", deliveries.INTERRUPTED)


def test_deliveries_of_a_removed_output_node_become_dead_letters(make_stream, receiver, solution):
    stream = make_stream(chain(("out", "httpForwarder", {"url": receiver.url})))
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"n": 1}])
    make_stream(chain(("peek", "inspect", {})), on_name_conflict="overwrite", allow_node_deletion=True)
    assert send(stream).attempts == 0
    (delivery,) = queued(stream)
    assert (delivery.status, delivery.last_error) == ("DEAD", deliveries.NODE_GONE)
    assert receiver.requests == []


def test_backoff_doubles_with_jitter_up_to_the_maximum_and_honours_retry_after(settings):
    settings.STREAM_OUTPUT_BACKOFF_BASE_SECONDS = 4
    settings.STREAM_OUTPUT_BACKOFF_MAX_SECONDS = 60
    for attempt, ceiling in ((1, 4), (2, 8), (3, 16), (5, 60), (30, 60)):
        delays = [deliveries.backoff_seconds(attempt_number=attempt) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 100  # jittered, not one fixed wait
    assert deliveries.backoff_seconds(attempt_number=1, retry_after=30) == 30
    assert deliveries.backoff_seconds(attempt_number=1, retry_after=999) == 60


def test_the_task_sends_and_is_safe_to_run_twice(make_stream, receiver, private_targets_allowed):
    stream = make_stream(chain(("out", "httpForwarder", {"url": receiver.url})))
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"n": 1}])
    assert tasks.deliver_output(str(stream.pk), "out") == 1
    assert tasks.deliver_output(str(stream.pk), "out") == 0
    assert len(receiver.requests) == 1
    assert tasks.sweep_output_deliveries() == 0


def test_the_sweep_finds_the_outputs_with_a_delivery_due(make_stream, receiver):
    stream = make_stream(chain(("out", "httpForwarder", {"url": receiver.url})))
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"n": 1}])
    assert deliveries.output_queues_due() == [(str(stream.pk), "out")]
    OutputDelivery.objects.update(next_attempt_at=timezone.now() + timedelta(minutes=1))
    assert deliveries.output_queues_due() == []


def test_delivered_rows_are_purged_after_their_retention(
    make_stream, receiver, private_targets_allowed, settings
):
    settings.STREAM_OUTPUT_DELIVERED_RETENTION_HOURS = 1
    stream = make_stream(chain(("out", "httpForwarder", {"url": receiver.url})))
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"n": 1}])
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"n": 2}])
    send(stream, limit=1)
    old, waiting = queued(stream)
    assert deliveries.output_deliveries_purge(now=timezone.now() + timedelta(minutes=59)) == 0
    assert deliveries.output_deliveries_purge(now=timezone.now() + timedelta(minutes=61)) == 1
    assert queued(stream) == [waiting]


def test_metrics_show_each_streams_outbox_depth_and_oldest_pending_age(
    client, make_stream, receiver, private_targets_allowed
):
    from tests.metering.scale.test_gauges import sample

    stream = make_stream(chain(("out", "httpForwarder", {"url": receiver.url})))
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"n": 1}])
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"n": 2}])
    OutputDelivery.objects.filter(stream=stream).update(created_at=timezone.now() - timedelta(seconds=90))
    labels = f'{{stream="{stream.pk}"}}'
    assert sample(client, "stream_outbox_depth") == {labels: 2.0}
    assert 90.0 <= sample(client, "stream_outbox_oldest_pending_seconds")[labels] < 120.0
    assert sample(client, "stream_outbox_dead") == {labels: 0.0}
    send(stream)
    assert sample(client, "stream_outbox_depth") == {}
    assert sample(client, "stream_outbox_oldest_pending_seconds") == {}
